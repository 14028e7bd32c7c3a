#pragma once

// The fleets' topology that `fleettwin-sim` models beside the readings: which
// aggregate each asset hangs on and the aggregates' own attributes, as the
// relation rules of deploy/aggregates.toml read them:
//
//   mtr-* --transformer--> transformers/tr-0001 --feeder--> feeders/fd-001
//         --substation--> substations/ss-01 --grid--> grids/main
//   veh-* --fleet--> fleets/north --region--> regions/nordics-east
//   veh-* --depot--> depots/depot-1 --region--> regions/nordics-east
//   veh-* ..charging_at (relations topic)..> chargers/depot-1-c2 --depot--> depots/depot-1
//   mch-* --line--> lines/line-1 --plant--> plants/plant-1
//
// Built from the seed and the assets alone: the same config gives the same
// topology on every run.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tools/sim/sample.hpp"

namespace fleettwin::sim {

/// The vehicle fleets (attribute `fleet`), in the order the generator draws them.
inline constexpr std::array<std::string_view, 4> fleet_names{"north", "south", "east", "west"};
/// The region of each fleet (and of its depots).
inline constexpr std::array<std::string_view, 4> fleet_regions{"nordics-east", "nordics-west",
                                                               "nordics-east", "nordics-west"};
/// The one grid every substation feeds.
inline constexpr std::string_view grid_name = "main";
/// The relation a vehicle has to the charger it is plugged into.
inline constexpr std::string_view charging_relation = "charging_at";

/// One relation rule of deploy/aggregates.toml: attributes.{attribute} = v
/// gives "{type} {collection}/v".
struct relation_rule {
  std::string_view attribute;
  std::string_view type;
  std::string_view collection;
  /// The kind whose collection this is.
  std::string_view kind;
};

/// The rules of deploy/aggregates.toml that the simulated topology relies on.
std::span<const relation_rule> relation_rules();

/// The kind of the aggregates in `collection` ("feeders" -> "feeder"); empty if unknown.
std::string_view kind_of_collection(std::string_view collection);

/// What the topology needs to know of one asset.
struct topology_asset {
  asset_kind kind = asset_kind::vehicle;
  /// Vehicles: index into fleet_names.
  uint8_t fleet = 0;
  /// Meters: typical power draw (kW), which sizes the grid's capacities.
  double load_kw = 0;
};

/// An aggregate whose own attributes the simulator reports.
struct aggregate_info {
  static constexpr uint32_t none = UINT32_MAX;

  /// "transformers/tr-0001".
  std::string id;
  /// "transformer".
  std::string_view kind;
  /// E.g. feeder = "fd-001", capacity_kw = "250".
  std::array<std::pair<std::string_view, std::string>, 2> attributes{};
  size_t attribute_size = 0;
  /// Index of the parent aggregate in topology::aggregates, or none (a region,
  /// grid or plant: aggregates without records of their own).
  uint32_t parent = none;
  /// Transformers: voltage drop at full load share (V).
  double voltage_drop = 0;
  /// Depots: their chargers, aggregates[first_charger, first_charger + chargers).
  uint32_t first_charger = 0;
  uint32_t chargers = 0;

  /// "tr-0001".
  std::string_view name() const {
    return std::string_view{id}.substr(id.find('/') + 1);
  }
};

/// The whole topology of one simulated fleet.
struct topology {
  /// Every aggregate with attributes of its own, in emission order: substations,
  /// feeders, transformers, fleets, depots, chargers, lines (parents first).
  std::vector<aggregate_info> aggregates;
  /// Per asset: index into `aggregates` of its transformer (meter), depot
  /// (vehicle) or line (machine).
  std::vector<uint32_t> parent;

  /// Counts per kind, for summaries.
  uint32_t transformers = 0;
  uint32_t feeders = 0;
  uint32_t substations = 0;
  uint32_t depots = 0;
  uint32_t chargers = 0;
  uint32_t lines = 0;
  uint32_t plants = 0;
};

/// Builds the topology of `assets` (one entry per asset, in asset order):
/// about 20-50 meters per transformer (25 on average, 40 in grids of 15000
/// meters or more), about 4-8 transformers per feeder and 2-4 feeders per
/// substation, all substations on grids/main; two or more depots per fleet
/// (about 250 vehicles each) with a charger per ~10 vehicles (1-32); 10
/// machines per line and 8 lines per plant.
topology build_topology(uint64_t seed, std::span<const topology_asset> assets);

}  // namespace fleettwin::sim

#pragma once

// One generated telemetry sample or relation change, before encoding. Views
// point into the generator that produced it and stay valid until its next call
// to `next()`.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <variant>

namespace fleettwin::sim {

/// The asset models the simulator knows.
enum class asset_kind : uint8_t { vehicle, machine, meter };

/// "vehicle", "machine", "meter".
std::string_view to_string(asset_kind k);

/// Parses "vehicle", "machine" or "meter".
std::optional<asset_kind> parse_asset_kind(std::string_view s);

/// Asset id prefix: "veh", "mch", "mtr".
std::string_view id_prefix(asset_kind k);

/// A metric reading; the alternatives match fleettwin.v1.Value.
using metric_value = std::variant<double, int64_t, bool>;

/// One named reading.
struct metric {
  std::string_view name;
  metric_value value;
};

/// A telemetry record as plain data (the fields of fleettwin.v1.Telemetry).
struct sample {
  static constexpr size_t max_metrics = 5;
  static constexpr size_t attribute_count = 4;

  std::string_view asset_id;
  std::string_view kind;
  std::string_view tenant;
  uint64_t sequence = 0;
  int64_t source_time_ms = 0;
  /// fleet, site, make (in that order); with the topology, the asset's parent
  /// attribute too (see generator.hpp); a zero count is allowed.
  std::array<std::pair<std::string_view, std::string_view>, attribute_count> attributes{};
  size_t attribute_size = 0;
  std::array<metric, max_metrics> metrics{};
  size_t metric_size = 0;

  /// The reading called `name`, or nullptr.
  const metric* find(std::string_view name) const {
    for (size_t i = 0; i < metric_size; ++i) {
      if (metrics[i].name == name) {
        return &metrics[i];
      }
    }
    return nullptr;
  }
};

/// One change of the relations topic: a fleettwin.v1.RelationRecord that sets
/// or removes the relation of `child` to `parent`.
struct relation_change {
  std::string_view child;
  /// The relation type, e.g. "charging_at".
  std::string_view type;
  /// An aggregate id, e.g. "chargers/depot-2-c1".
  std::string_view parent;
  /// false: remove the relation to `parent`.
  bool set = true;
};

}  // namespace fleettwin::sim

#pragma once

// The deterministic fleet generator behind `fleettwin-sim`: no Kafka, no wall
// clock. The same config yields the same records, byte for byte, so tests and
// benchmarks can replay a fleet and know exactly what the platform should see.
//
// Order: slot s belongs to asset s % assets (ids veh-000001, mch-000001,
// mtr-000001, veh-000002, ... with kinds round-robin over `kinds`) and carries
// the virtual time start_time_ms + floor(s * 1000 / rate). A dropout fault
// skips the asset's slots in its window. Malformed records are inserted at
// output positions of their own and consume no slot, so adding them never
// changes the valid records. Per-asset sequences count the asset's valid
// records: 1, 2, 3, ... without gaps.
//
// Topology (config::topology; off by default here so that existing streams
// stay byte-identical, on by default in fleettwin-sim): the fleet is wired as
// tools/sim/topology.hpp draws it, and the assets' attributes name their
// parents for the relation rules of deploy/aggregates.toml:
//   meters   site = its substation, make, transformer = tr-NNNN
//   vehicles fleet, site = its depot, make, depot = depot-N
//   machines site = its plant, make, line = line-N
// (machines and meters carry no `fleet`: fleets are vehicle fleets). Before
// slot 0, and again every topology_interval_s of virtual time, a round of
// attribute records of the aggregates (type aggregate: telemetry keyed by the
// aggregate id, e.g. "transformers/tr-0003", kind "transformer", attributes
// feeder and capacity_kw, no metrics) goes out: substations (grid, capacity_kw),
// feeders (substation, capacity_kw), transformers (feeder, capacity_kw), fleets
// (region), depots (region), chargers (depot, capacity_kw), lines (plant).
// Their sequence is the round number. A vehicle whose battery runs low parks at
// its depot and charges at the least busy of the depot's chargers: right after
// the reading where it starts (or, for one charging from the start, its first
// reading) comes a relation record (type relation, for the relations topic,
// key = the vehicle id) setting charging_at chargers/<depot>-c<k>, and right
// after the reading where it leaves, one removing it. Aggregate and relation
// records, like malformed ones, take output positions but no slot. Meters'
// voltage sits a few volts below 230 by their transformer's load, and sags
// below 207 while their transformer is overloaded now and then.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "tools/sim/encoding.hpp"
#include "tools/sim/fault.hpp"
#include "tools/sim/sample.hpp"
#include "tools/sim/topology.hpp"

namespace fleettwin::sim {

/// The ways a record can be broken, cycled through in this order.
enum class malformed_kind : uint8_t {
  undecodable_protobuf,  ///< protobuf content-type, truncated bytes
  invalid_json,          ///< JSON content-type, not JSON
  wrong_shape_json,      ///< valid JSON, "metrics" is a string
  empty_key,             ///< valid protobuf payload, empty record key
  key_mismatch,          ///< key names another asset than the payload
  non_finite_value,      ///< protobuf with a NaN double metric
  oversized,             ///< valid protobuf larger than max_record_bytes (~1.1x)
  unknown_content_type,  ///< content-type text/csv
};
inline constexpr size_t malformed_kind_count = 8;

/// The header value naming `k`, e.g. "undecodable_protobuf".
std::string_view to_string(malformed_kind k);

/// Every malformed record carries this header with its kind as the value.
inline constexpr std::string_view malformed_header = "fleettwin-sim-malformed";
/// The content-type of `unknown_content_type` records.
inline constexpr std::string_view unknown_content_type_value = "text/csv";

/// Everything that determines the generated stream.
struct config {
  uint64_t seed = 1;
  uint32_t assets = 100;
  std::vector<asset_kind> kinds{asset_kind::vehicle, asset_kind::machine, asset_kind::meter};
  /// Virtual records per second (all assets together); must be > 0.
  double rate = 1000;
  /// Virtual time of slot 0 (Unix ms).
  int64_t start_time_ms = 1'732'435'200'000;
  std::string tenant = "demo";
  payload_format format = payload_format::protobuf;
  std::vector<fault> faults;
  /// Total records to emit, malformed included; 0 = unbounded.
  uint64_t count = 0;
  /// Malformed records spread evenly over `count` (needs count > 0).
  uint64_t malformed = 0;
  /// Every K-th record (positions K, 2K, ...) is malformed; 0 = off.
  uint64_t malformed_every = 0;
  /// The platform's record size limit; oversized records exceed it by ~10%.
  size_t max_record_bytes = size_t{1} << 20;
  /// Model the topology: parent attributes, aggregate and relation records.
  bool topology = false;
  /// Virtual seconds between rounds of aggregate attribute records.
  double topology_interval_s = 60;
};

/// What a record carries, and so where it goes.
enum class record_type : uint8_t {
  /// An asset's telemetry (or a malformed imitation of it): the telemetry topic.
  asset,
  /// An aggregate's own attributes: a telemetry record keyed by the aggregate id.
  aggregate,
  /// A fleettwin.v1.RelationRecord keyed by the child: the relations topic.
  relation,
};

/// "asset", "aggregate", "relation".
std::string_view to_string(record_type t);

/// One generated record. Views stay valid until the generator's next `next()`.
struct record {
  std::string_view key;
  std::string_view value;
  std::string_view content_type;
  /// Set for a deliberately broken record (send the malformed header).
  std::optional<malformed_kind> malformed;
  /// The payload encoding (valid records; for malformed ones, nominal).
  encoding enc = encoding::protobuf;
  record_type type = record_type::asset;
  /// The asset the record belongs to (for malformed ones: the asset it
  /// imitates; relation records: the child; aggregate records: the index in
  /// topology().aggregates).
  uint32_t asset_index = 0;
  /// The decoded content of a valid asset or aggregate record; nullptr for
  /// malformed and relation records.
  const sample* data = nullptr;
  /// The content of a relation record; nullptr otherwise.
  const relation_change* relation = nullptr;
  /// Output position (0-based, malformed included).
  uint64_t index = 0;
};

/// A household's load at a time of day (UTC), as a factor of its typical
/// load: quiet nights, a morning bump, the evening peak (about 1 on a
/// day's average). Meters' currents follow it: their 24-hour season.
double daily_load(int64_t time_ms);

class generator {
public:
  /// Throws std::invalid_argument when the config is inconsistent (unknown
  /// fault asset/property, malformed without count, ...).
  explicit generator(config cfg);

  /// Produces the next record; false once `count` records were emitted.
  bool next(record& out);

  const config& cfg() const {
    return cfg_;
  }
  size_t asset_count() const {
    return assets_.size();
  }
  /// Id of asset `i` (0-based), e.g. "veh-000001".
  std::string asset_id(size_t i) const;
  asset_kind kind_of(size_t i) const;
  /// Index of the asset called `id`, if it is part of this fleet.
  std::optional<uint32_t> find_asset(std::string_view id) const;
  /// The configured faults.
  const std::vector<fault>& faults() const {
    return cfg_.faults;
  }

  /// Records emitted so far (malformed included).
  uint64_t emitted() const {
    return emitted_;
  }
  uint64_t malformed_emitted() const {
    return malformed_emitted_;
  }
  /// Slots skipped by dropout faults.
  uint64_t dropped() const {
    return dropped_;
  }
  /// Aggregate attribute records and relation records emitted so far.
  uint64_t aggregate_records_emitted() const {
    return aggregate_emitted_;
  }
  uint64_t relation_records_emitted() const {
    return relation_emitted_;
  }
  /// The modelled topology; nullptr unless config::topology.
  const topology* topo() const {
    return topo_ ? &*topo_ : nullptr;
  }
  /// Virtual offset (ms from start_time_ms) of slot `s`.
  int64_t slot_offset_ms(uint64_t s) const;
  /// Whether output position `n` is a malformed record under this config.
  bool is_malformed_position(uint64_t n) const;
  /// Size of an `oversized` payload.
  size_t oversized_bytes() const {
    return cfg_.max_record_bytes + cfg_.max_record_bytes / 10;
  }

  /// The kind of the `ordinal`-th malformed record (0-based).
  static malformed_kind malformed_kind_at(uint64_t ordinal) {
    return static_cast<malformed_kind>(ordinal % malformed_kind_count);
  }
  /// The encoding of a valid record; mixed alternates per asset and record.
  static encoding encoding_for(payload_format f, uint32_t asset_index, uint64_t sequence);
  /// "veh-000001" style id for the `number`-th (1-based) asset of `kind`.
  static std::string make_asset_id(asset_kind kind, uint64_t number);
  /// Metric names of `kind`, in payload order.
  static std::span<const std::string_view> metric_names(asset_kind kind);
  /// Records a run of `seconds` at `rate` records/s produces.
  static uint64_t records_for_duration(double seconds, double rate);

private:
  struct asset_state {
    uint64_t rng = 0;
    uint64_t last_slot = UINT64_MAX;
    uint64_t sequence = 0;
    std::array<double, 7> x{};  // model state, meaning per kind
    // Topology: the transformer, depot or line (index into topo_->aggregates),
    // and the charger a vehicle is plugged into (none when it is not).
    uint32_t group = aggregate_info::none;
    uint32_t charger = aggregate_info::none;
    asset_kind kind = asset_kind::vehicle;
    uint8_t fleet = 0;
    uint8_t site = 0;
    uint8_t make = 0;
    bool flag = false;  // vehicle: charging, machine: running
    bool faulted = false;
  };

  // A relation record owed right after the reading that caused it.
  struct pending_relation {
    uint32_t asset = 0;
    uint32_t charger = 0;
    bool set = true;
    encoding enc = encoding::protobuf;
  };

  struct fault_state {
    uint32_t asset = 0;
    bool fired = false;     // spike
    bool captured = false;  // stuck
    uint64_t noise = 0;     // variance: its own random stream
    std::array<metric_value, sample::max_metrics> frozen{};
  };

  void init_asset(uint32_t i);
  void init_topology();
  void step(asset_state& a, double dt, int64_t offset_ms);
  double meter_voltage_target(const asset_state& a, int64_t offset_ms) const;
  void update_charging(uint32_t i, asset_state& a, encoding enc);
  void fill_sample(uint32_t i, asset_state& a, int64_t offset_ms);
  void fill_topology_attributes(const asset_state& a, std::string_view make);
  void apply_faults(uint32_t i, int64_t offset_ms);
  bool dropped_out(uint32_t i, int64_t offset_ms) const;
  void make_valid(record& out);
  void make_malformed(record& out);
  bool aggregate_due();
  void make_aggregate(record& out);
  void make_relation(record& out);
  std::string_view write_id(std::string& buf, uint32_t i) const;

  config cfg_;
  std::vector<asset_state> assets_;
  std::vector<fault_state> fault_states_;
  uint64_t slot_ = 0;
  uint64_t emitted_ = 0;
  uint64_t malformed_emitted_ = 0;
  uint64_t dropped_ = 0;
  std::optional<topology> topo_;
  std::vector<uint32_t> charger_load_;  // vehicles per charger, by aggregate index
  std::optional<pending_relation> pending_;
  relation_change relation_;
  uint64_t topology_seed_ = 0;
  uint64_t round_slots_ = 0;  // slots between rounds of aggregate records
  uint64_t next_round_slot_ = 0;
  uint64_t rounds_ = 0;   // rounds started
  size_t round_pos_ = 0;  // next aggregate of the current round
  uint64_t aggregate_emitted_ = 0;
  uint64_t relation_emitted_ = 0;
  sample sample_;
  std::string id_buf_;
  std::string key_buf_;
  std::string buf_;
};

}  // namespace fleettwin::sim

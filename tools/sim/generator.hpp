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
};

/// One generated record. Views stay valid until the generator's next `next()`.
struct record {
  std::string_view key;
  std::string_view value;
  std::string_view content_type;
  /// Set for a deliberately broken record (send the malformed header).
  std::optional<malformed_kind> malformed;
  /// The payload encoding (valid records; for malformed ones, nominal).
  encoding enc = encoding::protobuf;
  /// The asset the record belongs to (for malformed ones: the asset it imitates).
  uint32_t asset_index = 0;
  /// The decoded content of a valid record; nullptr for malformed ones.
  const sample* data = nullptr;
  /// Output position (0-based, malformed included).
  uint64_t index = 0;
};

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
    asset_kind kind = asset_kind::vehicle;
    uint8_t fleet = 0;
    uint8_t site = 0;
    uint8_t make = 0;
    bool flag = false;  // vehicle: charging, machine: running
    bool faulted = false;
  };

  struct fault_state {
    uint32_t asset = 0;
    bool fired = false;     // spike
    bool captured = false;  // stuck
    std::array<metric_value, sample::max_metrics> frozen{};
  };

  void init_asset(uint32_t i);
  void step(asset_state& a, double dt);
  void fill_sample(uint32_t i, asset_state& a, int64_t offset_ms);
  void apply_faults(uint32_t i, int64_t offset_ms);
  bool dropped_out(uint32_t i, int64_t offset_ms) const;
  void make_valid(record& out);
  void make_malformed(record& out);
  std::string_view write_id(std::string& buf, uint32_t i) const;

  config cfg_;
  std::vector<asset_state> assets_;
  std::vector<fault_state> fault_states_;
  uint64_t slot_ = 0;
  uint64_t emitted_ = 0;
  uint64_t malformed_emitted_ = 0;
  uint64_t dropped_ = 0;
  sample sample_;
  std::string id_buf_;
  std::string key_buf_;
  std::string buf_;
};

}  // namespace fleettwin::sim

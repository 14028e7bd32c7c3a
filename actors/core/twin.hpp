#pragma once

// The twin model and the rules that change it. Pure C++: no CAF, Kafka,
// RocksDB, gRPC or protobuf here (DESIGN.md, "Principles" 4).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "actors/core/alert.hpp"
#include "actors/core/property_analytics.hpp"
#include "actors/core/relation.hpp"
#include "actors/core/sequence_window.hpp"
#include "actors/core/value.hpp"

namespace fleettwin::core {

/// Limits that keep a twin bounded; violations are validation errors.
struct limits {
  size_t max_asset_id_bytes = 256;
  size_t max_name_bytes = 128;
  size_t max_string_value_bytes = 4096;
  size_t max_metrics_per_record = 256;
  size_t max_attributes_per_record = 64;
  size_t max_properties_per_twin = 1024;
  size_t max_attributes_per_twin = 128;
};

/// One decoded telemetry record.
struct telemetry {
  std::string asset_id;
  std::string kind;
  std::string tenant;
  uint64_t sequence = 0;
  int64_t source_time_ms = 0;
  std::vector<std::pair<std::string, std::string>> attributes;
  std::vector<std::pair<std::string, value>> metrics;
};

/// Running statistics of a property over every accepted sample.
struct property_stats {
  uint64_t count = 0;
  uint64_t numeric_count = 0;
  double min = 0;
  double max = 0;
  double mean = 0;
  int64_t last_change_ms = 0;
};

/// The latest accepted sample of a property, and its statistics.
struct reported_property {
  value val;
  int64_t source_time_ms = 0;
  int64_t ingest_time_ms = 0;
  uint64_t sequence = 0;
  /// Over every accepted sample (kept beside the sample: one lookup per
  /// metric of a record, one map node per property).
  property_stats stats;
};

using string_map = std::map<std::string, std::string, std::less<>>;
using reported_map = std::map<std::string, reported_property, std::less<>>;
using value_map = std::map<std::string, value, std::less<>>;

/// Data-quality flags of a property's last sample (bits of quality_state::flags).
enum quality_flag : uint8_t {
  /// Outside the model's valid range (accepted, and flagged).
  quality_out_of_range = 1,
  /// Changed faster than the model's maximum rate, or far from its forecast.
  quality_spike = 2,
  /// Unchanged for longer than the model allows.
  quality_stuck = 4,
  /// Reports went missing before it (against the model's expected interval),
  /// or (when read) none came for two expected intervals.
  quality_gap = 8,
};

/// The data quality of one numeric property (see twin_analytics.hpp).
struct quality_state {
  /// quality_flag bits of the last sample.
  uint8_t flags = 0;
  /// Exponentially weighted share of samples flagged out of range, spiking
  /// or stuck (about the last 20 samples).
  double bad_rate = 0;
  /// Exponentially weighted share of expected reports that went missing.
  double missing_rate = 0;
  uint64_t out_of_range_samples = 0;
  uint64_t spikes = 0;
  /// Expected reports that never came (from the gaps between samples).
  uint64_t missing_reports = 0;
  /// The model's expected interval when the last sample came (0: none), so
  /// reads can tell a property that went silent.
  int64_t expected_interval_ms = 0;
  /// When the forecast crosses the model's failure threshold (the time to
  /// failure; 0: not heading there, or no threshold).
  int64_t failure_eta_ms = 0;
  /// The last sample is already beyond the failure threshold.
  bool failed = false;

  bool operator==(const quality_state&) const = default;
};

/// The analytics of one numeric property (see twin_analytics.hpp).
struct property_analysis {
  property_analytics state;
  /// The last sample's anomaly score and the detector behind it.
  double score = 0;
  anomaly_kind kind = anomaly_kind::none;
  /// The forecast of the next sample (a mean interval after the last).
  double next = 0;
  /// The property's anomaly alert.
  alert_state alert;
  quality_state quality;

  bool operator==(const property_analysis&) const = default;
};
using analysis_map = std::map<std::string, property_analysis, std::less<>>;

/// The state of one digital twin.
struct twin {
  std::string asset_id;
  std::string kind;
  std::string tenant;
  string_map attributes;
  reported_map reported;
  value_map desired;
  uint64_t version = 0;
  int64_t last_seen_ms = 0;
  int64_t desired_updated_ms = 0;
  uint64_t applied_records = 0;
  uint64_t duplicates = 0;
  uint64_t out_of_order = 0;
  /// History segments written (the ring slot of the next is this % capacity).
  uint64_t history_segments = 0;
  /// The open history segment: samples applied since the last segment closed,
  /// stored inside the twin's state record until the segment is large enough
  /// to close into its own ring slot (a twin reporting once a second then
  /// writes one state record per work item, not a state and a history record).
  std::string open_history;
  /// The newest source time of any record the sequence window marked (samples or
  /// attributes only): a record with a seen sequence is a new one from a source that
  /// restarted its numbering only when it is newer than this.
  int64_t newest_source_ms = 0;
  sequence_window window;
  /// Relations to parent aggregates, sorted by parent.
  relation_list relations;
  /// Per numeric property: forecaster, detectors and alert.
  analysis_map analysis;
  /// When the twin was erased (DeleteTwin), by the ingest clock (0: never). An erased
  /// twin is a tombstone (empty) that remembers it: a record whose source time is not
  /// newer never brings it back (a replay of old telemetry); a newer one starts it again.
  int64_t erased_ms = 0;

  /// True when nothing was ever applied (a twin that does not exist yet).
  bool empty() const {
    return version == 0;
  }
};

/// What apply_telemetry did with a record.
enum class apply_status : uint8_t {
  /// At least one property or attribute was applied; version incremented.
  applied,
  /// The sequence was applied before: ignored.
  duplicate,
  /// The sequence is below the duplicate-detection window: ignored.
  sequence_too_old,
  /// Every sample was older than the stored one: nothing overwritten.
  out_of_order,
  /// A new record that changed nothing: no samples, and its attributes as
  /// stored (a source re-sending its attributes). Its sequence is marked.
  unchanged,
  /// The record names a tenant other than the twin's (fixed by the first record that
  /// named one): refused whole, for the dead-letter topic.
  tenant_conflict,
  /// The twin was erased after the record's source time: ignored (a replay of telemetry
  /// from before the erasure).
  erased,
};

const char* to_string(apply_status s);

/// The outcome of applying one record.
struct apply_result {
  apply_status status = apply_status::applied;
  /// Indexes into telemetry::metrics of the samples that were applied.
  std::vector<uint32_t> applied_metrics;
  /// Samples skipped because a newer one was stored (counted per sample).
  uint32_t stale_samples = 0;
  bool attributes_changed = false;
  /// The record's sequence was at or below the window, but it is newer than
  /// every sample of the twin: the source restarted its sequence counter
  /// (a device reboot, a producer that starts again from 1), so the window
  /// started again from this record instead of dropping it.
  bool sequence_restarted = false;
};

/// Checks a decoded record against the limits; returns the reason it is invalid.
std::optional<std::string> validate(const telemetry& t, const limits& lim);

/// Checks a property or attribute name: 1..max bytes of [A-Za-z0-9_.:/-].
std::optional<std::string> validate_name(std::string_view name, const limits& lim,
                                         std::string_view what);

/// Applies a validated record to a twin (ordering, duplicates, statistics).
/// `now_ms` is the ingest time. `out` is reused to avoid allocation.
void apply_telemetry(twin& tw, const telemetry& t, int64_t now_ms, const limits& lim,
                     apply_result& out);

/// Erases a twin (DeleteTwin): every property, desired value, statistic, analytics state
/// and relation goes; what stays is a tombstone of its id and `now_ms` (see erased_ms).
/// The history the twin had is `history_slots` ring slots (to delete with it).
struct erasure {
  uint32_t history_slots = 0;
  relation_list relations;  ///< the parents it leaves
};
erasure erase_twin(twin& tw, int64_t now_ms, uint32_t history_capacity);

/// A client's change of desired properties.
struct desired_update {
  std::vector<std::pair<std::string, value>> set;
  std::vector<std::string> remove;
  std::optional<uint64_t> expected_version;
  /// Set for a caller confined to one tenant: a twin of another tenant (or none yet) is
  /// answered as not found, as if it did not exist.
  std::optional<std::string> only_tenant;
  /// Checks the update against the twin and says what it would do; the caller applies it
  /// to a copy (a dry run) and keeps nothing.
  bool validate_only = false;
};

enum class desired_status : uint8_t { applied, unchanged, version_mismatch, invalid, not_found };

struct desired_result {
  desired_status status = desired_status::applied;
  std::string error;
};

/// Applies a desired update with optimistic concurrency. A no-op update (every
/// value already desired) leaves the version unchanged.
desired_result apply_desired(twin& tw, std::string_view asset_id, const desired_update& u,
                             int64_t now_ms, const limits& lim);

/// Desired values not yet matched by the reported value.
value_map delta(const twin& tw);

enum class connectivity : uint8_t { online, stale };

/// Online if seen within `stale_after_ms` of `now_ms`.
connectivity connectivity_of(const twin& tw, int64_t now_ms, int64_t stale_after_ms);

/// The history ring slot of the n-th (1-based) segment of a twin.
inline uint32_t history_slot(uint64_t nth_segment, uint32_t capacity) {
  return static_cast<uint32_t>((nth_segment - 1) % capacity);
}

/// Slots of an aggregate's measure history (one segment per aggregate
/// version) have this bit set, apart from its own telemetry's ring.
inline constexpr uint32_t aggregate_history_bit = 0x80000000u;

/// The history ring slot of an aggregate's version.
inline uint32_t aggregate_history_slot(uint64_t version, uint32_t capacity) {
  return aggregate_history_bit | history_slot(version, capacity);
}

}  // namespace fleettwin::core

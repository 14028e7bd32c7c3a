#pragma once

// Analytics in every twin: each numeric sample applied to a twin is folded
// into its property's forecaster and scored by its detectors, and the
// property's anomaly alert follows the score. Settings come from the asset
// model of the twin's kind where one describes the property, defaults
// otherwise. Pure C++ (DESIGN.md, principle 4).

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "actors/core/asset_model.hpp"
#include "actors/core/twin.hpp"

namespace fleettwin::core {

/// A score from this level on raises a critical alert (0.5: a warning).
inline constexpr double critical_score = 0.9;

/// One alert that was raised, updated or cleared by a sample.
struct alert_change {
  std::string property;
  alert_event event = alert_event::none;
  alert_severity severity = alert_severity::warning;
  anomaly_kind kind = anomaly_kind::none;
  double score = 0;
  /// The alert's number among the property's alerts (with the twin and the
  /// property, its id).
  uint32_t number = 0;
  int64_t time_ms = 0;
  /// The alert after the change.
  alert_state state;
};

/// What the analytics of some samples found.
struct analysis_output {
  /// Alerts raised, updated or cleared.
  std::vector<alert_change> alerts;
  /// Samples scored at least 0.5, by detector (index: anomaly_kind).
  std::array<uint32_t, 6> anomalies{};
  /// Samples flagged, by quality flag (index: bit of quality_flag).
  std::array<uint32_t, 4> quality{};
  /// One-step forecast errors of the samples, each scaled by its property's
  /// mean naive error so far, summed, and the samples scored: their ratio
  /// is the forecasts' mean absolute scaled error.
  double scaled_error = 0;
  uint32_t scored = 0;
};

/// The names of the quality_flag bits, by bit index: out_of_range, spike,
/// stuck, gap.
const char* quality_flag_name(size_t bit);

/// When the node last received a report of `property` (its ingest time, by
/// the node's clock; 0: never). Silence is judged by it, so that replayed
/// or delayed data is not taken for silence.
int64_t last_report_ms(const twin& tw, std::string_view property);

/// The quality flags of a property as of `now_ms`: its last sample's, plus
/// a gap when no report came for twice the expected interval since
/// `last_report_ms`.
uint8_t quality_flags(const quality_state& q, int64_t last_report_ms, int64_t now_ms);

/// The data quality of a twin in [0, 1] as of `now_ms`: the mean over its
/// analysed properties of (1 - bad_rate) * (1 - missing share), where a
/// property silent for more than two expected intervals counts those as
/// missing, times the share of its records that were neither duplicates nor
/// out of order. 1 for a twin with nothing analysed.
double quality_score(const twin& tw, int64_t now_ms);

/// The health of a twin in [0, 1] as of `now_ms`: 1 minus the largest
/// penalty among its anomalies (a raised critical alert 0.6, a warning 0.3,
/// an anomalous last sample 0.2), its time to failure from the last sample
/// (already failed 0.8, expected within a day 0.5, within a week 0.25) and
/// its data quality
/// (half of 1 - quality_score).
double health_score(const twin& tw, int64_t now_ms);

/// Runs the analytics of the numeric samples of `t` that `applied` says
/// were applied to `tw` (apply_telemetry's result), with `model` the twin's
/// kind's model (may be null), and adds what they found to `out`.
void analyze_applied(twin& tw, const telemetry& t, const apply_result& applied,
                     const asset_model* model, int64_t now_ms, analysis_output& out);

/// The twin's overall time to failure: the earliest failure_eta_ms of its
/// properties (0: none heading to failure).
int64_t earliest_failure(const twin& tw);

/// How acknowledging an alert ended.
enum class ack_status : uint8_t {
  acknowledged,
  /// The property has no alert with that number.
  not_found,
  /// The alert is cleared, or acknowledged already.
  not_open,
};

/// An operator acknowledges alert `number` of `property` at `now_ms`; the
/// change goes to `out` (acknowledged only).
ack_status acknowledge_alert(twin& tw, std::string_view property, uint32_t number, int64_t now_ms,
                             analysis_output& out);

}  // namespace fleettwin::core

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
};

/// Runs the analytics of the numeric samples of `t` that `applied` says
/// were applied to `tw` (apply_telemetry's result), with `model` the twin's
/// kind's model (may be null), and adds what they found to `out`.
void analyze_applied(twin& tw, const telemetry& t, const apply_result& applied,
                     const asset_model* model, int64_t now_ms, analysis_output& out);

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

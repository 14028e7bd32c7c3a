#pragma once

// The lifecycle of one alert condition of a twin (an anomaly of a property,
// a threshold crossed, a data-quality flag): pending while the condition
// has not held long enough, raised once it has, updated when its severity
// or kind changes, cleared once it has stayed below its clearing level long
// enough, acknowledged by an operator while raised. Hysteresis and minimum
// durations keep one noisy sample from paging anyone, and a flapping
// condition from raising again and again. Pure C++ (DESIGN.md, principle 4).

#include <cstdint>
#include <string>
#include <string_view>

namespace fleettwin::core {

enum class alert_severity : uint8_t { warning, critical };
const char* to_string(alert_severity s);

/// When a condition raises and clears (defaults: two samples at or above
/// 0.5 raise, three below 0.3 clear).
struct alert_policy {
  double raise_at = 0.5;
  double clear_below = 0.3;
  /// Samples at or above raise_at, and the time they must span.
  uint32_t raise_after_samples = 2;
  int64_t raise_after_ms = 0;
  /// Samples below clear_below, and the time they must span.
  uint32_t clear_after_samples = 3;
  int64_t clear_after_ms = 0;
};

enum class alert_event : uint8_t { none, raised, updated, cleared, acknowledged };
const char* to_string(alert_event e);

/// One condition's alert (fixed size; stored with the twin).
struct alert_state {
  bool active = false;
  bool acknowledged = false;
  alert_severity severity = alert_severity::warning;
  /// What raised it (e.g. an anomaly_kind, as its number), kept for updates.
  uint8_t kind = 0;
  /// Raised alerts of this condition so far: with the twin and the
  /// condition, it names the alert (its id).
  uint32_t raised_count = 0;
  /// Consecutive samples on the other side of the hysteresis, and since when.
  uint32_t streak = 0;
  int64_t streak_since_ms = 0;
  int64_t raised_ms = 0;
  int64_t updated_ms = 0;
  int64_t cleared_ms = 0;
  /// The highest score while raised.
  double peak = 0;

  bool operator==(const alert_state&) const = default;
};

/// Folds in one observation of the condition's score at `time_ms`, with the
/// severity and kind it would have if raised; returns what changed.
alert_event observe(alert_state& a, const alert_policy& p, double score, alert_severity severity,
                    uint8_t kind, int64_t time_ms);

/// An operator acknowledges the raised alert; false when none is raised or
/// it was acknowledged already (nothing changes then).
bool acknowledge(alert_state& a, int64_t time_ms);

void encode_alert(const alert_state& a, std::string& out);
/// False when `in` is not an encoded state; consumes what it read.
bool decode_alert(std::string_view& in, alert_state& a);

}  // namespace fleettwin::core

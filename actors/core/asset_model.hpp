#pragma once

// Asset models: what a kind of asset (vehicle, machine, meter, charger, or
// any a user declares) reports, per property: type, unit, valid range,
// expected reporting interval, maximum rate of change, warning, critical and
// failure thresholds, a seasonal period, a `sensitive` flag and the
// sensitivity of anomaly detection. They drive data quality and analytics.
// Pure C++ (DESIGN.md, principle 4).

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "actors/core/alert.hpp"
#include "actors/core/filter.hpp"
#include "actors/core/property_analytics.hpp"

namespace fleettwin::core {

enum class property_type : uint8_t { number, integer, boolean, text };

const char* to_string(property_type t);
std::optional<property_type> parse_property_type(std::string_view s);

/// A limit crossed above or below a value ("< 20", "> 7.1").
struct threshold {
  double value = 0;
  /// True: crossed when the property is above the value; false: below.
  bool above = true;

  bool crossed_by(double x) const {
    return above ? x > value : x < value;
  }
  bool operator==(const threshold&) const = default;
};

/// Parses "< 20", "<= 20", "> 7.1", ">= 7.1" (the or-equal forms read like
/// the strict ones: a sample exactly at a limit does not cross it).
std::optional<threshold> parse_threshold(std::string_view s, std::string& error);
std::string to_string(const threshold& t);

/// An operating state of a kind of asset (running, moving, charging): it
/// holds while the twin satisfies a condition over its own fields, in the
/// ListTwins filter language (`reported.running = true`, `reported.speed >
/// 0`). A property can be analysed only in some states: a stopped machine's
/// rpm at 0 is not stuck, its start is not a spike.
struct operating_state {
  std::string name;
  /// The condition, as written.
  std::string when;
  /// `when`, parsed (by validate).
  filter condition;

  bool operator==(const operating_state& o) const {
    return name == o.name && when == o.when;
  }
};

/// The most operating states a model may declare.
inline constexpr size_t max_operating_states = 32;

/// The most samples an alert policy may ask for.
inline constexpr uint32_t max_alert_samples = 1000;

struct property_model {
  std::string name;
  property_type type = property_type::number;
  std::string unit;
  /// Valid range; values outside are accepted and flagged.
  std::optional<double> min;
  std::optional<double> max;
  /// How often the property is expected (0: no expectation, no gaps).
  int64_t expected_interval_ms = 0;
  /// Faster change (units per second) is a spike (0: no limit).
  double max_rate_per_s = 0;
  /// Unchanged this long is stuck (0: after the detector's sample count).
  int64_t stuck_after_ms = 0;
  std::optional<threshold> warning;
  std::optional<threshold> critical;
  /// What time to failure is measured to (battery < 10 %, vibration > 7.1).
  std::optional<threshold> failure;
  /// The seasonal period (0: none).
  int64_t period_ms = 0;
  /// Personal or confidential data (masked for callers without the right).
  bool sensitive = false;
  /// Anomaly detection: above 1 flags smaller deviations.
  double sensitivity = 1;
  /// The property's anomaly alert: raised after this many anomalous samples
  /// spanning at least alert_after_ms, cleared after this many normal ones
  /// spanning at least clear_after_ms (defaults: alert_policy's, 2 and 3
  /// samples); sample counts from 1 to max_alert_samples.
  uint32_t alert_after_samples = alert_policy{}.raise_after_samples;
  int64_t alert_after_ms = alert_policy{}.raise_after_ms;
  uint32_t clear_after_samples = alert_policy{}.clear_after_samples;
  int64_t clear_after_ms = alert_policy{}.clear_after_ms;
  /// The operating states the property is analysed in (empty: always).
  /// Outside them its samples are applied and checked against the range,
  /// but neither learnt from nor scored.
  std::vector<std::string> analyse_in;
  /// After the twin enters one of them, how long its samples are learnt
  /// from but not scored (a start-up transient).
  int64_t settle_ms = 0;
  /// analyse_in as bits of the model's states (set by validate).
  uint32_t analyse_mask = 0;

  bool operator==(const property_model&) const = default;
};

struct asset_model {
  /// The kind it describes (a twin's `kind`).
  std::string kind;
  std::string description;
  /// Sorted by name, unique.
  std::vector<property_model> properties;
  /// Its operating states, in declaration order.
  std::vector<operating_state> states;
  /// Incremented on every change (set by whoever stores it).
  uint64_t revision = 0;

  const property_model* find(std::string_view property) const;
  /// The states `tw` is in, as bits (bit i: states[i]).
  uint32_t states_of(const twin& tw, int64_t now_ms) const;
  bool operator==(const asset_model&) const = default;
};

/// Models by the kind they describe.
using model_set = std::map<std::string, asset_model, std::less<>>;

/// Whether the model of `kind` marks `property` sensitive (personal data: only callers
/// allowed to read sensitive properties see its values).
bool is_sensitive(const model_set& models, std::string_view kind, std::string_view property);

/// A property some model marks sensitive, among `properties` (for what is read before a
/// twin's kind is known: a filter); nullopt when none is.
std::optional<std::string> any_sensitive(const model_set& models,
                                         const std::set<std::string, std::less<>>& properties);

/// What is wrong with `m` (nullopt: valid), said so that the author knows
/// what to fix. Sorts its properties by name, parses the states' conditions
/// and sets the properties' analyse_mask.
std::optional<std::string> validate(asset_model& m);

/// The analytics settings a property's model implies (defaults without one).
property_analytics_params analytics_params(const property_model* p);

/// When the property's anomaly alert is raised and cleared (defaults without
/// a model).
alert_policy alert_policy_of(const property_model* p);

/// Parses durations such as "500ms", "10s", "5m", "24h", "7d" (a bare
/// number is milliseconds).
std::optional<int64_t> parse_duration_ms(std::string_view s);
std::string format_duration(int64_t ms);

}  // namespace fleettwin::core

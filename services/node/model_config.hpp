#pragma once

// Asset models from a TOML file (--models; `deploy/models.toml` ships the
// simulator's kinds):
//
//   [[model]]
//   kind = "vehicle"
//   description = "Battery electric vehicles"
//
//   [model.states]               # operating states: conditions over the twin
//   moving = "reported.speed > 0"   #   (the ListTwins filter language)
//
//   [model.properties.battery]
//   type = "number"              # number, integer, boolean or text
//   unit = "%"
//   range = [0, 100]             # valid range: values outside are flagged
//   expected_interval = "5s"     # reports missing for longer are gaps
//   max_rate = 2                 # units per second; faster change is a spike
//   stuck_after = "10m"          # unchanged this long is stuck
//   warning = "< 20"
//   critical = "< 10"
//   failure = "< 10"             # what time to failure counts down to
//   period = "24h"               # a seasonal period
//   sensitive = false            # personal data (a vehicle's position)
//   sensitivity = 1              # anomaly detection: above 1 flags more
//   alert_after_samples = 2      # the anomaly alert: raised after this many anomalous
//   alert_after = "0s"           #   samples spanning at least this long,
//   clear_after_samples = 3      #   cleared after this many normal ones
//   clear_after = "0s"           #   spanning at least this long
//   analyse_in = ["moving"]      # analysed only in these states (default: always)
//   settle = "30s"               # after entering one, learnt from but not scored
//
// Durations read "500ms", "10s", "5m", "24h", "7d" or a number of
// milliseconds. Unknown keys are errors (a typo should not pass silently).

#include <string>
#include <string_view>
#include <vector>

#include "actors/core/asset_model.hpp"

namespace fleettwin::node {

/// Parses `path`; empty with `error` (file, line and what to fix) when the
/// file or a model in it is invalid.
std::vector<core::asset_model> load_model_config(const std::string& path, std::string& error);

/// The same from TOML text (`origin` names it in errors).
std::vector<core::asset_model> parse_model_config(std::string_view text, const std::string& origin,
                                                  std::string& error);

}  // namespace fleettwin::node

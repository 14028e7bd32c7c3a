#pragma once

// Runs exactly the twins' analytics (core::analyze_applied: forecaster,
// detectors, data quality, alert) over a series, row by row.

#include <cstdint>
#include <string>
#include <vector>

#include "actors/core/asset_model.hpp"
#include "actors/core/twin_analytics.hpp"
#include "tools/analytics/series.hpp"

namespace fleettwin::analytics {

struct scored_row {
  double score = 0;
  core::anomaly_kind kind = core::anomaly_kind::none;
  uint8_t quality = 0;
  /// The one-step forecast made before the row, with its 95 % interval
  /// (no forecast for the first row).
  bool has_forecast = false;
  double forecast = 0, lower95 = 0, upper95 = 0;
  bool alert_active = false;
  core::alert_event alert = core::alert_event::none;
};

struct run_result {
  std::vector<scored_row> rows;
  /// Sums of absolute one-step errors: the forecaster's, the naive
  /// forecast's (the last value), and the seasonal naive's (the value one
  /// period before; only with a period), over the rows all three have.
  double abs_error = 0, naive_error = 0, seasonal_error = 0, seasonal_own_error = 0;
  size_t scored = 0, seasonal_scored = 0;
};

/// `pm` (may be null: defaults) is the property's model; `period_ms` the
/// seasonal period for the seasonal-naive comparison (0: the model's, if any).
run_result run(const series& s, const core::property_model* pm, int64_t period_ms);

}  // namespace fleettwin::analytics

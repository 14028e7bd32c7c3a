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

/// One series alone: `pm` (may be null: defaults) is the property's model;
/// `period_ms` the seasonal period for the seasonal-naive comparison (0: the
/// model's, if any). Alone, a series has no operating states to be judged
/// by: it is analysed throughout.
run_result run(const series& s, const core::property_model* pm, int64_t period_ms);

/// The series of one asset together, as its twin sees them: the rows of
/// one timestamp are one telemetry record (booleans as states), applied to
/// the twin (core::apply_telemetry) and analysed with its kind's `model`
/// (may be null: defaults), whose operating states are judged on the twin.
/// One result per series, in their order (a boolean series is not scored).
std::vector<run_result> run_asset(const std::vector<const series*>& parts,
                                  const core::asset_model* model, int64_t period_ms);

}  // namespace fleettwin::analytics

#pragma once

// Online forecasting of one numeric property: exponential smoothing with a
// damped additive trend (Holt), and additive seasonality (Holt-Winters) when
// the property's model declares a period. O(1) per sample, a fixed-size
// state stored with the twin. Pure C++ (DESIGN.md, principle 4).
//
// Seasonality is kept per phase of the period, not per sample: the period
// is cut into `season_buckets` equal slices of time and each sample updates
// the slice its timestamp falls in, so irregular reporting does not shift
// the seasons. The trend is per sample step; horizons in time are converted
// with the property's mean reporting interval.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fleettwin::core {

/// Smoothing parameters (defaults suit an unknown series).
struct forecast_params {
  /// Level, trend and seasonal smoothing, and trend damping.
  double alpha = 0.3;
  double beta = 0.05;
  double gamma = 0.15;
  double phi = 0.98;
  /// The seasonal period (ms); 0: none.
  int64_t period_ms = 0;

  /// Defaults for a series with a period: a slower level and trend, so that
  /// they do not chase the season, and a faster season.
  static forecast_params seasonal(int64_t period_ms) {
    forecast_params p;
    p.alpha = 0.1;
    p.beta = 0.01;
    p.gamma = 0.3;
    p.period_ms = period_ms;
    return p;
  }
};

/// Slices of a declared period (a day in hours, a week in 7-hour slices...).
inline constexpr size_t season_buckets = 24;

/// What the forecaster keeps per property (fixed size; see encode_forecaster).
struct forecaster_state {
  double level = 0;
  /// Per sample step.
  double trend = 0;
  /// Exponentially weighted mean of squared one-step errors (the scale of
  /// the intervals).
  double error_var = 0;
  /// Mean interval between samples (ms), exponentially weighted.
  double interval_ms = 0;
  /// Sums for the forecast error against the naive forecast (MASE): one-step
  /// absolute errors of this forecaster and of "the last value".
  double abs_error_sum = 0;
  double naive_abs_error_sum = 0;
  double last_value = 0;
  /// Recent mean absolute one-step errors of the two starting points a
  /// forecast can take: the smoothed level, and the last value (seasons
  /// removed). The forecast starts from their blend, weighted by how well
  /// each did: a noisy series around its level leans on the smoothing, one
  /// that wanders or trends on the last value.
  double smooth_error = 0;
  double persist_error = 0;
  int64_t last_time_ms = 0;
  /// Samples seen (those after the first are scored).
  uint32_t samples = 0;
  std::array<float, season_buckets> season{};

  bool operator==(const forecaster_state&) const = default;
};

/// One forecast point.
struct forecast_point {
  int64_t time_ms = 0;
  double value = 0;
  /// 80 % and 95 % prediction intervals.
  double lower80 = 0, upper80 = 0, lower95 = 0, upper95 = 0;
};

/// When a forecast crosses a threshold: the point forecast, and the earliest
/// and latest crossing of the 95 % band (nullopt: not within the horizon).
struct threshold_crossing {
  std::optional<int64_t> expected_ms;
  std::optional<int64_t> earliest_ms;
  std::optional<int64_t> latest_ms;
};

/// Where a forecast starts: the blend of the smoothed level and the last
/// value (seasons removed) by their recent errors (see smooth_error).
double forecast_origin(const forecaster_state& s, const forecast_params& p);

/// The one-step-ahead prediction for a sample at `time_ms`; nullopt before
/// the first sample.
std::optional<double> predict_next(const forecaster_state& s, const forecast_params& p,
                                   int64_t time_ms);

/// The series' slope per sample. The damped trend underestimates a steady
/// slope m: it settles at m / (phi + (1 - phi) / beta), which this undoes.
double steady_slope(const forecaster_state& s, const forecast_params& p);

/// The seasonal component at `time_ms` (0 without a period).
double seasonal_component(const forecaster_state& s, const forecast_params& p, int64_t time_ms);

/// Folds in a sample; returns its one-step error (value - prediction), or
/// nullopt for the first sample. Samples older than the last one are the
/// caller's to drop (an older sample never overwrites a newer one).
std::optional<double> update_forecaster(forecaster_state& s, const forecast_params& p, double value,
                                        int64_t time_ms);

/// A sample the forecaster does not learn from (its twin is outside the
/// property's operating states): only its clock and last value follow.
void follow_forecaster(forecaster_state& s, double value, int64_t time_ms);

/// The first sample after such a pause: the level moves to it (the trend,
/// the seasons and the error scale stay what was learnt), so that the pause
/// is not taken for a jump.
void reanchor_forecaster(forecaster_state& s, const forecast_params& p, double value,
                         int64_t time_ms);

/// Points `step_ms` apart (default: the mean reporting interval) up to
/// `horizon_ms` after the last sample, at most `max_points`.
std::vector<forecast_point> forecast(const forecaster_state& s, const forecast_params& p,
                                     int64_t horizon_ms, int64_t step_ms = 0,
                                     size_t max_points = 1000);

/// When the forecast crosses `threshold` (from below when `above`, e.g.
/// vibration > 7.1; from above otherwise, e.g. battery < 10), searched up to
/// `horizon_ms` after the last sample. The slope (steady_slope) is
/// extrapolated undamped: a linear decline reaches its threshold when the
/// line does.
threshold_crossing time_to_threshold(const forecaster_state& s, const forecast_params& p,
                                     double threshold, bool above, int64_t horizon_ms);

/// Mean absolute scaled error of the one-step forecasts so far (below 1: better
/// than repeating the last value); nullopt until two errors are known.
std::optional<double> mase(const forecaster_state& s);

/// Bit-exact encoding of the state (doubles as IEEE bits).
void encode_forecaster(const forecaster_state& s, std::string& out);
/// False when `in` is not an encoded state; consumes what it read.
bool decode_forecaster(std::string_view& in, forecaster_state& s);

}  // namespace fleettwin::core

#include "actors/core/property_analytics.hpp"

#include <cmath>

namespace fleettwin::core {

namespace {

/// Silent for this many mean reporting intervals, a property resumes afresh.
constexpr double silence_intervals = 4;

}  // namespace

anomaly_result analyze(property_analytics& a, const property_analytics_params& p, double value,
                       int64_t time_ms, bool in_state) {
  if (!std::isfinite(value) || (a.forecast.samples > 0 && time_ms < a.forecast.last_time_ms))
    return {};
  if (!in_state) {
    follow_forecaster(a.forecast, value, time_ms);
    pause_detector(a.detector, time_ms);
    return {};
  }
  // After a pause, or a silence of several reporting intervals, the series
  // resumes from where it now is: the world moved on unseen (the silence
  // itself is data quality's to flag, as a gap).
  const auto& f = a.forecast;
  const bool silent =
      f.samples > 1 && f.interval_ms > 0 &&
      static_cast<double>(time_ms - f.last_time_ms) > silence_intervals * f.interval_ms;
  if (a.detector.paused || silent) {
    reanchor_forecaster(a.forecast, p.forecast, value, time_ms);
    resume_detector(a.detector, a.detector.paused ? p.detector.settle_ms : 0, value, time_ms);
    return {};
  }
  if (time_ms < a.detector.settle_until_ms) {
    // Settling: followed, not learnt from, so that the transient teaches
    // the forecaster no trend and the detectors no spread.
    reanchor_forecaster(a.forecast, p.forecast, value, time_ms);
    settle_detector(a.detector, value, time_ms);
    return {};
  }
  const auto error = update_forecaster(a.forecast, p.forecast, value, time_ms);
  return detect(a.detector, p.detector, value, time_ms, error,
                seasonal_component(a.forecast, p.forecast, time_ms), a.forecast.level,
                steady_slope(a.forecast, p.forecast));
}

void encode_property_analytics(const property_analytics& a, std::string& out) {
  encode_forecaster(a.forecast, out);
  encode_detector(a.detector, out);
}

bool decode_property_analytics(std::string_view& in, property_analytics& a) {
  property_analytics d;
  auto rest = in;
  if (!decode_forecaster(rest, d.forecast) || !decode_detector(rest, d.detector))
    return false;
  a = d;
  in = rest;
  return true;
}

}  // namespace fleettwin::core

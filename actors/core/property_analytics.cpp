#include "actors/core/property_analytics.hpp"

#include <cmath>

namespace fleettwin::core {

anomaly_result analyze(property_analytics& a, const property_analytics_params& p, double value,
                       int64_t time_ms) {
  if (!std::isfinite(value) || (a.forecast.samples > 0 && time_ms < a.forecast.last_time_ms))
    return {};
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

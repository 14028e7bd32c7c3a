#include "tools/analytics/run.hpp"

#include <cmath>

namespace fleettwin::analytics {

run_result run(const series& s, const core::property_model* pm, int64_t period_ms) {
  run_result out;
  out.rows.reserve(s.rows.size());
  // The twin path: a model with this one property, a twin, a telemetry record.
  core::asset_model model;
  if (pm) {
    model.kind = "series";
    model.properties.push_back(*pm);
    model.properties.back().name = s.property;
  }
  const auto params = core::analytics_params(pm);
  if (period_ms <= 0)
    period_ms = params.forecast.period_ms;
  core::twin tw;
  core::telemetry t;
  t.metrics.emplace_back(s.property, 0.0);
  core::apply_result applied;
  applied.applied_metrics = {0};
  size_t season_from = 0;  // the earliest row within a period of the current one
  for (size_t i = 0; i < s.rows.size(); ++i) {
    const auto& r = s.rows[i];
    scored_row o;
    auto it = tw.analysis.find(s.property);
    if (it != tw.analysis.end() && it->second.state.forecast.samples > 0) {
      const auto& f = it->second.state.forecast;
      const int64_t ahead = std::max<int64_t>(1, r.time_ms - f.last_time_ms);
      auto pts = core::forecast(f, params.forecast, ahead, ahead, 1);
      if (!pts.empty()) {
        o.has_forecast = true;
        o.forecast = pts[0].value;
        o.lower95 = pts[0].lower95;
        o.upper95 = pts[0].upper95;
        const double e = std::abs(r.value - o.forecast);
        out.abs_error += e;
        out.naive_error += std::abs(r.value - s.rows[i - 1].value);
        ++out.scored;
        if (period_ms > 0) {
          // The value one period before: the last row at or before then.
          while (season_from + 1 < i && s.rows[season_from + 1].time_ms <= r.time_ms - period_ms)
            ++season_from;
          if (s.rows[season_from].time_ms <= r.time_ms - period_ms) {
            out.seasonal_error += std::abs(r.value - s.rows[season_from].value);
            out.seasonal_own_error += e;
            ++out.seasonal_scored;
          }
        }
      }
    }
    t.metrics[0].second = r.value;
    t.source_time_ms = r.time_ms;
    core::analysis_output found;
    core::analyze_applied(tw, t, applied, pm ? &model : nullptr, r.time_ms, found);
    const auto& a = tw.analysis.at(s.property);
    o.score = a.score;
    o.kind = a.kind;
    o.quality = a.quality.flags;
    o.alert_active = a.alert.active;
    if (!found.alerts.empty())
      o.alert = found.alerts.back().event;
    out.rows.push_back(o);
  }
  return out;
}

}  // namespace fleettwin::analytics

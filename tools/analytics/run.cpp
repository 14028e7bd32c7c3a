#include "tools/analytics/run.hpp"

#include <cmath>
#include <limits>

namespace fleettwin::analytics {

namespace {

/// Scores the forecast made before a row against the row, and the naive
/// and seasonal naive forecasts beside it.
struct error_tally {
  size_t season_from = 0;  // the earliest row within a period of the current one

  /// The row's errors, counted once the forecaster learnt from the row (not
  /// a row outside the property's operating states, or the first back).
  double own = 0, naive = 0, seasonal = 0;
  bool has_seasonal = false;
  bool pending = false;

  void score(const series& s, size_t i, const core::property_analysis* a,
             const core::forecast_params& fp, int64_t period_ms, scored_row& o) {
    pending = false;
    if (!a || a->state.forecast.samples == 0)
      return;
    const auto& r = s.rows[i];
    const auto& f = a->state.forecast;
    const int64_t ahead = std::max<int64_t>(1, r.time_ms - f.last_time_ms);
    auto pts = core::forecast(f, fp, ahead, ahead, 1);
    if (pts.empty())
      return;
    o.has_forecast = true;
    o.forecast = pts[0].value;
    o.lower95 = pts[0].lower95;
    o.upper95 = pts[0].upper95;
    pending = true;
    own = std::abs(r.value - o.forecast);
    naive = std::abs(r.value - s.rows[i - 1].value);
    has_seasonal = false;
    if (period_ms > 0) {
      // The value one period before: the last row at or before then.
      while (season_from + 1 < i && s.rows[season_from + 1].time_ms <= r.time_ms - period_ms)
        ++season_from;
      if (s.rows[season_from].time_ms <= r.time_ms - period_ms) {
        seasonal = std::abs(r.value - s.rows[season_from].value);
        has_seasonal = true;
      }
    }
  }

  void count(run_result& out) const {
    if (!pending)
      return;
    out.abs_error += own;
    out.naive_error += naive;
    ++out.scored;
    if (has_seasonal) {
      out.seasonal_error += seasonal;
      out.seasonal_own_error += own;
      ++out.seasonal_scored;
    }
  }
};

}  // namespace

std::vector<run_result> run_asset(const std::vector<const series*>& parts,
                                  const core::asset_model* model, int64_t period_ms) {
  const size_t n = parts.size();
  std::vector<run_result> out(n);
  std::vector<error_tally> tallies(n);
  std::vector<core::forecast_params> forecast_params(n);
  std::vector<int64_t> periods(n, period_ms);
  for (size_t k = 0; k < n; ++k) {
    out[k].rows.reserve(parts[k]->rows.size());
    const auto* pm = model ? model->find(parts[k]->property) : nullptr;
    forecast_params[k] = core::analytics_params(pm).forecast;
    if (periods[k] <= 0)
      periods[k] = forecast_params[k].period_ms;
  }
  core::twin tw;
  tw.asset_id = "replay";
  tw.kind = model ? model->kind : std::string{};
  core::telemetry t;
  core::apply_result applied;
  core::analysis_output found;
  const core::limits lim;
  std::vector<size_t> next(n, 0);
  std::vector<size_t> in_record;              // the parts whose row is in the record
  std::vector<uint32_t> learnt_before(n, 0);  // the forecaster's samples before the row
  for (uint64_t sequence = 1;; ++sequence) {
    int64_t time_ms = std::numeric_limits<int64_t>::max();
    for (size_t k = 0; k < n; ++k)
      if (next[k] < parts[k]->rows.size())
        time_ms = std::min(time_ms, parts[k]->rows[next[k]].time_ms);
    if (time_ms == std::numeric_limits<int64_t>::max())
      break;
    // One record: every part's row of this time.
    t.metrics.clear();
    in_record.clear();
    for (size_t k = 0; k < n; ++k) {
      if (next[k] >= parts[k]->rows.size() || parts[k]->rows[next[k]].time_ms != time_ms)
        continue;
      const auto& s = *parts[k];
      const auto& r = s.rows[next[k]];
      scored_row o;
      learnt_before[k] = 0;
      if (!s.boolean) {
        auto it = tw.analysis.find(s.property);
        tallies[k].score(s, next[k], it == tw.analysis.end() ? nullptr : &it->second,
                         forecast_params[k], periods[k], o);
        if (it != tw.analysis.end())
          learnt_before[k] = it->second.state.forecast.samples;
      }
      out[k].rows.push_back(o);
      if (s.boolean)
        t.metrics.emplace_back(s.property, core::value{r.value != 0});
      else
        t.metrics.emplace_back(s.property, core::value{r.value});
      in_record.push_back(k);
    }
    t.sequence = sequence;
    t.source_time_ms = time_ms;
    applied = {};
    core::apply_telemetry(tw, t, time_ms, lim, applied);
    found.alerts.clear();
    core::analyze_applied(tw, t, applied, model, time_ms, found);
    for (size_t m = 0; m < in_record.size(); ++m) {
      const size_t k = in_record[m];
      auto& o = out[k].rows.back();
      auto it = tw.analysis.find(parts[k]->property);
      if (!parts[k]->boolean && it != tw.analysis.end()) {
        const auto& a = it->second;
        if (a.state.forecast.samples > learnt_before[k])
          tallies[k].count(out[k]);
        o.score = a.score;
        o.kind = a.kind;
        o.quality = a.quality.flags;
        o.alert_active = a.alert.active;
        for (const auto& ch : found.alerts)
          if (ch.property == parts[k]->property)
            o.alert = ch.event;
      }
      ++next[k];
    }
  }
  return out;
}

run_result run(const series& s, const core::property_model* pm, int64_t period_ms) {
  // The twin path: a model with this one property (without states: alone,
  // the series has none to judge).
  core::asset_model model;
  if (pm) {
    model.kind = "series";
    model.properties.push_back(*pm);
    auto& p = model.properties.back();
    p.name = s.property;
    p.analyse_in.clear();
    p.analyse_mask = 0;
    p.settle_ms = 0;
  }
  return std::move(run_asset({&s}, pm ? &model : nullptr, period_ms).front());
}

}  // namespace fleettwin::analytics

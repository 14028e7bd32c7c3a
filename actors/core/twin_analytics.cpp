#include "actors/core/twin_analytics.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

namespace fleettwin::core {

namespace {

/// Weight of the newest sample in the quality rates (about the last 20).
constexpr double quality_alpha = 0.05;
/// An interval this many times the expected one has missing reports.
constexpr double gap_factor = 1.5;
/// A slope is a trend, not noise, when it moves the series by more than two
/// spreads of its one-step errors over this many samples.
constexpr double trend_samples = 20;

/// When the series, extrapolated along its slope, crosses `t` (0: it is not
/// heading there, or its slope is within its noise); `failed` when the last
/// sample is already beyond it.
int64_t failure_eta(const forecaster_state& f, const forecast_params& p, const threshold& t,
                    double last, bool& failed) {
  failed = t.crossed_by(last);
  if (failed)
    return f.last_time_ms;
  const double slope = steady_slope(f, p);  // per sample
  const double distance = t.value - f.level;
  if (f.interval_ms <= 0 || slope == 0 || (distance > 0) != (slope > 0))
    return 0;
  if (std::abs(slope) * trend_samples <= 2 * std::sqrt(f.error_var))
    return 0;  // noise, not a trend
  const double samples = distance / slope;
  const double ms = samples * f.interval_ms;
  // Beyond ten years is not heading anywhere a twin needs to know about.
  if (!std::isfinite(ms) || ms > 315'576'000'000.0)
    return 0;
  return f.last_time_ms + static_cast<int64_t>(std::llround(ms));
}

/// Data quality of one sample `x` at `time_ms`, after the detectors scored
/// it (`r`); `previous_ms` is the time of the property's sample before it (0:
/// none).
void assess(quality_state& q, const property_model* pm, const forecaster_state& f,
            const forecast_params& fp, const anomaly_result& r, double x, int64_t previous_ms,
            int64_t time_ms, analysis_output& out) {
  uint8_t flags = 0;
  if (pm && ((pm->min && x < *pm->min) || (pm->max && x > *pm->max))) {
    flags |= quality_out_of_range;
    ++q.out_of_range_samples;
  }
  if (r.spike >= 0.5) {
    flags |= quality_spike;
    ++q.spikes;
  }
  if (r.stuck >= 0.5)
    flags |= quality_stuck;
  q.expected_interval_ms = pm ? pm->expected_interval_ms : 0;
  double missing_share = 0;
  if (q.expected_interval_ms > 0 && previous_ms > 0 && time_ms > previous_ms) {
    const double intervals =
        static_cast<double>(time_ms - previous_ms) / static_cast<double>(q.expected_interval_ms);
    if (intervals > gap_factor) {
      const auto missing = static_cast<uint64_t>(std::llround(intervals)) - 1;
      flags |= quality_gap;
      q.missing_reports += missing;
      missing_share = static_cast<double>(missing) / static_cast<double>(missing + 1);
    }
  }
  const bool bad = (flags & (quality_out_of_range | quality_spike | quality_stuck)) != 0;
  q.bad_rate += quality_alpha * ((bad ? 1.0 : 0.0) - q.bad_rate);
  q.missing_rate += quality_alpha * (missing_share - q.missing_rate);
  q.flags = flags;
  for (size_t b = 0; b < out.quality.size(); ++b)
    out.quality[b] += (flags >> b) & 1;
  q.failure_eta_ms = 0;
  q.failed = false;
  if (pm && pm->failure)
    q.failure_eta_ms = failure_eta(f, fp, *pm->failure, x, q.failed);
}

}  // namespace

void analyze_applied(twin& tw, const telemetry& t, const apply_result& applied,
                     const asset_model* model, int64_t now_ms, analysis_output& out) {
  const int64_t time_ms = t.source_time_ms > 0 ? t.source_time_ms : now_ms;
  // The operating states the twin is in after the record, judged once.
  std::optional<uint32_t> states;
  for (auto i : applied.applied_metrics) {
    const auto& [name, v] = t.metrics[i];
    // Booleans and text are states, not series.
    if (v.index() != 0 && v.index() != 1)
      continue;
    const double x = *as_number(v);
    const auto* pm = model ? model->find(name) : nullptr;
    auto it = tw.analysis.find(name);
    if (it == tw.analysis.end())
      it = tw.analysis.emplace(name, property_analysis{}).first;
    auto& a = it->second;
    const auto params = analytics_params(pm);
    const int64_t previous_ms = a.state.forecast.samples > 0 ? a.state.forecast.last_time_ms : 0;
    const double error_before = a.state.forecast.abs_error_sum;
    bool in_state = true;
    if (pm && pm->analyse_mask != 0) {
      if (!states)
        states = model->states_of(tw, now_ms);
      in_state = (*states & pm->analyse_mask) != 0;
    }
    const auto r = analyze(a.state, params, x, time_ms, in_state);
    if (const auto& f = a.state.forecast; f.samples >= 3 && f.naive_abs_error_sum > 0) {
      const double naive_mean = f.naive_abs_error_sum / static_cast<double>(f.samples - 1);
      out.scaled_error += (f.abs_error_sum - error_before) / naive_mean;
      ++out.scored;
    }
    // A sample older than the property's last is not folded in.
    if (previous_ms == 0 || time_ms >= previous_ms)
      assess(a.quality, pm, a.state.forecast, params.forecast, r, x, previous_ms, time_ms, out);
    a.score = r.score;
    a.kind = r.kind;
    if (r.kind != anomaly_kind::none)
      ++out.anomalies[static_cast<size_t>(r.kind)];
    const auto& f = a.state.forecast;
    a.next = predict_next(f, params.forecast, f.last_time_ms + static_cast<int64_t>(f.interval_ms))
                 .value_or(x);
    const auto severity =
        r.score >= critical_score ? alert_severity::critical : alert_severity::warning;
    // While raised, an alert keeps the kind that raised it unless a
    // detector alarms again.
    const auto kind =
        r.kind != anomaly_kind::none ? r.kind : static_cast<anomaly_kind>(a.alert.kind);
    const auto e = observe(a.alert, alert_policy_of(pm), r.score, severity,
                           static_cast<uint8_t>(kind), time_ms);
    if (e != alert_event::none)
      out.alerts.push_back(alert_change{name, e, a.alert.severity,
                                        static_cast<anomaly_kind>(a.alert.kind), r.score,
                                        a.alert.raised_count, time_ms, a.alert});
  }
}

ack_status acknowledge_alert(twin& tw, std::string_view property, uint32_t number, int64_t now_ms,
                             analysis_output& out) {
  auto it = tw.analysis.find(property);
  if (it == tw.analysis.end() || number == 0 || number > it->second.alert.raised_count)
    return ack_status::not_found;
  auto& a = it->second.alert;
  // Only the property's latest alert can still be open.
  if (number != a.raised_count || !acknowledge(a, now_ms))
    return ack_status::not_open;
  out.alerts.push_back(alert_change{std::string{property}, alert_event::acknowledged, a.severity,
                                    static_cast<anomaly_kind>(a.kind), 0, a.raised_count, now_ms,
                                    a});
  return ack_status::acknowledged;
}

const char* quality_flag_name(size_t bit) {
  static constexpr const char* names[] = {"out_of_range", "spike", "stuck", "gap"};
  return bit < 4 ? names[bit] : "unknown";
}

int64_t last_report_ms(const twin& tw, std::string_view property) {
  auto it = tw.reported.find(property);
  return it == tw.reported.end() ? 0 : it->second.ingest_time_ms;
}

uint8_t quality_flags(const quality_state& q, int64_t last_report_ms, int64_t now_ms) {
  uint8_t flags = q.flags;
  if (q.expected_interval_ms > 0 && last_report_ms > 0 &&
      now_ms - last_report_ms > 2 * q.expected_interval_ms)
    flags |= quality_gap;
  return flags;
}

double quality_score(const twin& tw, int64_t now_ms) {
  double sum = 0;
  size_t n = 0;
  for (const auto& [name, a] : tw.analysis) {
    const auto& q = a.quality;
    double missing = q.missing_rate;
    const int64_t last = last_report_ms(tw, name);
    if (q.expected_interval_ms > 0 && last > 0 && now_ms - last > 2 * q.expected_interval_ms) {
      // Silent now: the reports that should have come since are missing.
      const double silent =
          static_cast<double>(now_ms - last) / static_cast<double>(q.expected_interval_ms) - 1;
      missing = std::max(missing, silent / (silent + 1));
    }
    sum += (1 - q.bad_rate) * (1 - missing);
    ++n;
  }
  double score = n == 0 ? 1.0 : sum / static_cast<double>(n);
  const double records = static_cast<double>(tw.applied_records + tw.duplicates + tw.out_of_order);
  if (records > 0)
    score *= static_cast<double>(tw.applied_records) / records;
  return std::clamp(score, 0.0, 1.0);
}

int64_t earliest_failure(const twin& tw) {
  int64_t out = 0;
  for (const auto& [name, a] : tw.analysis)
    if (a.quality.failure_eta_ms > 0 && (out == 0 || a.quality.failure_eta_ms < out))
      out = a.quality.failure_eta_ms;
  return out;
}

double health_score(const twin& tw, int64_t now_ms) {
  constexpr int64_t day_ms = 86'400'000;
  double penalty = 0.5 * (1 - quality_score(tw, now_ms));
  for (const auto& [name, a] : tw.analysis) {
    if (a.alert.active)
      penalty = std::max(penalty, a.alert.severity == alert_severity::critical ? 0.6 : 0.3);
    else if (a.score >= 0.5)
      penalty = std::max(penalty, 0.2);
    // Time to failure counts from the last sample (the forecast's origin).
    const auto& q = a.quality;
    const int64_t ttf = q.failure_eta_ms - a.state.forecast.last_time_ms;
    if (q.failed)
      penalty = std::max(penalty, 0.8);
    else if (q.failure_eta_ms > 0 && ttf <= day_ms)
      penalty = std::max(penalty, 0.5);
    else if (q.failure_eta_ms > 0 && ttf <= 7 * day_ms)
      penalty = std::max(penalty, 0.25);
  }
  return std::clamp(1 - penalty, 0.0, 1.0);
}

}  // namespace fleettwin::core

#include "actors/core/twin_analytics.hpp"

namespace fleettwin::core {

void analyze_applied(twin& tw, const telemetry& t, const apply_result& applied,
                     const asset_model* model, int64_t now_ms, analysis_output& out) {
  static const alert_policy policy{};
  const int64_t time_ms = t.source_time_ms > 0 ? t.source_time_ms : now_ms;
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
    const auto r = analyze(a.state, params, x, time_ms);
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
    const auto e = observe(a.alert, policy, r.score, severity, static_cast<uint8_t>(kind), time_ms);
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

}  // namespace fleettwin::core

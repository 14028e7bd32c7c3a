#include "actors/core/asset_model.hpp"
#include "actors/core/text.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace fleettwin::core {

namespace {

std::optional<double> number(std::string_view s) {
  s = trim(s);
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

std::string fmt_number(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc{} ? std::string{buf, end} : std::to_string(v);
}

}  // namespace

const char* to_string(property_type t) {
  switch (t) {
    case property_type::number:
      return "number";
    case property_type::integer:
      return "integer";
    case property_type::boolean:
      return "boolean";
    case property_type::text:
      return "text";
  }
  return "number";
}

std::optional<property_type> parse_property_type(std::string_view s) {
  for (auto t :
       {property_type::number, property_type::integer, property_type::boolean, property_type::text})
    if (s == to_string(t))
      return t;
  return std::nullopt;
}

std::optional<threshold> parse_threshold(std::string_view s, std::string& error) {
  s = trim(s);
  threshold t;
  if (s.empty() || (s.front() != '<' && s.front() != '>')) {
    error = "a threshold reads \"< 20\" or \"> 7.1\", not \"" + std::string{s} + "\"";
    return std::nullopt;
  }
  t.above = s.front() == '>';
  s.remove_prefix(1);
  if (!s.empty() && s.front() == '=')
    s.remove_prefix(1);
  auto v = number(s);
  if (!v) {
    error = "\"" + std::string{trim(s)} + "\" is not a number";
    return std::nullopt;
  }
  t.value = *v;
  return t;
}

std::string to_string(const threshold& t) {
  return std::string{t.above ? "> " : "< "} + fmt_number(t.value);
}

const property_model* asset_model::find(std::string_view property) const {
  auto it =
      std::lower_bound(properties.begin(), properties.end(), property,
                       [](const property_model& p, std::string_view n) { return p.name < n; });
  return it != properties.end() && it->name == property ? &*it : nullptr;
}

uint32_t asset_model::states_of(const twin& tw, int64_t now_ms) const {
  uint32_t out = 0;
  for (size_t i = 0; i < states.size() && i < max_operating_states; ++i)
    if (states[i].condition.matches(tw, now_ms, 0))
      out |= uint32_t{1} << i;
  return out;
}

std::optional<std::string> validate(asset_model& m) {
  if (m.kind.empty())
    return "a model needs the kind it describes";
  if (m.states.size() > max_operating_states)
    return "model \"" + m.kind + "\": at most " + std::to_string(max_operating_states) +
           " operating states";
  for (size_t i = 0; i < m.states.size(); ++i) {
    auto& st = m.states[i];
    const std::string where = "model \"" + m.kind + "\", state \"" + st.name + "\": ";
    if (st.name.empty())
      return "model \"" + m.kind + "\": an operating state needs a name";
    for (size_t j = 0; j < i; ++j)
      if (m.states[j].name == st.name)
        return where + "declared twice";
    if (st.when.find_first_not_of(" \t\n") == std::string::npos)
      return where + "needs a condition (e.g. reported.running = true)";
    if (auto err = filter::parse(st.when, st.condition))
      return where + "condition at offset " + std::to_string(err->position) + ": " + err->message;
    if (st.condition.reads_connectivity())
      return where +
             "a condition cannot read connectivity (a state is judged as each record "
             "arrives, when the twin is always online); use reported properties";
  }
  std::sort(m.properties.begin(), m.properties.end(),
            [](const property_model& a, const property_model& b) { return a.name < b.name; });
  for (size_t i = 0; i < m.properties.size(); ++i) {
    const auto& p = m.properties[i];
    const std::string where = "model \"" + m.kind + "\", property \"" + p.name + "\": ";
    if (p.name.empty())
      return "model \"" + m.kind + "\": a property needs a name";
    if (i > 0 && m.properties[i - 1].name == p.name)
      return where + "declared twice";
    const bool numeric = p.type == property_type::number || p.type == property_type::integer;
    if (!numeric && (p.min || p.max || p.max_rate_per_s > 0 || p.warning || p.critical ||
                     p.failure || p.period_ms > 0))
      return where + "ranges, rates, thresholds and periods need a number or integer type, not " +
             to_string(p.type);
    if (p.min && p.max && *p.min >= *p.max)
      return where + "the range's minimum (" + fmt_number(*p.min) +
             ") must be below its maximum (" + fmt_number(*p.max) + ")";
    if (p.expected_interval_ms < 0 || p.stuck_after_ms < 0 || p.period_ms < 0)
      return where + "durations cannot be negative";
    if (p.max_rate_per_s < 0 || !std::isfinite(p.max_rate_per_s))
      return where + "the maximum rate of change must be a positive number";
    if (!(p.sensitivity > 0) || p.sensitivity > 100)
      return where + "sensitivity must be above 0 and at most 100 (1 is the default)";
    if (p.warning && p.critical && p.warning->above != p.critical->above)
      return where + "warning and critical thresholds must point the same way";
    if (p.warning && p.critical &&
        (p.critical->above ? p.critical->value < p.warning->value
                           : p.critical->value > p.warning->value))
      return where + "the critical threshold (" + to_string(*p.critical) +
             ") must lie beyond the warning one (" + to_string(*p.warning) + ")";
    if (p.alert_after_samples < 1 || p.alert_after_samples > max_alert_samples ||
        p.clear_after_samples < 1 || p.clear_after_samples > max_alert_samples)
      return where + "alert_after_samples and clear_after_samples must be 1 to " +
             std::to_string(max_alert_samples);
    if (p.alert_after_ms < 0 || p.clear_after_ms < 0)
      return where + "durations cannot be negative";
    if (p.period_ms > 0 && p.expected_interval_ms > 0 && p.period_ms < 2 * p.expected_interval_ms)
      return where + "a period must span at least two expected intervals";
    if (p.settle_ms < 0)
      return where + "durations cannot be negative";
    auto& q = m.properties[i];
    q.analyse_mask = 0;
    for (const auto& name : q.analyse_in) {
      auto it = std::find_if(m.states.begin(), m.states.end(),
                             [&](const operating_state& st) { return st.name == name; });
      if (it == m.states.end())
        return where + "analyse_in names \"" + name + "\", which is not a state of the model" +
               (m.states.empty() ? std::string{" (it declares none)"} : std::string{});
      q.analyse_mask |= uint32_t{1} << (it - m.states.begin());
    }
    if (q.settle_ms > 0 && q.analyse_in.empty())
      return where + "settle applies after the twin enters a state of analyse_in; name them";
  }
  return std::nullopt;
}

property_analytics_params analytics_params(const property_model* p) {
  property_analytics_params out;
  if (!p)
    return out;
  if (p->period_ms > 0)
    out.forecast = forecast_params::seasonal(p->period_ms);
  out.detector.sensitivity = p->sensitivity;
  out.detector.max_rate_per_s = p->max_rate_per_s;
  out.detector.settle_ms = p->settle_ms;
  if (p->stuck_after_ms > 0) {
    // The model's time limit replaces the default count of samples.
    out.detector.stuck_after_ms = p->stuck_after_ms;
    out.detector.stuck_samples = 0;
  }
  return out;
}

alert_policy alert_policy_of(const property_model* p) {
  alert_policy out;
  if (!p)
    return out;
  out.raise_after_samples = p->alert_after_samples;
  out.raise_after_ms = p->alert_after_ms;
  out.clear_after_samples = p->clear_after_samples;
  out.clear_after_ms = p->clear_after_ms;
  return out;
}

std::optional<int64_t> parse_duration_ms(std::string_view s) {
  s = trim(s);
  size_t digits = 0;
  while (digits < s.size() && ((s[digits] >= '0' && s[digits] <= '9') || s[digits] == '.'))
    ++digits;
  auto v = number(s.substr(0, digits));
  if (!v || *v < 0)
    return std::nullopt;
  const auto unit = trim(s.substr(digits));
  double scale = 0;
  if (unit.empty() || unit == "ms")
    scale = 1;
  else if (unit == "s")
    scale = 1e3;
  else if (unit == "m" || unit == "min")
    scale = 60e3;
  else if (unit == "h")
    scale = 3600e3;
  else if (unit == "d")
    scale = 86400e3;
  else
    return std::nullopt;
  const double ms = *v * scale;
  if (ms > 9.2e15)
    return std::nullopt;
  return static_cast<int64_t>(std::llround(ms));
}

std::string format_duration(int64_t ms) {
  struct unit {
    int64_t ms;
    const char* name;
  };
  for (auto [size, name] :
       {unit{86'400'000, "d"}, unit{3'600'000, "h"}, unit{60'000, "m"}, unit{1'000, "s"}})
    if (ms != 0 && ms % size == 0)
      return std::to_string(ms / size) + name;
  return std::to_string(ms) + "ms";
}

bool is_sensitive(const model_set& models, std::string_view kind, std::string_view property) {
  auto m = models.find(kind);
  if (m == models.end())
    return false;
  const auto* p = m->second.find(property);
  return p != nullptr && p->sensitive;
}

std::optional<std::string> any_sensitive(const model_set& models,
                                         const std::set<std::string, std::less<>>& properties) {
  for (const auto& [kind, m] : models)
    for (const auto& p : m.properties)
      if (p.sensitive && properties.count(p.name))
        return p.name;
  return std::nullopt;
}

}  // namespace fleettwin::core

#include "services/scenario/scenario_codec.hpp"

#include "actors/core/wire.hpp"

namespace fleettwin::scenario {

namespace {

using core::wire::put_double;
using core::wire::put_signed;
using core::wire::put_string;
using core::wire::put_varint;
using core::wire::reader;

constexpr uint8_t format = 1;

void put_optional(std::string& out, const std::optional<double>& v) {
  out.push_back(v ? 1 : 0);
  if (v)
    put_double(out, *v);
}

std::optional<double> get_optional(reader& r) {
  if (r.byte() == 0)
    return std::nullopt;
  return r.real();
}

void put_ref(std::string& out, const core::kpi_ref& k) {
  put_string(out, k.aggregate);
  put_string(out, k.measure);
}

core::kpi_ref get_ref(reader& r) {
  core::kpi_ref k;
  k.aggregate = std::string{r.bytes()};
  k.measure = std::string{r.bytes()};
  return k;
}

void put_statistic(std::string& out, const core::kpi_statistic& s) {
  put_ref(out, s.ref);
  out.push_back(static_cast<char>(s.stat));
  put_signed(out, s.at_offset_ms);
}

core::kpi_statistic get_statistic(reader& r) {
  core::kpi_statistic s;
  s.ref = get_ref(r);
  s.stat = static_cast<core::kpi_stat>(r.byte());
  s.at_offset_ms = r.signed_varint();
  return s;
}

void put_options(std::string& out, const core::run_options& o) {
  put_signed(out, o.horizon_ms);
  put_signed(out, o.step_ms);
  put_varint(out, o.seed);
  put_double(out, o.noise);
  put_varint(out, o.kpis.size());
  for (const auto& k : o.kpis)
    put_ref(out, k);
  put_varint(out, o.max_kpis);
  put_varint(out, o.max_events);
  put_varint(out, o.max_steps);
}

core::run_options get_options(reader& r) {
  core::run_options o;
  o.horizon_ms = r.signed_varint();
  o.step_ms = r.signed_varint();
  o.seed = r.varint();
  o.noise = r.real();
  for (auto n = r.count(); n > 0 && r.ok; --n)
    o.kpis.push_back(get_ref(r));
  o.max_kpis = r.varint();
  o.max_events = r.varint();
  o.max_steps = r.varint();
  return o;
}

void put_result(std::string& out, const core::run_result& x) {
  put_varint(out, x.times.size());
  for (auto t : x.times)
    put_signed(out, t);
  put_varint(out, x.kpis.size());
  for (const auto& k : x.kpis) {
    put_ref(out, k.ref);
    put_varint(out, k.values.size());
    for (const auto& v : k.values)
      put_optional(out, v);
  }
  put_varint(out, x.alerts.size());
  for (const auto& a : x.alerts) {
    put_string(out, a.twin);
    put_string(out, a.property);
    put_signed(out, a.time_ms);
    out.push_back(static_cast<char>(a.severity));
    out.push_back(static_cast<char>(a.kind));
    put_double(out, a.score);
  }
  put_varint(out, x.failures.size());
  for (const auto& f : x.failures) {
    put_string(out, f.twin);
    put_string(out, f.property);
    put_signed(out, f.time_ms);
    put_signed(out, f.eta_ms);
  }
  for (auto n : {x.alerts_total, x.failures_total, x.twins, x.samples, x.contributions, x.outside})
    put_varint(out, n);
}

core::run_result get_result(reader& r) {
  core::run_result x;
  for (auto n = r.count(); n > 0 && r.ok; --n)
    x.times.push_back(r.signed_varint());
  for (auto n = r.count(); n > 0 && r.ok; --n) {
    core::kpi_series k;
    k.ref = get_ref(r);
    for (auto m = r.count(); m > 0 && r.ok; --m)
      k.values.push_back(get_optional(r));
    x.kpis.push_back(std::move(k));
  }
  for (auto n = r.count(); n > 0 && r.ok; --n) {
    core::fired_alert a;
    a.twin = std::string{r.bytes()};
    a.property = std::string{r.bytes()};
    a.time_ms = r.signed_varint();
    a.severity = static_cast<core::alert_severity>(r.byte());
    a.kind = static_cast<core::anomaly_kind>(r.byte());
    a.score = r.real();
    x.alerts.push_back(std::move(a));
  }
  for (auto n = r.count(); n > 0 && r.ok; --n) {
    core::failure_event f;
    f.twin = std::string{r.bytes()};
    f.property = std::string{r.bytes()};
    f.time_ms = r.signed_varint();
    f.eta_ms = r.signed_varint();
    x.failures.push_back(std::move(f));
  }
  for (auto* n :
       {&x.alerts_total, &x.failures_total, &x.twins, &x.samples, &x.contributions, &x.outside})
    *n = r.varint();
  return x;
}

void put_sweep(std::string& out, const sweep_outcome& o) {
  put_options(out, o.options);
  const auto& s = o.sweep;
  put_varint(out, s.parameters.size());
  for (const auto& p : s.parameters) {
    put_varint(out, p.input);
    put_string(out, p.field);
    put_varint(out, p.values.size());
    for (double v : p.values)
      put_double(out, v);
  }
  out.push_back(s.objective ? 1 : 0);
  if (s.objective)
    put_statistic(out, *s.objective);
  out.push_back(s.objective_parameter ? 1 : 0);
  if (s.objective_parameter)
    put_varint(out, *s.objective_parameter);
  out.push_back(s.maximize ? 1 : 0);
  put_varint(out, s.constraints.size());
  for (const auto& c : s.constraints) {
    put_statistic(out, c.kpi);
    put_optional(out, c.max);
    put_optional(out, c.min);
  }
  out.push_back(static_cast<char>(s.method));
  put_varint(out, s.max_runs);
  put_double(out, s.tolerance);
  const auto& res = o.result;
  put_varint(out, res.points.size());
  for (const auto& p : res.points) {
    put_varint(out, p.values.size());
    for (double v : p.values)
      put_double(out, v);
    put_optional(out, p.objective);
    put_varint(out, p.constraint_values.size());
    for (const auto& v : p.constraint_values)
      put_optional(out, v);
    out.push_back(p.feasible ? 1 : 0);
    put_double(out, p.violation);
  }
  out.push_back(res.best ? 1 : 0);
  if (res.best)
    put_varint(out, *res.best);
  out.push_back(res.found ? 1 : 0);
  put_double(out, o.wall_s);
  put_signed(out, o.finished_ms);
}

sweep_outcome get_sweep(reader& r) {
  sweep_outcome o;
  o.options = get_options(r);
  auto& s = o.sweep;
  for (auto n = r.count(); n > 0 && r.ok; --n) {
    core::sweep_parameter p;
    p.input = r.varint();
    p.field = std::string{r.bytes()};
    for (auto m = r.count(); m > 0 && r.ok; --m)
      p.values.push_back(r.real());
    s.parameters.push_back(std::move(p));
  }
  if (r.byte())
    s.objective = get_statistic(r);
  if (r.byte())
    s.objective_parameter = r.varint();
  s.maximize = r.byte() != 0;
  for (auto n = r.count(); n > 0 && r.ok; --n) {
    core::sweep_constraint c;
    c.kpi = get_statistic(r);
    c.max = get_optional(r);
    c.min = get_optional(r);
    s.constraints.push_back(std::move(c));
  }
  s.method = static_cast<core::sweep_method>(r.byte());
  s.max_runs = r.varint();
  s.tolerance = r.real();
  auto& res = o.result;
  for (auto n = r.count(); n > 0 && r.ok; --n) {
    core::sweep_point p;
    for (auto m = r.count(); m > 0 && r.ok; --m)
      p.values.push_back(r.real());
    p.objective = get_optional(r);
    for (auto m = r.count(); m > 0 && r.ok; --m)
      p.constraint_values.push_back(get_optional(r));
    p.feasible = r.byte() != 0;
    p.violation = r.real();
    res.points.push_back(std::move(p));
  }
  if (r.byte())
    res.best = r.varint();
  res.found = r.byte() != 0;
  o.wall_s = r.real();
  o.finished_ms = r.signed_varint();
  if (res.best && *res.best >= res.points.size())
    r.fail();
  return o;
}

}  // namespace

void encode_scenario(const scenario& s, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(format));
  for (const auto* text : {&s.id, &s.description, &s.owner, &s.tenant})
    put_string(out, *text);
  put_signed(out, s.created_ms);
  put_varint(out, s.fork.names.size());
  for (const auto& n : s.fork.names)
    put_string(out, n);
  put_string(out, s.fork.where.text());
  put_string(out, s.fork.below);
  put_signed(out, s.fork.at_ms);
  put_varint(out, s.partitions.size());
  for (auto p : s.partitions)
    put_signed(out, p);
  put_signed(out, s.partition_count);
  put_varint(out, s.parts.size());
  for (const auto& p : s.parts) {
    put_string(out, p.endpoint);
    put_varint(out, p.partitions.size());
    for (auto q : p.partitions)
      put_signed(out, q);
    put_signed(out, p.taken_ms);
  }
  put_string(out, s.part_id);
  put_string(out, s.forward_as);
  put_varint(out, s.raw_inputs.size());
  for (const auto& raw : s.raw_inputs)
    put_string(out, raw);
  // A run in progress is not kept: read back, the scenario is as before it.
  const auto state = s.state == run_state::running ? run_state::created : s.state;
  out.push_back(static_cast<char>(state));
  put_string(out, s.error);
  out.push_back(s.last ? 1 : 0);
  if (s.last) {
    put_options(out, s.last->options);
    put_result(out, s.last->baseline);
    put_result(out, s.last->scenario);
    put_double(out, s.last->base_wall_s);
    put_double(out, s.last->wall_s);
    put_signed(out, s.last->finished_ms);
  }
  out.push_back(s.last_sweep ? 1 : 0);
  if (s.last_sweep)
    put_sweep(out, *s.last_sweep);
}

std::optional<std::string> decode_scenario(std::string_view bytes, const input_parser& parse,
                                           scenario& out) {
  out = scenario{};
  reader r{bytes};
  if (r.byte() != format)
    return std::string{"unknown scenario record format"};
  for (auto* text : {&out.id, &out.description, &out.owner, &out.tenant})
    *text = std::string{r.bytes()};
  out.created_ms = r.signed_varint();
  for (auto n = r.count(); n > 0 && r.ok; --n)
    out.fork.names.emplace_back(r.bytes());
  const std::string filter{r.bytes()};
  out.fork.below = std::string{r.bytes()};
  out.fork.at_ms = r.signed_varint();
  for (auto n = r.count(); n > 0 && r.ok; --n)
    out.partitions.push_back(static_cast<int32_t>(r.signed_varint()));
  out.partition_count = static_cast<int32_t>(r.signed_varint());
  for (auto n = r.count(); n > 0 && r.ok; --n) {
    remote_part p;
    p.endpoint = std::string{r.bytes()};
    for (auto m = r.count(); m > 0 && r.ok; --m)
      p.partitions.push_back(static_cast<int32_t>(r.signed_varint()));
    p.taken_ms = r.signed_varint();
    out.parts.push_back(std::move(p));
  }
  out.part_id = std::string{r.bytes()};
  out.forward_as = std::string{r.bytes()};
  for (auto n = r.count(); n > 0 && r.ok; --n)
    out.raw_inputs.emplace_back(r.bytes());
  const auto state = r.byte();
  if (state > static_cast<uint8_t>(run_state::failed))
    r.fail();
  out.state = static_cast<run_state>(state);
  out.error = std::string{r.bytes()};
  if (r.byte()) {
    auto last = std::make_shared<run_outcome>();
    last->options = get_options(r);
    last->baseline = get_result(r);
    last->scenario = get_result(r);
    last->base_wall_s = r.real();
    last->wall_s = r.real();
    last->finished_ms = r.signed_varint();
    out.last = std::move(last);
  }
  if (r.byte())
    out.last_sweep = std::make_shared<sweep_outcome>(get_sweep(r));
  if (!r.ok || !r.in.empty())
    return std::string{"a scenario record is truncated or corrupt"};
  if (auto err = core::filter::parse(filter, out.fork.where))
    return "its fork's filter no longer parses: " + err->message;
  for (size_t i = 0; i < out.raw_inputs.size(); ++i) {
    std::string why;
    auto in = parse(out.raw_inputs[i], why);
    if (!in)
      return "input " + std::to_string(i + 1) + " no longer parses: " + why;
    out.inputs.push_back(std::move(*in));
  }
  return std::nullopt;
}

}  // namespace fleettwin::scenario

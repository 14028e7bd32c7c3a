// Scenario sweeps: grid and coordinate search over numbers of a scenario's
// inputs, or a continuous search by NLopt's COBYLA, each setting run through
// the same scenario run (scenario.cpp).

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <nlopt.h>

#include "actors/core/scenario.hpp"

namespace fleettwin::core {

namespace {

/// The number a parameter names inside an input, or null.
double* field_of(scenario_input& in, const std::string& field, std::string& error) {
  if (auto* l = std::get_if<limit_input>(&in)) {
    if (field == "max" || field == "min") {
      auto& slot = field == "max" ? l->max : l->min;
      if (!slot)
        slot = 0;
      return &*slot;
    }
    error = "a limit's parameter is min or max";
    return nullptr;
  }
  if (auto* p = std::get_if<profile_input>(&in)) {
    if (field == "factor")
      return &p->factor;
    if (field == "offset")
      return &p->offset;
    error = "a profile's parameter is factor or offset";
    return nullptr;
  }
  error = "only limits, profiles, telemetry and add_twins inputs have parameters";
  return nullptr;
}

}  // namespace

std::optional<kpi_stat> parse_kpi_stat(std::string_view s) {
  if (s == "peak" || s == "max" || s.empty())
    return kpi_stat::peak;
  if (s == "mean")
    return kpi_stat::mean;
  if (s == "min")
    return kpi_stat::min;
  if (s == "last")
    return kpi_stat::last;
  if (s == "at")
    return kpi_stat::at;
  return std::nullopt;
}

const char* to_string(kpi_stat s) {
  switch (s) {
    case kpi_stat::peak:
      return "peak";
    case kpi_stat::mean:
      return "mean";
    case kpi_stat::min:
      return "min";
    case kpi_stat::last:
      return "last";
    case kpi_stat::at:
      return "at";
  }
  return "peak";
}

std::optional<double> evaluate(const run_result& r, int64_t start_ms, const kpi_statistic& s) {
  const kpi_series* k = nullptr;
  for (const auto& x : r.kpis)
    if (x.ref == s.ref)
      k = &x;
  if (!k)
    return std::nullopt;
  switch (s.stat) {
    case kpi_stat::peak:
      return series_peak(*k);
    case kpi_stat::mean:
      return series_mean(*k);
    case kpi_stat::min: {
      std::optional<double> m;
      for (const auto& v : k->values)
        if (v && (!m || *v < *m))
          m = v;
      return m;
    }
    case kpi_stat::last:
      for (auto it = k->values.rbegin(); it != k->values.rend(); ++it)
        if (*it)
          return *it;
      return std::nullopt;
    case kpi_stat::at:
      for (size_t i = 0; i < k->values.size() && i < r.times.size(); ++i)
        if (r.times[i] - start_ms >= s.at_offset_ms)
          return k->values[i];
      return std::nullopt;
  }
  return std::nullopt;
}

std::optional<std::string> set_parameter(std::vector<scenario_input>& inputs,
                                         const sweep_parameter& p, double v) {
  if (p.input >= inputs.size())
    return "input " + std::to_string(p.input) + " does not exist (the scenario has " +
           std::to_string(inputs.size()) + ")";
  if (!std::isfinite(v))
    return std::string{"a parameter's values must be finite"};
  auto& in = inputs[p.input];
  if (auto* s = std::get_if<series_input>(&in)) {
    if (p.field != "value")
      return std::string{"a telemetry series' parameter is value"};
    for (auto& pt : s->points)
      pt.second = v;
    return std::nullopt;
  }
  if (auto* a = std::get_if<add_twins_input>(&in)) {
    if (p.field != "count")
      return std::string{"an add_twins input's parameter is count"};
    if (v < 0 || v != std::floor(v))
      return std::string{"count takes whole numbers"};
    a->count = static_cast<uint32_t>(v);
    return std::nullopt;
  }
  std::string error;
  double* slot = field_of(in, p.field, error);
  if (!slot)
    return error;
  *slot = v;
  return std::nullopt;
}

std::optional<std::string> check_sweep(const std::vector<scenario_input>& inputs,
                                       const sweep_options& s) {
  if (s.parameters.empty())
    return std::string{"a sweep varies at least one parameter"};
  if (!s.objective && !s.objective_parameter)
    return std::string{"a sweep optimises a KPI statistic or a parameter"};
  if (s.objective_parameter && *s.objective_parameter >= s.parameters.size())
    return "objective parameter " + std::to_string(*s.objective_parameter) +
           " does not exist (the sweep has " + std::to_string(s.parameters.size()) + ")";
  for (size_t i = 0; i < s.parameters.size(); ++i) {
    const auto& p = s.parameters[i];
    if (p.values.empty())
      return "parameter " + std::to_string(i) + " has no values to try";
    auto copy = inputs;
    if (auto err = set_parameter(copy, p, p.values.front()))
      return "parameter " + std::to_string(i) + ": " + *err;
    if (s.method == sweep_method::cobyla &&
        std::holds_alternative<add_twins_input>(inputs[p.input]))
      return "parameter " + std::to_string(i) +
             ": a count takes whole numbers, which cobyla (continuous) does not keep to; sweep "
             "it by grid or coordinate";
  }
  for (const auto& c : s.constraints)
    if (!c.max && !c.min)
      return "constraint on " + c.kpi.ref.aggregate + " " + c.kpi.ref.measure +
             " sets a max, a min or both";
  return std::nullopt;
}

namespace {

/// What NLopt's callbacks need: the runs so far (one per setting, reused by
/// the objective and every constraint at the same point).
struct cobyla_search {
  const sweep_options& s;
  const std::function<std::optional<size_t>(std::vector<double>)>& evaluate;
  sweep_result& out;
  std::map<std::vector<double>, size_t> seen;
  nlopt_opt opt = nullptr;

  /// The point at `x` (run once); null when the sweep must stop.
  const sweep_point* at(unsigned n, const double* x) {
    std::vector<double> values(x, x + n);
    if (auto it = seen.find(values); it != seen.end())
      return &out.points[it->second];
    const auto index = evaluate(values);
    if (!index) {
      nlopt_force_stop(opt);
      return nullptr;
    }
    seen.emplace(std::move(values), *index);
    return &out.points[*index];
  }
};

/// A large finite value for what a setting cannot give (an input that cannot
/// apply, a KPI with no value): COBYLA needs numbers.
constexpr double unusable = 1e30;

double cobyla_objective(unsigned n, const double* x, double*, void* data) {
  auto& c = *static_cast<cobyla_search*>(data);
  const auto* p = c.at(n, x);
  if (!p || !p->objective)
    return unusable;
  return c.s.maximize ? -*p->objective : *p->objective;
}

/// Constraint i of the sweep as NLopt wants it: <= 0 when it holds (bound
/// `max` when upper, else `min`).
struct cobyla_constraint {
  cobyla_search* search;
  size_t index;
  bool upper;
};

double cobyla_constraint_value(unsigned n, const double* x, double*, void* data) {
  const auto& k = *static_cast<cobyla_constraint*>(data);
  const auto* p = k.search->at(n, x);
  if (!p || k.index >= p->constraint_values.size() || !p->constraint_values[k.index])
    return unusable;
  const auto& c = k.search->s.constraints[k.index];
  const double v = *p->constraint_values[k.index];
  return k.upper ? v - *c.max : *c.min - v;
}

void search_cobyla(const sweep_options& s,
                   const std::function<std::optional<size_t>(std::vector<double>)>& evaluate,
                   sweep_result& out) {
  const auto n = static_cast<unsigned>(s.parameters.size());
  std::vector<double> lower(n), upper(n), x(n), step(n), tol(n);
  for (unsigned i = 0; i < n; ++i) {
    const auto& v = s.parameters[i].values;
    lower[i] = *std::min_element(v.begin(), v.end());
    upper[i] = *std::max_element(v.begin(), v.end());
    x[i] = (lower[i] + upper[i]) / 2;
    const double span = upper[i] - lower[i];
    step[i] = span > 0 ? span / 4 : 1;
    tol[i] = span > 0 ? span * s.tolerance : 1e-9;
  }
  cobyla_search search{s, evaluate, out, {}, nlopt_create(NLOPT_LN_COBYLA, n)};
  std::vector<cobyla_constraint> constraints;
  constraints.reserve(2 * s.constraints.size());
  for (size_t i = 0; i < s.constraints.size(); ++i) {
    if (s.constraints[i].max)
      constraints.push_back({&search, i, true});
    if (s.constraints[i].min)
      constraints.push_back({&search, i, false});
  }
  nlopt_set_lower_bounds(search.opt, lower.data());
  nlopt_set_upper_bounds(search.opt, upper.data());
  nlopt_set_min_objective(search.opt, cobyla_objective, &search);
  for (auto& c : constraints)
    nlopt_add_inequality_constraint(search.opt, cobyla_constraint_value, &c, 0);
  nlopt_set_initial_step(search.opt, step.data());
  nlopt_set_xtol_abs(search.opt, tol.data());
  nlopt_set_maxeval(search.opt, static_cast<int>(std::min<size_t>(s.max_runs, 1'000'000)));
  double best = 0;
  nlopt_optimize(search.opt, x.data(), &best);
  nlopt_destroy(search.opt);
}

}  // namespace

sweep_result sweep(const scenario_world& base, const std::vector<scenario_input>& inputs,
                   const run_options& opts, const sweep_options& s,
                   const std::function<bool(size_t done, size_t total)>& progress) {
  sweep_result out;
  // Every KPI the objective and constraints read is followed.
  run_options o = opts;
  o.kpis.clear();
  auto follow = [&](const kpi_ref& r) {
    if (std::find(o.kpis.begin(), o.kpis.end(), r) == o.kpis.end())
      o.kpis.push_back(r);
  };
  if (s.objective)
    follow(s.objective->ref);
  for (const auto& c : s.constraints)
    follow(c.kpi.ref);
  if (o.kpis.empty())
    o.max_kpis = 0;
  size_t total = 1;
  for (const auto& p : s.parameters)
    total = std::min<size_t>(s.max_runs, total * p.values.size());
  if (s.method == sweep_method::cobyla)
    total = s.max_runs;
  if (s.method == sweep_method::coordinate) {
    size_t sum = 0;
    for (const auto& p : s.parameters)
      sum += p.values.size();
    total = std::min(s.max_runs, sum * 3);
  }
  std::map<std::vector<size_t>, size_t> tried;  // value indexes -> point
  bool stopped = false;
  auto better = [&](const sweep_point& a, const sweep_point& b) {
    if (a.feasible != b.feasible)
      return a.feasible;
    if (!a.feasible)
      return a.violation < b.violation;
    if (a.objective.has_value() != b.objective.has_value())
      return a.objective.has_value();
    if (!a.objective)
      return false;
    return s.maximize ? *a.objective > *b.objective : *a.objective < *b.objective;
  };
  // Runs one setting (its values) and records it; the point's index.
  auto evaluate_values = [&](std::vector<double> values) -> std::optional<size_t> {
    if (stopped || out.points.size() >= s.max_runs)
      return std::nullopt;
    sweep_point pt;
    auto in = inputs;
    for (size_t i = 0; i < s.parameters.size(); ++i)
      set_parameter(in, s.parameters[i], values[i]);
    pt.values = std::move(values);
    scenario_world w = base;
    if (auto err = prepare(w, in)) {
      pt.feasible = false;
      pt.violation = std::numeric_limits<double>::infinity();
    } else {
      const auto r = run(w, in, o);
      pt.objective = s.objective_parameter
                         ? std::optional<double>{pt.values[*s.objective_parameter]}
                         : evaluate(r, w.start_ms, *s.objective);
      pt.feasible = true;
      for (const auto& c : s.constraints) {
        const auto v = evaluate(r, w.start_ms, c.kpi);
        pt.constraint_values.push_back(v);
        double over = 0;
        if (!v)
          over = std::numeric_limits<double>::infinity();
        else if (c.max && *v > *c.max)
          over = *v - *c.max;
        else if (c.min && *v < *c.min)
          over = *c.min - *v;
        if (over > 0)
          pt.feasible = false;
        pt.violation = std::max(pt.violation, over);
      }
    }
    out.points.push_back(std::move(pt));
    const size_t index = out.points.size() - 1;
    if (!out.best || better(out.points[index], out.points[*out.best]))
      out.best = index;
    if (progress && !progress(out.points.size(), total))
      stopped = true;
    return index;
  };
  auto try_point = [&](const std::vector<size_t>& at) -> std::optional<size_t> {
    if (auto it = tried.find(at); it != tried.end())
      return it->second;
    std::vector<double> values;
    for (size_t i = 0; i < s.parameters.size(); ++i)
      values.push_back(s.parameters[i].values[at[i]]);
    const auto index = evaluate_values(std::move(values));
    if (index)
      tried.emplace(at, *index);
    return index;
  };
  const size_t n = s.parameters.size();
  if (s.method == sweep_method::cobyla) {
    search_cobyla(s, evaluate_values, out);
  } else if (s.method == sweep_method::grid) {
    std::vector<size_t> at(n, 0);
    for (;;) {
      if (!try_point(at))
        break;
      size_t i = 0;
      while (i < n && ++at[i] == s.parameters[i].values.size())
        at[i++] = 0;
      if (i == n)
        break;
    }
  } else {
    // Start from each parameter's middle value.
    std::vector<size_t> at(n);
    for (size_t i = 0; i < n; ++i)
      at[i] = s.parameters[i].values.size() / 2;
    try_point(at);
    for (bool improved = true; improved && !stopped;) {
      improved = false;
      for (size_t i = 0; i < n && !stopped; ++i) {
        const auto before = out.best;
        auto probe = at;
        for (size_t v = 0; v < s.parameters[i].values.size(); ++v) {
          probe[i] = v;
          if (!try_point(probe))
            break;
        }
        if (out.best != before) {
          improved = true;
          // Move to the best point found (its indexes).
          for (const auto& [idx, point] : tried)
            if (point == *out.best)
              at = idx;
        }
      }
    }
  }
  out.found = out.best && out.points[*out.best].feasible;
  return out;
}

}  // namespace fleettwin::core

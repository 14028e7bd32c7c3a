#include "actors/core/scenario.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <set>
#include <sstream>

#include "actors/core/contributions.hpp"
#include "actors/core/forecast.hpp"
#include "actors/core/twin_analytics.hpp"

namespace fleettwin::core {

namespace {

/// The most twins add_twins may add in one input.
constexpr uint32_t max_added_twins = 100'000;

std::string number_text(double x) {
  std::ostringstream o;
  o << x;
  return o.str();
}

std::string selection_text(const scenario_selection& s) {
  if (s.everything())
    return "every twin";
  std::string out;
  if (!s.names.empty())
    out = std::to_string(s.names.size()) + (s.names.size() == 1 ? " twin" : " twins");
  if (!s.where.matches_all())
    out += (out.empty() ? "" : " and ") + ("twins where " + s.where.text());
  return out;
}

std::string window_text(const scenario_window& w) {
  if (w.start_ms == 0 && w.end_ms == 0)
    return "";
  return " from +" + format_duration(w.start_ms) +
         (w.end_ms > 0 ? " to +" + format_duration(w.end_ms) : "");
}

// splitmix64: a counter-based generator, so that the noise of a sample
// depends on (seed, twin, property, step) alone and not on the order the
// run visits them in.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t hash_text(std::string_view s, uint64_t h) {
  // FNV-1a, then mixed: stable across platforms and runs (std::hash is not
  // required to be).
  for (unsigned char c : s)
    h = (h ^ c) * 0x100000001b3ULL;
  return mix(h);
}

/// A standard normal deviate from two counter-based uniforms (Box-Muller).
double gaussian(uint64_t key, uint64_t step) {
  const uint64_t a = mix(key ^ mix(step));
  const uint64_t b = mix(a);
  const double u1 = (static_cast<double>(a >> 11) + 1.0) * 0x1.0p-53;
  const double u2 = static_cast<double>(b >> 11) * 0x1.0p-53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

/// The twins `s` selects; names outside the world are an error.
std::optional<std::string> select(const scenario_world& w, const scenario_selection& s,
                                  std::vector<std::string>& out) {
  out.clear();
  for (const auto& n : s.names) {
    const auto it = w.twins.find(n);
    if (it == w.twins.end())
      return "twin \"" + n + "\" is not in the scenario";
    if (s.where.matches_all() || s.where.matches(it->second, w.start_ms, w.stale_after_ms))
      out.push_back(n);
  }
  if (s.names.empty())
    for (const auto& [id, tw] : w.twins)
      if (s.where.matches(tw, w.start_ms, w.stale_after_ms))
        out.push_back(id);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return std::nullopt;
}

std::optional<std::string> check_window(const scenario_window& win) {
  if (win.start_ms < 0 || win.end_ms < 0)
    return "a window's start and end must not be negative";
  if (win.end_ms != 0 && win.end_ms <= win.start_ms)
    return "a window must end after it starts";
  return std::nullopt;
}

/// Routes what changed below aggregate `id` (`deltas`) to its parents.
void pass_up(const std::string& id, const scenario_aggregate& a,
             const std::vector<member_delta>& deltas, int64_t now_ms,
             std::vector<contribution>& out) {
  if (deltas.empty() || a.entity.relations.empty())
    return;
  child_change c;
  c.child = id;
  c.before = &a.entity.relations;
  c.after = &a.entity.relations;
  c.self = member_delta{id, true, false, 0, {}, {}};
  c.members = &deltas;
  c.origin_ms = now_ms;
  route(c, out);
}

/// Delivers contributions wave by wave: every contribution of a wave is
/// applied to its aggregate, and each aggregate then passes what changed
/// to its parents in one contribution per parent (as a commit would).
void deliver(scenario_world& w, std::vector<contribution>& queue, int64_t now_ms, run_result& r) {
  std::vector<contribution> next;
  std::map<std::string, std::vector<member_delta>, std::less<>> outward;
  while (!queue.empty()) {
    for (auto& c : queue) {
      const auto it = w.aggregates.find(c.parent);
      if (it == w.aggregates.end()) {
        ++r.outside;
        continue;
      }
      ++r.contributions;
      auto& out = outward[c.parent];
      it->second.agg.apply(c, now_ms, out);
    }
    queue.clear();
    for (auto& [id, deltas] : outward)
      pass_up(id, w.aggregates.find(id)->second, deltas, now_ms, next);
    outward.clear();
    coalesce(next);
    std::swap(queue, next);
  }
}

/// Tells a twin's parents about a change of its relations (from `before`).
void relate(scenario_world& w, const twin& tw, const relation_list& before,
            std::vector<contribution>& queue) {
  child_change c;
  c.child = tw.asset_id;
  c.before = &before;
  c.after = &tw.relations;
  c.self = member_delta{tw.asset_id, true, true, 0, project(tw, w.kinds->fields()), {}};
  c.self_changed = true;
  c.origin_ms = w.start_ms;
  route(c, queue);
}

std::optional<std::string> apply_model(scenario_world& w, const model_input& m) {
  auto& model = w.models[m.kind];
  model.kind = m.kind;
  auto it =
      std::lower_bound(model.properties.begin(), model.properties.end(), m.property,
                       [](const property_model& p, const std::string& n) { return p.name < n; });
  if (it == model.properties.end() || it->name != m.property) {
    property_model p;
    p.name = m.property;
    it = model.properties.insert(it, std::move(p));
  }
  if (m.failure)
    it->failure = m.failure;
  if (m.warning)
    it->warning = m.warning;
  if (m.critical)
    it->critical = m.critical;
  if (auto err = validate(model))
    return "the changed model of kind \"" + m.kind + "\" is invalid: " + *err;
  return std::nullopt;
}

std::optional<std::string> check_parent(const scenario_world& w, std::string_view child,
                                        const std::string& parent, const std::string& type) {
  if (!w.aggregates.count(parent))
    return "aggregate \"" + parent + "\" is not in the scenario (fork it with the twins)";
  return w.kinds->check(child, relation{type, parent, relation_origin::api});
}

/// The relations of a twin with its relation of `type` going to `parent`.
relation_list reparent(const relation_list& current, const std::string& parent,
                       const std::string& type) {
  relation_list out;
  for (const auto& r : current)
    if (r.type != type && r.parent != parent)
      out.push_back(r);
  out.push_back(relation{type, parent, relation_origin::api});
  normalize(out);
  return out;
}

std::optional<std::string> apply_add_aggregate(scenario_world& w, const add_aggregate_input& a,
                                               std::vector<contribution>& queue) {
  const auto* kind = w.kinds->kind_of(a.id);
  if (!kind)
    return "\"" + a.id + "\" is not in the collection of an aggregate kind (such as \"" +
           (w.kinds->kinds().empty() ? std::string{"feeders"}
                                     : w.kinds->kinds().begin()->second->def.collection) +
           "/new-1\")";
  if (w.aggregates.count(a.id) || w.twins.count(a.id))
    return "\"" + a.id + "\" exists already";
  scenario_aggregate added{twin{},
                           aggregate{a.id, w.kinds->kinds().at(kind->def.name), w.stale_after_ms}};
  added.entity.asset_id = a.id;
  added.entity.kind = kind->def.name;
  for (const auto& [k, v] : a.attributes)
    added.entity.attributes[k] = v;
  if (!a.parent.empty()) {
    if (auto err = check_parent(w, a.id, a.parent, a.type))
      return err;
    added.entity.relations.push_back(relation{a.type, a.parent, relation_origin::api});
  }
  auto& stored = w.aggregates.emplace(a.id, std::move(added)).first->second;
  if (!stored.entity.relations.empty()) {
    const relation_list none;
    child_change c;
    c.child = a.id;
    c.before = &none;
    c.after = &stored.entity.relations;
    c.self = member_delta{a.id, true, false, 0, {}, {}};
    c.as_aggregate = &stored.agg;
    c.origin_ms = w.start_ms;
    route(c, queue);
  }
  return std::nullopt;
}

std::optional<std::string> apply_add(scenario_world& w, const add_twins_input& a,
                                     std::vector<contribution>& queue) {
  const auto tmpl = w.twins.find(a.template_twin);
  if (tmpl == w.twins.end())
    return "template twin \"" + a.template_twin + "\" is not in the scenario";
  const twin base = tmpl->second;
  for (uint32_t n = 1; n <= a.count; ++n) {
    std::string id = a.prefix + std::to_string(n);
    if (auto err = check_parent(w, id, a.parent, a.type))
      return err;
    if (w.twins.count(id) || w.aggregates.count(id))
      return "twin \"" + id + "\" exists already";
    twin tw = base;
    tw.asset_id = id;
    for (const auto& [k, v] : a.attributes)
      tw.attributes[k] = v;
    tw.relations = reparent(base.relations, a.parent, a.type);
    auto& stored = w.twins.emplace(id, std::move(tw)).first->second;
    relate(w, stored, {}, queue);
  }
  return std::nullopt;
}

std::optional<std::string> apply_move(scenario_world& w, const move_input& m,
                                      std::vector<contribution>& queue) {
  std::vector<std::string> ids;
  if (auto err = select(w, m.twins, ids))
    return err;
  for (const auto& id : ids) {
    if (auto err = check_parent(w, id, m.parent, m.type))
      return err;
    auto& tw = w.twins.find(id)->second;
    const relation_list before = tw.relations;
    tw.relations = reparent(before, m.parent, m.type);
    if (tw.relations != before)
      relate(w, tw, before, queue);
  }
  return std::nullopt;
}

std::optional<std::string> apply_desired_input(scenario_world& w, const desired_input& d) {
  std::vector<std::string> ids;
  if (auto err = select(w, d.twins, ids))
    return err;
  desired_update u;
  u.set = d.set;
  u.remove = d.remove;
  for (const auto& id : ids) {
    auto& tw = w.twins.find(id)->second;
    const auto r = apply_desired(tw, id, u, w.start_ms, limits{});
    if (r.status == desired_status::invalid)
      return r.error;
  }
  return std::nullopt;
}

/// What drives one numeric property of one twin during a run.
struct property_plan {
  std::string name;
  bool integer = false;
  const series_input* series = nullptr;
  std::vector<const profile_input*> profiles;
  std::vector<const limit_input*> limits;
  property_analytics_params params;
  const property_model* model = nullptr;
  /// The property's forecaster as forked, fed only its own path (forecast
  /// and noise, no input): what the property would do undisturbed. The
  /// twin's own forecaster learns what the run reports, inputs included,
  /// for detection and time to failure.
  forecaster_state path;
  uint64_t noise_key = 0;
  bool failed = false;
  bool warned = false;
  bool critical = false;
};

struct twin_plan {
  twin* tw = nullptr;
  const asset_model* model = nullptr;
  std::vector<property_plan> props;
  std::optional<member_values> projected;
};

/// The value a run gives a property at `offset_ms` after the start (step `step`).
double value_at(const twin& tw, property_plan& p, int64_t now_ms, int64_t offset_ms, uint64_t step,
                const run_options& opts) {
  double x = 0;
  bool driven = false;
  if (const auto d = tw.desired.find(p.name); d != tw.desired.end()) {
    if (auto n = as_number(d->second); n && (d->second.index() == 0 || d->second.index() == 1)) {
      x = *n;
      driven = true;
    }
  }
  if (!driven && p.series) {
    const auto& pts = p.series->points;
    auto it = std::upper_bound(pts.begin(), pts.end(), offset_ms,
                               [](int64_t o, const auto& pt) { return o < pt.first; });
    if (it != pts.begin()) {
      x = std::prev(it)->second;
      driven = true;
    }
  }
  if (!driven) {
    if (const auto f = predict_next(p.path, p.params.forecast, now_ms)) {
      x = *f;
      if (opts.noise > 0)
        x += opts.noise * std::sqrt(std::max(0.0, p.path.error_var)) * gaussian(p.noise_key, step);
      update_forecaster(p.path, p.params.forecast, x, now_ms);
    } else if (auto r = tw.reported.find(p.name); r != tw.reported.end()) {
      x = as_number(r->second.val).value_or(0);
    }
  }
  for (const auto* pr : p.profiles)
    if (pr->window.covers(offset_ms))
      x = x * pr->factor + pr->offset;
  for (const auto* l : p.limits)
    if (l->window.covers(offset_ms)) {
      if (l->max)
        x = std::min(x, *l->max);
      if (l->min)
        x = std::max(x, *l->min);
    }
  return p.integer ? std::round(x) : x;
}

template <class Input>
void attach(const scenario_world& w, const std::vector<scenario_input>& inputs,
            std::map<std::string_view, twin_plan*, std::less<>>& by_id,
            void (*add)(property_plan&, const Input&)) {
  std::vector<std::string> ids;
  for (const auto& in : inputs) {
    const auto* x = std::get_if<Input>(&in);
    if (!x)
      continue;
    select(w, x->twins, ids);
    for (const auto& id : ids) {
      auto* plan = by_id.find(id)->second;
      for (auto& p : plan->props)
        if (p.name == x->property)
          add(p, *x);
    }
  }
}

std::vector<twin_plan> make_plans(scenario_world& w, const std::vector<scenario_input>& inputs,
                                  uint64_t seed) {
  std::vector<twin_plan> plans;
  plans.reserve(w.twins.size());
  std::map<std::string_view, twin_plan*, std::less<>> by_id;
  for (auto& [id, tw] : w.twins) {
    auto& plan = plans.emplace_back();
    plan.tw = &tw;
    const auto m = w.models.find(tw.kind);
    plan.model = m == w.models.end() ? nullptr : &m->second;
    const uint64_t twin_key = hash_text(id, mix(seed));
    for (const auto& [name, r] : tw.reported) {
      if (r.val.index() != 0 && r.val.index() != 1)
        continue;
      auto& p = plan.props.emplace_back();
      p.name = name;
      p.integer = r.val.index() == 1;
      p.model = plan.model ? plan.model->find(name) : nullptr;
      p.params = analytics_params(p.model);
      p.noise_key = hash_text(name, twin_key);
      if (const auto a = tw.analysis.find(name); a != tw.analysis.end())
        p.path = a->second.state.forecast;
    }
  }
  for (auto& plan : plans)
    by_id.emplace(plan.tw->asset_id, &plan);
  attach<series_input>(w, inputs, by_id,
                       [](property_plan& p, const series_input& s) { p.series = &s; });
  attach<profile_input>(w, inputs, by_id,
                        [](property_plan& p, const profile_input& s) { p.profiles.push_back(&s); });
  attach<limit_input>(w, inputs, by_id,
                      [](property_plan& p, const limit_input& s) { p.limits.push_back(&s); });
  return plans;
}

void record_alert(run_result& r, const run_options& opts, fired_alert a) {
  ++r.alerts_total;
  if (r.alerts.size() < opts.max_events)
    r.alerts.push_back(std::move(a));
}

void record_failure(run_result& r, const run_options& opts, failure_event f) {
  ++r.failures_total;
  if (r.failures.size() < opts.max_events)
    r.failures.push_back(std::move(f));
}

/// What the twin's analytics and thresholds found in one step.
void observe_step(const twin_plan& plan, std::vector<property_plan>& props,
                  const analysis_output& out, int64_t now_ms, const run_options& opts,
                  run_result& r) {
  const auto& tw = *plan.tw;
  for (const auto& a : out.alerts)
    if (a.event == alert_event::raised)
      record_alert(r, opts,
                   fired_alert{tw.asset_id, a.property, a.time_ms, a.severity, a.kind, a.score});
  for (auto& p : props) {
    if (!p.model)
      continue;
    const auto rep = tw.reported.find(p.name);
    if (rep == tw.reported.end())
      continue;
    const double x = as_number(rep->second.val).value_or(0);
    // Threshold crossings: the model's warning and critical levels, the
    // first time each is crossed. Scored like an anomaly alert of that
    // severity: the value itself stays out of the result (it may be a
    // sensitive property's).
    if (p.model->critical && !p.critical && p.model->critical->crossed_by(x)) {
      p.critical = true;
      record_alert(r, opts,
                   fired_alert{tw.asset_id, p.name, now_ms, alert_severity::critical,
                               anomaly_kind::none, 1.0});
    } else if (p.model->warning && !p.warned && !p.critical && p.model->warning->crossed_by(x)) {
      p.warned = true;
      record_alert(r, opts,
                   fired_alert{tw.asset_id, p.name, now_ms, alert_severity::warning,
                               anomaly_kind::none, 0.5});
    }
    if (p.model->failure && !p.failed) {
      const auto a = tw.analysis.find(p.name);
      if (a != tw.analysis.end() && a->second.quality.failed) {
        p.failed = true;
        record_failure(r, opts, failure_event{tw.asset_id, p.name, now_ms, 0});
      }
    }
  }
}

struct kpi_slot {
  const scenario_aggregate* agg = nullptr;
  size_t measure = 0;
};

std::vector<kpi_slot> resolve_kpis(const scenario_world& w, const run_options& opts,
                                   run_result& r) {
  std::vector<kpi_slot> slots;
  auto add = [&](const scenario_aggregate* a, const kpi_ref& ref) {
    const auto& ms = a ? a->agg.kind().measures : std::vector<compiled_measure>{};
    size_t i = 0;
    while (i < ms.size() && ms[i].name != ref.measure)
      ++i;
    slots.push_back(kpi_slot{i < ms.size() ? a : nullptr, i});
    r.kpis.push_back(kpi_series{ref, {}});
  };
  if (!opts.kpis.empty()) {
    for (const auto& ref : opts.kpis) {
      const auto it = w.aggregates.find(ref.aggregate);
      add(it == w.aggregates.end() ? nullptr : &it->second, ref);
    }
    return slots;
  }
  for (const auto& [id, a] : w.aggregates)
    for (const auto& m : a.agg.kind().measures) {
      if (slots.size() >= opts.max_kpis)
        return slots;
      add(&a, kpi_ref{id, m.name});
    }
  return slots;
}

}  // namespace

bool rewind(twin& tw, const std::vector<std::pair<std::string, history_point>>& samples,
            int64_t at_ms, const asset_model* model) {
  if (samples.empty() || samples.front().second.source_time_ms >= at_ms)
    return false;
  twin past;
  past.asset_id = tw.asset_id;
  past.kind = tw.kind;
  past.tenant = tw.tenant;
  past.attributes = tw.attributes;
  past.desired = tw.desired;
  past.desired_updated_ms = std::min(tw.desired_updated_ms, at_ms);
  past.relations = tw.relations;
  const limits lim;
  telemetry rec;
  rec.asset_id = tw.asset_id;
  rec.kind = tw.kind;
  rec.tenant = tw.tenant;
  apply_result applied;
  analysis_output out;
  // One record per (source time, sequence): the samples one message carried.
  for (size_t i = 0; i < samples.size() && samples[i].second.source_time_ms < at_ms;) {
    const auto& first = samples[i].second;
    rec.sequence = first.sequence;
    rec.source_time_ms = first.source_time_ms;
    rec.metrics.clear();
    for (; i < samples.size() && samples[i].second.source_time_ms == first.source_time_ms &&
           samples[i].second.sequence == first.sequence;
         ++i)
      rec.metrics.emplace_back(samples[i].first, samples[i].second.val);
    apply_telemetry(past, rec, rec.source_time_ms, lim, applied);
    analyze_applied(past, rec, applied, model, rec.source_time_ms, out);
    out = analysis_output{};
  }
  if (past.empty())
    return false;
  tw = std::move(past);
  return true;
}

std::string describe(const scenario_input& in) {
  struct visitor {
    std::string operator()(const profile_input& p) const {
      std::string s = "profile " + p.property + " of " + selection_text(p.twins) + ": x" +
                      number_text(p.factor);
      if (p.offset != 0)
        s += (p.offset > 0 ? " + " : " - ") + number_text(std::abs(p.offset));
      return s + window_text(p.window);
    }
    std::string operator()(const limit_input& l) const {
      std::string s = "limit " + l.property + " of " + selection_text(l.twins) + " to";
      if (l.min)
        s += " >= " + number_text(*l.min);
      if (l.max)
        s += " <= " + number_text(*l.max);
      return s + window_text(l.window);
    }
    std::string operator()(const series_input& s) const {
      return "telemetry " + s.property + " of " + selection_text(s.twins) + ": " +
             std::to_string(s.points.size()) + " points";
    }
    std::string operator()(const desired_input& d) const {
      std::string s = "desired of " + selection_text(d.twins) + ":";
      for (const auto& [k, v] : d.set)
        s += " " + k + "=" + to_string(v);
      for (const auto& k : d.remove)
        s += " -" + k;
      return s;
    }
    std::string operator()(const add_twins_input& a) const {
      return "add " + std::to_string(a.count) + " copies of " + a.template_twin + " as " +
             a.prefix + "1.. to " + a.parent + " (" + a.type + ")";
    }
    std::string operator()(const add_aggregate_input& a) const {
      std::string s = "add aggregate " + a.id;
      if (!a.parent.empty())
        s += " to " + a.parent + " (" + a.type + ")";
      return s;
    }
    std::string operator()(const move_input& m) const {
      return "move " + selection_text(m.twins) + " to " + m.parent + " (" + m.type + ")";
    }
    std::string operator()(const model_input& m) const {
      std::string s = "model " + m.kind + "." + m.property + ":";
      if (m.failure)
        s += " failure " + to_string(*m.failure);
      if (m.warning)
        s += " warning " + to_string(*m.warning);
      if (m.critical)
        s += " critical " + to_string(*m.critical);
      return s;
    }
  };
  return std::visit(visitor{}, in);
}

void connect(scenario_world& w) {
  std::vector<contribution> queue;
  const relation_list none;
  for (auto& [id, a] : w.aggregates) {
    if (a.entity.relations.empty())
      continue;
    child_change c;
    c.child = id;
    c.before = &none;
    c.after = &a.entity.relations;
    c.self = member_delta{id, true, false, 0, {}, {}};
    c.as_aggregate = &a.agg;
    c.origin_ms = w.start_ms;
    route(c, queue);
  }
  for (const auto& [id, tw] : w.twins)
    if (!tw.relations.empty())
      relate(w, tw, none, queue);
  for (const auto& f : w.frozen) {
    child_change c;
    c.child = f.id;
    c.before = &none;
    c.after = &f.relations;
    c.self = member_delta{f.id, true, true, 0, f.values, {}};
    c.self_changed = true;
    c.origin_ms = w.start_ms;
    route(c, queue);
  }
  run_result ignored;
  deliver(w, queue, w.start_ms, ignored);
}

std::optional<std::string> check_input(const scenario_input& in) {
  if (const auto* p = std::get_if<profile_input>(&in)) {
    if (p->property.empty())
      return std::string{"a profile names a property"};
    if (!std::isfinite(p->factor) || !std::isfinite(p->offset))
      return std::string{"a profile's factor and offset must be finite"};
    return check_window(p->window);
  }
  if (const auto* l = std::get_if<limit_input>(&in)) {
    if (l->property.empty())
      return std::string{"a limit names a property"};
    if (!l->min && !l->max)
      return std::string{"a limit sets a minimum, a maximum or both"};
    if (l->min && l->max && *l->min > *l->max)
      return std::string{"a limit's minimum must not exceed its maximum"};
    return check_window(l->window);
  }
  if (const auto* s = std::get_if<series_input>(&in)) {
    if (s->property.empty())
      return std::string{"a telemetry series names a property"};
    if (s->points.empty())
      return std::string{"a telemetry series has at least one point"};
    for (size_t i = 0; i < s->points.size(); ++i) {
      if (s->points[i].first < 0 || !std::isfinite(s->points[i].second))
        return std::string{"a series point has a non-negative offset and a finite value"};
      if (i > 0 && s->points[i].first <= s->points[i - 1].first)
        return std::string{"a series' points are in ascending order of their offsets"};
    }
    return std::nullopt;
  }
  if (const auto* d = std::get_if<desired_input>(&in)) {
    if (d->set.empty() && d->remove.empty())
      return std::string{"a desired change sets or removes at least one property"};
    return std::nullopt;
  }
  if (const auto* a = std::get_if<add_twins_input>(&in)) {
    if (a->template_twin.empty())
      return std::string{"name the template twin to copy"};
    if (a->count == 0 || a->count > max_added_twins)
      return "add between 1 and " + std::to_string(max_added_twins) + " twins";
    if (a->prefix.empty())
      return std::string{"name a prefix for the new twins' ids"};
    if (a->parent.empty() || a->type.empty())
      return std::string{"name a parent aggregate and a relation type"};
    const limits lim;
    for (const auto& [k, v] : a->attributes)
      if (auto err = validate_name(k, lim, "attribute"))
        return err;
    return std::nullopt;
  }
  if (const auto* m = std::get_if<move_input>(&in)) {
    if (m->parent.empty() || m->type.empty())
      return std::string{"name a parent aggregate and a relation type"};
    return std::nullopt;
  }
  if (const auto* a = std::get_if<add_aggregate_input>(&in)) {
    if (a->id.find('/') == std::string::npos || a->id.front() == '/' || a->id.back() == '/')
      return std::string{"name the new aggregate \"{collection}/{name}\" (\"transformers/T9\")"};
    if (a->parent.empty() != a->type.empty())
      return std::string{"a parent aggregate goes with a relation type"};
    const limits lim;
    for (const auto& [k, v] : a->attributes)
      if (auto err = validate_name(k, lim, "attribute"))
        return err;
    return std::nullopt;
  }
  if (const auto* m = std::get_if<model_input>(&in)) {
    if (m->kind.empty() || m->property.empty())
      return std::string{"a model change names a kind and a property"};
    if (!m->failure && !m->warning && !m->critical)
      return std::string{"a model change sets a failure, warning or critical threshold"};
  }
  return std::nullopt;
}

std::optional<input_error> prepare(scenario_world& w, const std::vector<scenario_input>& inputs) {
  std::vector<contribution> queue;
  // Models first (new twins analyse under them), then the topology (new
  // aggregates, then twins added or moved), then desired values (a filter may
  // select twins added or moved).
  const auto pass = [&](auto&& apply) -> std::optional<input_error> {
    for (size_t i = 0; i < inputs.size(); ++i)
      if (auto err = apply(inputs[i]))
        return input_error{i, *err};
    return std::nullopt;
  };
  auto err = pass([&](const scenario_input& in) -> std::optional<std::string> {
    if (auto e = check_input(in))
      return e;
    if (auto m = std::get_if<model_input>(&in))
      return apply_model(w, *m);
    return std::nullopt;
  });
  // New aggregates first, parents before children (each names its parent).
  if (!err)
    err = pass([&](const scenario_input& in) -> std::optional<std::string> {
      if (auto a = std::get_if<add_aggregate_input>(&in))
        return apply_add_aggregate(w, *a, queue);
      return std::nullopt;
    });
  if (!err)
    err = pass([&](const scenario_input& in) -> std::optional<std::string> {
      if (auto a = std::get_if<add_twins_input>(&in))
        return apply_add(w, *a, queue);
      if (auto m = std::get_if<move_input>(&in))
        return apply_move(w, *m, queue);
      return std::nullopt;
    });
  if (!err)
    err = pass([&](const scenario_input& in) -> std::optional<std::string> {
      if (auto d = std::get_if<desired_input>(&in))
        return apply_desired_input(w, *d);
      return std::nullopt;
    });
  if (!err) {
    std::vector<std::string> ids;
    err = pass([&](const scenario_input& in) -> std::optional<std::string> {
      return std::visit(
          [&](const auto& x) -> std::optional<std::string> {
            if constexpr (requires { x.twins.names; }) {
              if (auto err = select(w, x.twins, ids))
                return err;
              if (ids.empty())
                return "selects no twin of the scenario (" + selection_text(x.twins) + ")";
            }
            return std::nullopt;
          },
          in);
    });
  }
  run_result ignored;
  deliver(w, queue, w.start_ms, ignored);
  return err;
}

run_result run(scenario_world& w, const std::vector<scenario_input>& inputs,
               const run_options& opts,
               const std::function<bool(uint64_t done, uint64_t total)>& progress) {
  run_result r;
  const int64_t step_ms = std::max<int64_t>(1, opts.step_ms);
  const uint64_t steps = std::min<uint64_t>(
      opts.max_steps, static_cast<uint64_t>(std::max<int64_t>(0, opts.horizon_ms) / step_ms));
  auto plans = make_plans(w, inputs, opts.seed);
  auto slots = resolve_kpis(w, opts, r);
  r.twins = plans.size();
  const limits lim;
  telemetry rec;
  apply_result applied;
  analysis_output out;
  std::vector<contribution> queue;
  std::vector<member_delta> timed_out;
  const auto& fields = w.kinds->fields();
  for (uint64_t step = 1; step <= steps; ++step) {
    const int64_t offset_ms = static_cast<int64_t>(step) * step_ms;
    const int64_t now_ms = w.start_ms + offset_ms;
    // Aggregates whose measures change with time alone move their clocks.
    for (auto& [id, a] : w.aggregates) {
      if (!a.agg.kind().time_dependent && a.agg.in_transit() == 0)
        continue;
      timed_out.clear();
      a.agg.advance(now_ms, &timed_out);
      pass_up(id, a, timed_out, now_ms, queue);
    }
    for (auto& plan : plans) {
      auto& tw = *plan.tw;
      if (plan.props.empty())
        continue;
      rec.asset_id = tw.asset_id;
      rec.kind = tw.kind;
      rec.tenant = tw.tenant;
      rec.sequence = tw.window.highest() + 1;
      rec.source_time_ms = now_ms;
      rec.metrics.clear();
      for (auto& p : plan.props) {
        const double x = value_at(tw, p, now_ms, offset_ms, step, opts);
        rec.metrics.emplace_back(p.name, p.integer ? value{static_cast<int64_t>(x)} : value{x});
      }
      apply_telemetry(tw, rec, now_ms, lim, applied);
      if (applied.status != apply_status::applied)
        continue;
      r.samples += applied.applied_metrics.size();
      out.alerts.clear();
      analyze_applied(tw, rec, applied, plan.model, now_ms, out);
      observe_step(plan, plan.props, out, now_ms, opts, r);
      if (tw.relations.empty())
        continue;
      auto view = project(tw, fields);
      if (plan.projected && plan.projected->same_fields(view))
        continue;
      child_change c;
      c.child = tw.asset_id;
      c.before = &tw.relations;
      c.after = &tw.relations;
      c.self = member_delta{tw.asset_id, true, true, 0, view, {}};
      c.self_changed = true;
      c.origin_ms = now_ms;
      route(c, queue);
      plan.projected = std::move(view);
    }
    deliver(w, queue, now_ms, r);
    r.times.push_back(now_ms);
    std::map<const scenario_aggregate*, std::vector<std::optional<double>>> measured;
    for (size_t k = 0; k < slots.size(); ++k) {
      auto& values = r.kpis[k].values;
      if (!slots[k].agg) {
        values.emplace_back();
        continue;
      }
      auto [it, fresh] = measured.try_emplace(slots[k].agg);
      if (fresh)
        it->second = slots[k].agg->agg.measures(measure_inputs{&slots[k].agg->entity.attributes});
      values.push_back(it->second[slots[k].measure]);
    }
    if (progress && !progress(step, steps))
      break;
  }
  // Twins heading for failure when the run ends, and not failed during it.
  for (const auto& plan : plans)
    for (const auto& p : plan.props) {
      if (p.failed || !p.model || !p.model->failure)
        continue;
      const auto a = plan.tw->analysis.find(p.name);
      if (a != plan.tw->analysis.end() && a->second.quality.failure_eta_ms > 0)
        record_failure(
            r, opts, failure_event{plan.tw->asset_id, p.name, 0, a->second.quality.failure_eta_ms});
    }
  return r;
}

std::optional<double> series_peak(const kpi_series& s) {
  std::optional<double> peak;
  for (const auto& v : s.values)
    if (v && (!peak || *v > *peak))
      peak = v;
  return peak;
}

std::optional<double> series_mean(const kpi_series& s) {
  double sum = 0;
  size_t n = 0;
  for (const auto& v : s.values)
    if (v) {
      sum += *v;
      ++n;
    }
  if (n == 0)
    return std::nullopt;
  return sum / static_cast<double>(n);
}

comparison compare(const run_result& baseline, const run_result& scenario) {
  comparison c;
  for (size_t k = 0; k < scenario.kpis.size(); ++k) {
    const auto& s = scenario.kpis[k];
    kpi_diff d;
    d.ref = s.ref;
    d.peak = series_peak(s);
    d.mean = series_mean(s);
    for (size_t i = 0; i < s.values.size() && i < scenario.times.size(); ++i)
      if (s.values[i] && d.peak && *s.values[i] == *d.peak) {
        d.peak_ms = scenario.times[i];
        break;
      }
    for (const auto& b : baseline.kpis)
      if (b.ref == s.ref) {
        d.base_peak = series_peak(b);
        d.base_mean = series_mean(b);
        break;
      }
    c.kpis.push_back(std::move(d));
  }
  using key = std::pair<std::string_view, std::string_view>;
  auto keys_of = [](const std::vector<fired_alert>& alerts) {
    std::set<key> out;
    for (const auto& a : alerts)
      out.emplace(a.twin, a.property);
    return out;
  };
  const auto base_alerts = keys_of(baseline.alerts);
  const auto scen_alerts = keys_of(scenario.alerts);
  std::set<key> seen;
  for (const auto& a : scenario.alerts)
    if (!base_alerts.count({a.twin, a.property}) && seen.emplace(a.twin, a.property).second)
      c.new_alerts.push_back(a);
  seen.clear();
  for (const auto& a : baseline.alerts)
    if (!scen_alerts.count({a.twin, a.property}) && seen.emplace(a.twin, a.property).second)
      c.gone_alerts.push_back(a);
  std::map<key, int64_t> base_fail;
  for (const auto& f : baseline.failures)
    base_fail.emplace(key{f.twin, f.property}, f.time_ms > 0 ? f.time_ms : f.eta_ms);
  for (const auto& f : scenario.failures) {
    const int64_t when = f.time_ms > 0 ? f.time_ms : f.eta_ms;
    const auto b = base_fail.find(key{f.twin, f.property});
    if (b == base_fail.end() || when < b->second)
      c.new_failures.push_back(f);
  }
  return c;
}

}  // namespace fleettwin::core

#include "services/grpc/scenario_service.hpp"

#include <cmath>
#include <limits>

#include <google/protobuf/util/json_util.h>

#include "services/grpc/convert.hpp"
#include "services/grpc/privacy.hpp"
#include "services/grpc/queued_writer.hpp"
#include "services/grpc/unary_call.hpp"

namespace fleettwin::grpc_api {

namespace v1 = fleettwin::v1;

namespace {

constexpr std::string_view scenario_prefix = "scenarios/";
constexpr const char* service_prefix = "/fleettwin.v1.ScenarioService/";
constexpr int32_t default_page = 50;
constexpr int32_t max_page = 500;
/// A run's progress messages at most this often.
constexpr auto progress_every = std::chrono::milliseconds{200};

/// "scenarios/{id}" -> id; nullopt with what to fix.
std::optional<std::string> parse_scenario_name(const std::string& name, std::string& error) {
  if (!name.starts_with(scenario_prefix) || name.size() == scenario_prefix.size()) {
    error = "name \"" + name + "\" is not of the form \"scenarios/{scenario_id}\"";
    return std::nullopt;
  }
  return name.substr(scenario_prefix.size());
}

/// A twin in an input or a fork: "twins/{id}", or the id alone.
std::optional<std::string> twin_id(const std::string& name, std::string& error) {
  if (name.starts_with("twins/"))
    return parse_twin_name(name, error);
  if (name.empty()) {
    error = "a twin name is empty";
    return std::nullopt;
  }
  return name;
}

std::optional<std::string> selection_from(const v1::TwinSelection& p,
                                          core::scenario_selection& out) {
  for (int i = 0; i < p.names_size(); ++i) {
    std::string error;
    auto id = twin_id(p.names(i), error);
    if (!id)
      return "twins.names[" + std::to_string(i) + "]: " + error;
    out.names.push_back(std::move(*id));
  }
  if (auto err = core::filter::parse(p.filter(), out.where))
    return "twins.filter: " + filter_error(*err);
  return std::nullopt;
}

std::optional<std::string> threshold_from(const std::string& text, const char* field,
                                          std::optional<core::threshold>& out) {
  if (text.empty())
    return std::nullopt;
  std::string why;
  out = core::parse_threshold(text, why);
  if (!out)
    return std::string{field} + ": " + why;
  return std::nullopt;
}

core::scenario_window window_from(const v1::RunWindow& w) {
  return core::scenario_window{w.start_ms(), w.end_ms()};
}

std::string severity_name(core::alert_severity s) {
  return core::to_string(s);
}

void alert_to_proto(const core::fired_alert& a, v1::ScenarioAlert& out) {
  out.set_twin(a.twin);
  out.set_property(a.property);
  out.set_time_ms(a.time_ms);
  out.set_severity(severity_name(a.severity));
  out.set_kind(a.kind == core::anomaly_kind::none ? "threshold" : core::to_string(a.kind));
  out.set_score(a.score);
}

void failure_to_proto(const core::failure_event& f, v1::ScenarioFailure& out) {
  out.set_twin(f.twin);
  out.set_property(f.property);
  out.set_time_ms(f.time_ms);
  out.set_eta_ms(f.eta_ms);
}

void series_to_proto(const core::kpi_series& k, v1::KpiSeries& out) {
  out.mutable_kpi()->set_aggregate(k.ref.aggregate);
  out.mutable_kpi()->set_measure(k.ref.measure);
  out.mutable_values()->Reserve(static_cast<int>(k.values.size()));
  for (const auto& v : k.values)
    out.add_values(v ? *v : std::numeric_limits<double>::quiet_NaN());
}

void stats_to_proto(const core::run_result& r, double wall_s, int64_t horizon_ms,
                    v1::RunStats& out) {
  out.set_twins(static_cast<int64_t>(r.twins));
  out.set_samples(static_cast<int64_t>(r.samples));
  out.set_steps(static_cast<int64_t>(r.times.size()));
  out.set_alerts_total(static_cast<int64_t>(r.alerts_total));
  out.set_failures_total(static_cast<int64_t>(r.failures_total));
  out.set_wall_seconds(wall_s);
  out.set_speed(wall_s > 0 ? static_cast<double>(horizon_ms) / 1000.0 / wall_s : 0);
}

std::string tenant_of(const call& c) {
  return c.who() ? c.who()->tenant : std::string{};
}

/// The stream of a run or sweep: progress at most every progress_every, then
/// the result. Owned by gRPC (until OnDone) and by the job's callbacks.
template <class Progress>
class job_stream final : public ::grpc::ServerWriteReactor<Progress>,
                         public std::enable_shared_from_this<job_stream<Progress>> {
public:
  using fill_progress = std::function<void(Progress&, uint64_t done, uint64_t total, double speed)>;
  /// Fills the last message from the scenario after the job; false: no result.
  using fill_final = std::function<bool(Progress&, const scenario::scenario&)>;

  job_stream(metrics::grpc_probe& probe, const char* method, fill_progress progress,
             fill_final final)
      : probe_(probe),
        method_(method),
        progress_(std::move(progress)),
        final_fill_(std::move(final)),
        started_(std::chrono::steady_clock::now()) {}

  void on_progress(uint64_t done, uint64_t total, double speed) {
    std::unique_lock<std::mutex> lock{mutex_};
    const auto now = std::chrono::steady_clock::now();
    if (writing_ || final_ || now - last_sent_ < progress_every)
      return;
    last_sent_ = now;
    message_.Clear();
    progress_(message_, done, total, speed);
    writing_ = true;
    lock.unlock();
    this->StartWrite(&message_);
  }

  void on_done(const scenario::outcome& o, std::shared_ptr<const scenario::scenario> s) {
    std::unique_lock<std::mutex> lock{mutex_};
    final_ = true;
    if (!o)
      end_ = status_of(o);
    else if (!s || !final_fill_(final_message_, *s))
      end_ = Status{StatusCode::NOT_FOUND, "the scenario was deleted while it ran"};
    else
      have_final_ = true;
    pump(lock);
  }

  bool cancelled() const {
    return cancelled_.load();
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock{mutex_};
    writing_ = false;
    if (!ok)
      cancelled_ = true;
    pump(lock);
  }

  void OnCancel() override {
    cancelled_ = true;
  }

  void OnDone() override {
    self_.reset();
  }

  std::shared_ptr<job_stream> self_;

private:
  void pump(std::unique_lock<std::mutex>& lock) {
    if (writing_ || !final_ || finished_)
      return;
    if (have_final_) {
      have_final_ = false;
      writing_ = true;
      lock.unlock();
      this->StartWrite(&final_message_);
      return;
    }
    finished_ = true;
    lock.unlock();
    probe_.on_request(
        method_, code_name(end_.error_code()),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
    this->Finish(end_);
  }

  metrics::grpc_probe& probe_;
  const char* method_;
  fill_progress progress_;
  fill_final final_fill_;
  std::chrono::steady_clock::time_point started_;
  std::mutex mutex_;
  Progress message_;
  Progress final_message_;
  std::chrono::steady_clock::time_point last_sent_{};
  bool writing_ = false;
  bool final_ = false;
  bool have_final_ = false;
  bool finished_ = false;
  Status end_ = Status::OK;
  std::atomic<bool> cancelled_{false};
};

/// Parses the run options shared by RunScenario and SweepScenario.
std::optional<Status> run_options_from(int64_t horizon_ms, int64_t step_ms, double noise,
                                       uint64_t seed, core::run_options& opts) {
  if (horizon_ms < 0 || step_ms < 0)
    return Status{StatusCode::INVALID_ARGUMENT, "horizon_ms and step_ms must not be negative"};
  if (!std::isfinite(noise) || noise < 0 || noise > 10)
    return Status{StatusCode::INVALID_ARGUMENT, "noise must lie in 0..10 (standard deviations)"};
  if (horizon_ms > 0)
    opts.horizon_ms = horizon_ms;
  if (step_ms > 0)
    opts.step_ms = step_ms;
  if (opts.step_ms < 1000)
    return Status{StatusCode::INVALID_ARGUMENT, "step_ms must be at least 1000 (1 s)"};
  opts.noise = noise;
  opts.seed = seed == 0 ? 1 : seed;
  return std::nullopt;
}

std::optional<std::string> statistic_from(const v1::KpiStatistic& p, const char* where,
                                          core::kpi_statistic& out) {
  if (p.kpi().aggregate().empty() || p.kpi().measure().empty())
    return std::string{where} + ".kpi names an aggregate and a measure";
  auto stat = core::parse_kpi_stat(p.stat());
  if (!stat)
    return std::string{where} + ".stat \"" + p.stat() + "\" is not peak, mean, min, last or at";
  out.ref = core::kpi_ref{p.kpi().aggregate(), p.kpi().measure()};
  out.stat = *stat;
  out.at_offset_ms = p.at_offset_ms();
  return std::nullopt;
}

/// The most values a parameter may list or generate.
constexpr size_t max_parameter_values = 10'000;

std::optional<std::string> sweep_from(const v1::SweepScenarioRequest& req,
                                      core::sweep_options& out) {
  if (req.parameters_size() == 0 || req.parameters_size() > 8)
    return std::string{"parameters: give 1 to 8 parameters to vary"};
  for (int i = 0; i < req.parameters_size(); ++i) {
    const auto& p = req.parameters(i);
    const auto where = "parameters[" + std::to_string(i) + "]";
    if (p.input() < 0)
      return where + ".input must not be negative";
    core::sweep_parameter sp{static_cast<size_t>(p.input()), p.field(), {}};
    if (p.values_size() > 0) {
      sp.values.assign(p.values().begin(), p.values().end());
    } else {
      if (!(p.step() > 0) || !std::isfinite(p.from()) || !std::isfinite(p.to()) ||
          p.to() < p.from())
        return where + ": list values, or give from <= to and a step > 0";
      const double n = std::floor((p.to() - p.from()) / p.step() + 1e-9) + 1;
      if (n > static_cast<double>(max_parameter_values))
        return where + ": more than " + std::to_string(max_parameter_values) + " values";
      for (double k = 0; k < n; ++k)
        sp.values.push_back(p.from() + k * p.step());
    }
    if (sp.values.size() > max_parameter_values)
      return where + ": more than " + std::to_string(max_parameter_values) + " values";
    out.parameters.push_back(std::move(sp));
  }
  const auto& obj = req.objective();
  switch (obj.target_case()) {
    case v1::SweepObjective::kKpi: {
      core::kpi_statistic k;
      if (auto err = statistic_from(obj.kpi(), "objective", k))
        return err;
      out.objective = k;
      break;
    }
    case v1::SweepObjective::kParameter:
      if (obj.parameter() < 0)
        return std::string{"objective.parameter must not be negative"};
      out.objective_parameter = static_cast<size_t>(obj.parameter());
      break;
    case v1::SweepObjective::TARGET_NOT_SET:
      return std::string{"objective: optimise a kpi statistic or a parameter"};
  }
  out.maximize = obj.maximize();
  for (int i = 0; i < req.constraints_size(); ++i) {
    const auto& c = req.constraints(i);
    core::sweep_constraint sc;
    const auto where = "constraints[" + std::to_string(i) + "]";
    if (auto err = statistic_from(c.kpi(), where.c_str(), sc.kpi))
      return err;
    if (c.has_max())
      sc.max = c.max();
    if (c.has_min())
      sc.min = c.min();
    out.constraints.push_back(std::move(sc));
  }
  if (req.method().empty() || req.method() == "grid")
    out.method = core::sweep_method::grid;
  else if (req.method() == "coordinate")
    out.method = core::sweep_method::coordinate;
  else if (req.method() == "cobyla")
    out.method = core::sweep_method::cobyla;
  else
    return "method \"" + req.method() + "\" is not grid, coordinate or cobyla";
  if (!(req.tolerance() >= 0 && req.tolerance() < 1))
    return std::string{"tolerance must lie in 0 (0.001) .. 1 (a fraction of each range)"};
  if (req.tolerance() > 0)
    out.tolerance = req.tolerance();
  if (req.max_runs() < 0 || req.max_runs() > 10'000)
    return std::string{"max_runs must lie in 0 (200) .. 10000"};
  out.max_runs = req.max_runs() == 0 ? 200 : static_cast<size_t>(req.max_runs());
  return std::nullopt;
}

void point_to_proto(const core::sweep_point& p, v1::SweepPoint& out) {
  for (double v : p.values)
    out.add_values(v);
  if (p.objective)
    out.set_objective(*p.objective);
  for (const auto& c : p.constraint_values)
    out.add_constraint_values(c ? *c : std::numeric_limits<double>::quiet_NaN());
  out.set_feasible(p.feasible);
  out.set_violation(std::isfinite(p.violation) ? p.violation : std::numeric_limits<double>::max());
}

void selection_to_proto(const core::scenario_selection& s, v1::TwinSelection& out) {
  for (const auto& n : s.names)
    out.add_names("twins/" + n);
  out.set_filter(s.where.text());
}

}  // namespace

Status status_of(const scenario::outcome& o) {
  switch (o.code) {
    case scenario::failure::none:
      return Status::OK;
    case scenario::failure::not_found:
      return {StatusCode::NOT_FOUND, o.message};
    case scenario::failure::exists:
      return {StatusCode::ALREADY_EXISTS, o.message};
    case scenario::failure::exhausted:
      return {StatusCode::RESOURCE_EXHAUSTED, o.message};
    case scenario::failure::invalid:
      return {StatusCode::FAILED_PRECONDITION, o.message};
    case scenario::failure::busy:
      return {StatusCode::FAILED_PRECONDITION, o.message};
    case scenario::failure::unavailable:
      return {StatusCode::UNAVAILABLE, o.message};
  }
  return {StatusCode::INTERNAL, o.message};
}

void sweep_to_proto(const scenario::scenario& s, const scenario::sweep_outcome& o,
                    v1::SweepResult& out) {
  out.set_name(std::string{scenario_prefix} + s.id);
  out.set_method(o.sweep.method == core::sweep_method::grid         ? "grid"
                 : o.sweep.method == core::sweep_method::coordinate ? "coordinate"
                                                                    : "cobyla");
  for (const auto& p : o.sweep.parameters) {
    auto* q = out.add_parameters();
    q->set_input(static_cast<int32_t>(p.input));
    q->set_field(p.field);
    for (double v : p.values)
      q->add_values(v);
  }
  for (const auto& p : o.result.points)
    point_to_proto(p, *out.add_points());
  out.set_found(o.result.found);
  out.set_runs(static_cast<int32_t>(o.result.points.size()));
  out.set_wall_seconds(o.wall_s);
  if (!o.result.best)
    return;
  const auto& best = o.result.points[*o.result.best];
  point_to_proto(best, *out.mutable_best());
  // What applying the best setting would set: each limit that names a setting.
  auto inputs = s.inputs;
  for (size_t i = 0; i < o.sweep.parameters.size(); ++i)
    core::set_parameter(inputs, o.sweep.parameters[i], best.values[i]);
  for (const auto& in : inputs)
    if (const auto* l = std::get_if<core::limit_input>(&in); l && !l->setting.empty()) {
      auto* set = out.add_settings();
      set->set_property(l->setting);
      set->set_value(l->max ? *l->max : l->min.value_or(0));
      selection_to_proto(l->twins, *set->mutable_twins());
    }
}

namespace {

/// A message's attribute map as the core wants it: pairs sorted by key.
std::vector<std::pair<std::string, std::string>> sorted_attributes(
    const google::protobuf::Map<std::string, std::string>& m) {
  std::vector<std::pair<std::string, std::string>> out(m.begin(), m.end());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::optional<core::scenario_input> input_from_proto(const v1::ScenarioInput& p,
                                                     std::string& error) {
  auto failed = [&](std::string why) -> std::optional<core::scenario_input> {
    error = std::move(why);
    return std::nullopt;
  };
  switch (p.input_case()) {
    case v1::ScenarioInput::kProfile: {
      const auto& q = p.profile();
      core::profile_input in;
      if (auto err = selection_from(q.twins(), in.twins))
        return failed("profile." + *err);
      in.property = q.property();
      in.factor = q.factor() == 0 ? 1 : q.factor();
      in.offset = q.offset();
      in.window = window_from(q.window());
      return in;
    }
    case v1::ScenarioInput::kLimit: {
      const auto& q = p.limit();
      core::limit_input in;
      if (auto err = selection_from(q.twins(), in.twins))
        return failed("limit." + *err);
      in.property = q.property();
      if (q.has_min())
        in.min = q.min();
      if (q.has_max())
        in.max = q.max();
      in.window = window_from(q.window());
      in.setting = q.setting();
      return in;
    }
    case v1::ScenarioInput::kTelemetry: {
      const auto& q = p.telemetry();
      core::series_input in;
      if (auto err = selection_from(q.twins(), in.twins))
        return failed("telemetry." + *err);
      in.property = q.property();
      for (const auto& pt : q.points())
        in.points.emplace_back(pt.offset_ms(), pt.value());
      return in;
    }
    case v1::ScenarioInput::kDesired: {
      const auto& q = p.desired();
      core::desired_input in;
      if (auto err = selection_from(q.twins(), in.twins))
        return failed("desired." + *err);
      for (const auto& [k, v] : q.set()) {
        auto val = from_proto(v);
        if (!val)
          return failed("desired.set[\"" + k + "\"]: no value given");
        in.set.emplace_back(k, std::move(*val));
      }
      std::sort(in.set.begin(), in.set.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      in.remove.assign(q.remove().begin(), q.remove().end());
      return in;
    }
    case v1::ScenarioInput::kAddTwins: {
      const auto& q = p.add_twins();
      core::add_twins_input in;
      std::string why;
      auto tmpl = twin_id(q.template_twin(), why);
      if (!tmpl)
        return failed("add_twins.template_twin: " + why);
      in.template_twin = std::move(*tmpl);
      in.count = q.count();
      in.prefix = q.id_prefix();
      in.parent = q.parent();
      in.type = q.relation_type();
      in.attributes = sorted_attributes(q.attributes());
      return in;
    }
    case v1::ScenarioInput::kMove: {
      const auto& q = p.move();
      core::move_input in;
      if (auto err = selection_from(q.twins(), in.twins))
        return failed("move." + *err);
      in.parent = q.parent();
      in.type = q.relation_type();
      return in;
    }
    case v1::ScenarioInput::kAddAggregate: {
      const auto& q = p.add_aggregate();
      core::add_aggregate_input in;
      in.id = q.aggregate();
      in.parent = q.parent();
      in.type = q.relation_type();
      in.attributes = sorted_attributes(q.attributes());
      return in;
    }
    case v1::ScenarioInput::kModel: {
      const auto& q = p.model();
      core::model_input in;
      in.kind = q.kind();
      in.property = q.property();
      if (auto err = threshold_from(q.failure(), "model.failure", in.failure))
        return failed(*err);
      if (auto err = threshold_from(q.warning(), "model.warning", in.warning))
        return failed(*err);
      if (auto err = threshold_from(q.critical(), "model.critical", in.critical))
        return failed(*err);
      return in;
    }
    case v1::ScenarioInput::INPUT_NOT_SET:
      break;
  }
  return failed(
      "set one input: profile, limit, telemetry, desired, add_twins, add_aggregate, move or "
      "model");
}

void scenario_to_proto(const scenario::scenario& s, v1::Scenario& out) {
  out.set_name(std::string{scenario_prefix} + s.id);
  out.set_description(s.description);
  out.set_owner(s.owner);
  out.set_tenant(s.tenant);
  out.set_created_ms(s.created_ms);
  out.set_fork_ms(s.fork.at_ms > 0 ? s.fork.at_ms
                                   : (s.snapshot ? s.snapshot->taken_ms : s.created_ms));
  for (const auto& n : s.fork.names)
    out.add_names("twins/" + n);
  out.set_filter(s.fork.where.text());
  out.set_below(s.fork.below);
  for (size_t i = 0; i < s.inputs.size(); ++i) {
    if (i < s.raw_inputs.size())
      out.add_inputs()->ParseFromString(s.raw_inputs[i]);
    out.add_input_descriptions(core::describe(s.inputs[i]));
  }
  out.set_state(scenario::to_string(s.state));
  out.set_error(s.error);
  out.set_memory_bytes(static_cast<int64_t>(s.memory_bytes()));
  std::vector<int32_t> covered = s.partitions;
  for (const auto& part : s.parts) {
    covered.insert(covered.end(), part.partitions.begin(), part.partitions.end());
    out.add_part_nodes(part.endpoint);
  }
  std::sort(covered.begin(), covered.end());
  for (auto p : covered)
    out.add_partitions(p);
}

void result_to_proto(const scenario::scenario& s, const scenario::run_outcome& run,
                     const scenario::scenario* other, bool summary_only, v1::ScenarioResult& out) {
  const auto& mine = run.scenario;
  const auto& base = other ? other->last->scenario : run.baseline;
  out.set_name(std::string{scenario_prefix} + s.id);
  out.set_compared_with(other ? std::string{scenario_prefix} + other->id : "baseline");
  out.set_horizon_ms(run.options.horizon_ms);
  out.set_step_ms(run.options.step_ms);
  out.set_seed(run.options.seed);
  out.set_noise(run.options.noise);
  const auto c = core::compare(base, mine);
  if (!summary_only) {
    for (auto t : mine.times)
      out.add_times(t);
    for (const auto& k : mine.kpis)
      series_to_proto(k, *out.add_kpis());
    for (const auto& k : base.kpis)
      series_to_proto(k, *out.add_base_kpis());
    for (const auto& a : mine.alerts)
      alert_to_proto(a, *out.add_alerts());
    for (const auto& f : mine.failures)
      failure_to_proto(f, *out.add_failures());
  }
  for (const auto& d : c.kpis) {
    auto* k = out.add_summary();
    k->mutable_kpi()->set_aggregate(d.ref.aggregate);
    k->mutable_kpi()->set_measure(d.ref.measure);
    if (d.peak)
      k->set_peak(*d.peak);
    if (d.mean)
      k->set_mean(*d.mean);
    if (d.base_peak)
      k->set_base_peak(*d.base_peak);
    if (d.base_mean)
      k->set_base_mean(*d.base_mean);
    k->set_peak_ms(d.peak_ms);
  }
  for (const auto& a : c.new_alerts)
    alert_to_proto(a, *out.add_new_alerts());
  for (const auto& a : c.gone_alerts)
    alert_to_proto(a, *out.add_gone_alerts());
  for (const auto& f : c.new_failures)
    failure_to_proto(f, *out.add_new_failures());
  stats_to_proto(mine, run.wall_s, run.options.horizon_ms, *out.mutable_stats());
  if (other)
    stats_to_proto(base, other->last->wall_s, other->last->options.horizon_ms,
                   *out.mutable_base_stats());
  else
    stats_to_proto(base, run.base_wall_s, run.options.horizon_ms, *out.mutable_base_stats());
}

scenario_service::scenario_service(scenario::registry& scenarios, twin_backend& backend,
                                   query_pool& pool, metrics::grpc_probe& probe,
                                   std::shared_ptr<runtime::models_holder> models,
                                   result_exporter exporter, std::string export_topic)
    : scenarios_(scenarios),
      backend_(backend),
      pool_(pool),
      probe_(probe),
      models_(std::move(models)),
      create_(probe.method("CreateScenario")),
      get_(probe.method("GetScenario")),
      list_(probe.method("ListScenarios")),
      delete_(probe.method("DeleteScenario")),
      add_inputs_(probe.method("AddScenarioInputs")),
      result_(probe.method("GetScenarioResult")),
      sweep_result_(probe.method("GetSweepResult")),
      export_(probe.method("ExportScenarioResult")),
      exporter_(std::move(exporter)),
      export_topic_(std::move(export_topic)) {}

::grpc::ServerUnaryReactor* scenario_service::CreateScenario(::grpc::CallbackServerContext* ctx,
                                                             const v1::CreateScenarioRequest* req,
                                                             v1::Scenario* resp) {
  call c{ctx, create_};
  if (!c.admit(backend_))
    return c.reactor();
  c.audit(backend_, std::string{service_prefix} + "CreateScenario",
          std::string{scenario_prefix} + req->scenario_id(), false);
  scenario::scenario s;
  s.id = req->scenario_id();
  if (auto why = scenario::validate_id(s.id)) {
    c.finish({StatusCode::INVALID_ARGUMENT, "scenario_id: " + *why});
    return c.reactor();
  }
  s.description = req->description();
  s.owner = c.who() ? c.who()->subject : std::string{};
  s.tenant = tenant_of(c);
  // The other nodes' parts of the fork are read on the creator's behalf.
  s.forward_as = c.forward_metadata();
  for (int i = 0; i < req->names_size(); ++i) {
    std::string error;
    auto id = twin_id(req->names(i), error);
    if (!id) {
      c.finish({StatusCode::INVALID_ARGUMENT, "names[" + std::to_string(i) + "]: " + error});
      return c.reactor();
    }
    s.fork.names.push_back(std::move(*id));
  }
  if (auto err = core::filter::parse(req->filter(), s.fork.where)) {
    c.finish({StatusCode::INVALID_ARGUMENT, "filter: " + filter_error(*err)});
    return c.reactor();
  }
  if (auto why = privacy{c.who(), models_.get()}.refuses(s.fork.where)) {
    c.finish({StatusCode::PERMISSION_DENIED, *why});
    return c.reactor();
  }
  s.fork.below = req->below();
  s.fork.at_ms = req->at_ms();
  if (s.fork.at_ms < 0) {
    c.finish({StatusCode::INVALID_ARGUMENT, "at_ms: a time in ms since the epoch, or 0 (now)"});
    return c.reactor();
  }
  const int given = (s.fork.names.empty() ? 0 : 1) + (s.fork.where.matches_all() ? 0 : 1) +
                    (s.fork.below.empty() ? 0 : 1);
  if (given != 1) {
    c.finish({StatusCode::INVALID_ARGUMENT,
              "fork exactly one of: names (\"twins/{asset_id}\"), filter, or below (an "
              "aggregate such as \"feeders/f1\")"});
    return c.reactor();
  }
  auto& scenarios = scenarios_;
  const bool queued = pool_.submit([c, resp, &scenarios, s = std::move(s)]() mutable {
    std::shared_ptr<const scenario::scenario> made;
    const auto o = scenarios.create(std::move(s), made);
    if (o)
      scenario_to_proto(*made, *resp);
    c.finish(status_of(o));
  });
  if (!queued)
    c.finish({StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
  return c.reactor();
}

std::shared_ptr<const scenario::scenario> scenario_service::lookup(const call& c,
                                                                   const std::string& name) {
  std::string error;
  auto id = parse_scenario_name(name, error);
  if (!id) {
    c.finish({StatusCode::INVALID_ARGUMENT, error});
    return nullptr;
  }
  auto s = scenarios_.get(*id, tenant_of(c));
  if (!s)
    c.finish({StatusCode::NOT_FOUND, "scenario \"" + name + "\" does not exist"});
  return s;
}

::grpc::ServerUnaryReactor* scenario_service::GetScenario(::grpc::CallbackServerContext* ctx,
                                                          const v1::GetScenarioRequest* req,
                                                          v1::Scenario* resp) {
  call c{ctx, get_};
  if (!c.admit(backend_))
    return c.reactor();
  auto s = lookup(c, req->name());
  if (!s)
    return c.reactor();
  scenario_to_proto(*s, *resp);
  c.finish(Status::OK);
  return c.reactor();
}

::grpc::ServerUnaryReactor* scenario_service::ListScenarios(::grpc::CallbackServerContext* ctx,
                                                            const v1::ListScenariosRequest* req,
                                                            v1::ListScenariosResponse* resp) {
  call c{ctx, list_};
  if (!c.admit(backend_))
    return c.reactor();
  if (req->page_size() < 0) {
    c.finish({StatusCode::INVALID_ARGUMENT, "page_size must not be negative"});
    return c.reactor();
  }
  const auto n = static_cast<size_t>(req->page_size() == 0 ? default_page
                                                           : std::min(req->page_size(), max_page));
  auto page = scenarios_.list(req->page_token(), n + 1, tenant_of(c));
  if (page.size() > n) {
    page.resize(n);
    resp->set_next_page_token(page.back()->id);
  }
  for (const auto& s : page)
    scenario_to_proto(*s, *resp->add_scenarios());
  c.finish(Status::OK);
  return c.reactor();
}

::grpc::ServerUnaryReactor* scenario_service::DeleteScenario(::grpc::CallbackServerContext* ctx,
                                                             const v1::DeleteScenarioRequest* req,
                                                             v1::DeleteScenarioResponse*) {
  call c{ctx, delete_};
  if (!c.admit(backend_))
    return c.reactor();
  c.audit(backend_, std::string{service_prefix} + "DeleteScenario", req->name(), false);
  std::string error;
  auto id = parse_scenario_name(req->name(), error);
  if (!id) {
    c.finish({StatusCode::INVALID_ARGUMENT, error});
    return c.reactor();
  }
  c.finish(status_of(scenarios_.remove(*id, tenant_of(c))));
  return c.reactor();
}

::grpc::ServerUnaryReactor* scenario_service::AddScenarioInputs(
    ::grpc::CallbackServerContext* ctx, const v1::AddScenarioInputsRequest* req,
    v1::Scenario* resp) {
  call c{ctx, add_inputs_};
  if (!c.admit(backend_))
    return c.reactor();
  c.audit(backend_, std::string{service_prefix} + "AddScenarioInputs", req->name(), false);
  std::string error;
  auto id = parse_scenario_name(req->name(), error);
  if (!id) {
    c.finish({StatusCode::INVALID_ARGUMENT, error});
    return c.reactor();
  }
  if (req->inputs_size() == 0 && !req->replace()) {
    c.finish({StatusCode::INVALID_ARGUMENT, "inputs: give at least one input"});
    return c.reactor();
  }
  std::vector<core::scenario_input> inputs;
  std::vector<std::string> raw;
  const privacy guard{c.who(), models_.get()};
  for (int i = 0; i < req->inputs_size(); ++i) {
    auto in = input_from_proto(req->inputs(i), error);
    if (!in) {
      c.finish({StatusCode::INVALID_ARGUMENT, "inputs[" + std::to_string(i) + "]." + error});
      return c.reactor();
    }
    if (auto why = core::check_input(*in)) {
      c.finish({StatusCode::INVALID_ARGUMENT, "inputs[" + std::to_string(i) + "]: " + *why});
      return c.reactor();
    }
    const core::filter* f = std::visit(
        [](const auto& x) -> const core::filter* {
          if constexpr (requires { x.twins.where; })
            return &x.twins.where;
          return nullptr;
        },
        *in);
    if (f)
      if (auto why = guard.refuses(*f)) {
        c.finish({StatusCode::PERMISSION_DENIED, "inputs[" + std::to_string(i) + "]: " + *why});
        return c.reactor();
      }
    inputs.push_back(std::move(*in));
    raw.push_back(req->inputs(i).SerializeAsString());
  }
  std::shared_ptr<const scenario::scenario> s;
  const auto o = scenarios_.add_inputs(*id, tenant_of(c), std::move(inputs), std::move(raw),
                                       req->replace(), s);
  if (o)
    scenario_to_proto(*s, *resp);
  c.finish(status_of(o));
  return c.reactor();
}

namespace {

/// Starts a job of the registry with its run options, progress, end and cancellation.
using job_starter = std::function<scenario::outcome(
    const std::string& id, const std::string& tenant, core::run_options opts,
    scenario::run_progress progress, scenario::run_done done, std::function<bool()> cancelled)>;

/// What RunScenario and SweepScenario share: admission, the scenario's name and run options,
/// the audit entry, and the stream the job reports to. `parse` reads the rest of the
/// request (an error refuses the call).
template <class Progress, class Request>
::grpc::ServerWriteReactor<Progress>* open_job(
    twin_backend& backend, metrics::grpc_probe& probe, const char* method,
    ::grpc::CallbackServerContext* ctx, const Request& req,
    const std::function<std::optional<Status>(core::run_options&)>& parse,
    typename job_stream<Progress>::fill_progress fill_progress,
    typename job_stream<Progress>::fill_final fill_final, const job_starter& start) {
  const auto started = std::chrono::steady_clock::now();
  auto fail = [&](Status s) {
    probe.on_request(
        method, code_name(s.error_code()),
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    return new failed_stream<Progress>(std::move(s));
  };
  auto who = caller_of(*ctx);
  if (auto* gate = backend.gate()) {
    std::string principal = who ? who->subject : principal_for({}, ctx->peer());
    if (auto s = admit_stream(*gate, *ctx, principal); !s.ok())
      return fail(std::move(s));
  }
  std::string error;
  auto id = parse_scenario_name(req.name(), error);
  if (!id)
    return fail({StatusCode::INVALID_ARGUMENT, error});
  core::run_options opts;
  if (auto bad = run_options_from(req.horizon_ms(), req.step_ms(), req.noise(), req.seed(), opts))
    return fail(std::move(*bad));
  if (auto bad = parse(opts))
    return fail(std::move(*bad));
  {
    auto e = audit_entry_of(who, std::string{service_prefix} + method, req.name());
    e.time_ms = wall_ms();
    e.code = "OK";
    backend.audit(std::move(e));
  }
  using stream_type = job_stream<Progress>;
  auto stream =
      std::make_shared<stream_type>(probe, method, std::move(fill_progress), std::move(fill_final));
  stream->self_ = stream;
  std::weak_ptr<stream_type> weak = stream;
  const auto o = start(
      *id, who ? who->tenant : std::string{}, std::move(opts),
      [weak](uint64_t done, uint64_t total, double speed) {
        if (auto s = weak.lock())
          s->on_progress(done, total, speed);
      },
      [stream](const scenario::outcome& o, std::shared_ptr<const scenario::scenario> s) {
        stream->on_done(o, std::move(s));
      },
      [weak] {
        auto s = weak.lock();
        return !s || s->cancelled();
      });
  if (!o) {
    stream->self_.reset();
    return fail(status_of(o));
  }
  return stream.get();
}

}  // namespace

::grpc::ServerWriteReactor<v1::RunScenarioProgress>* scenario_service::RunScenario(
    ::grpc::CallbackServerContext* ctx, const v1::RunScenarioRequest* req) {
  auto& scenarios = scenarios_;
  return open_job<v1::RunScenarioProgress>(
      backend_, probe_, "RunScenario", ctx, *req,
      [req](core::run_options& opts) -> std::optional<Status> {
        if (req->kpis_size() > 64)
          return Status{StatusCode::INVALID_ARGUMENT, "at most 64 kpis"};
        for (const auto& k : req->kpis()) {
          if (k.aggregate().empty() || k.measure().empty())
            return Status{StatusCode::INVALID_ARGUMENT,
                          "each kpi names an aggregate and a measure"};
          opts.kpis.push_back(core::kpi_ref{k.aggregate(), k.measure()});
        }
        return std::nullopt;
      },
      [](v1::RunScenarioProgress& m, uint64_t done, uint64_t total, double speed) {
        m.set_steps_done(static_cast<int64_t>(done));
        m.set_steps_total(static_cast<int64_t>(total));
        m.set_speed(speed);
      },
      [](v1::RunScenarioProgress& m, const scenario::scenario& s) {
        if (!s.last)
          return false;
        const auto& r = *s.last;
        m.set_done(true);
        const auto total = static_cast<int64_t>(2 * r.scenario.times.size());
        m.set_steps_done(total);
        m.set_steps_total(total);
        const double wall = r.base_wall_s + r.wall_s;
        m.set_speed(wall > 0 ? 2.0 * static_cast<double>(r.options.horizon_ms) / 1000.0 / wall : 0);
        result_to_proto(s, r, nullptr, false, *m.mutable_result());
        return true;
      },
      [&scenarios](const std::string& id, const std::string& tenant, core::run_options opts,
                   scenario::run_progress progress, scenario::run_done done,
                   std::function<bool()> cancelled) {
        return scenarios.start_run(id, tenant, std::move(opts), std::move(progress),
                                   std::move(done), std::move(cancelled));
      });
}

::grpc::ServerWriteReactor<v1::SweepScenarioProgress>* scenario_service::SweepScenario(
    ::grpc::CallbackServerContext* ctx, const v1::SweepScenarioRequest* req) {
  auto& scenarios = scenarios_;
  auto sweep = std::make_shared<core::sweep_options>();
  return open_job<v1::SweepScenarioProgress>(
      backend_, probe_, "SweepScenario", ctx, *req,
      [req, sweep](core::run_options&) -> std::optional<Status> {
        if (auto err = sweep_from(*req, *sweep))
          return Status{StatusCode::INVALID_ARGUMENT, *err};
        return std::nullopt;
      },
      [](v1::SweepScenarioProgress& m, uint64_t done, uint64_t total, double) {
        m.set_runs_done(static_cast<int32_t>(done));
        m.set_runs_total(static_cast<int32_t>(total));
      },
      [](v1::SweepScenarioProgress& m, const scenario::scenario& s) {
        if (!s.last_sweep)
          return false;
        m.set_done(true);
        const auto runs = static_cast<int32_t>(s.last_sweep->result.points.size());
        m.set_runs_done(runs);
        m.set_runs_total(runs);
        sweep_to_proto(s, *s.last_sweep, *m.mutable_result());
        return true;
      },
      [&scenarios, sweep](const std::string& id, const std::string& tenant, core::run_options opts,
                          scenario::run_progress progress, scenario::run_done done,
                          std::function<bool()> cancelled) {
        return scenarios.start_sweep(id, tenant, std::move(opts), std::move(*sweep),
                                     std::move(progress), std::move(done), std::move(cancelled));
      });
}

::grpc::ServerUnaryReactor* scenario_service::GetSweepResult(::grpc::CallbackServerContext* ctx,
                                                             const v1::GetSweepResultRequest* req,
                                                             v1::SweepResult* resp) {
  call c{ctx, sweep_result_};
  if (!c.admit(backend_))
    return c.reactor();
  auto s = lookup(c, req->name());
  if (!s)
    return c.reactor();
  if (!s->last_sweep) {
    c.finish({StatusCode::FAILED_PRECONDITION,
              "scenario \"" + req->name() + "\" has no sweep result; sweep it with SweepScenario"});
    return c.reactor();
  }
  sweep_to_proto(*s, *s->last_sweep, *resp);
  c.finish(Status::OK);
  return c.reactor();
}

::grpc::ServerUnaryReactor* scenario_service::GetScenarioResult(
    ::grpc::CallbackServerContext* ctx, const v1::GetScenarioResultRequest* req,
    v1::ScenarioResult* resp) {
  call c{ctx, result_};
  if (!c.admit(backend_))
    return c.reactor();
  auto s = lookup(c, req->name());
  if (!s)
    return c.reactor();
  if (!s->last) {
    c.finish({StatusCode::FAILED_PRECONDITION,
              "scenario \"" + req->name() + "\" has no result yet (" +
                  scenario::to_string(s->state) + (s->error.empty() ? "" : ": " + s->error) +
                  "); run it with RunScenario"});
    return c.reactor();
  }
  std::shared_ptr<const scenario::scenario> other;
  if (!req->compare_with().empty()) {
    other = lookup(c, req->compare_with());
    if (!other)
      return c.reactor();
    if (!other->last) {
      c.finish({StatusCode::FAILED_PRECONDITION,
                "scenario \"" + req->compare_with() + "\" has no result to compare with"});
      return c.reactor();
    }
  }
  result_to_proto(*s, *s->last, other.get(), req->summary_only(), *resp);
  c.finish(Status::OK);
  return c.reactor();
}

std::vector<kafka::export_record> export_records_of(const scenario::scenario& s,
                                                    const scenario::run_outcome& run) {
  std::vector<kafka::export_record> out;
  google::protobuf::util::JsonPrintOptions json;
  json.preserve_proto_field_names = true;
  const auto& mine = run.scenario;
  const std::string run_id = s.id + "/" + std::to_string(run.finished_ms);
  for (const auto& k : mine.kpis) {
    const core::kpi_series* base = nullptr;
    for (const auto& b : run.baseline.kpis)
      if (b.ref == k.ref)
        base = &b;
    for (size_t i = 0; i < k.values.size() && i < mine.times.size(); ++i) {
      v1::ScenarioKpiPoint p;
      p.set_scenario(std::string{scenario_prefix} + s.id);
      p.set_run_ms(run.finished_ms);
      p.set_aggregate(k.ref.aggregate);
      p.set_measure(k.ref.measure);
      p.set_step(static_cast<int64_t>(i + 1));
      p.set_time_ms(mine.times[i]);
      if (k.values[i])
        p.set_value(*k.values[i]);
      if (base && i < base->values.size() && base->values[i])
        p.set_base_value(*base->values[i]);
      kafka::export_record r;
      r.key = s.id;
      google::protobuf::util::MessageToJsonString(p, &r.value, json);
      r.type = "fleettwin.scenario.kpi";
      r.id = run_id + "/" + k.ref.aggregate + "/" + k.ref.measure + "/" + std::to_string(i + 1);
      out.push_back(std::move(r));
    }
  }
  v1::ScenarioResult summary;
  result_to_proto(s, run, nullptr, true, summary);
  kafka::export_record r;
  r.key = s.id;
  google::protobuf::util::MessageToJsonString(summary, &r.value, json);
  r.type = "fleettwin.scenario.result";
  r.id = run_id;
  out.push_back(std::move(r));
  return out;
}

::grpc::ServerUnaryReactor* scenario_service::ExportScenarioResult(
    ::grpc::CallbackServerContext* ctx, const v1::ExportScenarioResultRequest* req,
    v1::ExportScenarioResultResponse* resp) {
  call c{ctx, export_};
  if (!c.admit(backend_))
    return c.reactor();
  c.audit(backend_, std::string{service_prefix} + "ExportScenarioResult", req->name(), false);
  auto s = lookup(c, req->name());
  if (!s)
    return c.reactor();
  if (!s->last) {
    c.finish({StatusCode::FAILED_PRECONDITION,
              "scenario \"" + req->name() + "\" has no result to export; run it first"});
    return c.reactor();
  }
  if (!exporter_) {
    c.finish({StatusCode::FAILED_PRECONDITION, "this node exports no scenario results"});
    return c.reactor();
  }
  const bool queued = pool_.submit([c, resp, s, exporter = exporter_, topic = export_topic_] {
    const auto records = export_records_of(*s, *s->last);
    std::string error;
    if (!exporter(records, error)) {
      c.finish({StatusCode::UNAVAILABLE, error});
      return;
    }
    resp->set_topic(topic);
    resp->set_records(static_cast<int64_t>(records.size()));
    c.finish(Status::OK);
  });
  if (!queued)
    c.finish({StatusCode::RESOURCE_EXHAUSTED, "too many queries in progress; retry with backoff"});
  return c.reactor();
}

}  // namespace fleettwin::grpc_api

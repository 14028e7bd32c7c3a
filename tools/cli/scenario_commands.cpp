#include "tools/cli/scenario_commands.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <tuple>

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <CLI/CLI.hpp>

#include "actors/core/asset_model.hpp"
#include "fleettwin/v1/scenario.grpc.pb.h"
#include "tools/cli/commands.hpp"
#include "tools/cli/format.hpp"
#include "tools/cli/interrupter.hpp"
#include "tools/cli/parse.hpp"
#include "tools/cli/run.hpp"

namespace fleettwin::cli {

namespace {

std::string scenario_name(const std::string& id) {
  return id.starts_with("scenarios/") ? id : "scenarios/" + id;
}

/// Splits "a:b:c" at every ':'.
std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in{text};
  while (std::getline(in, part, sep))
    out.push_back(part);
  return out;
}

double number(const std::string& text, const std::string& what) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && std::isfinite(v))
      return v;
  } catch (const std::exception&) {
  }
  throw usage_error(what + ": \"" + text + "\" is not a number");
}

/// "feeders/f1:utilisation[:peak]" -> a KPI statistic.
v1::KpiStatistic statistic(const std::string& text) {
  const auto parts = split(text, ':');
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty())
    throw usage_error("\"" + text +
                      "\" is not AGGREGATE:MEASURE[:STAT] (e.g. feeders/f1:utilisation:peak)");
  v1::KpiStatistic k;
  k.mutable_kpi()->set_aggregate(parts[0]);
  k.mutable_kpi()->set_measure(parts[1]);
  if (parts.size() == 3)
    k.set_stat(parts[2]);
  return k;
}

v1::TwinSelection selection(const scenario_options& o) {
  v1::TwinSelection s;
  for (const auto& a : o.twins)
    s.add_names(twin_name(a));
  s.set_filter(o.where);
  return s;
}

void window(const scenario_options& o, v1::RunWindow& w) {
  if (!o.from.empty())
    w.set_start_ms(parse_span(o.from));
  if (!o.to.empty())
    w.set_end_ms(parse_span(o.to));
}

/// --attr KEY=VALUE options into an attribute map.
void put_attributes(const std::vector<std::string>& given,
                    google::protobuf::Map<std::string, std::string>& out) {
  for (const auto& kv : given) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      throw usage_error("--attr takes KEY=VALUE, got \"" + kv + "\"");
    out[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
}

/// The inputs the command line gives: JSON, a file of JSON, and shorthands.
std::vector<v1::ScenarioInput> inputs_of(const scenario_options& o) {
  std::vector<v1::ScenarioInput> out;
  auto parse = [&](const std::string& json, const std::string& where) {
    v1::ScenarioInput in;
    if (auto st = google::protobuf::util::JsonStringToMessage(json, &in); !st.ok())
      throw usage_error(where + " is not a ScenarioInput in JSON: " + std::string{st.message()});
    out.push_back(std::move(in));
  };
  for (const auto& json : o.inputs)
    parse(json, "--input");
  if (!o.file.empty()) {
    std::ifstream f{o.file};
    if (!f)
      throw usage_error("cannot read " + o.file);
    std::stringstream text;
    text << f.rdbuf();
    // A JSON array of inputs, or one input per line.
    const auto body = text.str();
    if (body.find_first_not_of(" \t\r\n") != std::string::npos &&
        body[body.find_first_not_of(" \t\r\n")] == '[') {
      v1::AddScenarioInputsRequest wrapped;
      if (auto st =
              google::protobuf::util::JsonStringToMessage("{\"inputs\":" + body + "}", &wrapped);
          !st.ok())
        throw usage_error(o.file +
                          " is not a JSON array of ScenarioInput: " + std::string{st.message()});
      for (auto& in : *wrapped.mutable_inputs())
        out.push_back(std::move(in));
    } else {
      std::istringstream lines{body};
      std::string line;
      int n = 0;
      while (std::getline(lines, line)) {
        ++n;
        if (line.find_first_not_of(" \t\r") != std::string::npos)
          parse(line, o.file + ":" + std::to_string(n));
      }
    }
  }
  if (!o.profile.empty()) {
    const auto eq = o.profile.find('=');
    if (eq == std::string::npos)
      throw usage_error("--profile takes PROPERTY=FACTOR (e.g. power=1.3)");
    v1::ScenarioInput in;
    auto* p = in.mutable_profile();
    *p->mutable_twins() = selection(o);
    p->set_property(o.profile.substr(0, eq));
    p->set_factor(number(o.profile.substr(eq + 1), "--profile"));
    window(o, *p->mutable_window());
    out.push_back(std::move(in));
  }
  if (!o.limit.empty()) {
    const auto le = o.limit.find("<="), ge = o.limit.find(">=");
    if (le == std::string::npos && ge == std::string::npos)
      throw usage_error("--limit takes PROPERTY<=MAX or PROPERTY>=MIN (e.g. power<=7)");
    const auto at = le != std::string::npos ? le : ge;
    v1::ScenarioInput in;
    auto* l = in.mutable_limit();
    *l->mutable_twins() = selection(o);
    l->set_property(o.limit.substr(0, at));
    const double v = number(o.limit.substr(at + 2), "--limit");
    if (le != std::string::npos)
      l->set_max(v);
    else
      l->set_min(v);
    l->set_setting(o.setting);
    window(o, *l->mutable_window());
    out.push_back(std::move(in));
  }
  if (!o.series.empty()) {
    const auto eq = o.series.find('=');
    if (eq == std::string::npos)
      throw usage_error("--series takes PROPERTY=VALUE[@OFFSET],... (e.g. power=5,30@3h)");
    v1::ScenarioInput in;
    auto* t = in.mutable_telemetry();
    *t->mutable_twins() = selection(o);
    t->set_property(o.series.substr(0, eq));
    for (const auto& point : split(o.series.substr(eq + 1), ',')) {
      const auto at = point.find('@');
      auto* pt = t->add_points();
      pt->set_value(number(point.substr(0, at), "--series"));
      if (at != std::string::npos)
        pt->set_offset_ms(parse_span(point.substr(at + 1)));
    }
    out.push_back(std::move(in));
  }
  if (!o.desired.empty()) {
    v1::ScenarioInput in;
    auto* d = in.mutable_desired();
    *d->mutable_twins() = selection(o);
    for (const auto& text : o.desired) {
      auto [key, value] = parse_assignment(text);
      (*d->mutable_set())[key] = std::move(value);
    }
    out.push_back(std::move(in));
  }
  if (o.add > 0) {
    if (o.template_twin.empty() || o.parent.empty() || o.relation_type.empty())
      throw usage_error("--add N needs --template ASSET, --parent AGGREGATE and --type RELATION");
    v1::ScenarioInput in;
    auto* a = in.mutable_add_twins();
    a->set_template_twin(twin_name(o.template_twin));
    a->set_count(o.add);
    a->set_id_prefix(o.prefix.empty() ? "new-" : o.prefix);
    a->set_parent(o.parent);
    a->set_relation_type(o.relation_type);
    put_attributes(o.attributes, *a->mutable_attributes());
    out.push_back(std::move(in));
  }
  if (!o.add_aggregate.empty()) {
    if (o.add > 0)
      throw usage_error("--add-aggregate and --add go in separate commands (both use --parent)");
    if (o.parent.empty() != o.relation_type.empty())
      throw usage_error(
          "--add-aggregate takes --parent AGGREGATE with --type RELATION, or neither");
    v1::ScenarioInput in;
    auto* a = in.mutable_add_aggregate();
    a->set_aggregate(o.add_aggregate);
    a->set_parent(o.parent);
    a->set_relation_type(o.relation_type);
    put_attributes(o.attributes, *a->mutable_attributes());
    out.push_back(std::move(in));
  }
  if (!o.move_to.empty()) {
    if (o.relation_type.empty() || (o.where.empty() && o.twins.empty()))
      throw usage_error("--move-to AGGREGATE needs --type RELATION and --where or --twin");
    v1::ScenarioInput in;
    auto* m = in.mutable_move();
    *m->mutable_twins() = selection(o);
    m->set_parent(o.move_to);
    m->set_relation_type(o.relation_type);
    out.push_back(std::move(in));
  }
  return out;
}

/// A progress line on a terminal, rewritten at most every 100 ms.
class progress_line {
public:
  explicit progress_line(session& s)
      : s_(s), tty_(!s.json() && &s.err() == &std::cerr && isatty(STDERR_FILENO)) {}
  ~progress_line() {
    if (shown_)
      s_.err() << '\n';
  }
  void show(int64_t done, int64_t total, const std::string& what) {
    const auto now = std::chrono::steady_clock::now();
    if (!tty_ || total <= 0 || now - at_ < std::chrono::milliseconds{100})
      return;
    at_ = now;
    const int width = 30;
    const int filled = static_cast<int>(width * std::min<int64_t>(done, total) / total);
    s_.err() << fmt::format("\r[{}{}] {:3d}% {}   ", std::string(filled, '#'),
                            std::string(width - filled, '.'), 100 * done / total, what);
    s_.err().flush();
    shown_ = true;
  }

private:
  session& s_;
  bool tty_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point at_{};
};

/// Reads a run's or sweep's progress stream: a progress bar on a terminal (`counts`: done,
/// total and a text), each message with --json, and the last message's result into
/// `result`. Returns how the stream ended.
template <class Progress, class Result, class Counts>
grpc::Status follow(session& s, grpc::ClientReader<Progress>& reader, Result& result,
                    const Counts& counts) {
  Progress m;
  {
    progress_line line{s};
    while (reader.Read(&m)) {
      if (s.json() && !m.done())
        s.out() << to_json(m) << '\n';
      const auto [done, total, text] = counts(m);
      line.show(done, total, text);
      if (m.done())
        result = m.result();
    }
  }
  return reader.Finish();
}

std::string opt(bool has, double v) {
  return has ? fmt::format("{:.6g}", v) : "-";
}

void print_result(session& s, const v1::ScenarioResult& r, bool series) {
  auto& out = s.out();
  // A summary carries no series: its steps are in the run's statistics.
  const int64_t steps = r.times_size() > 0 ? r.times_size() : r.stats().steps();
  out << fmt::format("{} against {}: {} steps of {} over {}{}\n", r.name(), r.compared_with(),
                     steps, core::format_duration(r.step_ms()),
                     core::format_duration(r.horizon_ms()),
                     r.noise() > 0 ? fmt::format(", noise {} seed {}", r.noise(), r.seed()) : "");
  out << fmt::format("{:<40} {:>12} {:>12} {:>12} {:>12}  {}\n", "KPI", "base peak", "peak",
                     "base mean", "mean", "peak at");
  for (const auto& k : r.summary())
    out << fmt::format("{:<40} {:>12} {:>12} {:>12} {:>12}  {}\n",
                       k.kpi().aggregate() + " " + k.kpi().measure(),
                       opt(k.has_base_peak(), k.base_peak()), opt(k.has_peak(), k.peak()),
                       opt(k.has_base_mean(), k.base_mean()), opt(k.has_mean(), k.mean()),
                       k.peak_ms() > 0 ? format_time(k.peak_ms()) : "-");
  if (series) {
    for (int i = 0; i < r.kpis_size(); ++i) {
      const auto& k = r.kpis(i);
      out << k.kpi().aggregate() << " " << k.kpi().measure() << ":";
      for (double v : k.values())
        out << ' ' << (std::isnan(v) ? std::string{"-"} : fmt::format("{:.6g}", v));
      out << '\n';
    }
  }
  auto alerts = [&](const char* title, const auto& list) {
    if (list.empty())
      return;
    out << title << " (" << list.size() << "):\n";
    int n = 0;
    for (const auto& a : list) {
      if (++n > 20) {
        out << "  ...\n";
        break;
      }
      out << fmt::format("  {} {} {} {} at {}\n", a.twin(), a.property(), a.severity(), a.kind(),
                         format_time(a.time_ms()));
    }
  };
  alerts("alerts only in the scenario", r.new_alerts());
  alerts("alerts only in the baseline", r.gone_alerts());
  if (!r.new_failures().empty()) {
    out << "failures new or earlier (" << r.new_failures_size() << "):\n";
    int n = 0;
    for (const auto& f : r.new_failures()) {
      if (++n > 20) {
        out << "  ...\n";
        break;
      }
      out << fmt::format("  {} {} {}\n", f.twin(), f.property(),
                         f.time_ms() > 0 ? "fails at " + format_time(f.time_ms())
                                         : "forecast to fail at " + format_time(f.eta_ms()));
    }
  }
  const auto& st = r.stats();
  out << fmt::format(
      "scenario: {} twins, {} samples, {} alerts, {} failures; {:.3f} s ({:.0f}x real time)\n",
      st.twins(), st.samples(), st.alerts_total(), st.failures_total(), st.wall_seconds(),
      st.speed());
}

void print_scenario(session& s, const v1::Scenario& sc) {
  auto& out = s.out();
  std::string fork = !sc.below().empty()    ? "everything below " + sc.below()
                     : !sc.filter().empty() ? "twins where " + sc.filter()
                                            : std::to_string(sc.names_size()) + " named twin(s)";
  out << fmt::format("{}  {}  forked {} at {}{}\n", sc.name(), sc.state(), fork,
                     format_time(sc.fork_ms()),
                     sc.description().empty() ? "" : " — " + sc.description());
  for (int i = 0; i < sc.input_descriptions_size(); ++i)
    out << fmt::format("  input {}: {}\n", i, sc.input_descriptions(i));
  if (!sc.error().empty())
    out << "  error: " << sc.error() << '\n';
}

/// The answer of a call that returns a scenario.
int show(session& s, const grpc::Status& st, const v1::Scenario& sc) {
  if (!st.ok())
    return s.fail(st);
  if (s.json())
    s.out() << to_json(sc) << '\n';
  else
    print_scenario(s, sc);
  return exit_ok;
}

int create(session& s, const scenario_options& o, v1::ScenarioService::Stub& stub) {
  v1::CreateScenarioRequest req;
  req.set_scenario_id(o.id);
  req.set_description(o.description);
  req.set_below(o.below);
  req.set_filter(o.filter);
  if (!o.at.empty())
    req.set_at_ms(parse_time(o.at, std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count()));
  for (const auto& a : o.assets)
    req.add_names(twin_name(a));
  grpc::ClientContext ctx;
  s.set_deadline(ctx);
  v1::Scenario sc;
  const auto st = stub.CreateScenario(&ctx, req, &sc);
  return show(s, st, sc);
}

int apply_input(session& s, const scenario_options& o, v1::ScenarioService::Stub& stub) {
  v1::AddScenarioInputsRequest req;
  req.set_name(scenario_name(o.id));
  req.set_replace(o.replace);
  for (auto& in : inputs_of(o))
    *req.add_inputs() = std::move(in);
  if (req.inputs_size() == 0 && !o.replace)
    throw usage_error(
        "no input given: --profile, --limit, --series, --desired, --add, --input JSON or --file");
  grpc::ClientContext ctx;
  s.set_deadline(ctx);
  v1::Scenario sc;
  const auto st = stub.AddScenarioInputs(&ctx, req, &sc);
  return show(s, st, sc);
}

int run(session& s, const scenario_options& o, v1::ScenarioService::Stub& stub) {
  v1::RunScenarioRequest req;
  req.set_name(scenario_name(o.id));
  req.set_horizon_ms(parse_span(o.horizon));
  req.set_step_ms(parse_span(o.step));
  req.set_noise(o.noise);
  req.set_seed(o.seed);
  for (const auto& k : o.kpis) {
    const auto parts = split(k, ':');
    if (parts.size() != 2)
      throw usage_error("--kpi takes AGGREGATE:MEASURE, got \"" + k + "\"");
    auto* ref = req.add_kpis();
    ref->set_aggregate(parts[0]);
    ref->set_measure(parts[1]);
  }
  grpc::ClientContext ctx;  // a run takes as long as it takes
  interrupter::guard guard{s.interrupt(), ctx};
  v1::ScenarioResult result;
  if (auto st = follow(s, *stub.RunScenario(&ctx, req), result,
                       [](const v1::RunScenarioProgress& m) {
                         return std::tuple{m.steps_done(), m.steps_total(),
                                           fmt::format("{}/{} steps, {:.0f}x real time",
                                                       m.steps_done(), m.steps_total(), m.speed())};
                       });
      !st.ok())
    return s.fail(st);
  if (s.json())
    s.out() << to_json(result) << '\n';
  else
    print_result(s, result, o.show_series);
  return exit_ok;
}

int result(session& s, const scenario_options& o, v1::ScenarioService::Stub& stub) {
  v1::GetScenarioResultRequest req;
  req.set_name(scenario_name(o.id));
  if (!o.compare_with.empty())
    req.set_compare_with(scenario_name(o.compare_with));
  req.set_summary_only(!o.show_series && !s.json());
  grpc::ClientContext ctx;
  s.set_deadline(ctx);
  v1::ScenarioResult r;
  if (auto st = stub.GetScenarioResult(&ctx, req, &r); !st.ok())
    return s.fail(st);
  if (s.json())
    s.out() << to_json(r) << '\n';
  else
    print_result(s, r, o.show_series);
  return exit_ok;
}

v1::SweepParameter parameter(const std::string& text) {
  // INPUT.FIELD=FROM:TO:STEP, INPUT.FIELD=FROM:TO (the bounds: what cobyla searches
  // between) or INPUT.FIELD=V1,V2,...
  const auto eq = text.find('='), dot = text.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq)
    throw usage_error(
        "--param takes INPUT.FIELD=FROM:TO:STEP or INPUT.FIELD=V1,V2,... "
        "(e.g. 2.max=0:22:1), got \"" +
        text + "\"");
  v1::SweepParameter p;
  p.set_input(static_cast<int32_t>(number(text.substr(0, dot), "--param input")));
  p.set_field(text.substr(dot + 1, eq - dot - 1));
  const auto values = text.substr(eq + 1);
  if (values.find(':') != std::string::npos) {
    const auto r = split(values, ':');
    if (r.size() == 2) {
      p.add_values(number(r[0], "--param"));
      p.add_values(number(r[1], "--param"));
      return p;
    }
    if (r.size() != 3)
      throw usage_error(
          "--param range is FROM:TO:STEP (or FROM:TO, the bounds cobyla searches "
          "between), got \"" +
          values + "\"");
    p.set_from(number(r[0], "--param"));
    p.set_to(number(r[1], "--param"));
    p.set_step(number(r[2], "--param"));
  } else {
    for (const auto& v : split(values, ','))
      p.add_values(number(v, "--param"));
  }
  return p;
}

void print_sweep(session& s, const v1::SweepResult& r) {
  auto& out = s.out();
  out << fmt::format("{}: {} runs ({}), {:.2f} s\n", r.name(), r.runs(), r.method(),
                     r.wall_seconds());
  std::string header;
  for (const auto& p : r.parameters())
    header += fmt::format("{:>12}", std::to_string(p.input()) + "." + p.field());
  out << header << fmt::format("{:>14} {:>9}  constraints\n", "objective", "feasible");
  for (const auto& pt : r.points()) {
    std::string row;
    for (double v : pt.values())
      row += fmt::format("{:>12.6g}", v);
    std::string cons;
    for (double c : pt.constraint_values())
      cons +=
          (cons.empty() ? "" : " ") + (std::isnan(c) ? std::string{"-"} : fmt::format("{:.6g}", c));
    out << row
        << fmt::format("{:>14} {:>9}  {}\n", opt(pt.has_objective(), pt.objective()),
                       pt.feasible() ? "yes" : "no", cons);
  }
  std::string best;
  for (int i = 0; i < r.best().values_size(); ++i)
    best += fmt::format("{}{}.{}={:.6g}", i ? ", " : "", r.parameters(i).input(),
                        r.parameters(i).field(), r.best().values(i));
  out << (r.found() ? "best: " : "no setting meets the constraints; closest: ") << best
      << (r.best().has_objective() ? fmt::format(" (objective {:.6g})", r.best().objective()) : "")
      << '\n';
  for (const auto& set : r.settings())
    out << fmt::format("apply: {}={:.6g} on {}\n", set.property(), set.value(),
                       !set.twins().filter().empty()
                           ? "twins where " + set.twins().filter()
                           : std::to_string(set.twins().names_size()) + " named twin(s)");
}

int sweep(session& s, const scenario_options& o, v1::ScenarioService::Stub& stub) {
  v1::SweepScenarioRequest req;
  req.set_name(scenario_name(o.id));
  req.set_horizon_ms(parse_span(o.horizon));
  req.set_step_ms(parse_span(o.step));
  req.set_noise(o.noise);
  req.set_seed(o.seed);
  req.set_method(o.method);
  req.set_max_runs(o.max_runs);
  if (o.parameters.empty())
    throw usage_error("give at least one --param INPUT.FIELD=FROM:TO:STEP");
  for (const auto& p : o.parameters)
    *req.add_parameters() = parameter(p);
  if (o.maximize.empty() == o.minimize.empty())
    throw usage_error("give --maximize or --minimize (one of them)");
  const auto& target = o.maximize.empty() ? o.minimize : o.maximize;
  req.mutable_objective()->set_maximize(!o.maximize.empty());
  if (target.starts_with("param:"))
    req.mutable_objective()->set_parameter(
        static_cast<int32_t>(number(target.substr(6), "--maximize/--minimize param")));
  else
    *req.mutable_objective()->mutable_kpi() = statistic(target);
  for (const auto& c : o.constraints) {
    const auto le = c.find("<="), ge = c.find(">=");
    if (le == std::string::npos && ge == std::string::npos)
      throw usage_error("--constraint takes AGGREGATE:MEASURE[:STAT]<=X or >=X, got \"" + c + "\"");
    const auto at = le != std::string::npos ? le : ge;
    auto* k = req.add_constraints();
    *k->mutable_kpi() = statistic(c.substr(0, at));
    const double v = number(c.substr(at + 2), "--constraint");
    if (le != std::string::npos)
      k->set_max(v);
    else
      k->set_min(v);
  }
  grpc::ClientContext ctx;
  interrupter::guard guard{s.interrupt(), ctx};
  v1::SweepResult r;
  if (auto st = follow(s, *stub.SweepScenario(&ctx, req), r,
                       [](const v1::SweepScenarioProgress& m) {
                         return std::tuple{
                             static_cast<int64_t>(m.runs_done()),
                             static_cast<int64_t>(m.runs_total()),
                             fmt::format("{}/{} runs", m.runs_done(), m.runs_total())};
                       });
      !st.ok())
    return s.fail(st);
  if (s.json())
    s.out() << to_json(r) << '\n';
  else
    print_sweep(s, r);
  return r.found() ? exit_ok : exit_failure;
}

/// The best setting of the last sweep, applied to the live twins by BulkUpdateDesired.
int apply(session& s, const scenario_options& o, v1::ScenarioService::Stub& stub) {
  v1::GetSweepResultRequest req;
  req.set_name(scenario_name(o.id));
  grpc::ClientContext ctx;
  s.set_deadline(ctx);
  v1::SweepResult r;
  if (auto st = stub.GetSweepResult(&ctx, req, &r); !st.ok())
    return s.fail(st);
  if (!r.found())
    throw usage_error("the last sweep of " + r.name() +
                      " found no setting that meets its constraints: nothing to apply");
  if (r.settings().empty())
    throw usage_error(
        "the sweep's limits name no live setting (give the limit a --setting, "
        "the desired property that carries it on the live twins)");
  int code = exit_ok;
  for (const auto& set : r.settings()) {
    bulk_desired_options b;
    for (const auto& n : set.twins().names())
      b.assets.push_back(n);
    b.filter = set.twins().filter();
    if (b.assets.empty() && b.filter.empty())
      throw usage_error("setting " + set.property() +
                        " applies to every twin of the scenario; apply it with bulk-desired "
                        "and a filter");
    // A number with a decimal point, so that the desired value is a double.
    auto value = fmt::format("{}", set.value());
    if (value.find_first_of(".en") == std::string::npos)
      value += ".0";
    b.assignments.push_back(set.property() + "=" + value);
    b.dry_run = o.dry_run;
    b.if_unchanged = o.if_unchanged;
    if (!s.json())
      s.out() << fmt::format("{}{}={} on {}\n", o.dry_run ? "dry run: " : "", set.property(),
                             set.value(),
                             b.filter.empty() ? std::to_string(b.assets.size()) + " twin(s)"
                                              : "twins where " + b.filter);
    if (const int c = run_bulk_desired(s, b); c != exit_ok)
      code = c;
  }
  return code;
}

}  // namespace

void add_scenario(CLI::App& app, scenario_options& o) {
  auto* sc = app.add_subcommand("scenario",
                                "What-if scenarios: fork twins, change, run, compare, "
                                "sweep settings, apply the best");
  sc->require_subcommand(1);
  auto id = [&o](CLI::App* cmd) {
    cmd->add_option("scenario", o.id, "Scenario id (scenarios/ID)")->required();
  };
  auto* create = sc->add_subcommand("create", "Fork twins into a new scenario (copy-on-write)");
  id(create);
  create->add_option("--below", o.below, "Every twin below this aggregate (e.g. feeders/f1)");
  create->add_option("--filter", o.filter, "Twins this ListTwins filter matches");
  create->add_option("--asset", o.assets, "A twin to fork (repeatable)");
  create->add_option("--description", o.description, "What the scenario is about");
  create->add_option("--at", o.at,
                     "Fork the twins as they were then, from their retained history "
                     "(2026-11-24T10:00:00Z, -6h)");
  sc->add_subcommand("list", "List the node's scenarios");
  id(sc->add_subcommand("get", "Show a scenario and its inputs"));
  id(sc->add_subcommand("delete", "Delete a scenario, its inputs and results"));
  id(sc->add_subcommand("export",
                        "Write the last run's result to the scenario-results topic (data teams)"));
  auto* input = sc->add_subcommand("apply-input", "Add hypothetical inputs to a scenario");
  id(input);
  input->add_option("--input", o.inputs, "A ScenarioInput as JSON (repeatable)");
  input->add_option("--file", o.file, "A JSON array of ScenarioInput, or one per line");
  input->add_flag("--replace", o.replace, "Drop the scenario's inputs first");
  input->add_option("--profile", o.profile, "Scale a property: PROPERTY=FACTOR (power=1.3)");
  input->add_option("--limit", o.limit, "Bound a property: PROPERTY<=MAX or PROPERTY>=MIN");
  input->add_option("--setting", o.setting,
                    "With --limit: the desired property that carries the limit on live twins");
  input->add_option("--series", o.series,
                    "Injected telemetry: PROPERTY=VALUE[@OFFSET],... (power=5,30@3h)");
  input->add_option("--desired", o.desired, "A desired value KEY=VALUE (repeatable)");
  input->add_option("--where", o.where,
                    "The twins of --profile/--limit/--series/--desired: a filter");
  input->add_option("--twin", o.twins, "... or these twins (repeatable)");
  input->add_option("--from", o.from,
                    "Window of --profile/--limit: from this long after the start");
  input->add_option("--to", o.to, "... to this long after the start");
  input->add_option("--add", o.add, "Add this many copies of --template")
      ->check(CLI::Range(1, 100000));
  input->add_option("--template", o.template_twin, "The twin --add copies");
  input->add_option("--parent", o.parent, "The aggregate the added twins relate to");
  input->add_option("--type", o.relation_type, "Their relation type (e.g. feeds)");
  input->add_option("--prefix", o.prefix, "Their ids' prefix (default new-)");
  input->add_option("--attr", o.attributes,
                    "An attribute KEY=VALUE the added twins or aggregate get (repeatable)");
  input->add_option("--add-aggregate", o.add_aggregate,
                    "Add an empty aggregate (transformers/T9), related to --parent as --type");
  input->add_option("--move-to", o.move_to,
                    "Move the twins of --where/--twin to this aggregate (relation --type)");
  auto runlike = [&o](CLI::App* cmd) {
    cmd->add_option("--horizon", o.horizon, "How far to run (virtual time)")->capture_default_str();
    cmd->add_option("--step", o.step, "Step of the virtual clock")->capture_default_str();
    cmd->add_option("--noise", o.noise, "Noise, in standard deviations of each forecast's error");
    cmd->add_option("--seed", o.seed, "Seed of the noise (same seed, same result)");
  };
  auto* run_cmd = sc->add_subcommand("run", "Run a scenario and its baseline forward");
  id(run_cmd);
  runlike(run_cmd);
  run_cmd->add_option("--kpi", o.kpis, "AGGREGATE:MEASURE to follow (repeatable; default: all)");
  run_cmd->add_flag("--series", o.show_series, "Print each KPI's values per step");
  auto* res = sc->add_subcommand("result", "Show the last run's outcome");
  id(res);
  res->add_option("--compare-with", o.compare_with, "Another scenario instead of the baseline");
  res->add_flag("--series", o.show_series, "Print each KPI's values per step");
  auto* sw = sc->add_subcommand("sweep", "Find the setting that optimises an objective");
  id(sw);
  runlike(sw);
  sw->add_option("--param", o.parameters,
                 "INPUT.FIELD=FROM:TO:STEP or INPUT.FIELD=V1,V2,... (repeatable)");
  sw->add_option("--maximize", o.maximize, "param:N, or AGGREGATE:MEASURE[:peak|mean|min|last]");
  sw->add_option("--minimize", o.minimize, "The same, minimised");
  sw->add_option("--constraint", o.constraints, "AGGREGATE:MEASURE[:STAT]<=X or >=X (repeatable)");
  sw->add_option("--method", o.method,
                 "grid (default), coordinate, or cobyla (continuous, between each --param's "
                 "smallest and largest value)");
  sw->add_option("--max-runs", o.max_runs, "At most this many runs (200)");
  auto* ap = sc->add_subcommand(
      "apply", "Apply the last sweep's best setting to the live twins (BulkUpdateDesired)");
  id(ap);
  ap->add_flag("--dry-run", o.dry_run, "Report what would change; change nothing");
  ap->add_flag("--if-unchanged", o.if_unchanged,
               "Change a twin only if it is still at the version it had when selected");
}

int run_scenario(session& s, const std::string& sub, const scenario_options& o) {
  auto stub = v1::ScenarioService::NewStub(s.shared_channel());
  if (sub == "create")
    return create(s, o, *stub);
  if (sub == "apply-input")
    return apply_input(s, o, *stub);
  if (sub == "run")
    return run(s, o, *stub);
  if (sub == "result")
    return result(s, o, *stub);
  if (sub == "sweep")
    return sweep(s, o, *stub);
  if (sub == "apply")
    return apply(s, o, *stub);
  if (sub == "export") {
    grpc::ClientContext ctx;
    s.set_deadline(ctx);
    v1::ExportScenarioResultRequest req;
    req.set_name(scenario_name(o.id));
    v1::ExportScenarioResultResponse resp;
    if (auto st = stub->ExportScenarioResult(&ctx, req, &resp); !st.ok())
      return s.fail(st);
    if (s.json())
      s.out() << to_json(resp) << '\n';
    else
      s.out() << fmt::format("exported {} records to {}\n", resp.records(), resp.topic());
    return exit_ok;
  }
  if (sub == "list") {
    grpc::ClientContext ctx;
    s.set_deadline(ctx);
    v1::ListScenariosRequest req;
    req.set_page_size(500);
    v1::ListScenariosResponse resp;
    if (auto st = stub->ListScenarios(&ctx, req, &resp); !st.ok())
      return s.fail(st);
    if (s.json())
      s.out() << to_json(resp) << '\n';
    else
      for (const auto& sc : resp.scenarios())
        print_scenario(s, sc);
    return exit_ok;
  }
  grpc::ClientContext ctx;
  s.set_deadline(ctx);
  if (sub == "get") {
    v1::GetScenarioRequest req;
    req.set_name(scenario_name(o.id));
    v1::Scenario sc;
    const auto st = stub->GetScenario(&ctx, req, &sc);
    return show(s, st, sc);
  }
  v1::DeleteScenarioRequest req;
  req.set_name(scenario_name(o.id));
  v1::DeleteScenarioResponse resp;
  if (auto st = stub->DeleteScenario(&ctx, req, &resp); !st.ok())
    return s.fail(st);
  if (!s.json())
    s.out() << "deleted " << req.name() << '\n';
  else
    s.out() << to_json(resp) << '\n';
  return exit_ok;
}

}  // namespace fleettwin::cli

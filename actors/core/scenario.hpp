#pragma once

// What-if scenarios: a copy of some twins and the aggregates above them (a
// fork), hypothetical inputs applied to it, and a run forward on a virtual
// clock through the same pure core the live twins use: telemetry is applied
// with apply_telemetry, analysed with analyze_applied (forecasters,
// detectors, alerts, time to failure), and rolled up with route() and the
// aggregates' own apply(). Properties no input drives follow their twin's
// forecaster. A run is deterministic: the same fork, inputs and seed give
// bit-identical results (ordered containers, a counter-based noise
// generator, no wall clock). Pure C++ (DESIGN.md, principle 4).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "actors/core/aggregate.hpp"
#include "actors/core/asset_model.hpp"
#include "actors/core/codec.hpp"
#include "actors/core/filter.hpp"
#include "actors/core/relations.hpp"
#include "actors/core/twin.hpp"

namespace fleettwin::core {

/// The twins an input applies to: those named, those the filter matches
/// (judged on the fork's state at its start), or both.
struct scenario_selection {
  std::vector<std::string> names;
  filter where;
  /// Nothing named and no filter: every twin of the fork.
  bool everything() const {
    return names.empty() && where.matches_all();
  }
};

/// A window of the run, in ms after its start (end 0: to the end).
struct scenario_window {
  int64_t start_ms = 0;
  int64_t end_ms = 0;
  bool covers(int64_t offset_ms) const {
    return offset_ms >= start_ms && (end_ms == 0 || offset_ms < end_ms);
  }
};

/// Scales a property: value * factor + offset while the window lasts (a heat
/// wave raising loads 30 %: factor 1.3).
struct profile_input {
  scenario_selection twins;
  std::string property;
  double factor = 1;
  double offset = 0;
  scenario_window window;
};

/// Keeps a property within bounds while the window lasts (a charging power
/// limit).
struct limit_input {
  scenario_selection twins;
  std::string property;
  /// The desired property that carries the limit on a live twin (applying
  /// the scenario sets it to `max`, or `min` without one); empty: none.
  std::string setting;
  std::optional<double> min;
  std::optional<double> max;
  scenario_window window;
};

/// Injected telemetry: the property takes each point's value from its
/// offset on (a step series), instead of its forecast.
struct series_input {
  scenario_selection twins;
  std::string property;
  /// (ms after the start, value), ascending by offset.
  std::vector<std::pair<int64_t, double>> points;
};

/// A desired-state change applied at the start; a device follows a numeric
/// desired value, so the property reports it from then on.
struct desired_input {
  scenario_selection twins;
  std::vector<std::pair<std::string, value>> set;
  std::vector<std::string> remove;
};

/// New twins: `count` copies of `template_twin` (its kind, attributes and
/// analytics) named `<prefix><n>` (n from 1), related to `parent` as `type`
/// instead of the template's relations of that type.
struct add_twins_input {
  std::string template_twin;
  uint32_t count = 0;
  std::string prefix;
  std::string parent;
  std::string type;
  /// Attributes the new twins get (over the template's): what selects them in
  /// other inputs' filters.
  std::vector<std::pair<std::string, std::string>> attributes;
};

/// Re-parents twins: their relation of `type` goes to `parent` (added if
/// they had none).
struct move_input {
  scenario_selection twins;
  std::string parent;
  std::string type;
};

/// A new aggregate (a transformer added to a feeder): empty, of the kind whose
/// collection its id names ("transformers/T9"), related to `parent` as `type`
/// (none: a root). Twins join it through add_twins and move inputs naming it.
struct add_aggregate_input {
  std::string id;
  std::string parent;
  std::string type;
  /// Its own attributes (what filters over aggregates read).
  std::vector<std::pair<std::string, std::string>> attributes;
};

/// A changed asset model: the thresholds of one property of one kind.
struct model_input {
  std::string kind;
  std::string property;
  std::optional<threshold> failure;
  std::optional<threshold> warning;
  std::optional<threshold> critical;
};

using scenario_input = std::variant<profile_input, limit_input, series_input, desired_input,
                                    add_twins_input, move_input, model_input, add_aggregate_input>;

/// The twin as it was at `at_ms`, rebuilt from `samples`: its retained history
/// before at_ms, ascending by source time and sequence (rocksdb_store::
/// read_samples). Reported values, statistics and analytics (forecasters,
/// detectors) come from replaying the samples through the twin logic; its
/// identity, attributes, relations and desired state stay as they are now (no
/// history keeps them). False when no sample precedes at_ms: the twin had not
/// reported yet (left as it was). `model`: the twin's kind's (may be null), as
/// live analytics use it.
bool rewind(twin& tw, const std::vector<std::pair<std::string, history_point>>& samples,
            int64_t at_ms, const asset_model* model = nullptr);

/// A short description of an input ("profile load_kw x1.3"), for listings.
std::string describe(const scenario_input& in);

/// A forked aggregate: its own record (attributes, relations) and state.
struct scenario_aggregate {
  twin entity;
  aggregate agg;
};

/// A twin outside the fork that a forked aggregate counts: it keeps the view
/// it had when forked.
struct frozen_member {
  std::string id;
  relation_list relations;
  member_values values;
};

/// The forked state a run starts from.
struct scenario_world {
  /// The fork's twins, by id.
  std::map<std::string, twin, std::less<>> twins;
  /// Other twins below the fork's aggregates (see frozen_member).
  std::vector<frozen_member> frozen;
  /// The aggregates above them (those the fork could read), by id.
  std::map<std::string, scenario_aggregate, std::less<>> aggregates;
  std::shared_ptr<const kind_registry> kinds;
  model_set models;
  /// The virtual time the run starts at (the fork's point in time).
  int64_t start_ms = 0;
  /// When a twin counts as stale (filters that read connectivity).
  int64_t stale_after_ms = 300'000;
};

/// A measure of an aggregate followed through a run.
struct kpi_ref {
  std::string aggregate;
  std::string measure;
  bool operator==(const kpi_ref&) const = default;
};

struct run_options {
  int64_t horizon_ms = 24 * 3'600'000LL;
  int64_t step_ms = 15 * 60'000LL;
  uint64_t seed = 1;
  /// Forecast-driven values get noise of this many standard deviations of
  /// their forecaster's one-step error (0: the point forecast).
  double noise = 0;
  /// Measures to follow; empty: every measure of every aggregate of the
  /// world, up to max_kpis.
  std::vector<kpi_ref> kpis;
  size_t max_kpis = 64;
  /// The most alerts and failures a result keeps (more are counted).
  size_t max_events = 10'000;
  /// The largest number of steps a run may take.
  uint64_t max_steps = 100'000;
};

/// One followed measure: its value after each step (nullopt: none).
struct kpi_series {
  kpi_ref ref;
  std::vector<std::optional<double>> values;
};

/// An alert that fired during a run.
struct fired_alert {
  std::string twin;
  std::string property;
  int64_t time_ms = 0;
  alert_severity severity = alert_severity::warning;
  anomaly_kind kind = anomaly_kind::none;
  double score = 0;
  bool operator==(const fired_alert&) const = default;
};

/// A twin's property that crossed its model's failure threshold (time_ms:
/// its first sample beyond it), or at the end of the run was forecast to
/// (eta_ms > 0, time_ms 0).
struct failure_event {
  std::string twin;
  std::string property;
  int64_t time_ms = 0;
  int64_t eta_ms = 0;
  bool operator==(const failure_event&) const = default;
};

struct run_result {
  /// The virtual time after each step.
  std::vector<int64_t> times;
  std::vector<kpi_series> kpis;
  std::vector<fired_alert> alerts;
  std::vector<failure_event> failures;
  uint64_t alerts_total = 0;
  uint64_t failures_total = 0;
  uint64_t twins = 0;
  uint64_t samples = 0;
  /// Contributions the aggregates applied.
  uint64_t contributions = 0;
  /// Contributions to parents the fork does not hold (their roll-up stops).
  uint64_t outside = 0;
};

/// An input that cannot be applied to the world (an unknown template, a
/// parent of another kind...); `index` is its position.
struct input_error {
  size_t index = 0;
  std::string message;
};

/// Relates every aggregate, twin and frozen member of a world to its parents,
/// so that its (empty) aggregates hold what their members report.
void connect(scenario_world& w);

/// What is wrong with an input on its own (a missing property, a window that
/// ends before it starts, a limit whose minimum exceeds its maximum ...); what
/// needs the world (named twins, parents) is prepare's to check.
std::optional<std::string> check_input(const scenario_input& in);

/// Applies the inputs that change the world itself (desired values, new
/// twins, moves, models) at its start; checks every input. Returns the first
/// input that cannot be applied (the world is then unspecified).
std::optional<input_error> prepare(scenario_world& w, const std::vector<scenario_input>& inputs);

/// Runs a prepared world forward. `progress` (if set) is told the steps done
/// and total, and stops the run by returning false (the result then holds
/// the steps done).
run_result run(scenario_world& w, const std::vector<scenario_input>& inputs,
               const run_options& opts,
               const std::function<bool(uint64_t done, uint64_t total)>& progress = {});

/// The difference of one KPI between a baseline and a scenario.
struct kpi_diff {
  kpi_ref ref;
  std::optional<double> base_peak, peak;
  std::optional<double> base_mean, mean;
  /// When the scenario's peak happened.
  int64_t peak_ms = 0;
};

/// How a scenario's run differs from a baseline's.
struct comparison {
  std::vector<kpi_diff> kpis;
  /// Alerts (twin, property) that fire in the scenario and not in the
  /// baseline, and the reverse.
  std::vector<fired_alert> new_alerts;
  std::vector<fired_alert> gone_alerts;
  /// Failures new in the scenario or earlier than in the baseline.
  std::vector<failure_event> new_failures;
};

comparison compare(const run_result& baseline, const run_result& scenario);

/// The peak (largest value) and mean of a series; nullopt when it has none.
std::optional<double> series_peak(const kpi_series& s);
std::optional<double> series_mean(const kpi_series& s);

// --- sweeps: the setting that optimises an objective under constraints --------

/// A statistic of a KPI over a run.
enum class kpi_stat : uint8_t { peak, mean, min, last, at };
std::optional<kpi_stat> parse_kpi_stat(std::string_view s);
const char* to_string(kpi_stat s);

struct kpi_statistic {
  kpi_ref ref;
  kpi_stat stat = kpi_stat::peak;
  /// kpi_stat::at: the value at the first step at or after this offset from the start.
  int64_t at_offset_ms = 0;
};

/// The value of a statistic in a result (nullopt: the KPI had no value).
std::optional<double> evaluate(const run_result& r, int64_t start_ms, const kpi_statistic& s);

/// One setting a sweep varies: a number of one of the scenario's inputs
/// (limit: min, max; profile: factor, offset; telemetry: value, every point's;
/// add_twins: count).
struct sweep_parameter {
  size_t input = 0;
  std::string field;
  /// The values to try, in order.
  std::vector<double> values;
};

/// Sets parameter `p` of `inputs` to `v`; returns what is wrong with the parameter.
std::optional<std::string> set_parameter(std::vector<scenario_input>& inputs,
                                         const sweep_parameter& p, double v);

struct sweep_constraint {
  kpi_statistic kpi;
  std::optional<double> max;
  std::optional<double> min;
};

enum class sweep_method : uint8_t {
  /// Every combination of the parameters' values.
  grid,
  /// One parameter at a time over its values, the others held at the best
  /// so far, until a round improves nothing.
  coordinate,
  /// Continuous: each parameter anywhere between its smallest and largest
  /// value, searched by NLopt's COBYLA (derivative-free, constraints as
  /// inequalities), from the middle, to within `tolerance` of each parameter.
  cobyla,
};

struct sweep_options {
  std::vector<sweep_parameter> parameters;
  /// What to optimise: a KPI statistic, or (objective_parameter) the value of
  /// a parameter itself (the highest charging limit that keeps a constraint).
  std::optional<kpi_statistic> objective;
  std::optional<size_t> objective_parameter;
  bool maximize = false;
  std::vector<sweep_constraint> constraints;
  sweep_method method = sweep_method::grid;
  size_t max_runs = 200;
  /// cobyla: how close to the optimum each parameter is wanted, as a fraction
  /// of its range.
  double tolerance = 1e-3;
};

/// One setting tried.
struct sweep_point {
  std::vector<double> values;
  std::optional<double> objective;
  /// Each constraint's statistic.
  std::vector<std::optional<double>> constraint_values;
  bool feasible = false;
  /// How far outside its bounds the worst constraint lies (0 when feasible).
  double violation = 0;
};

struct sweep_result {
  std::vector<sweep_point> points;
  /// The best feasible point (index into points); when none is feasible,
  /// the one closest to feasible, and `found` is false.
  std::optional<size_t> best;
  bool found = false;
};

/// Checks a sweep against the inputs (parameters that exist, values given,
/// an objective); returns what to fix.
std::optional<std::string> check_sweep(const std::vector<scenario_input>& inputs,
                                       const sweep_options& s);

/// Runs the scenario once per setting tried, each on a copy of `base` (a
/// loaded, not prepared, world). `progress` is told the runs done and the
/// most it will run, and stops the sweep by returning false. A setting whose
/// inputs cannot apply is infeasible.
sweep_result sweep(const scenario_world& base, const std::vector<scenario_input>& inputs,
                   const run_options& opts, const sweep_options& s,
                   const std::function<bool(size_t done, size_t total)>& progress = {});

}  // namespace fleettwin::core

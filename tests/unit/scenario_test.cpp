#include "actors/core/scenario.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "actors/core/contributions.hpp"
#include "actors/core/twin_analytics.hpp"

using namespace fleettwin::core;

namespace {

constexpr int64_t t0 = 1'700'000'000'000;
constexpr int64_t quarter = 15 * 60'000;

/// A grid: meters m1..m4 on feeder A (capacity 100 kW), m5 on feeder B
/// (capacity 50 kW), both feeders below substation S. Every meter has
/// reported a steady load for a day, so its forecaster predicts it.
struct grid {
  scenario_world w;

  grid() {
    auto kinds = std::make_shared<kind_registry>();
    EXPECT_FALSE(kinds->put({"feeder",
                             "feeders",
                             {"feeds"},
                             {{"load", "sum(load_kw)"},
                              {"meters", "count()"},
                              {"peak_meter", "max(load_kw)"},
                              {"utilisation", "load / attributes.capacity_kw"}},
                             ""}));
    EXPECT_FALSE(
        kinds->put({"substation", "substations", {"feeds"}, {{"load", "sum(load_kw)"}}, ""}));
    w.kinds = kinds;
    w.start_ms = t0;
    add_feeder("feeders/A", 100);
    add_feeder("feeders/B", 50);
    auto& s = w.aggregates.emplace("substations/S", aggregate_of("substations/S")).first->second;
    s.entity.asset_id = "substations/S";
    meter("m1", "feeders/A", 10);
    meter("m2", "feeders/A", 10);
    meter("m3", "feeders/A", 10);
    meter("m4", "feeders/A", 10);
    meter("m5", "feeders/B", 20);
    connect(w);
  }

  scenario_aggregate aggregate_of(const std::string& id) {
    const auto* k = w.kinds->kind_of(id);
    return scenario_aggregate{twin{}, aggregate{id, w.kinds->kinds().at(k->def.name), 3'600'000}};
  }

  void add_feeder(const std::string& id, double capacity) {
    auto& f = w.aggregates.emplace(id, aggregate_of(id)).first->second;
    f.entity.asset_id = id;
    f.entity.attributes["capacity_kw"] = std::to_string(capacity);
    f.entity.relations.push_back(relation{"feeds", "substations/S", relation_origin::api});
  }

  void meter(const std::string& id, const std::string& feeder, double load) {
    twin tw;
    tw.asset_id = id;
    tw.kind = "meter";
    tw.relations.push_back(relation{"feeds", feeder, relation_origin::api});
    apply_result applied;
    analysis_output out;
    for (int i = 0; i < 96; ++i) {
      telemetry t;
      t.asset_id = id;
      t.kind = "meter";
      t.sequence = static_cast<uint64_t>(i + 1);
      t.source_time_ms = t0 - (95 - i) * quarter;
      t.metrics.emplace_back("load_kw", value{load});
      apply_telemetry(tw, t, t.source_time_ms, limits{}, applied);
      analyze_applied(tw, t, applied, nullptr, t.source_time_ms, out);
    }
    w.twins.emplace(id, std::move(tw));
  }

  run_result go(const std::vector<scenario_input>& inputs, run_options opts = {}) {
    scenario_world copy = w;
    const auto err = prepare(copy, inputs);
    EXPECT_FALSE(err) << (err ? err->message : "");
    opts.horizon_ms = 4 * quarter;
    opts.step_ms = quarter;
    return run(copy, inputs, opts);
  }
};

const kpi_series& kpi(const run_result& r, const std::string& agg, const std::string& measure) {
  for (const auto& k : r.kpis)
    if (k.ref.aggregate == agg && k.ref.measure == measure)
      return k;
  static kpi_series none;
  ADD_FAILURE() << "no kpi " << agg << "/" << measure;
  return none;
}

double last(const kpi_series& s) {
  return s.values.empty() || !s.values.back() ? -1 : *s.values.back();
}

scenario_selection names(std::vector<std::string> n) {
  scenario_selection s;
  s.names = std::move(n);
  return s;
}

scenario_selection where(const std::string& text) {
  scenario_selection s;
  EXPECT_FALSE(filter::parse(text, s.where));
  return s;
}

}  // namespace

TEST(scenario, baseline_follows_the_forecasts) {
  grid g;
  const auto r = g.go({});
  ASSERT_EQ(r.times.size(), 4u);
  EXPECT_EQ(r.times.front(), t0 + quarter);
  EXPECT_EQ(r.twins, 5u);
  EXPECT_EQ(r.samples, 20u);
  for (const auto& v : kpi(r, "feeders/A", "load").values)
    EXPECT_NEAR(v.value_or(-1), 40, 1e-9);
  EXPECT_NEAR(last(kpi(r, "feeders/A", "utilisation")), 0.4, 1e-9);
  EXPECT_NEAR(last(kpi(r, "feeders/B", "load")), 20, 1e-9);
  EXPECT_NEAR(last(kpi(r, "substations/S", "load")), 60, 1e-9);
  EXPECT_TRUE(r.alerts.empty());
  EXPECT_EQ(r.outside, 0u);
}

TEST(scenario, a_heat_wave_raises_the_loads_it_covers) {
  grid g;
  profile_input heat;
  heat.twins = where("reported.load_kw > 0");
  heat.property = "load_kw";
  heat.factor = 1.3;
  heat.window = {2 * quarter, 0};
  const auto r = g.go({heat});
  const auto& a = kpi(r, "feeders/A", "load");
  EXPECT_NEAR(*a.values[0], 40, 1e-9);  // before the window
  EXPECT_NEAR(*a.values[1], 52, 1e-9);
  EXPECT_NEAR(*a.values[3], 52, 1e-9);
  EXPECT_NEAR(last(kpi(r, "substations/S", "load")), 78, 1e-9);
  EXPECT_NEAR(last(kpi(r, "feeders/A", "utilisation")), 0.52, 1e-9);
}

TEST(scenario, added_chargers_count_in_their_feeder) {
  grid g;
  add_twins_input add;
  add.template_twin = "m5";
  add.count = 3;
  add.prefix = "c";
  add.parent = "feeders/B";
  add.type = "feeds";
  const auto r = g.go({add});
  EXPECT_EQ(r.twins, 8u);
  EXPECT_NEAR(last(kpi(r, "feeders/B", "load")), 80, 1e-9);
  EXPECT_NEAR(last(kpi(r, "feeders/B", "meters")), 4, 1e-9);
  EXPECT_NEAR(last(kpi(r, "feeders/B", "utilisation")), 1.6, 1e-9);
  EXPECT_NEAR(last(kpi(r, "substations/S", "load")), 120, 1e-9);
  EXPECT_NEAR(last(kpi(r, "feeders/A", "load")), 40, 1e-9);
}

TEST(scenario, a_limit_caps_a_property_and_a_series_drives_one) {
  grid g;
  limit_input cap;
  cap.twins = names({"m1", "m2"});
  cap.property = "load_kw";
  cap.max = 4;
  series_input s;
  s.twins = names({"m5"});
  s.property = "load_kw";
  s.points = {{0, 5}, {3 * quarter, 30}};
  const auto r = g.go({cap, s});
  EXPECT_NEAR(last(kpi(r, "feeders/A", "load")), 28, 1e-9);
  const auto& b = kpi(r, "feeders/B", "load");
  EXPECT_NEAR(*b.values[0], 5, 1e-9);
  EXPECT_NEAR(*b.values[1], 5, 1e-9);
  EXPECT_NEAR(*b.values[2], 30, 1e-9);
  EXPECT_NEAR(*b.values[3], 30, 1e-9);
}

TEST(scenario, moves_and_desired_values_change_the_roll_up) {
  grid g;
  move_input mv;
  mv.twins = names({"m4"});
  mv.parent = "feeders/B";
  mv.type = "feeds";
  desired_input d;
  d.twins = names({"m1"});
  d.set = {{"load_kw", value{2.5}}};
  const auto r = g.go({mv, d});
  EXPECT_NEAR(last(kpi(r, "feeders/A", "load")), 22.5, 1e-9);
  EXPECT_NEAR(last(kpi(r, "feeders/A", "meters")), 3, 1e-9);
  EXPECT_NEAR(last(kpi(r, "feeders/B", "load")), 30, 1e-9);
  EXPECT_NEAR(last(kpi(r, "substations/S", "load")), 52.5, 1e-9);
}

TEST(scenario, thresholds_and_failures_under_a_changed_model) {
  grid g;
  model_input m;
  m.kind = "meter";
  m.property = "load_kw";
  std::string error;
  m.failure = parse_threshold("> 12", error);
  m.warning = parse_threshold("> 11", error);
  profile_input heat;
  heat.property = "load_kw";
  heat.factor = 1.3;
  heat.window = {3 * quarter, 0};
  heat.twins = names({"m1"});
  const auto base = g.go({m});
  const auto r = g.go({m, heat});
  // m5 reports 20, beyond both levels from the first step, in both runs.
  ASSERT_EQ(r.failures.size(), 2u);
  EXPECT_EQ(r.failures[0].twin, "m5");
  EXPECT_EQ(r.failures[0].time_ms, t0 + quarter);
  EXPECT_EQ(r.failures[1].twin, "m1");
  EXPECT_EQ(r.failures[1].time_ms, t0 + 3 * quarter);
  ASSERT_EQ(base.failures.size(), 1u);
  const auto c = compare(base, r);
  ASSERT_EQ(c.new_failures.size(), 1u);
  EXPECT_EQ(c.new_failures[0].twin, "m1");
  ASSERT_EQ(c.new_alerts.size(), 1u);
  EXPECT_EQ(c.new_alerts[0].twin, "m1");
  EXPECT_EQ(c.new_alerts[0].severity, alert_severity::warning);
  EXPECT_EQ(c.new_alerts[0].time_ms, t0 + 3 * quarter);
  EXPECT_EQ(c.new_alerts[0].score, 0.5);  // a warning's score, not the value that crossed
}

TEST(scenario, runs_with_noise_are_deterministic_by_seed) {
  grid g;
  run_options o;
  o.noise = 1;
  o.seed = 7;
  // Give the forecasters an error to scale the noise by.
  for (auto& [id, tw] : g.w.twins)
    tw.analysis["load_kw"].state.forecast.error_var = 4;
  const auto a = g.go({}, o);
  const auto b = g.go({}, o);
  ASSERT_EQ(a.kpis.size(), b.kpis.size());
  for (size_t k = 0; k < a.kpis.size(); ++k)
    for (size_t i = 0; i < a.kpis[k].values.size(); ++i)
      EXPECT_EQ(a.kpis[k].values[i], b.kpis[k].values[i]);  // bit-identical
  o.seed = 8;
  const auto c = g.go({}, o);
  EXPECT_NE(kpi(a, "feeders/A", "load").values, kpi(c, "feeders/A", "load").values);
  EXPECT_NE(last(kpi(a, "feeders/A", "load")), 40);
}

TEST(scenario, an_added_feeder_takes_the_meters_moved_to_it) {
  grid g;
  // A new feeder C under S (declared after the move that names it: new
  // aggregates apply first), with m3 and m4 moved from A.
  move_input mv;
  mv.twins = names({"m3", "m4"});
  mv.parent = "feeders/C";
  mv.type = "feeds";
  add_aggregate_input c{"feeders/C", "substations/S", "feeds", {{"capacity_kw", "40"}}};
  const auto r = g.go({mv, c});
  EXPECT_NEAR(last(kpi(r, "feeders/C", "load")), 20, 1e-9);
  EXPECT_NEAR(last(kpi(r, "feeders/C", "meters")), 2, 1e-9);
  EXPECT_NEAR(last(kpi(r, "feeders/C", "utilisation")), 0.5, 1e-9);
  EXPECT_NEAR(last(kpi(r, "feeders/A", "load")), 20, 1e-9);
  EXPECT_NEAR(last(kpi(r, "substations/S", "load")), 60, 1e-9);
  EXPECT_EQ(describe(c), "add aggregate feeders/C to substations/S (feeds)");

  // Chargers added straight to a new root feeder count there and nowhere else.
  add_aggregate_input d{"feeders/D", "", "", {}};
  add_twins_input ev{"m1", 3, "ev-", "feeders/D", "feeds"};
  const auto r2 = g.go({d, ev});
  EXPECT_NEAR(last(kpi(r2, "feeders/D", "load")), 30, 1e-9);
  EXPECT_NEAR(last(kpi(r2, "substations/S", "load")), 60, 1e-9);
}

TEST(scenario, a_twin_rewinds_to_a_past_point_from_its_samples) {
  twin tw;
  tw.asset_id = "m1";
  tw.kind = "meter";
  tw.attributes["site"] = "north";
  tw.relations.push_back(relation{"feeds", "feeders/A", relation_origin::api});
  std::vector<std::pair<std::string, history_point>> samples;
  apply_result applied;
  analysis_output out;
  for (int i = 0; i < 8; ++i) {
    telemetry t;
    t.asset_id = "m1";
    t.kind = "meter";
    t.sequence = static_cast<uint64_t>(i + 1);
    t.source_time_ms = t0 + i * quarter;
    t.metrics.emplace_back("load_kw", value{double(10 + i)});
    apply_telemetry(tw, t, t.source_time_ms, limits{}, applied);
    analyze_applied(tw, t, applied, nullptr, t.source_time_ms, out);
    samples.emplace_back("load_kw",
                         history_point{value{double(10 + i)}, t.source_time_ms, t.sequence});
  }
  ASSERT_EQ(std::get<double>(tw.reported.at("load_kw").val), 17);
  // At the 4th sample's time (exclusive): as it was after the 3rd.
  twin past = tw;
  ASSERT_TRUE(rewind(past, samples, t0 + 3 * quarter));
  EXPECT_EQ(std::get<double>(past.reported.at("load_kw").val), 12);
  EXPECT_EQ(past.reported.at("load_kw").stats.count, 3u);
  EXPECT_EQ(past.version, 3u);
  EXPECT_EQ(past.last_seen_ms, t0 + 2 * quarter);
  EXPECT_EQ(past.attributes, tw.attributes);
  EXPECT_EQ(past.relations, tw.relations);
  // Replaying every sample rebuilds the twin's own state and analytics.
  twin all = tw;
  ASSERT_TRUE(rewind(all, samples, t0 + 8 * quarter));
  EXPECT_EQ(all.reported.at("load_kw").val, tw.reported.at("load_kw").val);
  EXPECT_EQ(all.version, tw.version);
  EXPECT_TRUE(all.analysis.at("load_kw").state == tw.analysis.at("load_kw").state);
  // Before its first sample it did not exist.
  twin none = tw;
  EXPECT_FALSE(rewind(none, samples, t0));
  EXPECT_EQ(none.version, tw.version);
}

TEST(scenario, inputs_that_cannot_apply_say_why) {
  grid g;
  auto fails = [&](const scenario_input& in, const std::string& text) {
    scenario_world copy = g.w;
    const auto err = prepare(copy, {profile_input{names({"m1"}), "load_kw", 1, 0, {}}, in});
    ASSERT_TRUE(err) << text;
    EXPECT_EQ(err->index, 1u);
    EXPECT_NE(err->message.find(text), std::string::npos) << err->message;
  };
  fails(add_twins_input{"nope", 1, "c", "feeders/A", "feeds"}, "template twin \"nope\"");
  fails(add_twins_input{"m1", 1, "c", "feeders/Z", "feeds"},
        "\"feeders/Z\" is not in the scenario");
  fails(add_twins_input{"m1", 1, "m", "feeders/A", "feeds"}, "\"m1\" exists already");
  fails(profile_input{names({"x9"}), "load_kw", 1, 0, {}}, "twin \"x9\" is not in the scenario");
  fails(profile_input{names({"m1"}), "load_kw", 1, 0, {5, 2}}, "must end after it starts");
  fails(limit_input{names({"m1"}), "load_kw", "", 5, 1, {}}, "minimum must not exceed");
  fails(series_input{names({"m1"}), "load_kw", {{5, 1}, {5, 2}}}, "ascending order");
  fails(model_input{"meter", "load_kw", {}, {}, {}}, "sets a failure, warning or critical");
  fails(add_aggregate_input{"lines/L1", "", "", {}}, "not in the collection of an aggregate kind");
  fails(add_aggregate_input{"feeders/A", "", "", {}}, "\"feeders/A\" exists already");
  fails(add_aggregate_input{"feeders/C", "substations/X", "feeds", {}},
        "\"substations/X\" is not in the scenario");
  fails(add_aggregate_input{"T9", "", "", {}}, "{collection}/{name}");
  fails(add_aggregate_input{"feeders/C", "substations/S", "", {}}, "goes with a relation type");
}

TEST(scenario, frozen_members_count_without_running) {
  grid g;
  // A fork of m1 alone: the other meters of its feeders keep their views.
  scenario_world w;
  w.kinds = g.w.kinds;
  w.start_ms = t0;
  for (const auto& [id, a] : g.w.aggregates) {
    auto& copy = w.aggregates.emplace(id, g.aggregate_of(id)).first->second;
    copy.entity = a.entity;
  }
  w.twins.emplace("m1", g.w.twins.at("m1"));
  for (const auto& [id, tw] : g.w.twins)
    if (id != "m1")
      w.frozen.push_back(frozen_member{id, tw.relations, project(tw, w.kinds->fields())});
  connect(w);
  profile_input heat;
  heat.property = "load_kw";
  heat.factor = 2;
  ASSERT_FALSE(prepare(w, {heat}));
  run_options o;
  o.horizon_ms = quarter;
  o.step_ms = quarter;
  const auto r = run(w, {heat}, o);
  EXPECT_EQ(r.twins, 1u);
  EXPECT_EQ(r.samples, 1u);
  EXPECT_NEAR(last(kpi(r, "feeders/A", "load")), 50, 1e-9);
  EXPECT_NEAR(last(kpi(r, "substations/S", "load")), 70, 1e-9);
}

TEST(scenario, a_selection_that_matches_nothing_is_an_error) {
  grid g;
  scenario_world copy = g.w;
  const auto err = prepare(copy, {profile_input{where("kind = \"turbine\""), "load_kw", 2, 0, {}}});
  ASSERT_TRUE(err);
  EXPECT_NE(err->message.find("selects no twin"), std::string::npos) << err->message;
}

TEST(scenario, added_twins_take_the_attributes_given) {
  grid g;
  add_twins_input add{"m5", 2, "ev-", "feeders/A", "feeds", {{"role", "ev"}}};
  series_input s;
  s.twins = where("attributes.role = \"ev\"");
  s.property = "load_kw";
  s.points = {{0, 7}};
  const auto r = g.go({add, s});
  EXPECT_NEAR(last(kpi(r, "feeders/A", "load")), 54, 1e-9);
}

TEST(scenario, inputs_describe_themselves) {
  profile_input heat;
  heat.twins = where("kind = \"meter\"");
  heat.property = "load_kw";
  heat.factor = 1.3;
  heat.window = {3'600'000, 7'200'000};
  EXPECT_EQ(describe(heat),
            "profile load_kw of twins where kind = \"meter\": x1.3 from +1h to +2h");
  EXPECT_EQ(describe(add_twins_input{"m1", 50, "c", "feeders/A", "feeds"}),
            "add 50 copies of m1 as c1.. to feeders/A (feeds)");
}

namespace {

/// Five 11 kW chargers on feeder A (40 kW of meters, 100 kW capacity), held
/// to a charging limit; the sweep varies the limit (input 2) and how many
/// chargers there are (input 0).
std::vector<scenario_input> chargers_on_a(uint32_t count) {
  add_twins_input add{"m1", count, "ev-", "feeders/A", "feeds", {{"role", "ev"}}};
  series_input charging;
  charging.twins = where("attributes.role = \"ev\"");
  charging.property = "load_kw";
  charging.points = {{0, 11}};
  limit_input cap;
  cap.twins = where("attributes.role = \"ev\"");
  cap.property = "load_kw";
  cap.max = 11;
  cap.setting = "charge_limit_kw";
  return {add, charging, cap};
}

std::vector<double> range(double from, double to) {
  std::vector<double> v;
  for (double x = from; x <= to; x += 1)
    v.push_back(x);
  return v;
}

}  // namespace

TEST(scenario_sweep, finds_the_highest_charging_limit_that_keeps_the_feeder_under_90_percent) {
  grid g;
  auto inputs = chargers_on_a(5);
  sweep_options s;
  s.parameters = {sweep_parameter{2, "max", range(0, 15)}};
  s.objective_parameter = 0;
  s.maximize = true;
  s.constraints = {sweep_constraint{{{"feeders/A", "utilisation"}, kpi_stat::peak, 0}, 0.9, {}}};
  ASSERT_FALSE(check_sweep(inputs, s));
  run_options o;
  o.horizon_ms = 4 * quarter;
  o.step_ms = quarter;
  size_t calls = 0;
  const auto r = sweep(g.w, inputs, o, s, [&](size_t done, size_t total) {
    ++calls;
    EXPECT_LE(done, total);
    return true;
  });
  EXPECT_EQ(r.points.size(), 16u);
  EXPECT_EQ(calls, 16u);
  ASSERT_TRUE(r.found);
  // 40 kW + 5 x limit <= 90 kW: 10 kW.
  EXPECT_EQ(r.points[*r.best].values, std::vector<double>{10});
  EXPECT_NEAR(*r.points[*r.best].constraint_values[0], 0.9, 1e-9);
  EXPECT_FALSE(r.points[11].feasible);  // 11 kW: 95 %
  EXPECT_NEAR(r.points[11].violation, 0.05, 1e-9);
}

TEST(scenario_sweep, cobyla_finds_the_continuous_limit_where_the_constraint_binds) {
  grid g;
  auto inputs = chargers_on_a(6);
  sweep_options s;
  // Anywhere in 0..15 kW (the chargers draw 11 kW unless limited): 40 kW + 6 x
  // limit <= 90 kW binds at 8.33 kW.
  s.parameters = {sweep_parameter{2, "max", {0, 15}}};
  s.objective_parameter = 0;
  s.maximize = true;
  s.constraints = {sweep_constraint{{{"feeders/A", "utilisation"}, kpi_stat::peak, 0}, 0.9, {}}};
  s.method = sweep_method::cobyla;
  s.max_runs = 60;
  ASSERT_FALSE(check_sweep(inputs, s));
  run_options o;
  o.horizon_ms = 4 * quarter;
  o.step_ms = quarter;
  const auto r = sweep(g.w, inputs, o, s);
  ASSERT_TRUE(r.best);
  const auto& best = r.points[*r.best];
  EXPECT_NEAR(best.values[0], 50.0 / 6, 0.05);
  EXPECT_LE(*best.constraint_values[0], 0.9 + 1e-9);
  EXPECT_TRUE(r.found);
  EXPECT_LT(r.points.size(), 60u);  // converged before the budget
  // Deterministic: the same points again.
  const auto again = sweep(g.w, inputs, o, s);
  ASSERT_EQ(again.points.size(), r.points.size());
  for (size_t i = 0; i < r.points.size(); ++i)
    EXPECT_EQ(again.points[i].values, r.points[i].values);
}

TEST(scenario_sweep, grid_and_coordinate_search_over_two_settings) {
  grid g;
  auto inputs = chargers_on_a(5);
  sweep_options s;
  s.parameters = {sweep_parameter{0, "count", range(0, 10)},
                  sweep_parameter{2, "max", range(0, 11)}};
  s.objective = kpi_statistic{{"feeders/A", "load"}, kpi_stat::mean, 0};
  s.maximize = true;
  s.constraints = {sweep_constraint{{{"feeders/A", "utilisation"}, kpi_stat::peak, 0}, 0.9, {}}};
  run_options o;
  o.horizon_ms = 2 * quarter;
  o.step_ms = quarter;
  const auto grid_r = sweep(g.w, inputs, o, s);
  EXPECT_EQ(grid_r.points.size(), 132u);
  ASSERT_TRUE(grid_r.found);
  EXPECT_NEAR(*grid_r.points[*grid_r.best].objective, 90, 1e-9);  // 50 kW of charging exactly
  s.method = sweep_method::coordinate;
  const auto coord = sweep(g.w, inputs, o, s);
  ASSERT_TRUE(coord.found);
  EXPECT_LT(coord.points.size(), 60u);
  EXPECT_GE(*coord.points[*coord.best].objective, 88 - 1e-9);  // a local optimum at worst
  EXPECT_LE(*coord.points[*coord.best].constraint_values[0], 0.9 + 1e-12);
  // A budget of runs holds.
  s.method = sweep_method::grid;
  s.max_runs = 7;
  EXPECT_EQ(sweep(g.w, inputs, o, s).points.size(), 7u);
}

TEST(scenario_sweep, mistakes_in_a_sweep_say_what_to_fix) {
  const auto inputs = chargers_on_a(5);
  sweep_options s;
  s.objective_parameter = 0;
  EXPECT_NE(check_sweep(inputs, s)->find("at least one parameter"), std::string::npos);
  s.parameters = {sweep_parameter{7, "max", {1}}};
  EXPECT_NE(check_sweep(inputs, s)->find("input 7 does not exist"), std::string::npos);
  s.parameters = {sweep_parameter{2, "factor", {1}}};
  EXPECT_NE(check_sweep(inputs, s)->find("min or max"), std::string::npos);
  s.parameters = {sweep_parameter{2, "max", {}}};
  EXPECT_NE(check_sweep(inputs, s)->find("no values"), std::string::npos);
  s.parameters = {sweep_parameter{0, "count", {1.5}}};
  EXPECT_NE(check_sweep(inputs, s)->find("whole numbers"), std::string::npos);
  s.parameters = {sweep_parameter{0, "count", {1, 10}}};
  s.method = sweep_method::cobyla;
  EXPECT_NE(check_sweep(inputs, s)->find("sweep it by grid or coordinate"), std::string::npos);
}

// Micro benchmarks of the pure twin logic (Google Benchmark).

#include <benchmark/benchmark.h>

#include <cmath>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "actors/core/aggregate.hpp"
#include "actors/core/codec.hpp"
#include "actors/core/filter.hpp"
#include "actors/core/property_analytics.hpp"
#include "actors/core/relations.hpp"
#include "actors/core/scenario.hpp"
#include "actors/core/twin.hpp"
#include "actors/core/twin_analytics.hpp"

using namespace fleettwin::core;

namespace {

telemetry vehicle(uint64_t seq) {
  telemetry t;
  t.asset_id = "veh-000001";
  t.kind = "vehicle";
  t.sequence = seq;
  t.source_time_ms = 1'700'000'000'000 + static_cast<int64_t>(seq);
  t.metrics = {{"speed", 50.0 + seq % 7},
               {"battery", 80.0},
               {"position.lat", 59.3},
               {"position.lon", 18.0},
               {"odometer", int64_t(1000 + seq)}};
  return t;
}

void BM_ApplyTelemetry(benchmark::State& state) {
  twin tw;
  limits lim;
  apply_result res;
  std::vector<telemetry> recs;
  for (uint64_t i = 1; i <= 1024; ++i)
    recs.push_back(vehicle(i));
  uint64_t seq = 0;
  for (auto _ : state) {
    auto& t = recs[seq % recs.size()];
    t.sequence = ++seq;
    t.source_time_ms = static_cast<int64_t>(seq);
    apply_telemetry(tw, t, 1, lim, res);
    benchmark::DoNotOptimize(res);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ApplyTelemetry);

void BM_EncodeTwin(benchmark::State& state) {
  twin tw;
  limits lim;
  apply_result res;
  apply_telemetry(tw, vehicle(1), 1, lim, res);
  std::string out;
  for (auto _ : state) {
    encode_twin(tw, out);
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EncodeTwin);

void BM_DecodeTwin(benchmark::State& state) {
  twin tw;
  limits lim;
  apply_result res;
  apply_telemetry(tw, vehicle(1), 1, lim, res);
  std::string bytes;
  encode_twin(tw, bytes);
  twin back;
  for (auto _ : state) {
    benchmark::DoNotOptimize(decode_twin(bytes, back));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeTwin);

void BM_FilterMatch(benchmark::State& state) {
  twin tw;
  limits lim;
  apply_result res;
  auto t = vehicle(1);
  t.attributes = {{"fleet", "north"}};
  apply_telemetry(tw, t, 1, lim, res);
  filter f;
  filter::parse(R"(kind = "vehicle" AND attributes.fleet = "north" AND reported.speed > 10)", f);
  for (auto _ : state)
    benchmark::DoNotOptimize(f.matches(tw, 1, 1000));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FilterMatch);

/// One aggregate with `range(0)` member twins absorbing member updates in
/// contributions of 1,000 deltas (one commit's worth from one child), keeping
/// count, sum, mean, min, max, a filtered count and exact p50/p95 current; the
/// measures are read once per contribution, as a commit does.
void BM_AggregateMemberUpdates(benchmark::State& state) {
  const auto members = static_cast<size_t>(state.range(0));
  auto kind = std::make_shared<compiled_kind>();
  compile_kind({"fleet",
                "fleets",
                {"member_of"},
                {{"n", "count()"},
                 {"power", "sum(reported.power)"},
                 {"mean", "mean(reported.power)"},
                 {"lo", "min(reported.power)"},
                 {"hi", "max(reported.power)"},
                 {"low", "count(reported.battery < 20)"},
                 {"p50", "p50(reported.power)"},
                 {"p95", "p95(reported.power)"}},
                ""},
               *kind);
  aggregate agg{"fleets/north", kind, 300'000};
  std::vector<std::string> ids(members);
  std::mt19937_64 rng{1};
  std::uniform_real_distribution<double> value(0, 100);
  auto delta = [&](size_t i, uint64_t version) {
    member_delta d;
    d.id = ids[i];
    d.twin = true;
    d.values.kind = "vehicle";
    d.values.version = version;
    d.values.reported = {{"battery", std::round(value(rng))}, {"power", value(rng)}};
    return d;
  };
  contribution c{"veh-batch", "fleets/north", "member_of", {}};
  for (size_t i = 0; i < members; ++i) {
    ids[i] = "veh-" + std::to_string(i);
    c.deltas.push_back(delta(i, 1));
  }
  std::vector<member_delta> out;
  agg.apply(c, 1, out);
  uint64_t version = 2;
  size_t next = 0;
  for (auto _ : state) {
    state.PauseTiming();
    c.deltas.clear();
    for (int k = 0; k < 1000; ++k, next = (next + 7919) % members)
      c.deltas.push_back(delta(next, version));
    ++version;
    out.clear();
    state.ResumeTiming();
    agg.apply(c, 1, out);
    benchmark::DoNotOptimize(agg.measures({}));
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_AggregateMemberUpdates)->Arg(1'000)->Arg(100'000)->Unit(benchmark::kMicrosecond);

/// Per-sample analytics of one property: the forecaster alone, the detectors
/// alone (on precomputed errors), and both (what a twin runs per numeric
/// sample); `range(0)` 1 adds a daily season.
std::vector<double> analytics_series(size_t n) {
  std::mt19937_64 rng{3};
  std::normal_distribution<double> noise(0, 1);
  std::vector<double> xs(n);
  for (size_t i = 0; i < n; ++i)
    xs[i] = 20 + 5 * std::sin(static_cast<double>(i) / 40) + noise(rng);
  return xs;
}

constexpr int64_t analytics_t0 = 1'700'000'000'000;

void BM_Forecaster(benchmark::State& state) {
  const auto xs = analytics_series(4096);
  const auto p = state.range(0) ? forecast_params::seasonal(86'400'000) : forecast_params{};
  forecaster_state s;
  size_t i = 0;
  for (auto _ : state) {
    update_forecaster(s, p, xs[i % xs.size()], analytics_t0 + static_cast<int64_t>(i) * 60'000);
    ++i;
  }
  benchmark::DoNotOptimize(s);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Forecaster)->Arg(0)->Arg(1);

void BM_Detectors(benchmark::State& state) {
  const auto xs = analytics_series(4096);
  detector_params p;
  detector_state s;
  size_t i = 0;
  for (auto _ : state) {
    const double x = xs[i % xs.size()];
    benchmark::DoNotOptimize(detect(s, p, x, analytics_t0 + static_cast<int64_t>(i) * 60'000,
                                    i == 0 ? std::nullopt : std::optional<double>{x - 20}, 0, 20,
                                    0));
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Detectors);

void BM_PropertyAnalytics(benchmark::State& state) {
  const auto xs = analytics_series(4096);
  property_analytics_params p;
  if (state.range(0))
    p.forecast = forecast_params::seasonal(86'400'000);
  property_analytics a;
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        analyze(a, p, xs[i % xs.size()], analytics_t0 + static_cast<int64_t>(i) * 60'000));
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PropertyAnalytics)->Arg(0)->Arg(1);

/// What a twin runs per numeric sample: forecaster, detectors, data quality
/// against its model (range, rate, expected interval, failure threshold)
/// and the alert (core::analyze_applied, one property per record).
void BM_TwinAnalytics(benchmark::State& state) {
  const auto xs = analytics_series(4096);
  asset_model m;
  m.kind = "meter";
  property_model pm;
  pm.name = "x";
  pm.min = -1e9;
  pm.max = 1e9;
  pm.expected_interval_ms = 60'000;
  pm.max_rate_per_s = 1e6;
  pm.failure = threshold{1e9, true};
  if (state.range(0))
    pm.period_ms = 86'400'000;
  m.properties.push_back(pm);
  twin tw;
  telemetry t;
  t.metrics.emplace_back("x", 0.0);
  apply_result applied;
  applied.applied_metrics = {0};
  analysis_output out;
  size_t i = 0;
  for (auto _ : state) {
    t.metrics[0].second = xs[i % xs.size()];
    t.source_time_ms = analytics_t0 + static_cast<int64_t>(i) * 60'000;
    out.alerts.clear();
    analyze_applied(tw, t, applied, &m, t.source_time_ms, out);
    benchmark::DoNotOptimize(out);
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TwinAnalytics)->Arg(0)->Arg(1);

// A what-if scenario over a grid of `state.range(0)` meters (power, voltage,
// current; a day of quarter-hourly history each) below transformers of 100
// meters, feeders of 10 transformers and one grid: a day run forward in
// quarter-hour steps. x_real_time is virtual time per wall time.
void BM_ScenarioRun(benchmark::State& state) {
  const auto meters = static_cast<int>(state.range(0));
  auto kinds = std::make_shared<kind_registry>();
  for (auto [name, collection] : {std::pair{"transformer", "transformers"},
                                  std::pair{"feeder", "feeders"}, std::pair{"grid", "grids"}})
    kinds->put({name,
                collection,
                {"feeds"},
                {{"meters", "count()"},
                 {"power", "sum(reported.power)"},
                 {"voltage_p01", "percentile(reported.voltage, 0.01)"},
                 {"utilisation", "power / attributes.capacity_kw"}},
                ""});
  scenario_world w;
  w.kinds = kinds;
  w.start_ms = 1'700'000'000'000;
  const int transformers = std::max(1, meters / 100);
  auto aggregate_of = [&](const std::string& id, const std::string& parent) {
    scenario_aggregate a{twin{},
                         aggregate{id, kinds->kinds().at(kinds->kind_of(id)->def.name), 3'600'000}};
    a.entity.asset_id = id;
    a.entity.attributes["capacity_kw"] = "1000";
    if (!parent.empty())
      a.entity.relations.push_back(relation{"feeds", parent, relation_origin::api});
    w.aggregates.emplace(id, std::move(a));
  };
  aggregate_of("grids/main", "");
  for (int f = 0; f < std::max(1, transformers / 10); ++f)
    aggregate_of("feeders/f" + std::to_string(f), "grids/main");
  for (int t = 0; t < transformers; ++t)
    aggregate_of("transformers/t" + std::to_string(t),
                 "feeders/f" + std::to_string(t / 10 % std::max(1, transformers / 10)));
  std::mt19937 rng{7};
  std::normal_distribution<double> noise{0, 0.3};
  apply_result applied;
  analysis_output out;
  for (int i = 0; i < meters; ++i) {
    twin tw;
    tw.asset_id = "m-" + std::to_string(i);
    tw.kind = "meter";
    tw.relations.push_back(relation{"feeds", "transformers/t" + std::to_string(i % transformers),
                                    relation_origin::api});
    for (int k = 0; k < 96; ++k) {
      telemetry t;
      t.asset_id = tw.asset_id;
      t.kind = "meter";
      t.sequence = static_cast<uint64_t>(k + 1);
      t.source_time_ms = w.start_ms - (96 - k) * 900'000;
      const double load = 3 + 2 * std::sin(k * 6.283 / 96) + noise(rng);
      t.metrics = {{"power", load}, {"voltage", 230 - load + noise(rng)}, {"current", load * 4.3}};
      apply_telemetry(tw, t, t.source_time_ms, limits{}, applied);
      analyze_applied(tw, t, applied, nullptr, t.source_time_ms, out);
    }
    w.twins.emplace(tw.asset_id, std::move(tw));
  }
  connect(w);
  profile_input heat;
  heat.property = "power";
  heat.factor = 1.3;
  std::vector<scenario_input> inputs{heat};
  run_options o;
  o.horizon_ms = 24 * 3'600'000LL;
  o.step_ms = 900'000;
  o.noise = 1;
  for (auto _ : state) {
    state.PauseTiming();
    scenario_world copy = w;
    prepare(copy, inputs);
    state.ResumeTiming();
    auto r = run(copy, inputs, o);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * meters * 96);
  state.counters["x_real_time"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 86'400, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_ScenarioRun)->Arg(1'000)->Arg(10'000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

// Micro benchmarks of the pure twin logic (Google Benchmark).

#include <benchmark/benchmark.h>

#include "actors/core/codec.hpp"
#include "actors/core/filter.hpp"
#include "actors/core/twin.hpp"

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

}  // namespace

BENCHMARK_MAIN();

// What-if scenarios on a node with its embedded Kafka, through the real
// interfaces: telemetry in, ScenarioService over gRPC, results checked
// against hand-computed roll-ups, the live twins, aggregates and output
// topics untouched by any run, the fork unchanged by later live changes
// (copy-on-write), runs deterministic by seed, errors precise, and the
// scenario gauges on /metrics.

#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "fleettwin/v1/aggregate.grpc.pb.h"
#include "fleettwin/v1/scenario.grpc.pb.h"
#include "fleettwin/v1/service.grpc.pb.h"
#include "harness.hpp"
#include "services/kafka/kafka_config.hpp"

using namespace fleettwin;
using namespace fleettwin::test;
using namespace std::chrono_literals;

namespace {

constexpr int meters = 40;
constexpr int64_t quarter = 15 * 60'000;

constexpr const char* kinds_toml = R"toml(
[[kind]]
name = "transformer"
collection = "transformers"
members = ["feeds"]
measures = ["meters = count()", "power = sum(reported.power)",
            "utilisation = power / attributes.capacity_kw"]

[[kind]]
name = "feeder"
collection = "feeders"
members = ["feeds"]
measures = ["meters = count()", "power = sum(reported.power)"]

[[rule]]
attribute = "transformer"
relation = "feeds"
collection = "transformers"

[[rule]]
attribute = "feeder"
relation = "feeds"
collection = "feeders"
)toml";

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Meter i reports this power (kW), plus `extra` after the live change.
double power_of(int i, double extra = 0) {
  return 1 + i % 5 + extra;
}

struct ScenarioNodeTest : ::testing::Test {
  kafka::topic_names topics;
  std::string dir;
  std::unique_ptr<node_process> node;
  std::unique_ptr<v1::ScenarioService::Stub> scenarios;
  std::unique_ptr<v1::AggregateService::Stub> aggs;
  std::unique_ptr<v1::TwinService::Stub> twins;
  int64_t base_ms = now_ms() - 12 * quarter;

  void SetUp() override {
    dir = make_temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::ofstream{dir + "/kinds.toml"} << kinds_toml;
    node = std::make_unique<node_process>(
        "", dir + "/data",
        std::vector<std::string>{"--partitions", "4", "--aggregates", dir + "/kinds.toml",
                                 "--scenario-max", "2"});
    node->start();
    auto channel = grpc::CreateChannel(node->grpc_address(), grpc::InsecureChannelCredentials());
    scenarios = v1::ScenarioService::NewStub(channel);
    aggs = v1::AggregateService::NewStub(channel);
    twins = v1::TwinService::NewStub(channel);
  }

  void TearDown() override {
    if (HasFailure() && node) {
      std::ifstream log{node->log_path()};
      std::cerr << "--- fleettwin-node log ---\n" << log.rdbuf() << "--- end of log ---\n";
    }
    node.reset();
    std::filesystem::remove_all(dir);
  }

  /// Twelve reports a quarter apart from every meter (a steady load each), and
  /// the transformers' capacity; then waits for the roll-up.
  void feed() {
    producer p{node->bootstrap()};
    for (int t = 0; t < 4; ++t) {
      const auto id = "transformers/T" + std::to_string(t);
      p.send(topics.telemetry, id,
             telemetry(id, 1, base_ms, {},
                       {{"feeder", "F" + std::to_string(t % 2)}, {"capacity_kw", "100"}},
                       "transformer"));
    }
    for (int k = 0; k < 12; ++k)
      for (int i = 0; i < meters; ++i) {
        const auto id = "m-" + std::to_string(i);
        p.send(topics.telemetry, id,
               telemetry(id, static_cast<uint64_t>(k + 1), base_ms + k * quarter,
                         {{"power", power_of(i)}}, {{"transformer", "T" + std::to_string(i % 4)}},
                         "meter"));
      }
    ASSERT_EQ(p.flush(), 0);
    ASSERT_TRUE(converged(0));
  }

  /// Every meter draws `extra` kW more from the 13th quarter on (live), until the
  /// live aggregates show it.
  void draw_more(double extra) {
    producer p{node->bootstrap()};
    for (int i = 0; i < meters; ++i) {
      const auto id = "m-" + std::to_string(i);
      p.send(topics.telemetry, id,
             telemetry(id, 13, base_ms + 12 * quarter, {{"power", power_of(i, extra)}},
                       {{"transformer", "T" + std::to_string(i % 4)}}, "meter"));
    }
    ASSERT_EQ(p.flush(), 0);
    ASSERT_TRUE(converged(extra));
  }

  /// The live transformers' power equals the truth with `extra` per meter.
  bool converged(double extra) {
    return eventually([&] {
      for (int t = 0; t < 4; ++t)
        if (std::fabs(live_measure("transformers/T" + std::to_string(t), "power") -
                      transformer_power(t, extra)) > 1e-9)
          return false;
      for (int f = 0; f < 2; ++f)
        if (std::fabs(live_measure("feeders/F" + std::to_string(f), "power") -
                      transformer_power(f, extra) - transformer_power(f + 2, extra)) > 1e-9)
          return false;
      return true;
    });
  }

  static double transformer_power(int t, double extra = 0) {
    double sum = 0;
    for (int i = t; i < meters; i += 4)
      sum += power_of(i, extra);
    return sum;
  }

  double live_measure(const std::string& id, const std::string& name) {
    v1::Aggregate a;
    if (!get_aggregate(id, a).ok())
      return -1;
    for (const auto& m : a.measures())
      if (m.name() == name && m.has_value())
        return m.value();
    return -1;
  }

  grpc::Status get_aggregate(const std::string& id, v1::Aggregate& out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    v1::GetAggregateRequest req;
    req.set_name("aggregates/" + id);
    return aggs->GetAggregate(&ctx, req, &out);
  }

  grpc::Status create(const std::string& id, v1::CreateScenarioRequest req,
                      v1::Scenario* out = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    req.set_scenario_id(id);
    v1::Scenario s;
    return scenarios->CreateScenario(&ctx, req, out ? out : &s);
  }

  grpc::Status add_inputs(const std::string& id, const std::vector<v1::ScenarioInput>& inputs,
                          v1::Scenario* out = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::AddScenarioInputsRequest req;
    req.set_name("scenarios/" + id);
    for (const auto& in : inputs)
      *req.add_inputs() = in;
    v1::Scenario s;
    return scenarios->AddScenarioInputs(&ctx, req, out ? out : &s);
  }

  /// Runs a scenario: the progress messages seen and the final result.
  grpc::Status run(const std::string& id, v1::ScenarioResult& result, int* messages = nullptr,
                   double noise = 0, uint64_t seed = 0) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 120s);
    v1::RunScenarioRequest req;
    req.set_name("scenarios/" + id);
    req.set_horizon_ms(2 * 3'600'000);
    req.set_step_ms(quarter);
    req.set_noise(noise);
    req.set_seed(seed);
    auto reader = scenarios->RunScenario(&ctx, req);
    v1::RunScenarioProgress p;
    int n = 0;
    bool done = false;
    while (reader->Read(&p)) {
      ++n;
      EXPECT_LE(p.steps_done(), p.steps_total());
      if (p.done()) {
        done = true;
        result = p.result();
      }
    }
    if (messages)
      *messages = n;
    auto s = reader->Finish();
    if (s.ok())
      EXPECT_TRUE(done);
    return s;
  }

  static const v1::KpiSeries* kpi(const google::protobuf::RepeatedPtrField<v1::KpiSeries>& all,
                                  const std::string& aggregate, const std::string& measure) {
    for (const auto& k : all)
      if (k.kpi().aggregate() == aggregate && k.kpi().measure() == measure)
        return &k;
    return nullptr;
  }

  /// Every value of a KPI series equals `want`.
  static ::testing::AssertionResult all_equal(const v1::KpiSeries* k, double want) {
    if (!k)
      return ::testing::AssertionFailure() << "no such kpi";
    if (k->values_size() == 0)
      return ::testing::AssertionFailure() << "no values";
    for (int i = 0; i < k->values_size(); ++i)
      if (!(std::fabs(k->values(i) - want) <= 1e-9 * std::max(1.0, std::fabs(want))))
        return ::testing::AssertionFailure()
               << k->kpi().aggregate() << " " << k->kpi().measure() << "[" << i
               << "] = " << k->values(i) << ", want " << want;
    return ::testing::AssertionSuccess();
  }

  /// What the live side holds: every twin's and aggregate's version, and
  /// how many records every output topic ever got.
  std::map<std::string, int64_t> live_state() {
    std::map<std::string, int64_t> out;
    for (int i = 0; i < meters; ++i) {
      v1::Twin tw;
      EXPECT_TRUE(get_twin(*twins, "m-" + std::to_string(i), tw).ok());
      out["twins/m-" + std::to_string(i)] = static_cast<int64_t>(tw.version());
    }
    for (const char* id : {"transformers/T0", "transformers/T1", "transformers/T2",
                           "transformers/T3", "feeders/F0", "feeders/F1"}) {
      v1::Aggregate a;
      EXPECT_TRUE(get_aggregate(id, a).ok()) << id;
      out[id] = static_cast<int64_t>(a.version());
    }
    for (const auto& t : {topics.changes, topics.state, topics.alerts, topics.aggregate_updates,
                          topics.aggregates, topics.dlq}) {
      auto n = end_offsets(node->bootstrap(), t);
      EXPECT_TRUE(n.has_value()) << t;
      out["topic " + t] = n.value_or(-1);
    }
    return out;
  }

  static v1::ScenarioInput profile(const std::string& filter, double factor) {
    v1::ScenarioInput in;
    in.mutable_profile()->mutable_twins()->set_filter(filter);
    in.mutable_profile()->set_property("power");
    in.mutable_profile()->set_factor(factor);
    return in;
  }
};

}  // namespace

TEST_F(ScenarioNodeTest, AForkRunsForwardApartFromTheLiveTwinsAndMatchesHandComputedRollUps) {
  feed();
  // Fork everything below feeder F0: the meters of T0 and T2.
  v1::CreateScenarioRequest create_req;
  create_req.set_below("feeders/F0");
  create_req.set_description("heat wave, chargers on T2");
  v1::Scenario created;
  const auto made = create("heat", create_req, &created);
  ASSERT_TRUE(made.ok()) << made.error_message();
  EXPECT_EQ(created.name(), "scenarios/heat");
  EXPECT_EQ(created.state(), "created");
  EXPECT_EQ(created.partitions_size(), 4);  // one node serves them all

  // The live twins change after the fork: the fork must not see it.
  ASSERT_NO_FATAL_FAILURE(draw_more(10));

  // A heat wave on T0 (x1.5), five 7 kW chargers on T2, two meters of T2 held to 1.5 kW.
  v1::ScenarioInput chargers;
  auto* add = chargers.mutable_add_twins();
  add->set_template_twin("twins/m-0");
  add->set_count(5);
  add->set_id_prefix("ev-");
  add->set_parent("transformers/T2");
  add->set_relation_type("feeds");
  (*add->mutable_attributes())["transformer"] = "T2";
  (*add->mutable_attributes())["role"] = "ev";
  v1::ScenarioInput charging;
  charging.mutable_telemetry()->mutable_twins()->set_filter("attributes.role = \"ev\"");
  charging.mutable_telemetry()->set_property("power");
  auto* pt = charging.mutable_telemetry()->add_points();
  pt->set_offset_ms(0);
  pt->set_value(7);
  v1::ScenarioInput cap;
  cap.mutable_limit()->mutable_twins()->add_names("twins/m-2");
  cap.mutable_limit()->mutable_twins()->add_names("m-6");
  cap.mutable_limit()->set_property("power");
  cap.mutable_limit()->set_max(1.5);
  v1::Scenario with_inputs;
  ASSERT_TRUE(add_inputs("heat",
                         {profile("attributes.transformer = \"T0\"", 1.5), chargers, charging, cap},
                         &with_inputs)
                  .ok());
  ASSERT_EQ(with_inputs.input_descriptions_size(), 4);
  EXPECT_EQ(with_inputs.input_descriptions(1),
            "add 5 copies of m-0 as ev-1.. to transformers/T2 (feeds)");

  const auto before = live_state();
  v1::ScenarioResult r;
  int messages = 0;
  const auto st = run("heat", r, &messages);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_GE(messages, 1);
  EXPECT_EQ(r.times_size(), 8);
  EXPECT_EQ(r.stats().twins(), 25);  // 20 forked meters and 5 chargers
  EXPECT_EQ(r.base_stats().twins(), 20);
  EXPECT_GT(r.stats().speed(), 100);

  // By hand: the fork holds the powers from before the live change.
  const double t0 = transformer_power(0), t2 = transformer_power(2);
  const double t2_scenario = t2 - power_of(2) - power_of(6) + 2 * 1.5 + 5 * 7;
  EXPECT_TRUE(all_equal(kpi(r.base_kpis(), "transformers/T0", "power"), t0));
  EXPECT_TRUE(all_equal(kpi(r.base_kpis(), "transformers/T2", "power"), t2));
  EXPECT_TRUE(all_equal(kpi(r.base_kpis(), "feeders/F0", "power"), t0 + t2));
  EXPECT_TRUE(all_equal(kpi(r.kpis(), "transformers/T0", "power"), 1.5 * t0));
  EXPECT_TRUE(all_equal(kpi(r.kpis(), "transformers/T0", "utilisation"), 1.5 * t0 / 100));
  EXPECT_TRUE(all_equal(kpi(r.kpis(), "transformers/T2", "power"), t2_scenario));
  EXPECT_TRUE(all_equal(kpi(r.kpis(), "transformers/T2", "meters"), 15));
  EXPECT_TRUE(all_equal(kpi(r.kpis(), "feeders/F0", "power"), 1.5 * t0 + t2_scenario));
  EXPECT_EQ(kpi(r.kpis(), "transformers/T1", "power"), nullptr);  // not forked
  bool summarised = false;
  for (const auto& k : r.summary())
    if (k.kpi().aggregate() == "feeders/F0" && k.kpi().measure() == "power") {
      summarised = true;
      EXPECT_NEAR(k.peak(), 1.5 * t0 + t2_scenario, 1e-9);
      EXPECT_NEAR(k.base_peak(), t0 + t2, 1e-9);
    }
  EXPECT_TRUE(summarised);

  // Nothing live moved: no twin, aggregate or output topic.
  EXPECT_EQ(live_state(), before);

  // The result is kept, and the scenario says it ran.
  {
    grpc::ClientContext ctx;
    v1::GetScenarioResultRequest req;
    req.set_name("scenarios/heat");
    v1::ScenarioResult kept;
    ASSERT_TRUE(scenarios->GetScenarioResult(&ctx, req, &kept).ok());
    EXPECT_EQ(kept.SerializeAsString(), r.SerializeAsString());
    grpc::ClientContext ctx2;
    v1::GetScenarioRequest get;
    get.set_name("scenarios/heat");
    v1::Scenario s;
    ASSERT_TRUE(scenarios->GetScenario(&ctx2, get, &s).ok());
    EXPECT_EQ(s.state(), "done");
    // Copy-on-write: the scenario holds its inputs and results, not 20 twins' state.
    EXPECT_GT(s.memory_bytes(), 0);
    EXPECT_LT(s.memory_bytes(), 64 * 1024);
  }

  // Data teams get the result on the scenario-results topic: a point per KPI and step,
  // then the summary.
  {
    grpc::ClientContext ctx;
    v1::ExportScenarioResultRequest req;
    req.set_name("scenarios/heat");
    v1::ExportScenarioResultResponse resp;
    const auto exported = scenarios->ExportScenarioResult(&ctx, req, &resp);
    ASSERT_TRUE(exported.ok()) << exported.error_message();
    EXPECT_EQ(resp.topic(), topics.scenario_results);
    const auto want = static_cast<size_t>(r.kpis_size() * r.times_size() + 1);
    EXPECT_EQ(resp.records(), static_cast<int64_t>(want));
    const auto records = read_topic(node->bootstrap(), topics.scenario_results, want, 30s);
    ASSERT_EQ(records.size(), want);
    size_t summaries = 0, t0_points = 0;
    for (const auto& rec : records) {
      EXPECT_EQ(rec.key, "heat");
      EXPECT_EQ(rec.headers.at("content-type"), "application/json");
      EXPECT_EQ(rec.headers.at("ce_specversion"), "1.0");
      if (rec.headers.at("ce_type") == "fleettwin.scenario.result") {
        ++summaries;
        EXPECT_NE(rec.value.find("\"compared_with\":\"baseline\""), std::string::npos) << rec.value;
        continue;
      }
      EXPECT_EQ(rec.headers.at("ce_type"), "fleettwin.scenario.kpi");
      v1::ScenarioKpiPoint p;
      ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(rec.value, &p).ok()) << rec.value;
      EXPECT_EQ(p.scenario(), "scenarios/heat");
      if (p.aggregate() == "transformers/T0" && p.measure() == "power") {
        ++t0_points;
        EXPECT_NEAR(p.value(), 1.5 * t0, 1e-9);
        EXPECT_NEAR(p.base_value(), t0, 1e-9);
      }
    }
    EXPECT_EQ(summaries, 1u);
    EXPECT_EQ(t0_points, 8u);
  }

  auto m = scrape(node->metrics_port());
  EXPECT_EQ(metric_value(m, "fleettwin_scenarios"), 1);
  EXPECT_EQ(metric_value(m, "fleettwin_scenario_runs_total{outcome=\"done\"}"), 1);
  EXPECT_GT(metric_value(m, "fleettwin_scenario_speed_ratio"), 100);
  EXPECT_GT(metric_value(m, "fleettwin_scenario_memory_bytes"), 0);
  EXPECT_EQ(metric_value(m, "fleettwin_scenario_runs_in_progress"), 0);
  EXPECT_GE(metric_value(m, "fleettwin_scenario_oldest_snapshot_age_seconds"), 0);
  EXPECT_NE(m.find("fleettwin_scenario_oldest_snapshot_age_seconds "), std::string::npos);
}

TEST_F(ScenarioNodeTest, AForkFromAPastPointStartsFromTheTwinsAsTheyWereThen) {
  feed();
  // Every meter draws 10 kW more from the 13th quarter on (live).
  ASSERT_NO_FATAL_FAILURE(draw_more(10));
  const double t0 = transformer_power(0), t2 = transformer_power(2);
  const double t0_now = transformer_power(0, 10), t2_now = transformer_power(2, 10);

  // Forked as of before the change: the powers (and the forecasts) of then.
  v1::CreateScenarioRequest req;
  req.set_below("feeders/F0");
  const int64_t then = base_ms + 11 * quarter + 1;
  req.set_at_ms(then);
  v1::Scenario past;
  auto st = create("past", req, &past);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(past.fork_ms(), then);
  v1::ScenarioResult r;
  st = run("past", r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(r.stats().twins(), 20);
  ASSERT_GT(r.times_size(), 0);
  EXPECT_EQ(r.times(0), then + quarter);
  EXPECT_TRUE(all_equal(kpi(r.base_kpis(), "transformers/T0", "power"), t0));
  EXPECT_TRUE(all_equal(kpi(r.base_kpis(), "feeders/F0", "power"), t0 + t2));

  // Forked now: from the powers after the change (where the forecasts go from there).
  req.set_at_ms(0);
  ASSERT_TRUE(create("now", req).ok());
  st = run("now", r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const auto* now_f0 = kpi(r.base_kpis(), "feeders/F0", "power");
  ASSERT_NE(now_f0, nullptr);
  EXPECT_GT(now_f0->values(0), t0 + t2 + 1);
  EXPECT_LE(now_f0->values(0), t0_now + t2_now + 1e-9);

  // Before any retained sample nothing is left to fork; the future is no point to fork from.
  for (const char* id : {"past", "now"}) {
    grpc::ClientContext ctx;
    v1::DeleteScenarioRequest del;
    del.set_name(std::string{"scenarios/"} + id);
    v1::DeleteScenarioResponse resp;
    ASSERT_TRUE(scenarios->DeleteScenario(&ctx, del, &resp).ok());
  }
  req.set_at_ms(base_ms - 1);
  st = create("too-early", req);
  ASSERT_TRUE(st.ok()) << st.error_message();
  st = run("too-early", r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
  EXPECT_NE(st.error_message().find("retained history"), std::string::npos) << st.error_message();
  req.set_at_ms(now_ms() + 3'600'000);
  st = create("future", req);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
}

TEST_F(ScenarioNodeTest, ScenariosAndTheirResultsAreKeptAcrossARestart) {
  feed();
  v1::CreateScenarioRequest req;
  req.set_below("feeders/F0");
  req.set_description("kept");
  v1::Scenario made;
  ASSERT_TRUE(create("kept", req, &made).ok());
  ASSERT_TRUE(add_inputs("kept", {profile("attributes.transformer = \"T0\"", 1.5)}).ok());
  v1::ScenarioResult first;
  auto st = run("kept", first);
  ASSERT_TRUE(st.ok()) << st.error_message();

  auto reconnect = [&] {
    auto channel = grpc::CreateChannel(node->grpc_address(), grpc::InsecureChannelCredentials());
    scenarios = v1::ScenarioService::NewStub(channel);
    aggs = v1::AggregateService::NewStub(channel);
    twins = v1::TwinService::NewStub(channel);
  };
  ASSERT_EQ(node->terminate(), 0);
  node->start();
  reconnect();

  // The definition, inputs and result as they were.
  {
    grpc::ClientContext ctx;
    v1::GetScenarioRequest get;
    get.set_name("scenarios/kept");
    v1::Scenario back;
    ASSERT_TRUE(scenarios->GetScenario(&ctx, get, &back).ok());
    EXPECT_EQ(back.state(), "done");
    EXPECT_EQ(back.description(), "kept");
    EXPECT_EQ(back.fork_ms(), made.fork_ms());
    ASSERT_EQ(back.input_descriptions_size(), 1);
    grpc::ClientContext rctx;
    v1::GetScenarioResultRequest rreq;
    rreq.set_name("scenarios/kept");
    v1::ScenarioResult kept;
    ASSERT_TRUE(scenarios->GetScenarioResult(&rctx, rreq, &kept).ok());
    EXPECT_EQ(kept.SerializeAsString(), first.SerializeAsString());
  }
  // It runs again, forked anew as of its point in time from the twins' history.
  v1::ScenarioResult again;
  st = run("kept", again);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(again.stats().twins(), first.stats().twins());
  EXPECT_EQ(again.times(0), first.times(0));
  EXPECT_TRUE(all_equal(kpi(again.base_kpis(), "transformers/T0", "power"), transformer_power(0)));
  EXPECT_TRUE(all_equal(kpi(again.kpis(), "transformers/T0", "power"), 1.5 * transformer_power(0)));

  // Deleted, it stays deleted.
  {
    grpc::ClientContext ctx;
    v1::DeleteScenarioRequest del;
    del.set_name("scenarios/kept");
    v1::DeleteScenarioResponse resp;
    ASSERT_TRUE(scenarios->DeleteScenario(&ctx, del, &resp).ok());
  }
  ASSERT_EQ(node->terminate(), 0);
  node->start();
  reconnect();
  grpc::ClientContext ctx;
  v1::ListScenariosRequest list;
  v1::ListScenariosResponse listed;
  ASSERT_TRUE(scenarios->ListScenarios(&ctx, list, &listed).ok());
  EXPECT_EQ(listed.scenarios_size(), 0);
}

TEST_F(ScenarioNodeTest, RunsAreDeterministicBySeedAndComparableWithEachOther) {
  feed();
  v1::CreateScenarioRequest by_filter;
  by_filter.set_filter("attributes.transformer = \"T1\"");
  ASSERT_TRUE(create("noisy", by_filter).ok());
  ASSERT_TRUE(add_inputs("noisy", {profile("", 2)}).ok());
  v1::ScenarioResult a, b, c;
  ASSERT_TRUE(run("noisy", a, nullptr, 1, 9).ok());
  ASSERT_TRUE(run("noisy", b, nullptr, 1, 9).ok());
  ASSERT_TRUE(run("noisy", c, nullptr, 1, 10).ok());
  ASSERT_GT(a.kpis_size(), 0);
  for (int k = 0; k < a.kpis_size(); ++k)
    for (int i = 0; i < a.kpis(k).values_size(); ++i) {
      // Bit-identical, not merely close.
      EXPECT_EQ(std::bit_cast<uint64_t>(a.kpis(k).values(i)),
                std::bit_cast<uint64_t>(b.kpis(k).values(i)));
      EXPECT_EQ(std::bit_cast<uint64_t>(a.base_kpis(k).values(i)),
                std::bit_cast<uint64_t>(b.base_kpis(k).values(i)));
    }
  EXPECT_EQ(a.alerts_size(), b.alerts_size());
  // The forecasters' errors are 0 on a steady load: noise scales with them, so the
  // seeds agree too; what the profile doubles is exact.
  EXPECT_TRUE(all_equal(kpi(a.kpis(), "transformers/T1", "power"), 2 * transformer_power(1)));
  EXPECT_TRUE(all_equal(kpi(c.kpis(), "transformers/T1", "power"), 2 * transformer_power(1)));

  // Another scenario to compare with.
  v1::CreateScenarioRequest by_names;
  by_names.add_names("twins/m-1");
  by_names.add_names("twins/m-5");
  ASSERT_TRUE(create("pair", by_names).ok());
  ASSERT_TRUE(add_inputs("pair", {profile("", 3)}).ok());
  v1::ScenarioResult pair;
  ASSERT_TRUE(run("pair", pair).ok());

  grpc::ClientContext ctx;
  v1::GetScenarioResultRequest req;
  req.set_name("scenarios/noisy");
  req.set_compare_with("scenarios/pair");
  req.set_summary_only(true);
  v1::ScenarioResult cmp;
  ASSERT_TRUE(scenarios->GetScenarioResult(&ctx, req, &cmp).ok());
  EXPECT_EQ(cmp.compared_with(), "scenarios/pair");
  EXPECT_EQ(cmp.kpis_size(), 0);
  const double t1 = transformer_power(1);
  const double pair_t1 = t1 + 2 * (power_of(1) + power_of(5));
  for (const auto& k : cmp.summary())
    if (k.kpi().aggregate() == "transformers/T1" && k.kpi().measure() == "power") {
      EXPECT_NEAR(k.peak(), 2 * t1, 1e-9);
      EXPECT_NEAR(k.base_peak(), pair_t1, 1e-9);
    }
}

TEST_F(ScenarioNodeTest, MistakesGetPreciseErrorsAndBoundsHold) {
  feed();
  auto code = [](const grpc::Status& s) { return s.error_code(); };
  v1::CreateScenarioRequest both;
  both.add_names("twins/m-0");
  both.set_filter("kind = \"meter\"");
  EXPECT_EQ(code(create("x", both)), grpc::StatusCode::INVALID_ARGUMENT);
  v1::CreateScenarioRequest nowhere;
  nowhere.set_below("feeders/F9");
  EXPECT_EQ(code(create("x", nowhere)), grpc::StatusCode::NOT_FOUND);
  v1::CreateScenarioRequest missing;
  missing.add_names("twins/nope");
  EXPECT_EQ(code(create("x", missing)), grpc::StatusCode::NOT_FOUND);
  v1::CreateScenarioRequest none;
  none.set_filter("kind = \"turbine\"");
  const auto s = create("x", none);
  EXPECT_EQ(code(s), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("matches no twin"), std::string::npos) << s.error_message();
  v1::CreateScenarioRequest ok;
  ok.set_below("transformers/T3");
  EXPECT_EQ(code(create("Bad_Id", ok)), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(create("one", ok).ok());
  EXPECT_EQ(code(create("one", ok)), grpc::StatusCode::ALREADY_EXISTS);
  ASSERT_TRUE(create("two", ok).ok());
  const auto full = create("three", ok);
  EXPECT_EQ(code(full), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(full.error_message().find("--scenario-max"), std::string::npos);

  // An input without a kind, and one that cannot apply (found when it runs).
  EXPECT_EQ(code(add_inputs("one", {v1::ScenarioInput{}})), grpc::StatusCode::INVALID_ARGUMENT);
  // What is wrong with an input on its own is refused when it is added.
  v1::ScenarioInput upside_down;
  upside_down.mutable_limit()->set_property("power");
  upside_down.mutable_limit()->set_min(5);
  upside_down.mutable_limit()->set_max(1);
  {
    grpc::ClientContext ctx;
    v1::AddScenarioInputsRequest req;
    req.set_name("scenarios/one");
    *req.add_inputs() = upside_down;
    v1::Scenario sc;
    const auto st = scenarios->AddScenarioInputs(&ctx, req, &sc);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(st.error_message(), "inputs[0]: a limit's minimum must not exceed its maximum");
  }
  v1::ScenarioInput bad;
  bad.mutable_add_twins()->set_template_twin("twins/nope");
  bad.mutable_add_twins()->set_count(1);
  bad.mutable_add_twins()->set_id_prefix("x-");
  bad.mutable_add_twins()->set_parent("transformers/T3");
  bad.mutable_add_twins()->set_relation_type("feeds");
  ASSERT_TRUE(add_inputs("one", {bad}).ok());
  {
    grpc::ClientContext ctx;
    v1::GetScenarioResultRequest req;
    req.set_name("scenarios/one");
    v1::ScenarioResult r;
    EXPECT_EQ(code(scenarios->GetScenarioResult(&ctx, req, &r)),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  v1::ScenarioResult r;
  const auto failed = run("one", r);
  EXPECT_EQ(code(failed), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(failed.error_message().find("input 1 (add 1 copies of nope"), std::string::npos)
      << failed.error_message();
  EXPECT_NE(failed.error_message().find("template twin \"nope\" is not in the scenario"),
            std::string::npos)
      << failed.error_message();
  {
    grpc::ClientContext ctx;
    v1::GetScenarioRequest req;
    req.set_name("scenarios/one");
    v1::Scenario sc;
    ASSERT_TRUE(scenarios->GetScenario(&ctx, req, &sc).ok());
    EXPECT_EQ(sc.state(), "failed");
    EXPECT_NE(sc.error().find("nope"), std::string::npos);
  }
  EXPECT_EQ(code(run("missing", r)), grpc::StatusCode::NOT_FOUND);

  // Listing, deleting.
  {
    grpc::ClientContext ctx;
    v1::ListScenariosRequest req;
    req.set_page_size(1);
    v1::ListScenariosResponse resp;
    ASSERT_TRUE(scenarios->ListScenarios(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.scenarios_size(), 1);
    EXPECT_EQ(resp.scenarios(0).name(), "scenarios/one");
    EXPECT_EQ(resp.next_page_token(), "one");
  }
  {
    grpc::ClientContext ctx;
    v1::DeleteScenarioRequest req;
    req.set_name("scenarios/one");
    v1::DeleteScenarioResponse resp;
    ASSERT_TRUE(scenarios->DeleteScenario(&ctx, req, &resp).ok());
    grpc::ClientContext ctx2;
    EXPECT_EQ(code(scenarios->DeleteScenario(&ctx2, req, &resp)), grpc::StatusCode::NOT_FOUND);
  }
  ASSERT_TRUE(create("three", ok).ok());
  auto m = scrape(node->metrics_port());
  EXPECT_EQ(metric_value(m, "fleettwin_scenarios"), 2);
  EXPECT_EQ(metric_value(m, "fleettwin_scenario_runs_total{outcome=\"failed\"}"), 1);
}

TEST_F(ScenarioNodeTest, ASweepFindsTheChargingLimitThatKeepsATransformerUnder60Percent) {
  feed();
  v1::CreateScenarioRequest req;
  req.set_below("transformers/T2");
  ASSERT_TRUE(create("ev", req).ok());
  // Five 11 kW chargers join T2 (30 kW of meters, 100 kW capacity), held to a limit.
  v1::ScenarioInput chargers;
  auto* add = chargers.mutable_add_twins();
  add->set_template_twin("m-2");
  add->set_count(5);
  add->set_id_prefix("ev-");
  add->set_parent("transformers/T2");
  add->set_relation_type("feeds");
  (*add->mutable_attributes())["role"] = "ev";
  v1::ScenarioInput charging;
  charging.mutable_telemetry()->mutable_twins()->set_filter("attributes.role = \"ev\"");
  charging.mutable_telemetry()->set_property("power");
  auto* pt = charging.mutable_telemetry()->add_points();
  pt->set_value(11);
  v1::ScenarioInput cap;
  cap.mutable_limit()->mutable_twins()->set_filter("attributes.role = \"ev\"");
  cap.mutable_limit()->set_property("power");
  cap.mutable_limit()->set_max(11);
  cap.mutable_limit()->set_setting("charge_limit_kw");
  ASSERT_TRUE(add_inputs("ev", {chargers, charging, cap}).ok());
  ASSERT_DOUBLE_EQ(transformer_power(2), 30);

  v1::SweepScenarioRequest sweep;
  sweep.set_name("scenarios/ev");
  sweep.set_horizon_ms(3'600'000);
  sweep.set_step_ms(quarter);
  auto* p = sweep.add_parameters();
  p->set_input(2);
  p->set_field("max");
  p->set_from(0);
  p->set_to(11);
  p->set_step(0.5);
  sweep.mutable_objective()->set_parameter(0);
  sweep.mutable_objective()->set_maximize(true);
  auto* c = sweep.add_constraints();
  c->mutable_kpi()->mutable_kpi()->set_aggregate("transformers/T2");
  c->mutable_kpi()->mutable_kpi()->set_measure("utilisation");
  c->set_max(0.6);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 120s);
  auto reader = scenarios->SweepScenario(&ctx, sweep);
  v1::SweepScenarioProgress progress;
  v1::SweepResult result;
  while (reader->Read(&progress))
    if (progress.done())
      result = progress.result();
  const auto st = reader->Finish();
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(result.runs(), 23);
  ASSERT_TRUE(result.found());
  // 30 kW + 5 x limit <= 60 kW: 6 kW.
  ASSERT_EQ(result.best().values_size(), 1);
  EXPECT_DOUBLE_EQ(result.best().values(0), 6);
  EXPECT_NEAR(result.best().constraint_values(0), 0.6, 1e-9);
  ASSERT_EQ(result.settings_size(), 1);
  EXPECT_EQ(result.settings(0).property(), "charge_limit_kw");
  EXPECT_DOUBLE_EQ(result.settings(0).value(), 6);
  EXPECT_EQ(result.settings(0).twins().filter(), "attributes.role = \"ev\"");
  {
    grpc::ClientContext again;
    v1::GetSweepResultRequest get;
    get.set_name("scenarios/ev");
    v1::SweepResult kept;
    ASSERT_TRUE(scenarios->GetSweepResult(&again, get, &kept).ok());
    EXPECT_EQ(kept.SerializeAsString(), result.SerializeAsString());
  }
  // COBYLA: anywhere in 0..11 kW, to within 0.1 % of the range, in fewer runs.
  {
    sweep.set_method("cobyla");
    grpc::ClientContext cctx;
    cctx.set_deadline(std::chrono::system_clock::now() + 120s);
    auto creader = scenarios->SweepScenario(&cctx, sweep);
    v1::SweepResult cobyla;
    while (creader->Read(&progress))
      if (progress.done())
        cobyla = progress.result();
    const auto cst = creader->Finish();
    ASSERT_TRUE(cst.ok()) << cst.error_message();
    EXPECT_EQ(cobyla.method(), "cobyla");
    ASSERT_TRUE(cobyla.found());
    EXPECT_NEAR(cobyla.best().values(0), 6, 11 * 1e-3 + 1e-9);
    EXPECT_LE(cobyla.best().constraint_values(0), 0.6 + 1e-9);
    EXPECT_LT(cobyla.runs(), 23);
    sweep.set_method("");
  }
  // A parameter that does not exist is refused before anything runs.
  sweep.mutable_parameters(0)->set_input(9);
  grpc::ClientContext bad_ctx;
  auto bad = scenarios->SweepScenario(&bad_ctx, sweep);
  while (bad->Read(&progress)) {
  }
  const auto refused = bad->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(refused.error_message().find("input 9 does not exist"), std::string::npos)
      << refused.error_message();
}

#ifdef FLEETTWIN_CLI_BINARY
TEST_F(ScenarioNodeTest, OperatorsSweepAndApplyFromTheCliAndReadWithGrpcurl) {
  feed();
  auto cli = [&](const std::string& args) {
    return run_command(std::string{FLEETTWIN_CLI_BINARY} + " --server " + node->grpc_address() +
                       " scenario " + args + " 2>&1");
  };
  auto ok = [&](const std::string& args) {
    auto [code, text] = cli(args);
    EXPECT_EQ(code, 0) << args << "\n" << text;
    return text;
  };
  EXPECT_NE(ok("create ev --below transformers/T2 --description 'five chargers'")
                .find("scenarios/ev  created  forked everything below transformers/T2"),
            std::string::npos);
  // Five 11 kW chargers on T2 (their own transformer attribute keeps them out of
  // the meters' filter), and a demand limit on T2's live meters to find.
  ok("apply-input ev --add 5 --template m-2 --parent transformers/T2 --type feeds --prefix ev- "
     "--attr role=ev --attr transformer=T2-ev");
  ok("apply-input ev --series power=11 --where 'attributes.role = \"ev\"'");
  const auto listed =
      ok("apply-input ev --limit 'power<=5' --setting power_limit_kw --where "
         "'attributes.transformer = \"T2\"'");
  EXPECT_NE(listed.find("input 2: limit power of twins where attributes.transformer = \"T2\" to "
                        "<= 5"),
            std::string::npos)
      << listed;
  const auto ran = ok("run ev --horizon 1h --step 15m --kpi transformers/T2:utilisation");
  // 30 kW of meters (none above 5 kW) and 55 kW of chargers.
  EXPECT_NE(ran.find("transformers/T2 utilisation"), std::string::npos) << ran;
  EXPECT_NE(ran.find("0.85"), std::string::npos) << ran;
  // The meters' limit that keeps T2 at or under 80 %: sum(min(power, x)) <= 25 kW: 3 kW.
  const auto swept =
      ok("sweep ev --horizon 1h --param 2.max=0:5:0.5 --maximize param:0 "
         "--constraint 'transformers/T2:utilisation<=0.8'");
  EXPECT_NE(swept.find("best: 2.max=3 (objective 3)"), std::string::npos) << swept;
  EXPECT_NE(swept.find("apply: power_limit_kw=3 on twins where attributes.transformer = \"T2\""),
            std::string::npos)
      << swept;
  const auto dry = ok("apply ev --dry-run");
  EXPECT_NE(dry.find("would change: 10 twins: 10 changed"), std::string::npos) << dry;
  const auto applied = ok("apply ev");
  EXPECT_NE(applied.find("10 twins: 10 changed"), std::string::npos) << applied;
  v1::Twin tw;
  ASSERT_TRUE(get_twin(*twins, "m-6", tw).ok());
  ASSERT_EQ(tw.desired().count("power_limit_kw"), 1u);
  EXPECT_DOUBLE_EQ(tw.desired().at("power_limit_kw").double_value(), 3);
  ASSERT_TRUE(get_twin(*twins, "m-1", tw).ok());
  EXPECT_EQ(tw.desired().count("power_limit_kw"), 0u);  // not on T2

  // A new transformer on F0 that takes two of T2's meters.
  ok("create split --below feeders/F0");
  const auto added =
      ok("apply-input split --add-aggregate transformers/T9 --parent feeders/F0 --type feeds "
         "--attr capacity_kw=50");
  EXPECT_NE(added.find("add aggregate transformers/T9 to feeders/F0 (feeds)"), std::string::npos)
      << added;
  ok("apply-input split --move-to transformers/T9 --type feeds --twin m-2 --twin m-6");
  ok("run split --horizon 1h --step 15m");
  {
    grpc::ClientContext ctx;
    v1::GetScenarioResultRequest req;
    req.set_name("scenarios/split");
    v1::ScenarioResult r;
    ASSERT_TRUE(scenarios->GetScenarioResult(&ctx, req, &r).ok());
    const double moved = power_of(2) + power_of(6);
    EXPECT_TRUE(all_equal(kpi(r.kpis(), "transformers/T9", "power"), moved));
    EXPECT_TRUE(all_equal(kpi(r.kpis(), "transformers/T9", "utilisation"), moved / 50));
    EXPECT_TRUE(all_equal(kpi(r.kpis(), "transformers/T2", "power"), transformer_power(2) - moved));
    EXPECT_TRUE(all_equal(kpi(r.kpis(), "feeders/F0", "power"),
                          transformer_power(0) + transformer_power(2)));
    EXPECT_EQ(kpi(r.base_kpis(), "transformers/T9", "power"), nullptr);
  }

  // --json, and errors with their exit codes.
  auto [code, json] = cli("--json result ev");
  EXPECT_EQ(code, 0) << json;
  EXPECT_NE(json.find("\"compared_with\":\"baseline\""), std::string::npos) << json;
  EXPECT_EQ(cli("get nope").first, 3);                    // NOT_FOUND
  EXPECT_EQ(cli("sweep ev --param 2.max=1,2").first, 2);  // no objective: a usage error

  // A client that knows only server reflection.
  const std::string grpcurl = FLEETTWIN_GRPCURL;
  ASSERT_TRUE(std::filesystem::exists(grpcurl)) << grpcurl;
  auto [rc, services] =
      run_command(grpcurl + " -plaintext -max-time 5 " + node->grpc_address() + " list 2>&1");
  EXPECT_EQ(rc, 0) << services;
  EXPECT_NE(services.find("fleettwin.v1.ScenarioService"), std::string::npos) << services;
  auto [rc2, got] =
      run_command(grpcurl + " -plaintext -max-time 5 -d '{\"name\":\"scenarios/ev\"}' " +
                  node->grpc_address() + " fleettwin.v1.ScenarioService/GetScenario 2>&1");
  EXPECT_EQ(rc2, 0) << got;
  EXPECT_NE(got.find("\"state\": \"done\""), std::string::npos) << got;
}
#endif

TEST_F(ScenarioNodeTest, AClientThatCancelsStopsItsRunAndTheNextRunStarts) {
  feed();
  v1::CreateScenarioRequest req;
  req.set_below("feeders/F0");
  ASSERT_TRUE(create("long", req).ok());
  {
    // 40,000 one-second steps of 20 twins, and its baseline: far longer than the test
    // waits for its first progress message.
    grpc::ClientContext ctx;
    v1::RunScenarioRequest run_req;
    run_req.set_name("scenarios/long");
    run_req.set_horizon_ms(40'000'000);
    run_req.set_step_ms(1000);
    auto reader = scenarios->RunScenario(&ctx, run_req);
    v1::RunScenarioProgress m;
    ASSERT_TRUE(reader->Read(&m));
    EXPECT_FALSE(m.done());
    EXPECT_LT(m.steps_done(), m.steps_total());
    ctx.TryCancel();
    while (reader->Read(&m)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // The run stops: the scenario says why, and takes a run again.
  v1::Scenario s;
  ASSERT_TRUE(eventually([&] {
    grpc::ClientContext ctx;
    v1::GetScenarioRequest get;
    get.set_name("scenarios/long");
    return scenarios->GetScenario(&ctx, get, &s).ok() && s.state() == "failed";
  }));
  EXPECT_NE(s.error().find("cancelled"), std::string::npos) << s.error();
  EXPECT_EQ(metric_value(scrape(node->metrics_port()),
                         "fleettwin_scenario_runs_total{outcome=\"cancelled\"}"),
            1);
  v1::ScenarioResult r;
  ASSERT_TRUE(run("long", r).ok());
  EXPECT_EQ(r.times_size(), 8);
}

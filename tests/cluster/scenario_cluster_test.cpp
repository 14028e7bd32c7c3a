// What-if scenarios in a cluster, on a real Kafka broker: three nodes own the
// twins of a region between them; a scenario created through any node forks
// them all (the other nodes hold snapshot parts of the fork), runs to the
// same hand-computed roll-ups through whichever node created it, and leaves
// every live twin and aggregate as it was.

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "cluster_harness.hpp"
#include "fleettwin/v1/aggregate.grpc.pb.h"
#include "fleettwin/v1/scenario.grpc.pb.h"
#include "fleettwin/v1/service.grpc.pb.h"
#include "support/kafka_io.hpp"
#include "support/metrics_scrape.hpp"

namespace fleettwin::test {
namespace {

constexpr const char* kinds_toml = R"toml(
[[kind]]
name = "fleet"
collection = "fleets"
members = ["member_of"]
measures = ["vehicles = count()", "speed_sum = sum(reported.speed)"]

[[kind]]
name = "region"
collection = "regions"
members = ["member_of"]
measures = ["vehicles = count()", "speed_sum = sum(reported.speed)"]

[[rule]]
attribute = "fleet"
relation = "member_of"
collection = "fleets"

[[rule]]
attribute = "region"
relation = "member_of"
collection = "regions"
)toml";

constexpr int vehicles = 30;
constexpr int64_t step_ms = 15 * 60'000;

struct ScenarioClusterTest : cluster_fixture {
  std::string kinds_dir;

  void SetUp() override {
    kinds_dir = make_temp_dir("scenario-kinds");
    std::ofstream{kinds_dir + "/kinds.toml"} << kinds_toml;
  }
  void TearDown() override {
    cluster_fixture::TearDown();
    std::filesystem::remove_all(kinds_dir);
  }

  std::unique_ptr<v1::ScenarioService::Stub> stub(size_t i) {
    return v1::ScenarioService::NewStub(
        grpc::CreateChannel(c_->node(i).grpc_address(), grpc::InsecureChannelCredentials()));
  }

  grpc::Status create(size_t via, const std::string& id, v1::CreateScenarioRequest req,
                      v1::Scenario* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 60s);
    req.set_scenario_id(id);
    return stub(via)->CreateScenario(&ctx, req, out);
  }

  grpc::Status add_inputs(size_t via, const std::string& id,
                          const std::vector<v1::ScenarioInput>& inputs) {
    grpc::ClientContext ctx;
    v1::AddScenarioInputsRequest req;
    req.set_name("scenarios/" + id);
    for (const auto& in : inputs)
      *req.add_inputs() = in;
    v1::Scenario out;
    return stub(via)->AddScenarioInputs(&ctx, req, &out);
  }

  grpc::Status run(size_t via, const std::string& id, v1::ScenarioResult& result) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 120s);
    v1::RunScenarioRequest req;
    req.set_name("scenarios/" + id);
    req.set_horizon_ms(2 * 3'600'000);
    req.set_step_ms(step_ms);
    auto s = stub(via);
    auto reader = s->RunScenario(&ctx, req);
    v1::RunScenarioProgress p;
    while (reader->Read(&p))
      if (p.done())
        result = p.result();
    return reader->Finish();
  }

  static const v1::KpiSeries* kpi(const google::protobuf::RepeatedPtrField<v1::KpiSeries>& all,
                                  const std::string& aggregate, const std::string& measure) {
    for (const auto& k : all)
      if (k.kpi().aggregate() == aggregate && k.kpi().measure() == measure)
        return &k;
    return nullptr;
  }

  static testing::AssertionResult all_equal(const v1::KpiSeries* k, double want) {
    if (!k)
      return testing::AssertionFailure() << "no such KPI";
    if (k->values_size() == 0)
      return testing::AssertionFailure() << "no values";
    for (double v : k->values())
      if (std::isnan(v) || std::abs(v - want) > 1e-9)
        return testing::AssertionFailure() << "a value is " << v << ", want " << want;
    return testing::AssertionSuccess();
  }

  static double measure(size_t via, cluster& c, const std::string& id, const std::string& name) {
    auto s = v1::AggregateService::NewStub(
        grpc::CreateChannel(c.node(via).grpc_address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    v1::GetAggregateRequest req;
    req.set_name("aggregates/" + id);
    v1::Aggregate a;
    if (!s->GetAggregate(&ctx, req, &a).ok())
      return -1;
    for (const auto& m : a.measures())
      if (m.name() == name && m.has_value())
        return m.value();
    return -1;
  }

  static v1::ScenarioInput faster(const std::string& fleet, double factor) {
    v1::ScenarioInput in;
    in.mutable_profile()->mutable_twins()->set_filter("attributes.fleet = \"" + fleet + "\"");
    in.mutable_profile()->set_property("speed");
    in.mutable_profile()->set_factor(factor);
    return in;
  }
};

TEST_F(ScenarioClusterTest, AScenarioForksTheTwinsOfEveryNodeAndRunsAlikeThroughAnyNode) {
  cluster_options o;
  o.node_flags = {"--aggregates", kinds_dir + "/kinds.toml"};
  c_ = std::make_unique<cluster>(o);
  auto& c = *c_;
  c.start_nodes(3);
  std::string why;
  ASSERT_TRUE(c.wait_until_balanced(60s, &why)) << why;

  {
    producer p{c.bootstrap()};
    for (const char* f : {"north", "south"}) {
      std::string id = std::string{"fleets/"} + f;
      p.send(c.topics().telemetry, id,
             telemetry(id, 1, telemetry_source::base_time_ms, {}, {{"region", "eu"}}, "fleet"));
    }
    for (int i = 0; i < vehicles; ++i) {
      auto id = "car-" + std::to_string(i);
      p.send(c.topics().telemetry, id,
             telemetry(id, 1, telemetry_source::base_time_ms, {{"speed", double(i)}},
                       {{"fleet", i % 2 == 0 ? "north" : "south"}}));
    }
    ASSERT_EQ(p.flush(), 0);
  }
  const double north = 210, south = 225;  // even and odd speeds 0..29
  ASSERT_TRUE(eventually([&] {
    return measure(0, c, "regions/eu", "vehicles") == vehicles &&
           measure(0, c, "regions/eu", "speed_sum") == north + south;
  }));
  // The twins are spread over the three nodes.
  std::set<size_t> owners;
  for (int i = 0; i < vehicles; ++i)
    if (auto n = c.owner_of("car-" + std::to_string(i)))
      owners.insert(*n);
  ASSERT_EQ(owners.size(), 3u) << "the test needs twins on every node";

  // Created through node 0, the fork holds every node's twins below the region.
  v1::CreateScenarioRequest below;
  below.set_below("regions/eu");
  v1::Scenario made;
  auto st = create(0, "rush", below, &made);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(made.part_nodes_size(), 2);
  EXPECT_EQ(made.partitions_size(), c.partitions());
  ASSERT_TRUE(add_inputs(0, "rush", {faster("north", 1.2)}).ok());

  v1::ScenarioResult r0;
  st = run(0, "rush", r0);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(r0.stats().twins(), vehicles);
  EXPECT_EQ(r0.base_stats().twins(), vehicles);
  // By hand: the baseline holds the live speeds; the scenario drives north 20 % faster.
  EXPECT_TRUE(all_equal(kpi(r0.base_kpis(), "regions/eu", "speed_sum"), north + south));
  EXPECT_TRUE(all_equal(kpi(r0.base_kpis(), "regions/eu", "vehicles"), vehicles));
  EXPECT_TRUE(all_equal(kpi(r0.kpis(), "regions/eu", "speed_sum"), 1.2 * north + south));
  EXPECT_TRUE(all_equal(kpi(r0.kpis(), "fleets/north", "speed_sum"), 1.2 * north));
  EXPECT_TRUE(all_equal(kpi(r0.kpis(), "fleets/south", "speed_sum"), south));
  EXPECT_TRUE(all_equal(kpi(r0.kpis(), "fleets/south", "vehicles"), vehicles / 2));

  // The same scenario created through node 2 runs to the same values.
  ASSERT_TRUE(create(2, "rush-2", below, &made).ok());
  ASSERT_TRUE(add_inputs(2, "rush-2", {faster("north", 1.2)}).ok());
  v1::ScenarioResult r2;
  st = run(2, "rush-2", r2);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(r2.kpis_size(), r0.kpis_size());
  for (int i = 0; i < r0.kpis_size(); ++i)
    EXPECT_EQ(r2.kpis(i).SerializeAsString(), r0.kpis(i).SerializeAsString())
        << r0.kpis(i).kpi().aggregate() << " " << r0.kpis(i).kpi().measure();

  // A filter and names select twins of every node too; a name nobody holds is refused.
  v1::CreateScenarioRequest by_filter;
  by_filter.set_filter("attributes.fleet = \"south\"");
  ASSERT_TRUE(create(1, "south", by_filter, &made).ok());
  v1::ScenarioResult r1;
  st = run(1, "south", r1);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(r1.stats().twins(), vehicles / 2);
  EXPECT_TRUE(all_equal(kpi(r1.kpis(), "fleets/south", "speed_sum"), south));
  // The region counts the north fleet's twins frozen, wherever they live.
  EXPECT_TRUE(all_equal(kpi(r1.kpis(), "regions/eu", "speed_sum"), north + south));
  v1::CreateScenarioRequest named;
  for (int i = 0; i < 6; ++i)
    named.add_names("twins/car-" + std::to_string(i));
  ASSERT_TRUE(create(1, "six", named, &made).ok());
  named.add_names("twins/car-999");
  st = create(1, "seven", named, &made);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
  EXPECT_NE(st.error_message().find("car-999"), std::string::npos) << st.error_message();

  // Forked from a past point, every node rebuilds its twins from their history.
  v1::CreateScenarioRequest past = below;
  past.set_at_ms(telemetry_source::base_time_ms + 1);
  ASSERT_TRUE(create(0, "then", past, &made).ok());
  EXPECT_EQ(made.fork_ms(), telemetry_source::base_time_ms + 1);
  v1::ScenarioResult rp;
  st = run(0, "then", rp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(rp.base_stats().twins(), vehicles);
  EXPECT_TRUE(all_equal(kpi(rp.base_kpis(), "regions/eu", "speed_sum"), north + south));

  // Nothing live moved.
  EXPECT_EQ(measure(1, c, "regions/eu", "speed_sum"), north + south);
  EXPECT_EQ(measure(2, c, "fleets/north", "speed_sum"), north);

  // Clients cannot call the nodes' part service.
  {
    auto parts = v1::ScenarioPartService::NewStub(
        grpc::CreateChannel(c.node(1).grpc_address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    v1::ListScenarioPartRecordsRequest req;
    req.set_part_id("rush");
    v1::ListScenarioPartRecordsResponse resp;
    EXPECT_EQ(parts->ListScenarioPartRecords(&ctx, req, &resp).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }

  // Every node holds parts of the others' scenarios (rush and rush-2 span all
  // three, south and six the nodes holding their twins); deleting releases them.
  auto parts_on = [&](size_t i) {
    return metric_value(scrape(c.node(i).metrics_port()), "fleettwin_scenario_parts");
  };
  EXPECT_GE(parts_on(1), 2);  // rush, rush-2
  for (auto [via, id] : std::vector<std::pair<size_t, std::string>>{
           {0, "rush"}, {2, "rush-2"}, {1, "south"}, {1, "six"}, {0, "then"}}) {
    grpc::ClientContext ctx;
    v1::DeleteScenarioRequest req;
    req.set_name("scenarios/" + id);
    v1::DeleteScenarioResponse resp;
    ASSERT_TRUE(stub(via)->DeleteScenario(&ctx, req, &resp).ok()) << id;
  }
  for (size_t i = 0; i < 3; ++i)
    EXPECT_TRUE(eventually([&] { return parts_on(i) == 0; })) << c.node(i).id();
}

}  // namespace
}  // namespace fleettwin::test

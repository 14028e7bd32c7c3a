// Aggregates on a real Kafka broker, exactly-once across kill -9: three nodes
// ingest numbered telemetry whose attributes put every vehicle in a fleet
// and every fleet in a region, while nodes are killed and restarted. In the
// end every aggregate, read through any node, equals what the acknowledged
// records say, and the aggregates topic (read_committed) holds each version
// of each aggregate once, in order.

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "cluster_harness.hpp"
#include "fleettwin/v1/aggregate.grpc.pb.h"
#include "support/kafka_io.hpp"

namespace fleettwin::test {
namespace {

constexpr const char* kinds_toml = R"toml(
[[kind]]
name = "fleet"
collection = "fleets"
members = ["member_of"]
measures = [
  "vehicles = count()",
  "speed_sum = sum(reported.speed)",
  "odometer_max = max(reported.odometer)",
  "speed_p50 = p50(reported.speed)",
]

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

struct AggregateClusterTest : cluster_fixture {
  std::string kinds_dir;

  void SetUp() override {
    kinds_dir = make_temp_dir("aggregate-kinds");
    std::ofstream{kinds_dir + "/kinds.toml"} << kinds_toml;
  }
  void TearDown() override {
    cluster_fixture::TearDown();
    std::filesystem::remove_all(kinds_dir);
  }

  static grpc::Status get(cluster_node& n, const std::string& id, v1::Aggregate& out) {
    auto stub = v1::AggregateService::NewStub(
        grpc::CreateChannel(n.grpc_address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::GetAggregateRequest req;
    req.set_name("aggregates/" + id);
    out.Clear();
    return stub->GetAggregate(&ctx, req, &out);
  }

  static double measure(const v1::Aggregate& a, const std::string& name) {
    for (const auto& m : a.measures())
      if (m.name() == name && m.has_value())
        return m.value();
    return -1;
  }
};

TEST_F(AggregateClusterTest, KillNineUnderLoadLeavesEveryAggregateExactAndEachVersionOnce) {
  const long kills = env_or("FLEETTWIN_CHAOS_KILLS", 2);
  const long seconds = env_or("FLEETTWIN_CHAOS_SECONDS", 30);
  const auto seed = static_cast<unsigned>(env_or("FLEETTWIN_CHAOS_SEED", std::random_device{}()));
  std::cout << "aggregate chaos: seed=" << seed << "\n";
  std::mt19937 rng{seed};
  cluster_options o;
  o.node_flags = {"--aggregates", kinds_dir + "/kinds.toml"};
  c_ = std::make_unique<cluster>(o);
  auto& c = *c_;
  c.start_nodes(3);
  std::string why;
  ASSERT_TRUE(c.wait_until_all_partitions_served(60s, &why)) << why;

  // The fleets name their region.
  {
    producer p{c.bootstrap()};
    for (const char* f : {"north", "south"}) {
      std::string id = std::string{"fleets/"} + f;
      p.send(c.topics().telemetry, id,
             telemetry(id, 1, telemetry_source::base_time_ms, {}, {{"region", "eu"}}, "fleet"));
    }
    ASSERT_EQ(p.flush(), 0);
  }
  telemetry_source src{c.bootstrap(), c.topics().telemetry, 120};
  auto began = std::chrono::steady_clock::now();
  src.start(1500);
  for (long k = 0; k < kills; ++k) {
    std::this_thread::sleep_until(
        began + std::chrono::milliseconds{seconds * 1000 * (k + 1) / (kills + 1)});
    size_t victim = rng() % c.size();
    c.node(victim).kill9();
    // Down while the survivors ingest some more records (a random amount):
    // sometimes back before its session expires, sometimes after.
    const auto down_until = src.acked_total() + 200 + rng() % 3000;
    ASSERT_TRUE(eventually([&] { return src.acked_total() >= down_until; }, 60s))
        << "ingest stopped while " << c.node(victim).id() << " was down";
    c.node(victim).start();
    ASSERT_TRUE(c.wait_until_balanced(90s, &why)) << "after kill " << k + 1 << ": " << why;
  }
  std::this_thread::sleep_until(began + std::chrono::seconds{seconds});
  ASSERT_TRUE(src.stop(120s)) << src.first_error();
  ASSERT_TRUE(c.wait_until_all_partitions_served(60s, &why)) << why;

  // The truth: vehicle i's last record is number acked(i): speed = n,
  // odometer = 10 n; even vehicles are in the north fleet.
  auto acked = src.acked();
  std::map<std::string, std::map<std::string, double>> want;
  std::map<std::string, std::vector<double>> speeds;
  for (size_t i = 0; i < src.assets().size(); ++i) {
    const auto n = static_cast<double>(acked[src.assets()[i]]);
    if (n == 0)
      continue;
    auto& f = want[i % 2 == 0 ? "fleets/north" : "fleets/south"];
    f["vehicles"] += 1;
    f["speed_sum"] += n;
    f["odometer_max"] = std::max(f["odometer_max"], 10 * n);
    speeds[i % 2 == 0 ? "fleets/north" : "fleets/south"].push_back(n);
    want["regions/eu"]["vehicles"] += 1;
    want["regions/eu"]["speed_sum"] += n;
  }
  for (auto& [id, v] : speeds) {
    std::sort(v.begin(), v.end());
    want[id]["speed_p50"] = v[(v.size() + 1) / 2 - 1];
  }
  auto settle = std::chrono::steady_clock::now();
  std::string last;
  bool exact = eventually(
      [&] {
        for (const auto& [id, measures] : want) {
          // Through a different node each time: forwarding included.
          v1::Aggregate a;
          auto& via = c.node(rng() % c.size());
          if (auto s = get(via, id, a); !s.ok()) {
            last = id + " via " + via.id() + ": " + s.error_message();
            return false;
          }
          for (const auto& [name, value] : measures)
            if (measure(a, name) != value) {
              last = id + " " + name + " = " + std::to_string(measure(a, name)) + ", want " +
                     std::to_string(value);
              return false;
            }
        }
        return true;
      },
      180s);
  EXPECT_TRUE(exact) << last;
  std::cout << "aggregate chaos: exact after "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - settle).count()
            << " s, records=" << src.acked_total() << "\n";

  // Listing and members through every node (forwarded where it does not own them).
  for (size_t i = 0; i < c.size(); ++i) {
    auto stub = v1::AggregateService::NewStub(
        grpc::CreateChannel(c.node(i).grpc_address(), grpc::InsecureChannelCredentials()));
    {
      grpc::ClientContext ctx;
      v1::ListAggregatesRequest req;
      v1::ListAggregatesResponse resp;
      ASSERT_TRUE(stub->ListAggregates(&ctx, req, &resp).ok()) << c.node(i).id();
      std::vector<std::string> ids;
      for (const auto& a : resp.aggregates())
        ids.push_back(a.aggregate_id());
      EXPECT_EQ(ids, (std::vector<std::string>{"fleets/north", "fleets/south", "regions/eu"}))
          << "via " << c.node(i).id();
    }
    {
      grpc::ClientContext ctx;
      v1::ListMembersRequest req;
      req.set_name("aggregates/regions/eu");
      req.set_depth(2);
      req.set_twins_only(true);
      req.set_page_size(1000);
      v1::ListMembersResponse resp;
      ASSERT_TRUE(stub->ListMembers(&ctx, req, &resp).ok()) << c.node(i).id();
      EXPECT_EQ(static_cast<double>(resp.members_size()), want["regions/eu"]["vehicles"]);
    }
    {
      grpc::ClientContext ctx;
      v1::GetRelationsRequest req;
      req.set_name("aggregates/fleets/north");
      v1::Relations resp;
      ASSERT_TRUE(stub->GetRelations(&ctx, req, &resp).ok()) << c.node(i).id();
      ASSERT_EQ(resp.parents_size(), 1);
      EXPECT_EQ(resp.parents(0).parent(), "aggregates/regions/eu");
      EXPECT_EQ(static_cast<double>(resp.children_size()), want["fleets/north"]["vehicles"]);
    }
  }

  // Each committed version of an aggregate once, versions rising.
  auto events = read_changes(c.bootstrap(), c.topics().aggregates, 1, 60s, true);
  ASSERT_FALSE(events.empty());
  std::set<std::string> seen;
  std::map<std::string, uint64_t> last_version;
  size_t duplicates = 0;
  size_t backwards = 0;
  for (const auto& e : events) {
    if (!seen.insert(e.ce_id).second)
      ++duplicates;
    auto slash = e.ce_id.rfind('/');
    auto id = e.ce_id.substr(0, slash);
    auto version = std::stoull(e.ce_id.substr(slash + 1));
    if (version <= last_version[id])
      ++backwards;
    last_version[id] = version;
  }
  EXPECT_EQ(duplicates, 0u) << "aggregate versions committed twice";
  EXPECT_EQ(backwards, 0u) << "aggregate versions out of order";
  // The twins stay exactly-once with aggregates on.
  std::string figures;
  EXPECT_EQ(check_exactly_once(c, src, c.node(0), 180s, &figures,
                               {{"fleets/north", 1}, {"fleets/south", 1}}),
            "");
  std::cout << "aggregate chaos: " << events.size() << " aggregate changes, " << figures << "\n";
}

TEST_F(AggregateClusterTest, EveryAggregateServiceMethodAnswersThroughEveryNodeAndAcrossMoves) {
  cluster_options o;
  o.node_flags = {"--aggregates", kinds_dir + "/kinds.toml"};
  c_ = std::make_unique<cluster>(o);
  auto& c = *c_;
  c.start_nodes(3);
  std::string why;
  ASSERT_TRUE(c.wait_until_balanced(60s, &why)) << why;
  auto stub = [&](size_t i) {
    return v1::AggregateService::NewStub(
        grpc::CreateChannel(c.node(i).grpc_address(), grpc::InsecureChannelCredentials()));
  };
  // A watch of every fleet, through node 0: it sees the changes committed
  // on every node (it reads the aggregates topic, read_committed).
  grpc::ClientContext watch_ctx;
  v1::WatchAggregatesRequest watch_req;
  watch_req.set_kind("fleet");
  auto watcher = stub(0);
  std::unique_ptr<grpc::ClientReader<v1::AggregateChange>> watch;
  ASSERT_TRUE(eventually([&] {
    grpc::ClientContext probe;
    auto s = watcher->WatchAggregates(&probe, watch_req);
    probe.TryCancel();
    v1::AggregateChange ignored;
    s->Read(&ignored);
    return s->Finish().error_code() != grpc::StatusCode::UNAVAILABLE;
  }));
  watch = watcher->WatchAggregates(&watch_ctx, watch_req);
  watch->WaitForInitialMetadata();

  constexpr int vehicles = 30;
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
  auto region_is = [&](size_t via, double count, double speed_sum) -> testing::AssertionResult {
    std::string last;
    bool ok = eventually([&] {
      v1::Aggregate a;
      auto s = get(c.node(via), "regions/eu", a);
      if (!s.ok()) {
        last = s.error_message();
        return false;
      }
      last = "vehicles " + std::to_string(measure(a, "vehicles")) + ", speed_sum " +
             std::to_string(measure(a, "speed_sum")) + ", version " + std::to_string(a.version());
      return measure(a, "vehicles") == count && measure(a, "speed_sum") == speed_sum;
    });
    if (ok)
      return testing::AssertionSuccess();
    return testing::AssertionFailure()
           << "regions/eu via " << c.node(via).id() << ": " << last << "; want vehicles " << count
           << ", speed_sum " << speed_sum;
  };
  const double all_speeds = vehicles * (vehicles - 1) / 2.0;
  ASSERT_TRUE(region_is(1, vehicles, all_speeds));

  std::set<std::string> watched;
  v1::AggregateChange change;
  while (watched.size() < 2 && watch->Read(&change))
    watched.insert(change.aggregate_id());
  EXPECT_EQ(watched, (std::set<std::string>{"fleets/north", "fleets/south"}));
  watch_ctx.TryCancel();
  watch->Finish();

  for (size_t i = 0; i < c.size(); ++i) {
    auto s = stub(i);
    {
      grpc::ClientContext ctx;
      v1::BatchGetAggregatesRequest req;
      for (auto id : {"regions/eu", "fleets/south", "fleets/north"})
        req.add_names(std::string{"aggregates/"} + id);
      v1::BatchGetAggregatesResponse resp;
      ASSERT_TRUE(s->BatchGetAggregates(&ctx, req, &resp).ok()) << c.node(i).id();
      ASSERT_EQ(resp.aggregates_size(), 3);
      EXPECT_EQ(resp.aggregates(1).aggregate_id(), "fleets/south");
      EXPECT_EQ(measure(resp.aggregates(0), "vehicles"), vehicles);
    }
    {
      grpc::ClientContext ctx;
      v1::GetAggregateHistoryRequest req;
      req.set_name("aggregates/regions/eu");
      req.add_measures("vehicles");
      v1::GetAggregateHistoryResponse resp;
      ASSERT_TRUE(s->GetAggregateHistory(&ctx, req, &resp).ok()) << c.node(i).id();
      ASSERT_FALSE(resp.points().empty());
      EXPECT_EQ(resp.points().rbegin()->measures(0).value(), vehicles);
    }
    {
      grpc::ClientContext ctx;
      v1::TraverseRequest req;
      req.set_start("aggregates/regions/eu");
      req.set_direction(v1::DOWN);
      req.set_max_hops(2);
      req.set_filter("reported.speed >= 10");
      req.set_page_size(1000);
      v1::TraverseResponse resp;
      auto st = s->Traverse(&ctx, req, &resp);
      ASSERT_TRUE(st.ok()) << c.node(i).id() << ": " << st.error_message();
      EXPECT_EQ(resp.hits_size(), vehicles - 10) << c.node(i).id();
    }
    {
      // A car joins a third fleet through node i, and leaves it again.
      const auto car = "twins/car-" + std::to_string(i);
      grpc::ClientContext ctx;
      v1::SetRelationsRequest req;
      req.set_child(car);
      auto* r = req.add_relations();
      r->set_type("member_of");
      r->set_parent("aggregates/fleets/east");
      v1::Relations resp;
      auto st = s->SetRelations(&ctx, req, &resp);
      ASSERT_TRUE(st.ok()) << c.node(i).id() << ": " << st.error_message();
      EXPECT_EQ(resp.parents_size(), 2);
      ASSERT_TRUE(eventually([&] {
        v1::Aggregate a;
        return get(c.node((i + 1) % c.size()), "fleets/east", a).ok() &&
               measure(a, "vehicles") == 1;
      })) << c.node(i).id();
      grpc::ClientContext del_ctx;
      v1::DeleteRelationsRequest del;
      del.set_child(car);
      del.add_parents("aggregates/fleets/east");
      ASSERT_TRUE(s->DeleteRelations(&del_ctx, del, &resp).ok()) << c.node(i).id();
      ASSERT_TRUE(eventually([&] {
        v1::Aggregate a;
        return get(c.node(i), "fleets/east", a).ok() && measure(a, "vehicles") == 0;
      })) << c.node(i).id();
    }
  }

  // A kind put through one node applies on every node.
  {
    grpc::ClientContext ctx;
    v1::PutAggregateKindRequest req;
    auto* k = req.mutable_kind();
    k->set_name("site");
    k->set_collection("sites");
    k->add_member_relations("located_at");
    auto* m = k->add_measures();
    m->set_name("vehicles");
    m->set_expression("count()");
    v1::AggregateKind resp;
    auto st = stub(2)->PutAggregateKind(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    for (size_t i = 0; i < c.size(); ++i)
      EXPECT_TRUE(eventually([&] {
        grpc::ClientContext lctx;
        v1::ListAggregateKindsResponse kinds;
        if (!stub(i)->ListAggregateKinds(&lctx, {}, &kinds).ok())
          return false;
        for (const auto& kind : kinds.kinds())
          if (kind.name() == "site" && kind.revision() == 1)
            return true;
        return false;
      })) << c.node(i).id();
  }

  // Partitions move when a node leaves and comes back: the aggregates move
  // with them, exact, through every node.
  ASSERT_EQ(c.node(1).stop(), 0);
  ASSERT_TRUE(c.wait_until_all_partitions_served(60s, &why)) << why;
  EXPECT_TRUE(region_is(0, vehicles, all_speeds));
  EXPECT_TRUE(region_is(2, vehicles, all_speeds));
  c.node(1).start();
  ASSERT_TRUE(c.wait_until_balanced(90s, &why)) << why;
  {
    producer p{c.bootstrap()};
    for (int i = 0; i < vehicles; ++i) {
      auto id = "car-" + std::to_string(i);
      p.send(c.topics().telemetry, id,
             telemetry(id, 2, telemetry_source::base_time_ms + 1, {{"speed", double(2 * i)}},
                       {{"fleet", i % 2 == 0 ? "north" : "south"}}));
    }
    ASSERT_EQ(p.flush(), 0);
  }
  for (size_t i = 0; i < c.size(); ++i)
    EXPECT_TRUE(region_is(i, vehicles, 2 * all_speeds)) << c.node(i).id();
}

}  // namespace
}  // namespace fleettwin::test

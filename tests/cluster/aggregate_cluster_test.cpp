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

}  // namespace
}  // namespace fleettwin::test

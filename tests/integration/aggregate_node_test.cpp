// Aggregates on a node with its embedded Kafka, through the real interfaces:
// telemetry in (protobuf, attributes naming parents), contributions through
// the aggregate-updates topic, AggregateService out (gRPC), change events on
// the aggregates topic, and a restart on the old data dir.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <iterator>
#include <map>
#include <set>
#include <thread>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "fleettwin/v1/aggregate.grpc.pb.h"
#include "harness.hpp"
#include "services/kafka/kafka_config.hpp"

using namespace fleettwin;
using namespace fleettwin::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t base_ms = 1'700'000'000'000;
constexpr int meters = 200;
constexpr int transformers = 10;

constexpr const char* kinds_toml = R"toml(
[[kind]]
name = "transformer"
collection = "transformers"
members = ["feeds"]
measures = [
  "meters = count()",
  "power = sum(reported.power)",
  "voltage_min = min(reported.voltage)",
  "voltage_p50 = p50(reported.voltage)",
  "low = count(reported.voltage < 207)",
  "utilisation = power / attributes.capacity_kw",
]

[[kind]]
name = "feeder"
collection = "feeders"
members = ["feeds"]
measures = ["meters = count()", "power = sum(reported.power)"]

[[kind]]
name = "tariff"
collection = "tariffs"
members = ["member_of"]
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

struct AggregateNodeTest : ::testing::Test {
  kafka::topic_names topics;
  std::string dir;
  std::unique_ptr<node_process> node;
  std::unique_ptr<v1::AggregateService::Stub> aggs;
  /// The truth: each meter's transformer, power and voltage.
  std::map<int, int> transformer_of;
  std::map<int, double> power;
  std::map<int, double> voltage;

  void SetUp() override {
    dir = make_temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::ofstream{dir + "/kinds.toml"} << kinds_toml;
  }

  void TearDown() override {
    if (HasFailure() && node) {
      std::ifstream log{node->log_path()};
      std::cerr << "--- fleettwin-node log ---\n" << log.rdbuf() << "--- end of log ---\n";
    }
    node.reset();
    std::filesystem::remove_all(dir);
  }

  void start_node() {
    node = std::make_unique<node_process>(
        "", dir + "/data",
        std::vector<std::string>{"--partitions", "4", "--aggregates", dir + "/kinds.toml",
                                 "--aggregate-check-interval-ms", "200"});
    node->start();
    auto channel = grpc::CreateChannel(node->grpc_address(), grpc::InsecureChannelCredentials());
    aggs = v1::AggregateService::NewStub(channel);
  }

  /// Every meter reports with sequence `seq`; meters in `moved` report a new
  /// transformer.
  void produce_meters(uint64_t seq) {
    producer p{node->bootstrap()};
    for (int i = 0; i < meters; ++i) {
      power[i] = (i % 17) * 0.5 + static_cast<double>(seq);
      voltage[i] = 200 + (i * 7 + static_cast<int>(seq)) % 40;
      auto id = "m-" + std::to_string(i);
      p.send(topics.telemetry, id,
             telemetry(id, seq, base_ms + static_cast<int64_t>(seq),
                       {{"power", power[i]}, {"voltage", voltage[i]}},
                       {{"transformer", "T" + std::to_string(transformer_of[i])}}, "meter"));
    }
    ASSERT_EQ(p.flush(), 0);
  }

  void produce_transformers() {
    producer p{node->bootstrap()};
    for (int t = 0; t < transformers; ++t) {
      auto id = "transformers/T" + std::to_string(t);
      p.send(topics.telemetry, id,
             telemetry(id, 1, base_ms, {},
                       {{"feeder", "F" + std::to_string(t % 2)}, {"capacity_kw", "100"}},
                       "transformer"));
    }
    ASSERT_EQ(p.flush(), 0);
  }

  /// GetRelations of a resource name ("twins/..." or "aggregates/...").
  grpc::Status relations(const std::string& name, v1::Relations& out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    v1::GetRelationsRequest req;
    req.set_name(name);
    out.Clear();
    return aggs->GetRelations(&ctx, req, &out);
  }

  grpc::Status get(const std::string& id, v1::Aggregate& out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    v1::GetAggregateRequest req;
    req.set_name("aggregates/" + id);
    out.Clear();
    return aggs->GetAggregate(&ctx, req, &out);
  }

  static std::optional<double> measure(const v1::Aggregate& a, const std::string& name) {
    for (const auto& m : a.measures())
      if (m.name() == name)
        return m.has_value() ? std::optional<double>{m.value()} : std::nullopt;
    return std::nullopt;
  }

  /// The transformer's measures from the truth.
  std::map<std::string, double> expected_transformer(int t) {
    std::vector<double> volts;
    double sum = 0;
    int low = 0;
    for (auto [m, tr] : transformer_of)
      if (tr == t) {
        sum += power[m];
        volts.push_back(voltage[m]);
        low += voltage[m] < 207 ? 1 : 0;
      }
    std::sort(volts.begin(), volts.end());
    std::map<std::string, double> out{{"meters", static_cast<double>(volts.size())},
                                      {"power", sum},
                                      {"low", low},
                                      {"utilisation", sum / 100}};
    if (!volts.empty()) {
      out["voltage_min"] = volts.front();
      out["voltage_p50"] = volts[static_cast<size_t>(std::ceil(0.5 * volts.size())) - 1];
    }
    return out;
  }

  /// Waits until every transformer and feeder equals the truth.
  bool converged(std::string& last_diff, std::chrono::milliseconds timeout = 60s) {
    return eventually(
        [&] {
          for (int t = 0; t < transformers; ++t) {
            v1::Aggregate a;
            auto id = "transformers/T" + std::to_string(t);
            if (auto s = get(id, a); !s.ok()) {
              last_diff = id + ": " + s.error_message();
              return false;
            }
            for (const auto& [name, want] : expected_transformer(t)) {
              auto got = measure(a, name);
              if (!got || std::fabs(*got - want) > 1e-9 * std::max(1.0, std::fabs(want))) {
                last_diff = id + " " + name + ": got " + (got ? std::to_string(*got) : "none") +
                            ", want " + std::to_string(want);
                return false;
              }
            }
          }
          for (int f = 0; f < 2; ++f) {
            double sum = 0;
            int n = 0;
            for (auto [m, tr] : transformer_of)
              if (tr % 2 == f) {
                sum += power[m];
                ++n;
              }
            v1::Aggregate a;
            auto id = "feeders/F" + std::to_string(f);
            if (!get(id, a).ok() || measure(a, "meters") != n ||
                std::fabs(measure(a, "power").value_or(-1) - sum) > 1e-6) {
              last_diff = id + ": meters " + std::to_string(measure(a, "meters").value_or(-1)) +
                          " want " + std::to_string(n) + ", power " +
                          std::to_string(measure(a, "power").value_or(-1)) + " want " +
                          std::to_string(sum);
              return false;
            }
          }
          return true;
        },
        timeout);
  }
};

}  // namespace

TEST_F(AggregateNodeTest, MetersRollUpIntoTransformersAndFeedersExactlyAndMove) {
  start_node();
  for (int i = 0; i < meters; ++i)
    transformer_of[i] = i % transformers;
  produce_transformers();
  produce_meters(1);
  std::string diff;
  ASSERT_TRUE(converged(diff)) << diff;

  // A tenth of the meters move to T0 while every meter reports new values.
  for (int i = 0; i < meters; i += 10)
    transformer_of[i] = 0;
  for (int i = 5; i < meters; i += 10)
    transformer_of[i] = 3;
  produce_meters(2);
  ASSERT_TRUE(converged(diff)) << diff;

  // Every aggregate, in pages, and a filter over measures.
  {
    std::vector<std::string> ids;
    std::string page_token;
    do {
      grpc::ClientContext ctx;
      v1::ListAggregatesRequest req;
      req.set_page_size(4);
      req.set_page_token(page_token);
      v1::ListAggregatesResponse resp;
      ASSERT_TRUE(aggs->ListAggregates(&ctx, req, &resp).ok());
      for (const auto& a : resp.aggregates())
        ids.push_back(a.aggregate_id());
      page_token = resp.next_page_token();
    } while (!page_token.empty());
    EXPECT_EQ(ids.size(), static_cast<size_t>(transformers + 2));
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    size_t big = 0;
    for (int t = 0; t < transformers; ++t)
      big += expected_transformer(t)["meters"] > 20 ? 1 : 0;
    EXPECT_GT(big, 0u);
    // Listings read the store, which the last commit may not have reached
    // yet when GetAggregate (the actor) already shows it.
    size_t listed = 0;
    EXPECT_TRUE(eventually([&] {
      grpc::ClientContext ctx;
      v1::ListAggregatesRequest req;
      req.set_filter("kind = \"transformer\" AND measures.meters > 20");
      v1::ListAggregatesResponse resp;
      if (!aggs->ListAggregates(&ctx, req, &resp).ok())
        return false;
      listed = static_cast<size_t>(resp.aggregates_size());
      return listed == big;
    })) << listed
        << " listed, " << big << " expected";
  }

  // Members of a feeder, two levels deep, twins only, in pages.
  std::set<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    grpc::ClientContext ctx;
    v1::ListMembersRequest req;
    req.set_name("aggregates/feeders/F1");
    req.set_depth(2);
    req.set_twins_only(true);
    req.set_page_size(30);
    req.set_page_token(token);
    v1::ListMembersResponse resp;
    ASSERT_TRUE(aggs->ListMembers(&ctx, req, &resp).ok());
    for (const auto& m : resp.members()) {
      EXPECT_TRUE(m.twin());
      EXPECT_EQ(m.depth(), 2u);
      EXPECT_TRUE(seen.insert(m.name()).second) << m.name() << " twice";
    }
    token = resp.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 20);
  size_t want = 0;
  for (auto [m, tr] : transformer_of)
    want += tr % 2 == 1 ? 1 : 0;
  EXPECT_EQ(seen.size(), want);
  EXPECT_GE(pages, 2);

  // A filter over what the feeder holds of its members.
  {
    grpc::ClientContext ctx;
    v1::ListMembersRequest req;
    req.set_name("aggregates/transformers/T0");
    req.set_filter("reported.voltage < 207");
    req.set_page_size(1000);
    v1::ListMembersResponse resp;
    ASSERT_TRUE(aggs->ListMembers(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.members_size(), static_cast<int>(expected_transformer(0)["low"]));
  }

  // Relations both ways.
  {
    v1::Relations resp;
    ASSERT_TRUE(relations("aggregates/transformers/T3", resp).ok());
    ASSERT_EQ(resp.parents_size(), 1);
    EXPECT_EQ(resp.parents(0).parent(), "aggregates/feeders/F1");
    EXPECT_EQ(resp.parents(0).origin(), v1::RULE);
    EXPECT_EQ(resp.children_size(), static_cast<int>(expected_transformer(3)["meters"]));
  }
  {
    v1::Relations resp;
    ASSERT_TRUE(relations("twins/m-5", resp).ok());
    ASSERT_EQ(resp.parents_size(), 1);
    EXPECT_EQ(resp.parents(0).parent(), "aggregates/transformers/T3");
    EXPECT_EQ(resp.parents(0).type(), "feeds");
  }

  // Precise errors.
  v1::Aggregate a;
  EXPECT_EQ(get("sites/x", a).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(get("transformers/T99", a).error_code(), grpc::StatusCode::NOT_FOUND);
  {
    grpc::ClientContext ctx;
    v1::GetAggregateRequest req;
    req.set_name("fleets/north");
    auto s = aggs->GetAggregate(&ctx, req, &a);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("aggregates/"), std::string::npos) << s.error_message();
  }

#ifdef FLEETTWIN_CLI_BINARY
  // The CLI, as an operator uses it.
  auto cli = [&](const std::string& args) {
    return run_command(std::string{FLEETTWIN_CLI_BINARY} + " --server " + node->grpc_address() +
                       " " + args + " 2>&1");
  };
  {
    auto [code, text] = cli("agg get transformers/T3");
    EXPECT_EQ(code, 0) << text;
    EXPECT_NE(text.find("aggregates/transformers/T3  (transformer)"), std::string::npos) << text;
    EXPECT_NE(text.find("parent: feeds feeders/F1"), std::string::npos) << text;
    EXPECT_NE(text.find("utilisation"), std::string::npos) << text;
  }
  {
    auto [code, text] = cli("--json agg get transformers/T3");
    EXPECT_EQ(code, 0) << text;
    EXPECT_NE(text.find("\"aggregate_id\":\"transformers/T3\""), std::string::npos) << text;
  }
  {
    auto [code, text] = cli("agg members feeders/F1 --depth 2 --twins-only --page-size 7 --all");
    EXPECT_EQ(code, 0) << text;
    EXPECT_EQ(static_cast<size_t>(std::count(text.begin(), text.end(), '\n')), want + 1) << text;
  }
  {
    auto [code, text] = cli("relations m-5");
    EXPECT_EQ(code, 0) << text;
    EXPECT_NE(text.find("parent  feeds aggregates/transformers/T3  (RULE)"), std::string::npos)
        << text;
  }
  {
    auto [code, text] = cli("agg kinds");
    EXPECT_EQ(code, 0) << text;
    EXPECT_NE(text.find("transformer  collection transformers  members by feeds"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("attributes.feeder -> feeds feeders/<value>"), std::string::npos) << text;
  }
  EXPECT_EQ(cli("agg get transformers/T99").first, 3);  // NOT_FOUND
  EXPECT_EQ(cli("agg get sites/x").first, 4);           // INVALID_ARGUMENT
#endif

  // For SREs: aggregates stored and resident, and the recompute check (each
  // resident aggregate against a full recompute from its members) finds
  // nothing wrong.
  EXPECT_TRUE(eventually([&] {
    auto m = scrape(node->metrics_port());
    return metric_value(m, "fleettwin_aggregate_recompute_checks_total") >= transformers + 2 &&
           metric_value(m, "fleettwin_aggregates_stored") == transformers + 2;
  }));
  {
    auto m = scrape(node->metrics_port());
    EXPECT_EQ(metric_value(m, "fleettwin_aggregate_recompute_mismatches_total"), 0) << m;
    double active = 0;
    for (int p = 0; p < 4; ++p)
      active += std::max(0.0, metric_value(m, "fleettwin_aggregates_active{partition=\"" +
                                                  std::to_string(p) + "\"}"));
    EXPECT_EQ(active, transformers + 2);
  }

  // Change events for data teams: CloudEvents on the aggregates topic.
  auto events = read_topic(node->bootstrap(), topics.aggregates, 12, 30s);
  ASSERT_GE(events.size(), 12u);
  EXPECT_EQ(events.front().headers["ce_type"], "fleettwin.aggregate.changed.v1");
  v1::AggregateChange change;
  ASSERT_TRUE(change.ParseFromString(events.back().value));
  EXPECT_FALSE(change.aggregate_id().empty());
  EXPECT_GT(change.version(), 0u);
  // Each change says when the oldest twin change it folds in was ingested:
  // time_ms minus it is the leaf-to-here latency.
  for (const auto& e : events) {
    ASSERT_TRUE(change.ParseFromString(e.value));
    EXPECT_GT(change.oldest_source_ms(), 0) << change.aggregate_id();
    EXPECT_LE(change.oldest_source_ms(), change.time_ms()) << change.aggregate_id();
  }
}

TEST_F(AggregateNodeTest, ARestartOnTheOldDataDirKeepsAggregatesAndFoldsNewRecordsIntoThem) {
  start_node();
  for (int i = 0; i < meters; ++i)
    transformer_of[i] = i % transformers;
  produce_transformers();
  produce_meters(1);
  std::string diff;
  ASSERT_TRUE(converged(diff)) << diff;
  ASSERT_EQ(node->terminate(), 0);

  // The embedded Kafka starts empty; the aggregates live on in the store.
  start_node();
  ASSERT_TRUE(converged(diff, 10s)) << diff;
  // New values fold into the members loaded from the store: exact only if
  // every member came back (min, p50 and the moved meter included).
  transformer_of[7] = 4;
  produce_meters(2);
  ASSERT_TRUE(converged(diff)) << diff;
}

// An erased meter leaves every aggregate above it (transformer and feeder), exactly; an
// aggregate itself cannot be erased (it is computed from its members).
TEST_F(AggregateNodeTest, AnErasedMeterLeavesItsTransformerAndFeeder) {
  start_node();
  for (int i = 0; i < meters; ++i)
    transformer_of[i] = i % transformers;
  produce_transformers();
  produce_meters(1);
  std::string diff;
  ASSERT_TRUE(converged(diff)) << diff;
  auto channel = grpc::CreateChannel(node->grpc_address(), grpc::InsecureChannelCredentials());
  auto twins = v1::TwinService::NewStub(channel);
  auto erase = [&](const std::string& name) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::DeleteTwinRequest req;
    req.set_name(name);
    v1::DeleteTwinResponse resp;
    return twins->DeleteTwin(&ctx, req, &resp);
  };
  for (int i : {3, 17, 100, 101}) {
    auto st = erase("twins/m-" + std::to_string(i));
    ASSERT_TRUE(st.ok()) << i << ": " << st.error_message();
    transformer_of.erase(i);
    power.erase(i);
    voltage.erase(i);
  }
  ASSERT_TRUE(converged(diff)) << diff;
  auto refused = erase("twins/transformers/T0");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.error_message().find("is an aggregate"), std::string::npos)
      << refused.error_message();
}

TEST_F(AggregateNodeTest, WatchHistoryAndBatchGetFollowTheCommittedChanges) {
  start_node();
  // A watch of every transformer, open before anything is produced.
  grpc::ClientContext watch_ctx;
  v1::WatchAggregatesRequest watch_req;
  watch_req.set_kind("transformer");
  std::unique_ptr<grpc::ClientReader<v1::AggregateChange>> reader;
  ASSERT_TRUE(eventually([&] {
    // UNAVAILABLE until the node is positioned on the aggregates topic.
    grpc::ClientContext probe;
    v1::WatchAggregatesRequest r;
    r.set_name("aggregates/transformers/T0");
    auto s = aggs->WatchAggregates(&probe, r);
    probe.TryCancel();
    v1::AggregateChange ignored;
    s->Read(&ignored);
    auto st = s->Finish();
    return st.error_code() != grpc::StatusCode::UNAVAILABLE;
  }));
  reader = aggs->WatchAggregates(&watch_ctx, watch_req);
  reader->WaitForInitialMetadata();
  for (int i = 0; i < meters; ++i)
    transformer_of[i] = i % transformers;
  produce_transformers();
  produce_meters(1);
  std::string diff;
  ASSERT_TRUE(converged(diff)) << diff;

  // The stream carries every transformer's changes, in version order per
  // transformer, up to its current version (and no other kind).
  std::map<std::string, v1::Aggregate> now;
  for (int t = 0; t < transformers; ++t) {
    auto id = "transformers/T" + std::to_string(t);
    ASSERT_TRUE(get(id, now[id]).ok());
  }
  std::map<std::string, uint64_t> last;
  size_t caught_up = 0;
  v1::AggregateChange change;
  while (caught_up < now.size() && reader->Read(&change)) {
    EXPECT_EQ(change.kind(), "transformer");
    auto& v = last[change.aggregate_id()];
    EXPECT_GT(change.version(), v) << change.aggregate_id();
    v = change.version();
    const auto& cur = now.at(change.aggregate_id());
    if (change.version() == cur.version()) {
      ++caught_up;
      ASSERT_EQ(change.measures_size(), cur.measures_size());
      for (int i = 0; i < cur.measures_size(); ++i)
        EXPECT_EQ(change.measures(i).DebugString(), cur.measures(i).DebugString());
      EXPECT_EQ(change.member_twins(), cur.member_twins());
    }
  }
  EXPECT_EQ(caught_up, now.size());
  watch_ctx.TryCancel();
  reader->Finish();

  // The history of one transformer, in pages, ends at its current version.
  const auto& t0 = now.at("transformers/T0");
  std::vector<v1::AggregatePoint> points;
  std::string token;
  do {
    grpc::ClientContext ctx;
    v1::GetAggregateHistoryRequest req;
    req.set_name("aggregates/transformers/T0");
    req.set_page_size(2);
    req.set_page_token(token);
    v1::GetAggregateHistoryResponse resp;
    ASSERT_TRUE(aggs->GetAggregateHistory(&ctx, req, &resp).ok());
    for (const auto& p : resp.points())
      points.push_back(p);
    token = resp.next_page_token();
  } while (!token.empty());
  ASSERT_FALSE(points.empty());
  for (size_t i = 1; i < points.size(); ++i)
    EXPECT_LT(points[i - 1].version(), points[i].version());
  EXPECT_EQ(points.back().version(), t0.version());
  for (const auto& m : t0.measures()) {
    if (!m.has_value())
      continue;
    bool found = false;
    for (const auto& pm : points.back().measures())
      if (pm.name() == m.name()) {
        found = true;
        EXPECT_EQ(pm.value(), m.value()) << m.name();
      }
    EXPECT_TRUE(found) << m.name();
  }
  {
    // One measure; a measure the kind lacks is refused with the ones it has.
    grpc::ClientContext ctx;
    v1::GetAggregateHistoryRequest req;
    req.set_name("aggregates/transformers/T0");
    req.add_measures("power");
    v1::GetAggregateHistoryResponse resp;
    ASSERT_TRUE(aggs->GetAggregateHistory(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.points_size(), static_cast<int>(points.size()));
    EXPECT_EQ(resp.points(0).measures_size(), 1);
    grpc::ClientContext bad;
    req.add_measures("wattage");
    auto s = aggs->GetAggregateHistory(&bad, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("power"), std::string::npos) << s.error_message();
  }

  // BatchGet: request order; one missing aggregate fails the batch.
  {
    grpc::ClientContext ctx;
    v1::BatchGetAggregatesRequest req;
    for (auto id : {"feeders/F1", "transformers/T2", "feeders/F0"})
      req.add_names(std::string{"aggregates/"} + id);
    v1::BatchGetAggregatesResponse resp;
    ASSERT_TRUE(aggs->BatchGetAggregates(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.aggregates_size(), 3);
    EXPECT_EQ(resp.aggregates(0).aggregate_id(), "feeders/F1");
    EXPECT_EQ(resp.aggregates(1).aggregate_id(), "transformers/T2");
    EXPECT_EQ(resp.aggregates(2).aggregate_id(), "feeders/F0");
    EXPECT_EQ(resp.aggregates(1).version(), now.at("transformers/T2").version());
    grpc::ClientContext missing;
    req.add_names("aggregates/feeders/F9");
    EXPECT_EQ(aggs->BatchGetAggregates(&missing, req, &resp).error_code(),
              grpc::StatusCode::NOT_FOUND);
    grpc::ClientContext bad;
    req.add_names("twins/m-1");
    EXPECT_EQ(aggs->BatchGetAggregates(&bad, req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }

#ifdef FLEETTWIN_CLI_BINARY
  auto cli = [&](const std::string& args) {
    return run_command(std::string{FLEETTWIN_CLI_BINARY} + " --server " + node->grpc_address() +
                       " " + args + " 2>&1");
  };
  {
    auto [code, text] = cli("agg history transformers/T0 --measure power --all");
    EXPECT_EQ(code, 0) << text;
    EXPECT_NE(text.find("TIME"), std::string::npos) << text;
    EXPECT_NE(text.find("power"), std::string::npos) << text;
    EXPECT_EQ(static_cast<size_t>(std::count(text.begin(), text.end(), '\n')), points.size() + 1)
        << text;
  }
  {
    // A watch ended by --count: the next changes of T1 after new records.
    std::promise<std::pair<int, std::string>> result;
    auto watched = result.get_future();
    std::thread watcher{[&] { result.set_value(cli("agg watch transformers/T1 --count 1")); }};
    // The CLI's watch is open once the node counts it.
    EXPECT_TRUE(eventually([&] {
      return metric_value(scrape(node->metrics_port()), "fleettwin_aggregate_watch_streams") >= 1;
    }));
    produce_meters(2);
    ASSERT_EQ(watched.wait_for(30s), std::future_status::ready);
    watcher.join();
    auto [code, text] = watched.get();
    EXPECT_EQ(code, 0) << text;
    EXPECT_NE(text.find("transformers/T1 v"), std::string::npos) << text;
    EXPECT_NE(text.find("power="), std::string::npos) << text;
  }
#endif
}

TEST_F(AggregateNodeTest, RelationsFromTheTopicAndTheApiMoveMembersAndRefuseCycles) {
  start_node();
  for (int i = 0; i < meters; ++i)
    transformer_of[i] = i % transformers;
  produce_transformers();
  produce_meters(1);
  std::string diff;
  ASSERT_TRUE(converged(diff)) << diff;

  // A data team puts twenty meters in a tariff group through the topic
  // (JSON), with one record that would close a cycle and one malformed.
  {
    producer p{node->bootstrap()};
    for (int i = 0; i < 20; ++i) {
      auto id = "m-" + std::to_string(i);
      p.send(topics.relations, id,
             R"({"child":")" + id +
                 R"(","set":[{"type":"member_of","parent":"aggregates/tariffs/night"}]})",
             "application/json");
    }
    // F0 is above T0: T0 feeding F0 and F0 feeding T0 is a cycle.
    p.send(topics.relations, "feeders/F0",
           R"({"set":[{"type":"feeds","parent":"transformers/T0"}]})", "application/json");
    p.send(topics.relations, "m-3", R"({"set":[{"type":)", "application/json");
    // Protobuf whose parent is not UTF-8: malformed, and libprotobuf's own complaint
    // stays out of the node's stderr (a debug line of its log instead).
    v1::RelationRecord bad;
    bad.set_child("m-4");
    auto* rel = bad.add_set();
    rel->set_type("member_of");
    rel->set_parent("aggregates/tariffs/n");
    auto bytes = bad.SerializeAsString();
    bytes[bytes.find("tariffs/n") + 8] = '\xff';
    p.send(topics.relations, "m-4", bytes, "application/x-protobuf");
    ASSERT_EQ(p.flush(), 0);
  }
  auto tariff_is = [&](int count, double power_sum) {
    return eventually([&] {
      v1::Aggregate a;
      return get("tariffs/night", a).ok() && measure(a, "meters") == count &&
             std::fabs(measure(a, "power").value_or(-1) - power_sum) < 1e-6;
    });
  };
  double night = 0;
  for (int i = 0; i < 20; ++i)
    night += power[i];
  ASSERT_TRUE(tariff_is(20, night));
  // The meters still feed their transformers: counted once in each.
  ASSERT_TRUE(converged(diff, 10s)) << diff;
  auto dead = read_topic(node->bootstrap(), topics.dlq, 3, 30s);
  ASSERT_EQ(dead.size(), 3u);
  std::map<std::string, std::string> reasons;
  int malformed = 0;
  for (auto& d : dead) {
    EXPECT_EQ(d.headers["fleettwin-dlq-topic"], topics.relations);
    reasons[d.headers["fleettwin-dlq-code"]] = d.headers["fleettwin-dlq-reason"];
    malformed += d.headers["fleettwin-dlq-code"] == "malformed";
  }
  EXPECT_NE(reasons["relation_refused"].find("cycle"), std::string::npos)
      << reasons["relation_refused"];
  EXPECT_EQ(malformed, 2);
  {
    std::ifstream log{node->log_path()};
    std::string text{std::istreambuf_iterator<char>{log}, {}};
    EXPECT_EQ(text.find("libprotobuf"), std::string::npos);
  }

  auto set = [&](const std::string& child, const std::string& type, const std::string& parent,
                 v1::Relations& out) {
    grpc::ClientContext ctx;
    v1::SetRelationsRequest req;
    req.set_child(child);
    auto* r = req.add_relations();
    r->set_type(type);
    r->set_parent(parent);
    return aggs->SetRelations(&ctx, req, &out);
  };
  // An operator adds one more meter through the API: answered once committed.
  v1::Relations rel;
  ASSERT_TRUE(set("twins/m-25", "member_of", "aggregates/tariffs/night", rel).ok());
  ASSERT_EQ(rel.parents_size(), 2);
  std::map<std::string, v1::RelationOrigin> origins;
  for (const auto& p : rel.parents())
    origins[p.parent()] = p.origin();
  EXPECT_EQ(origins["aggregates/tariffs/night"], v1::API);
  EXPECT_EQ(origins["aggregates/transformers/T5"], v1::RULE);
  ASSERT_TRUE(tariff_is(21, night + power[25]));
  {
    v1::Relations got;
    ASSERT_TRUE(relations("twins/m-7", got).ok());
    ASSERT_EQ(got.parents_size(), 2);
    for (const auto& p : got.parents()) {
      if (p.type() == "member_of") {
        EXPECT_EQ(p.origin(), v1::TOPIC);
      }
    }
  }

  // Refused: a cycle, a derived relation removed, a kind that does not exist.
  auto s = set("aggregates/feeders/F1", "feeds", "aggregates/transformers/T1", rel);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("cycle"), std::string::npos) << s.error_message();
  s = set("twins/m-1", "member_of", "aggregates/sites/x", rel);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("sites"), std::string::npos) << s.error_message();
  auto remove = [&](const std::string& child, const std::string& parent, v1::Relations& out) {
    grpc::ClientContext ctx;
    v1::DeleteRelationsRequest req;
    req.set_child(child);
    req.add_parents(parent);
    return aggs->DeleteRelations(&ctx, req, &out);
  };
  s = remove("twins/m-25", "aggregates/transformers/T5", rel);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("attribute"), std::string::npos) << s.error_message();

  // Traverse down: meters two hops below a feeder with a low voltage, in
  // pages, judged on the whole twin; up: a meter's ancestors.
  {
    std::set<std::string> want;
    for (auto [m, tr] : transformer_of)
      if (tr % 2 == 1 && voltage[m] < 207)
        want.insert("twins/m-" + std::to_string(m));
    ASSERT_FALSE(want.empty());
    std::set<std::string> got;
    std::string token;
    int pages = 0;
    do {
      grpc::ClientContext ctx;
      v1::TraverseRequest req;
      req.set_start("aggregates/feeders/F1");
      req.set_direction(v1::DOWN);
      req.set_max_hops(2);
      req.set_filter("kind = \"meter\" AND reported.voltage < 207");
      req.set_page_size(3);
      req.set_page_token(token);
      v1::TraverseResponse resp;
      auto st = aggs->Traverse(&ctx, req, &resp);
      ASSERT_TRUE(st.ok()) << st.error_message();
      for (const auto& h : resp.hits()) {
        EXPECT_EQ(h.hops(), 2u);
        ASSERT_TRUE(h.has_twin());
        EXPECT_LT(h.twin().reported().at("voltage").value().double_value(), 207);
        EXPECT_TRUE(got.insert(h.twin().name()).second) << h.twin().name();
      }
      token = resp.next_page_token();
      ++pages;
    } while (!token.empty() && pages < 100);
    EXPECT_EQ(got, want);
    EXPECT_GT(pages, 1);

    grpc::ClientContext ctx;
    v1::TraverseRequest req;
    req.set_start("twins/m-25");
    req.set_direction(v1::UP);
    req.set_max_hops(3);
    req.set_include_aggregates(true);
    v1::TraverseResponse resp;
    ASSERT_TRUE(aggs->Traverse(&ctx, req, &resp).ok());
    std::map<std::string, uint32_t> up;
    for (const auto& h : resp.hits())
      up[h.aggregate().aggregate_id()] = h.hops();
    EXPECT_EQ(up, (std::map<std::string, uint32_t>{
                      {"feeders/F1", 2}, {"tariffs/night", 1}, {"transformers/T5", 1}}));
    grpc::ClientContext typed_ctx;
    req.add_types("member_of");
    ASSERT_TRUE(aggs->Traverse(&typed_ctx, req, &resp).ok());
    ASSERT_EQ(resp.hits_size(), 1);
    EXPECT_EQ(resp.hits(0).aggregate().aggregate_id(), "tariffs/night");
    grpc::ClientContext bad;
    req.set_direction(v1::DOWN);
    EXPECT_EQ(aggs->Traverse(&bad, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
#ifdef FLEETTWIN_CLI_BINARY
  {
    auto [code, text] =
        run_command(std::string{FLEETTWIN_CLI_BINARY} + " --server " + node->grpc_address() +
                    " traverse m-25 --up --hops 2 --aggregates 2>&1");
    EXPECT_EQ(code, 0) << text;
    EXPECT_NE(text.find("aggregates/feeders/F1"), std::string::npos) << text;
    EXPECT_NE(text.find("aggregates/tariffs/night"), std::string::npos) << text;
  }
#endif

  // A rule would make F0 feed T0, which feeds F0: the relation is not
  // taken (counted as a cycle), the attribute is.
  {
    producer p{node->bootstrap()};
    p.send(topics.telemetry, "feeders/F0",
           telemetry("feeders/F0", 1, base_ms, {}, {{"transformer", "T0"}}, "feeder"));
    ASSERT_EQ(p.flush(), 0);
    ASSERT_TRUE(eventually([&] {
      return metric_value(scrape(node->metrics_port()),
                          "fleettwin_aggregate_anomalies_total{kind=\"cycle\"}") >= 1;
    }));
    v1::Relations got;
    ASSERT_TRUE(relations("aggregates/feeders/F0", got).ok());
    EXPECT_EQ(got.parents_size(), 0);
    v1::Aggregate f0;
    ASSERT_TRUE(get("feeders/F0", f0).ok());
    EXPECT_EQ(f0.attributes().at("transformer"), "T0");
  }

  // Removed again: out of the tariff, still under its transformer.
  ASSERT_TRUE(remove("twins/m-25", "aggregates/tariffs/night", rel).ok());
  ASSERT_EQ(rel.parents_size(), 1);
  ASSERT_TRUE(tariff_is(20, night));
  ASSERT_TRUE(converged(diff, 10s)) << diff;
}

TEST_F(AggregateNodeTest, PutAggregateKindChangesMeasuresEverywhereAndSurvivesARestart) {
  start_node();
  for (int i = 0; i < meters; ++i)
    transformer_of[i] = i % transformers;
  produce_transformers();
  produce_meters(1);
  std::string diff;
  ASSERT_TRUE(converged(diff)) << diff;

  auto put = [&](const std::string& name, const std::string& collection,
                 const std::vector<std::string>& members,
                 const std::vector<std::pair<std::string, std::string>>& measures,
                 v1::AggregateKind& out) {
    grpc::ClientContext ctx;
    v1::PutAggregateKindRequest req;
    auto* k = req.mutable_kind();
    k->set_name(name);
    k->set_collection(collection);
    for (const auto& m : members)
      k->add_member_relations(m);
    for (const auto& [n, e] : measures) {
      auto* m = k->add_measures();
      m->set_name(n);
      m->set_expression(e);
    }
    return aggs->PutAggregateKind(&ctx, req, &out);
  };
  // A new kind, usable at once.
  v1::AggregateKind site;
  auto s = put("site", "sites", {"located_at"}, {{"meters", "count()"}}, site);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(site.revision(), 1u);
  {
    grpc::ClientContext ctx;
    v1::SetRelationsRequest req;
    req.set_child("twins/m-1");
    auto* r = req.add_relations();
    r->set_type("located_at");
    r->set_parent("aggregates/sites/s1");
    v1::Relations rel;
    ASSERT_TRUE(aggs->SetRelations(&ctx, req, &rel).ok());
  }
  ASSERT_TRUE(eventually([&] {
    v1::Aggregate a;
    return get("sites/s1", a).ok() && measure(a, "meters") == 1;
  }));

  // A measure added to an existing kind: computed as members report.
  v1::AggregateKind transformer;
  s = put("transformer", "transformers", {"feeds"},
          {{"meters", "count()"},
           {"power", "sum(reported.power)"},
           {"power_max", "max(reported.power)"},
           {"utilisation", "power / attributes.capacity_kw"}},
          transformer);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(transformer.revision(), 1u);
  // Every transformer shows the new measures at once, without a new record:
  // power was sent by the members before, so its maximum is known already.
  auto shows_power_max = [&](int tr) {
    double want = 0;
    for (auto [m, t] : transformer_of)
      if (t == tr)
        want = std::max(want, power[m]);
    v1::Aggregate a;
    return get("transformers/T" + std::to_string(tr), a).ok() && measure(a, "power_max") == want &&
           !measure(a, "voltage_min");
  };
  ASSERT_TRUE(eventually([&] {
    for (int tr = 0; tr < transformers; ++tr)
      if (!shows_power_max(tr))
        return false;
    return true;
  }));
  produce_meters(2);
  ASSERT_TRUE(eventually([&] { return shows_power_max(4); }));

  // Refused with what to fix.
  v1::AggregateKind ignored;
  s = put("site", "sites", {"located_at"}, {{"meters", "count("}}, ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("meters"), std::string::npos) << s.error_message();
  s = put("transformer", "trafos", {"feeds"}, {{"meters", "count()"}}, ignored);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("collection"), std::string::npos) << s.error_message();

  // A restart on the old data dir (the embedded Kafka starts empty) keeps
  // the kinds set through the API.
  ASSERT_EQ(node->terminate(), 0);
  start_node();
  grpc::ClientContext ctx;
  v1::ListAggregateKindsResponse kinds;
  ASSERT_TRUE(aggs->ListAggregateKinds(&ctx, {}, &kinds).ok());
  std::map<std::string, v1::AggregateKind> by_name;
  for (const auto& k : kinds.kinds())
    by_name[k.name()] = k;
  ASSERT_TRUE(by_name.count("site"));
  EXPECT_EQ(by_name["site"].revision(), 1u);
  EXPECT_EQ(by_name["transformer"].measures_size(), 4);
  EXPECT_EQ(by_name["feeder"].revision(), 0u);
  v1::Aggregate a;
  EXPECT_TRUE(get("sites/s1", a).ok());
}

#ifdef FLEETTWIN_SIM_BINARY
TEST_F(AggregateNodeTest, TheSimulatedGridFleetsAndPlantsRollUpToTheSimulatorsGroundTruth) {
  node = std::make_unique<node_process>(
      "", dir + "/data",
      std::vector<std::string>{"--partitions", "4", "--aggregates", FLEETTWIN_DEPLOY_AGGREGATES});
  node->start();
  aggs = v1::AggregateService::NewStub(
      grpc::CreateChannel(node->grpc_address(), grpc::InsecureChannelCredentials()));
  // Telemetry and relations (vehicles plugging in and out), as fast as it
  // can, in JSON and protobuf; then what every aggregate must show.
  auto [code, text] =
      run_command(std::string{FLEETTWIN_SIM_BINARY} + " --bootstrap " + node->bootstrap() +
                  " --assets 600 --count 30000 --rate 0 --format mixed --truth " + dir +
                  "/truth.json --quiet 2>&1");
  ASSERT_EQ(code, 0) << text;
  std::ifstream in{dir + "/truth.json"};
  std::string json{std::istreambuf_iterator<char>{in}, {}};
  google::protobuf::Struct truth;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &truth).ok());
  const auto& expected = truth.fields().at("aggregates").struct_value().fields();
  ASSERT_GT(expected.size(), 50u);
  std::set<std::string> kinds;
  std::string last_diff;
  auto matches = [&](const std::string& id, const google::protobuf::Struct& want) {
    v1::Aggregate a;
    if (auto s = get(id, a); !s.ok()) {
      last_diff = id + ": " + s.error_message();
      return false;
    }
    const auto twins = want.fields().at("twins").number_value();
    if (static_cast<double>(a.member_twins()) != twins) {
      last_diff =
          id + ": " + std::to_string(a.member_twins()) + " twins, want " + std::to_string(twins);
      return false;
    }
    const auto& sum = want.fields().at("sum").struct_value().fields();
    // The grid's measures sum power; the others are checked by their counts.
    if (auto m = measure(a, "power_kw"); m && sum.count("power")) {
      const double w = sum.at("power").number_value();
      if (std::fabs(*m - w) > 1e-6 * std::max(1.0, std::fabs(w))) {
        last_diff = id + ": power_kw " + std::to_string(*m) + ", want " + std::to_string(w);
        return false;
      }
    }
    if (auto m = measure(a, "battery_mean"); m && sum.count("battery") && twins > 0) {
      const double w = sum.at("battery").number_value() / twins;
      if (std::fabs(*m - w) > 1e-6 * std::max(1.0, std::fabs(w))) {
        last_diff = id + ": battery_mean " + std::to_string(*m) + ", want " + std::to_string(w);
        return false;
      }
    }
    kinds.insert(a.kind());
    return true;
  };
  EXPECT_TRUE(eventually(
      [&] {
        kinds.clear();
        for (const auto& [id, want] : expected)
          if (!matches(id, want.struct_value()))
            return false;
        return true;
      },
      120s))
      << last_diff;
  for (auto k : {"grid", "substation", "feeder", "transformer", "fleet", "region", "depot",
                 "charger", "line", "plant"})
    EXPECT_TRUE(kinds.count(k)) << k;
}
#endif

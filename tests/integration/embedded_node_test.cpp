// A node on its own embedded Kafka, as `make run` starts it: restarts on the
// old data dir, and health for clients that know only server reflection.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>

#include "harness.hpp"
#include "services/kafka/kafka_config.hpp"

using namespace fleettwin;
using namespace fleettwin::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t base_ms = 1'700'000'000'000;

struct EmbeddedNodeTest : ::testing::Test {
  kafka::topic_names topics;
  std::string dir;
  std::unique_ptr<node_process> node;
  std::unique_ptr<v1::TwinService::Stub> twins;
  std::unique_ptr<v1::NodeService::Stub> nodes;

  void SetUp() override {
    dir = make_temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  void TearDown() override {
    if (HasFailure() && node) {
      std::ifstream log{node->log_path()};
      std::cerr << "--- fleettwin-node log ---\n" << log.rdbuf() << "--- end of log ---\n";
    }
    node.reset();
    std::filesystem::remove_all(dir);
  }

  /// Starts (or restarts) the node on the same data dir.
  void start_node(std::vector<std::string> more = {}) {
    std::vector<std::string> args{"--partitions", "4"};
    args.insert(args.end(), more.begin(), more.end());
    node = std::make_unique<node_process>("", dir + "/data", std::move(args));
    node->start();
    auto channel = grpc::CreateChannel(node->grpc_address(), grpc::InsecureChannelCredentials());
    twins = v1::TwinService::NewStub(channel);
    nodes = v1::NodeService::NewStub(channel);
  }

  grpc::Status get(const std::string& id, v1::Twin& out) {
    return get_twin(*twins, id, out, std::chrono::seconds{5});
  }

  bool applied(const std::string& id, uint64_t n, std::chrono::milliseconds timeout = 60s) {
    return eventually(
        [&] {
          v1::Twin tw;
          return get(id, tw).ok() && tw.applied_records() >= n;
        },
        timeout);
  }

  /// Records `from`..`to` of every asset, numbered with sequences starting
  /// at `first_seq`, source times after `time0`.
  void produce(const std::string& bootstrap, int assets, int count, uint64_t first_seq,
               int64_t time0) {
    producer p{bootstrap};
    for (int i = 0; i < count; ++i)
      for (int a = 0; a < assets; ++a) {
        auto id = "m-" + std::to_string(a);
        p.send(topics.telemetry, id,
               telemetry(id, first_seq + static_cast<uint64_t>(i), time0 + i, {{"v", i * 1.0}}));
      }
    ASSERT_EQ(p.flush(), 0);
  }

  double metric(const std::string& series) {
    return metric_value(scrape(node->metrics_port()), series);
  }
};

/// Runs a command; returns {exit status, stdout and stderr}.
std::pair<int, std::string> run(const std::string& cmd) {
  return run_command(cmd + " 2>&1");
}

}  // namespace

TEST_F(EmbeddedNodeTest, RestartOnTheOldDataDirKeepsTwinsAndAppliesEveryNewRecord) {
  // `make run`, stopped and started again: the embedded Kafka is new and
  // empty, the data dir holds the twins and the old offsets, and the
  // simulator numbers its records from 1 again.
  const int assets = 20;
  start_node();
  produce(node->bootstrap(), assets, 200, 1, base_ms);
  for (int a = 0; a < assets; ++a)
    ASSERT_TRUE(applied("m-" + std::to_string(a), 200)) << a;
  ASSERT_EQ(node->terminate(), 0);

  start_node();
  // The old offsets (up to 1000 per partition) lie beyond the new logs.
  produce(node->bootstrap(), assets, 150, 1, base_ms + 10'000);
  for (int a = 0; a < assets; ++a)
    ASSERT_TRUE(applied("m-" + std::to_string(a), 350)) << a;
  for (int a = 0; a < assets; ++a) {
    v1::Twin tw;
    auto id = "m-" + std::to_string(a);
    ASSERT_TRUE(get(id, tw).ok());
    EXPECT_EQ(tw.applied_records(), 350u) << id;
    EXPECT_EQ(tw.version(), 350u) << id;
    EXPECT_EQ(tw.duplicates(), 0u) << id;
    EXPECT_EQ(tw.out_of_order(), 0u) << id;
    EXPECT_EQ(tw.last_sequence(), 150u) << id;
  }
  // Said and counted, never silent: every partition had a stored offset.
  EXPECT_EQ(metric("fleettwin_input_resets_total{reason=\"embedded_kafka_restarted\"}"), 4);
  EXPECT_EQ(metric("fleettwin_sequence_restarts_total"), assets);
  std::ifstream log{node->log_path()};
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_NE(text.str().find("event=input_position_reset reason=embedded_kafka_restarted"),
            std::string::npos);
  // Lag is measured against the new logs: all read, none pending.
  ASSERT_TRUE(eventually([&] {
    auto m = scrape(node->metrics_port());
    for (int p = 0; p < 4; ++p)
      if (metric_value(
              m, "fleettwin_consumer_lag_records{partition=\"" + std::to_string(p) + "\"}") != 0)
        return false;
    return true;
  }));
  // GetStatus shows the offsets committed in the new logs.
  v1::NodeStatus st;
  int64_t committed = 0;
  EXPECT_TRUE(eventually(
      [&] {
        grpc::ClientContext ctx;
        st.Clear();
        if (!nodes->GetStatus(&ctx, {}, &st).ok())
          return false;
        committed = 0;
        for (const auto& p : st.partitions())
          committed += p.committed_offset();
        return committed == assets * 150;
      },
      10s))
      << st.DebugString();
  EXPECT_TRUE(st.ready()) << st.not_ready_reason();

  // A plain restart with sequences that continue: nothing is reset twice
  // for the twins, every record applies once.
  ASSERT_EQ(node->terminate(), 0);
  start_node();
  produce(node->bootstrap(), assets, 10, 151, base_ms + 20'000);
  for (int a = 0; a < assets; ++a)
    ASSERT_TRUE(applied("m-" + std::to_string(a), 360)) << a;
  EXPECT_EQ(metric("fleettwin_sequence_restarts_total"), 0);  // a new process counts anew
  v1::Twin tw;
  ASSERT_TRUE(get("m-0", tw).ok());
  EXPECT_EQ(tw.version(), 360u);
  EXPECT_EQ(node->terminate(), 0);
}

// DeleteTwin erases a twin's state and history; a replay of telemetry from before the
// erasure does not bring it back (a newer record starts a new twin), also after a restart
// on the old data dir; the erasure is a change on the twin-changes topic.
TEST_F(EmbeddedNodeTest, DeleteTwinErasesAndTheTwinStaysGoneAcrossReplayAndRestart) {
  start_node();
  produce(node->bootstrap(), 2, 3, 1, base_ms);
  ASSERT_TRUE(applied("m-0", 3));
  ASSERT_TRUE(applied("m-1", 3));
  auto history = [&](const std::string& id, v1::GetHistoryResponse& out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    v1::GetHistoryRequest req;
    req.set_name("twins/" + id);
    req.set_property("v");
    out.Clear();
    return twins->GetHistory(&ctx, req, &out);
  };
  auto erase = [&](const std::string& id, v1::DeleteTwinResponse& out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::DeleteTwinRequest req;
    req.set_name("twins/" + id);
    return twins->DeleteTwin(&ctx, req, &out);
  };
  v1::GetHistoryResponse h;
  ASSERT_TRUE(eventually([&] { return history("m-0", h).ok() && h.points_size() == 3; }));

  v1::DeleteTwinResponse gone;
  ASSERT_TRUE(erase("m-0", gone).ok());
  EXPECT_EQ(gone.version(), 3u);
  EXPECT_GT(gone.erased_ms(), base_ms);
  v1::Twin t;
  EXPECT_EQ(get("m-0", t).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(history("m-0", h).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::DeleteTwinResponse again;
  EXPECT_EQ(erase("m-0", again).error_code(), grpc::StatusCode::NOT_FOUND);
  {
    grpc::ClientContext ctx;
    v1::UpdateDesiredRequest req;
    req.set_name("twins/m-0");
    (*req.mutable_desired())["v"].set_double_value(1);
    EXPECT_EQ(twins->UpdateDesired(&ctx, req, &t).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  ASSERT_TRUE(eventually([&] {
    grpc::ClientContext ctx;
    v1::ListTwinsResponse resp;
    return twins->ListTwins(&ctx, v1::ListTwinsRequest{}, &resp).ok() && resp.twins_size() == 1 &&
           resp.twins(0).asset_id() == "m-1";
  }));
  // Data teams see the erasure (after the twins' reported changes, merged per work item).
  auto erased = [](const consumed_record& r) {
    auto it = r.headers.find("ce_type");
    return it != r.headers.end() && it->second == "fleettwin.twin.erased.v1";
  };
  auto changes = read_topic(
      node->bootstrap(), topics.changes,
      [&](const std::vector<consumed_record>& read) {
        return std::any_of(read.begin(), read.end(), erased);
      },
      20s);
  size_t erasures = 0;
  for (const auto& r : changes)
    if (erased(r)) {
      EXPECT_EQ(r.key, "m-0");
      v1::TwinChange c;
      ASSERT_TRUE(c.ParseFromString(r.value));
      EXPECT_EQ(c.type(), v1::ERASED);
      EXPECT_EQ(c.version(), 3u);
      ++erasures;
    }
  EXPECT_EQ(erasures, 1u);

  // A replay of an old record is ignored; a newer record starts a new twin (which then
  // has nothing of the replayed record).
  auto replay_then_new = [&](const std::string& id, int64_t newer_ms) {
    producer p{node->bootstrap()};
    p.send(topics.telemetry, id, telemetry(id, 1, base_ms, {{"old_only", 1}}));
    p.send(topics.telemetry, id, telemetry(id, 100, newer_ms, {{"v", 9}}));
    ASSERT_EQ(p.flush(), 0);
    ASSERT_TRUE(applied(id, 1));
    v1::Twin fresh;
    ASSERT_TRUE(get(id, fresh).ok());
    EXPECT_EQ(fresh.version(), 1u) << id;
    EXPECT_EQ(fresh.applied_records(), 1u) << id;
    EXPECT_FALSE(fresh.reported().contains("old_only")) << id;
  };
  replay_then_new("m-0", gone.erased_ms() + 1);
  ASSERT_TRUE(eventually([&] { return history("m-0", h).ok() && h.points_size() == 1; }));

  // The erasure survives a restart on the old data dir.
  v1::DeleteTwinResponse gone1;
  ASSERT_TRUE(erase("m-1", gone1).ok());
  EXPECT_EQ(node->terminate(), 0);
  start_node();
  EXPECT_EQ(get("m-1", t).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(history("m-1", h).error_code(), grpc::StatusCode::NOT_FOUND);
  replay_then_new("m-1", gone1.erased_ms() + 1);
  ASSERT_TRUE(get("m-0", t).ok());
  EXPECT_EQ(t.version(), 1u);

  // The CLI asks for --yes, erases, and says NOT_FOUND (exit 3) for a twin that is gone.
  const std::string cli =
      std::string{FLEETTWIN_CLI_BINARY} + " --server " + node->grpc_address() + " delete m-0";
  auto [rc, out] = run(cli);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("--yes"), std::string::npos) << out;
  std::tie(rc, out) = run(cli + " --yes");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("erased twin \"m-0\" (it was at version 1)"), std::string::npos) << out;
  EXPECT_EQ(get("m-0", t).error_code(), grpc::StatusCode::NOT_FOUND);
  std::tie(rc, out) = run(cli + " --yes");
  EXPECT_EQ(rc, 3) << out;
}

/// The twin-changes topic's events of each twin, in order, once they cover `per_asset`
/// versions of each of `assets` twins (or after 60 s).
std::map<std::string, std::vector<v1::TwinChange>> changes_by_twin(const std::string& bootstrap,
                                                                   const std::string& topic,
                                                                   size_t assets,
                                                                   uint64_t per_asset) {
  auto parse = [](const consumed_record& r) {
    v1::TwinChange c;
    EXPECT_TRUE(c.ParseFromString(r.value));
    return c;
  };
  auto records = read_topic(
      bootstrap, topic,
      [&](const std::vector<consumed_record>& read) {
        uint64_t covered = 0;
        for (const auto& r : read) {
          auto c = parse(r);
          covered += c.version() - c.first_version() + 1;
        }
        return covered >= assets * per_asset;
      },
      60s);
  std::map<std::string, std::vector<v1::TwinChange>> out;
  for (const auto& r : records)
    out[r.key].push_back(parse(r));  // a twin's events share a partition: in order
  return out;
}

// A burst of records per twin: by default each work item's changes of a twin make one
// event (first_version..version, the last value of each property); --change-events each
// makes one per record. Either way a twin's events cover each version once, in order.
TEST_F(EmbeddedNodeTest, ChangeEventsCoverEveryVersionOnceMergedPerWorkItemOrOnePerRecord) {
  constexpr int assets = 2, records = 300;
  for (const char* mode : {"item", "each"}) {
    SCOPED_TRACE(mode);
    start_node({"--change-events", mode});
    produce(node->bootstrap(), assets, records, 1, base_ms);
    for (int a = 0; a < assets; ++a)
      ASSERT_TRUE(applied("m-" + std::to_string(a), records));
    auto events = changes_by_twin(node->bootstrap(), topics.changes, assets, records);
    ASSERT_EQ(events.size(), static_cast<size_t>(assets));
    size_t total = 0;
    for (const auto& [id, list] : events) {
      SCOPED_TRACE(id);
      uint64_t next = 1;
      for (const auto& c : list) {
        ASSERT_EQ(c.first_version(), next);
        ASSERT_GE(c.version(), c.first_version());
        EXPECT_EQ(c.sequence(), c.version()) << "the last record's sequence (records 1..n)";
        ASSERT_EQ(c.reported().count("v"), 1u);
        EXPECT_EQ(c.reported().at("v").value().double_value(), double(c.version() - 1))
            << "the value of the last record";
        if (std::string{mode} == "each")
          EXPECT_EQ(c.first_version(), c.version());
        next = c.version() + 1;
      }
      EXPECT_EQ(next, uint64_t{records} + 1);
      total += list.size();
    }
    if (std::string{mode} == "item")
      EXPECT_LT(total, size_t{assets * records}) << "a burst's records share work items";
    else
      EXPECT_EQ(total, size_t{assets * records});
    node.reset();
    std::filesystem::remove_all(dir + "/data");
  }
}

TEST_F(EmbeddedNodeTest, HealthAndReadinessForClientsThatKnowOnlyReflection) {
  const std::string grpcurl = FLEETTWIN_GRPCURL;
  ASSERT_TRUE(std::filesystem::exists(grpcurl))
      << grpcurl << " is missing: `make test` installs it (build/extern/grpcurl)";
  // A Kafka whose group coordinator answers the first join only after 8 s:
  // the node runs and answers, but serves no partition meanwhile.
  std::string error;
  auto kafka = kafka::embedded_kafka::start(1, 4, topics, error);
  ASSERT_TRUE(kafka) << error;
  constexpr int16_t join_group = 11;  // Kafka's JoinGroup API key
  kafka->delay_request(join_group, 8s);
  node = std::make_unique<node_process>(kafka->bootstrap(), dir + "/data");
  node->start(/*until_ready=*/false);
  nodes = v1::NodeService::NewStub(
      grpc::CreateChannel(node->grpc_address(), grpc::InsecureChannelCredentials()));
  const auto addr = node->grpc_address();
  auto check = [&](const std::string& service) {
    return run(grpcurl + " -plaintext -max-time 5 -d '{\"service\":\"" + service + "\"}' " + addr +
               " grpc.health.v1.Health/Check");
  };
  // gRPC answers at once, but the node is not ready before the group gave
  // it its partitions.
  auto [code, out] = check("");
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("NOT_SERVING"), std::string::npos) << out;
  // Liveness is separate: the process answers.
  std::tie(code, out) = check("fleettwin.v1.NodeService");
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("\"SERVING\""), std::string::npos) << out;
  // Ready once every partition is served, and GetStatus agrees.
  ASSERT_TRUE(eventually(
      [&] {
        auto [c, o] = check("");
        return c == 0 && o.find("\"SERVING\"") != std::string::npos;
      },
      30s, 100ms));
  v1::NodeStatus st;
  grpc::ClientContext ctx;
  ASSERT_TRUE(nodes->GetStatus(&ctx, {}, &st).ok());
  EXPECT_TRUE(st.ready()) << st.not_ready_reason();
  EXPECT_EQ(st.partitions_size(), 4);
  std::tie(code, out) = check("fleettwin.v1.TwinService");
  EXPECT_NE(out.find("\"SERVING\""), std::string::npos) << out;
  // Reflection describes the health service: no .proto files needed.
  std::tie(code, out) = run(grpcurl + " -plaintext " + addr + " list");
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("grpc.health.v1.Health"), std::string::npos) << out;
  std::tie(code, out) = run(grpcurl + " -plaintext " + addr + " describe grpc.health.v1.Health");
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("rpc Check"), std::string::npos) << out;
  // An unknown service is NOT_FOUND, not a crash.
  std::tie(code, out) = check("no.such.Service");
  EXPECT_NE(code, 0);
  EXPECT_NE(out.find("NotFound"), std::string::npos) << out;
  EXPECT_EQ(node->terminate(), 0);
}

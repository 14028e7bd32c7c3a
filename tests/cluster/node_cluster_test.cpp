// Several fleettwin-node processes on a real Kafka broker: partitions move when
// nodes join and leave, a node with an empty disk restores from the changelog,
// every gRPC method answers through any node, and a moving partition answers
// either correct data or UNAVAILABLE with a retry hint.

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "cluster_harness.hpp"
#include "fleettwin/v1/analytics.grpc.pb.h"
#include "fleettwin/v1/telemetry.pb.h"
#include "support/kafka_io.hpp"
#include "support/metrics_scrape.hpp"

namespace fleettwin::test {
namespace {

using grpc::StatusCode;

std::string describe(const grpc::Status& s) {
  return std::to_string(s.error_code()) + " " + s.error_message();
}

/// GetTwin, retried while the answer is UNAVAILABLE (a partition moving) until
/// the deadline; any other answer is returned at once.
grpc::Status read_twin(cluster_node& via, const std::string& id, v1::Twin& out,
                       std::chrono::milliseconds timeout = 30s) {
  grpc::Status s;
  eventually(
      [&] {
        s = get_twin(via.twins(), id, out);
        return s.error_code() != StatusCode::UNAVAILABLE;
      },
      timeout, 50ms);
  return s;
}

grpc::Status get_history(cluster_node& via, const std::string& id, const std::string& property,
                         v1::GetHistoryResponse& out) {
  grpc::Status s;
  eventually(
      [&] {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + 10s);
        v1::GetHistoryRequest req;
        req.set_name("twins/" + id);
        req.set_property(property);
        out.Clear();
        s = via.twins().GetHistory(&ctx, req, &out);
        return s.error_code() != StatusCode::UNAVAILABLE;
      },
      30s, 50ms);
  return s;
}

/// A double in a map of values, -1 when absent.
double number(const google::protobuf::Map<std::string, v1::Value>& values, const std::string& key) {
  auto it = values.find(key);
  return it == values.end() ? -1 : it->second.double_value();
}

/// The reported speed, -1 when the twin has none.
double speed_of(const v1::Twin& t) {
  auto it = t.reported().find("speed");
  return it == t.reported().end() ? -1 : it->second.value().double_value();
}

std::vector<std::string> ids_of(const std::vector<v1::Twin>& twins) {
  std::vector<std::string> out;
  for (const auto& t : twins)
    out.push_back(t.asset_id());
  return out;
}

struct NodeClusterTest : cluster_fixture {
  void SetUp() override {
    c_ = std::make_unique<cluster>();
  }
  cluster& c() {
    return *c_;
  }

  /// Every partition served, by exactly `nodes` nodes, none with more than one
  /// partition more than another (cooperative-sticky balances).
  void expect_spread(size_t nodes) {
    std::string why;
    bool ok = eventually(
        [&] {
          if (!c().all_partitions_served(&why))
            return false;
          auto view = c().serving();
          if (!view || view->partitions_of.size() != nodes) {
            why = "partitions are served by " +
                  std::to_string(view ? view->partitions_of.size() : 0) + " nodes, not " +
                  std::to_string(nodes);
            return false;
          }
          size_t lo = SIZE_MAX, hi = 0;
          for (const auto& [id, ps] : view->partitions_of) {
            lo = std::min(lo, ps.size());
            hi = std::max(hi, ps.size());
          }
          why = "unbalanced assignment";
          return hi - lo <= 1;
        },
        60s, 100ms);
    ASSERT_TRUE(ok) << why;
  }

  /// Every twin read through `via`, keyed by asset id.
  std::map<std::string, v1::Twin> snapshot(cluster_node& via,
                                           const std::vector<std::string>& assets) {
    std::map<std::string, v1::Twin> out;
    for (const auto& id : assets) {
      v1::Twin t;
      auto s = read_twin(via, id, t);
      EXPECT_TRUE(s.ok()) << id << " via " << via.id() << ": " << describe(s);
      out[id] = t;
    }
    return out;
  }

  /// Every twin reads the same through `via` as in `expected`.
  void expect_same_twins(cluster_node& via, const std::map<std::string, v1::Twin>& expected) {
    size_t differ = 0;
    for (const auto& [id, want] : expected) {
      v1::Twin got;
      auto s = read_twin(via, id, got);
      if (!s.ok()) {
        ADD_FAILURE() << "GetTwin " << id << " via " << via.id() << ": " << describe(s);
        continue;
      }
      auto diff = twin_diff(want, got);
      if (!diff.empty() && differ++ < 3)
        ADD_FAILURE() << "GetTwin " << id << " via " << via.id() << " differs: " << diff;
    }
    EXPECT_EQ(differ, 0u) << "twins read differently via " << via.id();
  }

  /// The committed twins (ListTwins via `via`) have applied exactly what was
  /// acknowledged, nothing twice, in order.
  void expect_exact_counts(cluster_node& via, const telemetry_source& src) {
    auto acked = src.acked();
    std::string why;
    if (!wait_until_applied(via, acked, 60s, &why)) {
      std::vector<v1::Twin> twins;
      std::string missing;
      if (list_all(via.twins(), "", 1000, twins).ok())
        for (const auto& t : twins)
          if (t.applied_records() != acked.at(t.asset_id()))
            missing += "\n" + explain_missing(c(), t.asset_id(), acked.at(t.asset_id()));
      FAIL() << why << missing;
    }
    std::vector<v1::Twin> twins;
    ASSERT_TRUE(list_all(via.twins(), "", 1000, twins).ok());
    ASSERT_EQ(twins.size(), acked.size());
    for (const auto& t : twins) {
      auto n = acked.at(t.asset_id());
      EXPECT_EQ(t.applied_records(), n) << t.asset_id();
      EXPECT_EQ(t.duplicates(), 0u) << t.asset_id();
      EXPECT_EQ(t.out_of_order(), 0u) << t.asset_id();
      EXPECT_EQ(t.last_sequence(), n) << t.asset_id();
      EXPECT_EQ(speed_of(t), static_cast<double>(n)) << t.asset_id();
    }
  }
};

// (a) One node serves everything; two more join; the partitions spread over
// the three, every twin reads the same through every node, and telemetry
// produced afterwards is applied exactly once.
TEST_F(NodeClusterTest, RebalanceOnJoinSpreadsPartitionsAndKeepsEveryTwin) {
  c().start_nodes(1);
  std::string why;
  ASSERT_TRUE(c().wait_until_all_partitions_served(60s, &why)) << why;
  telemetry_source src{c().bootstrap(), c().topics().telemetry, 60};
  ASSERT_TRUE(src.produce(5)) << src.first_error();
  ASSERT_TRUE(wait_until_applied(c().node(0), src.acked(), 60s, &why)) << why;
  auto before = snapshot(c().node(0), src.assets());

  c().node(c().add_node()).start();
  c().node(c().add_node()).start();
  ASSERT_NO_FATAL_FAILURE(expect_spread(3));
  for (size_t i = 0; i < c().size(); ++i)
    expect_same_twins(c().node(i), before);

  ASSERT_TRUE(src.produce(5)) << src.first_error();
  for (size_t i = 0; i < c().size(); ++i)
    ASSERT_NO_FATAL_FAILURE(expect_exact_counts(c().node(i), src));
  for (const auto& [id, n] : src.acked())
    ASSERT_EQ(n, 10u) << id;
}

// (b) One of three nodes stops gracefully (SIGTERM): it leaves the group and
// the members topic, its partitions move to the other two, every twin stays
// readable, and later telemetry is applied exactly once.
TEST_F(NodeClusterTest, RebalanceOnLeaveMovesPartitionsOfAStoppedNode) {
  c().start_nodes(3);
  ASSERT_NO_FATAL_FAILURE(expect_spread(3));
  telemetry_source src{c().bootstrap(), c().topics().telemetry, 60};
  ASSERT_TRUE(src.produce(5)) << src.first_error();
  std::string why;
  ASSERT_TRUE(wait_until_applied(c().node(0), src.acked(), 60s, &why)) << why;
  auto before = snapshot(c().node(0), src.assets());

  auto& leaving = c().node(1);
  auto view = c().serving();
  ASSERT_TRUE(view);
  ASSERT_FALSE(view->partitions_of[leaving.id()].empty());
  EXPECT_EQ(leaving.stop(), 0) << "fleettwin-node did not exit cleanly on SIGTERM";

  ASSERT_NO_FATAL_FAILURE(expect_spread(2));
  for (size_t i : {0, 2}) {
    // The leaving node wrote a tombstone: nobody lists it any more.
    bool gone = eventually([&] {
      v1::ClusterStatus cs;
      if (!get_cluster(c().node(i), cs).ok())
        return false;
      return std::none_of(cs.nodes().begin(), cs.nodes().end(),
                          [&](const auto& n) { return n.member().node_id() == leaving.id(); });
    });
    EXPECT_TRUE(gone) << c().node(i).id() << " still lists " << leaving.id();
    expect_same_twins(c().node(i), before);
  }

  ASSERT_TRUE(src.produce(5)) << src.first_error();
  for (size_t i : {0, 2})
    ASSERT_NO_FATAL_FAILURE(expect_exact_counts(c().node(i), src));
  // Its transactions are counted and timed.
  auto metrics = scrape(c().node(0).metrics_port());
  EXPECT_GT(metric_value(metrics, "fleettwin_transactions_committed_total"), 0) << metrics;
  EXPECT_GT(metric_value(metrics, "fleettwin_transaction_commit_seconds_total"), 0) << metrics;
}

// A bulk desired update through one node while another leaves: the twins whose partition
// is moving answer UNAVAILABLE for a moment, the call tries them again, and every twin of
// every call ends OK.
TEST_F(NodeClusterTest, BulkUpdatesRideOutAPartitionMove) {
  c().start_nodes(3);
  ASSERT_NO_FATAL_FAILURE(expect_spread(3));
  telemetry_source src{c().bootstrap(), c().topics().telemetry, 60};
  ASSERT_TRUE(src.produce(2)) << src.first_error();
  std::string why;
  ASSERT_TRUE(wait_until_applied(c().node(0), src.acked(), 60s, &why)) << why;
  std::atomic<bool> stop{false};
  std::atomic<int> runs{0};
  std::mutex mutex;
  std::vector<std::string> problems;
  auto problem = [&](std::string text) {
    std::lock_guard<std::mutex> guard{mutex};
    if (problems.size() < 20)
      problems.push_back(std::move(text));
  };
  std::thread bulk([&] {
    for (int64_t round = 1; !stop; ++round) {
      v1::BulkUpdateDesiredRequest req;
      for (const auto& id : src.assets())
        req.add_names("twins/" + id);
      (*req.mutable_desired())["round"].set_int_value(round);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + 60s);
      auto reader = c().node(0).twins().BulkUpdateDesired(&ctx, req);
      v1::BulkUpdateDesiredProgress m;
      size_t ok = 0;
      while (reader->Read(&m))
        for (const auto& o : m.outcomes()) {
          if (o.code() == "OK")
            ++ok;
          else
            problem("round " + std::to_string(round) + ": " + o.name() + " " + o.code() + ": " +
                    o.message());
        }
      auto s = reader->Finish();
      if (!s.ok())
        problem("round " + std::to_string(round) + ": " + describe(s));
      else if (ok != src.assets().size())
        problem("round " + std::to_string(round) + ": " + std::to_string(ok) + " OK of " +
                std::to_string(src.assets().size()));
      ++runs;
    }
  });
  EXPECT_TRUE(eventually([&] { return runs >= 2; }));
  EXPECT_EQ(c().node(1).stop(), 0) << "fleettwin-node did not exit cleanly on SIGTERM";
  ASSERT_NO_FATAL_FAILURE(expect_spread(2));
  const int at_spread = runs;
  EXPECT_TRUE(eventually([&] { return runs >= at_spread + 2; }));
  stop = true;
  bulk.join();
  std::string all;
  for (const auto& p : problems)
    all += p + "\n";
  EXPECT_TRUE(problems.empty()) << all;
  EXPECT_GE(runs.load(), 4);
}

// A node killed with -9 leaves the consumer group only after the session timeout, but its
// connection to the other nodes drops at once: the survivor starts reading the dead node's
// partitions from the changelog right then (as a standby), so that the restore after the
// group moves them only reads the tail; it stops following them once it owns them, and every
// twin reads as before the kill.
TEST_F(NodeClusterTest, AKilledNodesPartitionsAreReadFromTheChangelogBeforeTheGroupMovesThem) {
  c().start_nodes(2);
  ASSERT_NO_FATAL_FAILURE(expect_spread(2));
  telemetry_source src{c().bootstrap(), c().topics().telemetry, 60};
  ASSERT_TRUE(src.produce(5)) << src.first_error();
  std::string why;
  ASSERT_TRUE(wait_until_applied(c().node(0), src.acked(), 60s, &why)) << why;
  auto before = snapshot(c().node(0), src.assets());

  auto& survivor = c().node(0);
  auto& victim = c().node(1);
  // The nodes keep a connection to each other ahead of any forwarded call.
  double connected = -1;
  ASSERT_TRUE(eventually([&] {
    connected = metric_value(scrape(survivor.metrics_port()), "fleettwin_cluster_peers_connected");
    return connected == 1;
  })) << "peers connected: "
      << connected;
  auto view = c().serving();
  ASSERT_TRUE(view);
  const auto victims = view->partitions_of[victim.id()];
  ASSERT_FALSE(victims.empty());
  victim.kill9();
  ASSERT_TRUE(c().wait_until_all_partitions_served(60s, &why)) << why;
  expect_same_twins(survivor, before);

  // In the survivor's log, after the peer was lost: each of the victim's partitions was
  // read as a standby before the group assigned it.
  std::vector<std::string> lines;
  {
    std::istringstream in{file_tail(survivor.log_path(), 100'000)};
    for (std::string line; std::getline(in, line);)
      lines.push_back(line);
  }
  auto find = [&](size_t from, const std::string& needle) {
    for (size_t i = from; i < lines.size(); ++i)
      if (lines[i].find(needle) != std::string::npos)
        return i;
    return lines.size();
  };
  const auto lost = find(0, "event=peer_lost node=" + victim.id() + " ");
  ASSERT_LT(lost, lines.size()) << "the survivor never noticed the lost connection";
  for (auto p : victims) {
    const auto pn = "partition=" + std::to_string(p) + " ";
    const auto read = find(lost, "event=changelog_read_started " + pn + "mode=standby");
    const auto assigned =
        find(lost, "event=partition_assigned topic=" + c().topics().telemetry + " " + pn);
    EXPECT_LT(read, lines.size()) << "partition " << p << " was not read before its move";
    EXPECT_LT(read, assigned) << "partition " << p << " was read only after its assignment";
  }
  // Owned now, the partitions are not followed as standbys any more, and the dead peer's
  // connection is not counted.
  auto metrics = scrape(survivor.metrics_port());
  EXPECT_TRUE(eventually([&] {
    metrics = scrape(survivor.metrics_port());
    return metric_value(metrics, "fleettwin_standby_partitions") == 0 &&
           metric_value(metrics, "fleettwin_cluster_peers_connected") == 0;
  })) << metrics;
  ASSERT_TRUE(src.produce(3)) << src.first_error();
  ASSERT_NO_FATAL_FAILURE(expect_exact_counts(survivor, src));
}

// A hot twin's backlog taken in large work items: its history goes to the changelog in
// segments the broker accepts (one segment of an item would exceed the broker's 1 MiB), so
// every transaction commits the first time and every record is applied once.
TEST_F(NodeClusterTest, AHotTwinsBacklogCommitsWithoutChangelogRecordsTheBrokerRefuses) {
  // 12 properties with long names: about 400 bytes of history per record, so a
  // fetch's worth of records (1 MiB) makes more than 1 MiB of history.
  const std::string hot = "hot-1";
  const uint64_t records = 20'000;
  {
    producer p{c().bootstrap()};
    for (uint64_t seq = 1; seq <= records; ++seq) {
      std::map<std::string, double> metrics;
      for (int m = 0; m < 12; ++m)
        metrics["drive_train_sensor_channel_" + std::to_string(m)] =
            static_cast<double>(seq * 13 + static_cast<uint64_t>(m));
      p.send(
          c().topics().telemetry, hot,
          telemetry(hot, seq, telemetry_source::base_time_ms + static_cast<int64_t>(seq), metrics));
    }
    ASSERT_EQ(p.flush(), 0);
  }
  c().start_nodes(1);
  std::string why;
  ASSERT_TRUE(c().wait_until_all_partitions_served(60s, &why)) << why;
  ASSERT_TRUE(wait_until_applied(c().node(0), {{hot, records}}, 120s, &why)) << why;
  auto metrics = scrape(c().node(0).metrics_port());
  EXPECT_EQ(metric_value(metrics, "fleettwin_partition_revivals_total"), 0) << metrics;
  EXPECT_GT(metric_value(metrics, "fleettwin_transactions_committed_total"), 0) << metrics;
  v1::Twin t;
  ASSERT_TRUE(get_twin(c().node(0).twins(), hot, t).ok());
  EXPECT_EQ(t.version(), records);
  v1::GetHistoryResponse h;
  ASSERT_TRUE(get_history(c().node(0), hot, "drive_train_sensor_channel_0", h).ok());
  EXPECT_GT(h.points_size(), 0);
}

// A twin whose state is larger than a broker takes by default (1 MiB; here about 2.5 MB of
// string properties, within the limits): its changelog record goes to a topic made for it
// (max.message.bytes), it commits, and it restores onto another node.
TEST_F(NodeClusterTest, ATwinLargerThanTheBrokersDefaultRecordCommitsAndRestores) {
  c().start_nodes(1);
  std::string why;
  ASSERT_TRUE(c().wait_until_all_partitions_served(60s, &why)) << why;
  const std::string big = "big-1";
  const uint64_t records = 5;
  // Random letters: the records are compressed on their way, and a record's size is
  // what the broker counts after that.
  std::mt19937 rng{7};
  auto text = [&rng] {
    std::string s(3'900, 'a');
    for (auto& ch : s)
      ch = static_cast<char>('a' + rng() % 26);
    return s;
  };
  std::string last;
  {
    producer p{c().bootstrap()};
    for (uint64_t seq = 1; seq <= records; ++seq) {
      v1::Telemetry t;
      t.set_asset_id(big);
      t.set_kind("vehicle");
      t.set_sequence(seq);
      t.set_source_time_ms(telemetry_source::base_time_ms + static_cast<int64_t>(seq));
      for (int m = 0; m < 128; ++m)
        (*t.mutable_metrics())["note_" + std::to_string(seq) + "_" + std::to_string(m)]
            .set_string_value(last = text());
      p.send(c().topics().telemetry, big, t.SerializeAsString());
    }
    ASSERT_EQ(p.flush(), 0);
  }
  ASSERT_TRUE(wait_until_applied(c().node(0), {{big, records}}, 60s, &why)) << why;
  auto metrics = scrape(c().node(0).metrics_port());
  EXPECT_EQ(metric_value(metrics, "fleettwin_partition_revivals_total"), 0) << metrics;
  v1::Twin before;
  ASSERT_TRUE(get_twin(c().node(0).twins(), big, before).ok());
  ASSERT_EQ(before.reported_size(), 640);
  c().node(0).kill9();
  auto& fresh = c().node(c().add_node("node-fresh"));
  fresh.start();
  ASSERT_TRUE(c().wait_until_all_partitions_served(60s, &why)) << why;
  v1::Twin after;
  ASSERT_TRUE(get_twin(fresh.twins(), big, after).ok());
  EXPECT_EQ(after.version(), records);
  EXPECT_EQ(after.reported_size(), 640);
  EXPECT_EQ(after.reported().at("note_5_127").value().string_value(), last);
}

// (c) A node ingests and dies (kill -9); a new node with another id and an empty
// data dir starts alone and restores every twin, with its history, from the
// changelog topic.
// Twins, desired state and history restore from the changelog onto an empty node; erased
// twins stay erased there.
TEST_F(NodeClusterTest, RestoreFromTheChangelogOntoAnEmptyNode) {
  c().start_nodes(1);
  std::string why;
  ASSERT_TRUE(c().wait_until_all_partitions_served(60s, &why)) << why;
  telemetry_source src{c().bootstrap(), c().topics().telemetry, 60};
  ASSERT_TRUE(src.produce(4)) << src.first_error();
  ASSERT_TRUE(wait_until_applied(c().node(0), src.acked(), 60s, &why)) << why;
  // Desired state is part of the twin too.
  for (size_t i = 0; i < 6; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::UpdateDesiredRequest req;
    req.set_name("twins/" + src.assets()[i]);
    (*req.mutable_desired())["target_speed"].set_double_value(40.0 + i);
    v1::Twin t;
    ASSERT_TRUE(c().node(0).twins().UpdateDesired(&ctx, req, &t).ok());
  }
  ASSERT_TRUE(src.produce(1)) << src.first_error();
  ASSERT_TRUE(wait_until_applied(c().node(0), src.acked(), 60s, &why)) << why;
  // Erased twins stay erased: their tombstones and their history's are in the changelog.
  std::vector<std::string> kept;
  std::vector<std::string> erased;
  for (size_t i = 0; i < src.assets().size(); ++i)
    (i >= 6 && i < 9 ? erased : kept).push_back(src.assets()[i]);
  for (const auto& id : erased) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::DeleteTwinRequest req;
    req.set_name("twins/" + id);
    v1::DeleteTwinResponse resp;
    auto st = c().node(0).twins().DeleteTwin(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << id << ": " << describe(st);
    EXPECT_EQ(resp.version(), 5u) << id;
  }

  auto before = snapshot(c().node(0), kept);
  std::map<std::string, v1::GetHistoryResponse> history;
  for (const auto& id : kept) {
    ASSERT_TRUE(get_history(c().node(0), id, "speed", history[id]).ok()) << id;
    ASSERT_EQ(history[id].points_size(), 5) << id;
  }
  v1::NodeStatus status_before;
  ASSERT_TRUE(get_status(c().node(0), status_before).ok());
  const uint64_t stored_before = status_before.stored_twins();
  ASSERT_GE(stored_before, kept.size());
  c().node(0).kill9();

  auto& fresh = c().node(c().add_node("node-fresh"));
  fresh.start();
  ASSERT_TRUE(c().wait_until_all_partitions_served(60s, &why)) << why;
  expect_same_twins(fresh, before);
  for (const auto& id : erased) {
    v1::Twin t;
    EXPECT_EQ(get_twin(fresh.twins(), id, t).error_code(), grpc::StatusCode::NOT_FOUND) << id;
    v1::GetHistoryResponse h;
    EXPECT_EQ(get_history(fresh, id, "speed", h).error_code(), grpc::StatusCode::NOT_FOUND) << id;
  }
  for (const auto& id : kept) {
    v1::GetHistoryResponse h;
    auto s = get_history(fresh, id, "speed", h);
    ASSERT_TRUE(s.ok()) << id << ": " << describe(s);
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(h, history[id]))
        << id << ": " << h.ShortDebugString() << " vs " << history[id].ShortDebugString();
  }
  auto metrics = scrape(fresh.metrics_port());
  EXPECT_GT(metric_value(metrics, "fleettwin_restore_records_total"), 0) << metrics;
  // The restore counted the twins it wrote as the node that wrote them did.
  v1::NodeStatus status;
  ASSERT_TRUE(get_status(fresh, status).ok());
  EXPECT_EQ(status.stored_twins(), stored_before);
  EXPECT_EQ(metric_value(metrics, "fleettwin_twins_stored"), static_cast<double>(stored_before))
      << metrics;
}

// An alert's state is part of its twin: raised by a level shift and
// acknowledged on one node, it reads the same on an empty node restored from
// the changelog after a kill -9 of the first, which acknowledges it no
// second time and goes on from it; the alerts topic holds each event once.
TEST_F(NodeClusterTest, AnAlertAndItsAcknowledgementSurviveKillNineAndRestore) {
  c().start_nodes(1);
  std::string why;
  ASSERT_TRUE(c().wait_until_all_partitions_served(60s, &why)) << why;
  const int64_t t0 = 1'700'000'000'000;
  std::mt19937 gen{4};
  std::normal_distribution<double> noise{0, 0.5};
  producer p{c().bootstrap()};
  auto send = [&](int from, int to) {
    for (int s = from; s <= to; ++s)
      p.send(c().topics().telemetry, "mtr-a",
             telemetry("mtr-a", s, t0 + s * 30'000,
                       {{"voltage", 230 + noise(gen) + (s >= 150 ? 8 : 0)}}, {}, "meter"));
    return p.flush() == 0;
  };
  ASSERT_TRUE(send(1, 160));
  std::string last_read;  // what the twin said last, for a failure's message
  auto applied = [&](cluster_node& n, uint64_t records) {
    return eventually([&] {
      v1::Twin t;
      auto s = read_twin(n, "mtr-a", t);
      last_read = s.ok() ? "applied_records=" + std::to_string(t.applied_records()) : describe(s);
      return s.ok() && t.applied_records() == records;
    });
  };
  ASSERT_TRUE(applied(c().node(0), 160)) << "mtr-a: " << last_read;
  auto alerts_of = [](cluster_node& n) {
    return v1::AlertService::NewStub(
        grpc::CreateChannel(n.grpc_address(), grpc::InsecureChannelCredentials()));
  };
  const std::string name = "twins/mtr-a/alerts/voltage/1";
  {
    auto alerts = alerts_of(c().node(0));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::AcknowledgeAlertRequest req;
    req.set_name(name);
    v1::Alert a;
    auto s = alerts->AcknowledgeAlert(&ctx, req, &a);
    ASSERT_TRUE(s.ok()) << describe(s);
    EXPECT_EQ(a.state(), v1::ACKNOWLEDGED);
  }
  v1::Twin before;
  ASSERT_TRUE(read_twin(c().node(0), "mtr-a", before).ok());
  ASSERT_TRUE(before.analysis().at("voltage").alert_acknowledged()) << before.ShortDebugString();
  c().node(0).kill9();

  auto& fresh = c().node(c().add_node("node-fresh"));
  fresh.start();
  ASSERT_TRUE(c().wait_until_all_partitions_served(60s, &why)) << why;
  v1::Twin after;
  ASSERT_TRUE(read_twin(fresh, "mtr-a", after).ok());
  EXPECT_EQ(twin_diff(before, after), "");
  {
    auto alerts = alerts_of(fresh);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::ListAlertsRequest req;
    v1::ListAlertsResponse resp;
    auto s = alerts->ListAlerts(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << describe(s);
    ASSERT_EQ(resp.alerts_size(), 1) << resp.ShortDebugString();
    EXPECT_EQ(resp.alerts(0).name(), name);
    EXPECT_EQ(resp.alerts(0).state(), v1::ACKNOWLEDGED);
    grpc::ClientContext again;
    again.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::AcknowledgeAlertRequest ack;
    ack.set_name(name);
    v1::Alert a;
    EXPECT_EQ(alerts->AcknowledgeAlert(&again, ack, &a).error_code(),
              StatusCode::FAILED_PRECONDITION);
  }
  // The restored analytics go on from where they were.
  ASSERT_TRUE(send(161, 170));
  ASSERT_TRUE(applied(fresh, 170)) << "mtr-a: " << last_read;
  ASSERT_TRUE(read_twin(fresh, "mtr-a", after).ok());
  EXPECT_EQ(after.analysis().at("voltage").samples(), 170u);
  EXPECT_EQ(after.analysis().at("voltage").alerts_raised(), 1u);

  // The alerts topic: raised once, acknowledged once (read committed; the
  // alert may have been updated in between, so everything there is is read).
  auto records = read_topic(c().bootstrap(), c().topics().alerts, 1000, 10s);
  std::map<std::string, int> events;
  std::set<std::string> ids;
  for (const auto& r : records) {
    EXPECT_TRUE(ids.insert(r.headers.at("ce_id")).second) << r.headers.at("ce_id");
    ++events[r.headers.at("ce_type")];
  }
  EXPECT_EQ(events["fleettwin.alert.raised.v1"], 1);
  EXPECT_EQ(events["fleettwin.alert.acknowledged.v1"], 1);
}

// (d) Through any node, every TwinService method reaches the twin's owner:
// reads, batch reads with mixed owners, cluster-wide listing and paging,
// desired updates with optimistic concurrency, history; and every node
// answers the cluster and node status.
TEST_F(NodeClusterTest, EveryMethodAnswersThroughEveryNode) {
  c().start_nodes(3);
  ASSERT_NO_FATAL_FAILURE(expect_spread(3));
  telemetry_source src{c().bootstrap(), c().topics().telemetry, 60};
  ASSERT_TRUE(src.produce(3)) << src.first_error();
  std::string why;
  ASSERT_TRUE(wait_until_applied(c().node(0), src.acked(), 60s, &why)) << why;
  const auto& assets = src.assets();

  std::map<std::string, size_t> owner;
  for (const auto& id : assets) {
    auto o = c().owner_of(id);
    ASSERT_TRUE(o) << id;
    owner[id] = *o;
  }
  auto truth = [&] {
    std::map<std::string, v1::Twin> out;
    for (const auto& id : assets) {
      v1::Twin t;
      EXPECT_TRUE(get_twin(c().node(owner[id]).twins(), id, t).ok()) << id;
      out[id] = t;
    }
    return out;
  }();

  for (size_t x = 0; x < c().size(); ++x) {
    auto& via = c().node(x);
    SCOPED_TRACE("via " + via.id());
    size_t remote =
        std::count_if(owner.begin(), owner.end(), [&](const auto& o) { return o.second != x; });
    ASSERT_GT(remote, 0u);

    // GetTwin.
    expect_same_twins(via, truth);
    v1::Twin missing;
    EXPECT_EQ(get_twin(via.twins(), "no-such-asset", missing).error_code(), StatusCode::NOT_FOUND);

    // BatchGetTwins: every twin, in a shuffled order (owners mixed), answered in request order.
    {
      std::vector<std::string> order = assets;
      std::shuffle(order.begin(), order.end(), std::mt19937{static_cast<unsigned>(x)});
      v1::BatchGetTwinsRequest req;
      for (const auto& id : order)
        req.add_names("twins/" + id);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + 20s);
      v1::BatchGetTwinsResponse resp;
      auto s = via.twins().BatchGetTwins(&ctx, req, &resp);
      ASSERT_TRUE(s.ok()) << describe(s);
      ASSERT_EQ(resp.twins_size(), static_cast<int>(order.size()));
      for (int i = 0; i < resp.twins_size(); ++i) {
        EXPECT_EQ(resp.twins(i).asset_id(), order[i]);
        EXPECT_EQ(twin_diff(truth[order[i]], resp.twins(i)), "") << order[i];
      }
      req.add_names("twins/no-such-asset");
      grpc::ClientContext ctx2;
      ctx2.set_deadline(std::chrono::system_clock::now() + 20s);
      EXPECT_EQ(via.twins().BatchGetTwins(&ctx2, req, &resp).error_code(), StatusCode::NOT_FOUND);
    }

    // ListTwins: all twins exactly once, sorted; paging with a filter gives the same set.
    {
      std::vector<v1::Twin> all;
      auto s = list_all(via.twins(), "", 1000, all);
      ASSERT_TRUE(s.ok()) << describe(s);
      EXPECT_EQ(ids_of(all), assets);  // assets are sorted by id
      for (const auto& t : all)
        EXPECT_EQ(twin_diff(truth[t.asset_id()], t), "") << t.asset_id();

      const std::string filter = "attributes.fleet = \"north\" AND reported.speed >= 1";
      std::vector<v1::Twin> one_page, paged;
      int pages = 0;
      ASSERT_TRUE(list_all(via.twins(), filter, 1000, one_page).ok());
      s = list_all(via.twins(), filter, 7, paged, &pages);
      ASSERT_TRUE(s.ok()) << describe(s);
      std::vector<std::string> north;
      for (size_t i = 0; i < assets.size(); i += 2)
        north.push_back(assets[i]);
      EXPECT_EQ(ids_of(one_page), north);
      EXPECT_EQ(ids_of(paged), north);
      EXPECT_GE(pages, static_cast<int>((north.size() + 6) / 7));
    }

    // GetHistory of a twin owned elsewhere equals the owner's answer.
    for (const auto& [id, o] : owner) {
      if (o == x)
        continue;
      v1::GetHistoryResponse here, there;
      ASSERT_TRUE(get_history(via, id, "speed", here).ok()) << id;
      ASSERT_TRUE(get_history(c().node(o), id, "speed", there).ok()) << id;
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(here, there)) << id;
      ASSERT_EQ(here.points_size(), 3) << id;
      for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(here.points(i).sequence(), static_cast<uint64_t>(i + 1));
        EXPECT_EQ(here.points(i).value().double_value(), i + 1.0);
      }
      break;
    }
  }

  // UpdateDesired through a node that does not own the twin, then a stale
  // expected_version through another non-owner is ABORTED.
  {
    const auto& id = assets[0];
    size_t y = owner[id];
    size_t x = (y + 1) % c().size(), z = (y + 2) % c().size();
    uint64_t version = truth[id].version();
    v1::UpdateDesiredRequest req;
    req.set_name("twins/" + id);
    (*req.mutable_desired())["target_speed"].set_double_value(42);
    req.set_expected_version(version);
    v1::Twin updated;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    auto s = c().node(x).twins().UpdateDesired(&ctx, req, &updated);
    ASSERT_TRUE(s.ok()) << describe(s);
    EXPECT_EQ(updated.version(), version + 1);
    EXPECT_EQ(number(updated.desired(), "target_speed"), 42);

    v1::Twin at_owner;
    ASSERT_TRUE(get_twin(c().node(y).twins(), id, at_owner).ok());
    EXPECT_EQ(at_owner.version(), version + 1);
    EXPECT_EQ(number(at_owner.desired(), "target_speed"), 42);
    EXPECT_EQ(number(at_owner.delta(), "target_speed"), 42);

    (*req.mutable_desired())["target_speed"].set_double_value(7);
    grpc::ClientContext ctx2;
    ctx2.set_deadline(std::chrono::system_clock::now() + 10s);
    s = c().node(z).twins().UpdateDesired(&ctx2, req, &updated);
    EXPECT_EQ(s.error_code(), StatusCode::ABORTED) << describe(s);
    ASSERT_TRUE(get_twin(c().node(y).twins(), id, at_owner).ok());
    EXPECT_EQ(at_owner.version(), version + 1);
    EXPECT_EQ(number(at_owner.desired(), "target_speed"), 42);
  }

  // BulkUpdateDesired through one node changes the twins of every owner; BatchUpdateDesired
  // through another brings each twin's outcome from its owner, in request order.
  {
    std::vector<std::string> north;
    std::set<size_t> owners;
    for (size_t i = 0; i < assets.size(); i += 2) {
      north.push_back(assets[i]);
      owners.insert(owner[assets[i]]);
    }
    EXPECT_GT(owners.size(), 1u);
    v1::BulkUpdateDesiredRequest req;
    req.set_filter("attributes.fleet = \"north\"");
    (*req.mutable_desired())["mode"].set_string_value("eco");
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 60s);
    auto reader = c().node(1 % c().size()).twins().BulkUpdateDesired(&ctx, req);
    v1::BulkUpdateDesiredProgress m, last;
    std::set<std::string> reported;
    while (reader->Read(&m)) {
      for (const auto& o : m.outcomes()) {
        EXPECT_EQ(o.code(), "OK") << o.name() << ": " << o.message();
        reported.insert(o.name());
      }
      last = m;
    }
    auto s = reader->Finish();
    ASSERT_TRUE(s.ok()) << describe(s);
    EXPECT_TRUE(last.done());
    EXPECT_EQ(last.selected(), static_cast<int64_t>(north.size()));
    EXPECT_EQ(last.changed(), static_cast<int64_t>(north.size()));
    EXPECT_EQ(reported.size(), north.size());
    for (const auto& id : north) {
      v1::Twin at_owner;
      ASSERT_TRUE(get_twin(c().node(owner[id]).twins(), id, at_owner).ok()) << id;
      EXPECT_EQ(at_owner.desired().at("mode").string_value(), "eco") << id;
    }

    v1::BatchUpdateDesiredRequest batch;
    for (size_t i = 0; i < std::min<size_t>(north.size(), 6); ++i)
      batch.add_names("twins/" + north[i]);
    (*batch.mutable_desired())["mode"].set_string_value("eco");
    (*batch.mutable_expected_versions())["twins/" + north[1]] = 1'000'000;
    v1::BatchUpdateDesiredResponse resp;
    grpc::ClientContext ctx2;
    ctx2.set_deadline(std::chrono::system_clock::now() + 10s);
    s = c().node(2 % c().size()).twins().BatchUpdateDesired(&ctx2, batch, &resp);
    ASSERT_TRUE(s.ok()) << describe(s);
    ASSERT_EQ(resp.outcomes_size(), batch.names_size());
    for (int i = 0; i < resp.outcomes_size(); ++i) {
      EXPECT_EQ(resp.outcomes(i).name(), batch.names(i));
      EXPECT_EQ(resp.outcomes(i).code(), i == 1 ? "ABORTED" : "OK") << resp.outcomes(i).message();
      EXPECT_FALSE(resp.outcomes(i).changed());  // "eco" already
    }
  }

  // GetCluster and GetStatus through every node agree on who serves what.
  auto view = c().serving();
  ASSERT_TRUE(view);
  std::set<int32_t> covered;
  for (size_t x = 0; x < c().size(); ++x) {
    auto& via = c().node(x);
    v1::NodeStatus st;
    ASSERT_TRUE(get_status(via, st).ok());
    EXPECT_EQ(st.node_id(), via.id());
    std::vector<int32_t> mine;
    for (const auto& p : st.partitions())
      mine.push_back(p.partition());
    EXPECT_EQ(mine, view->partitions_of[via.id()]);
    covered.insert(mine.begin(), mine.end());

    bool agree = eventually([&] {
      v1::ClusterStatus cs;
      if (!get_cluster(via, cs).ok())
        return false;
      if (cs.answered_by() != via.id() || cs.partitions() != c().partitions() ||
          cs.unserved_partitions_size() != 0 || cs.nodes_size() != 3 ||
          cs.guarantee() != "exactly-once")
        return false;
      std::map<std::string, std::vector<int32_t>> active;
      for (const auto& n : cs.nodes()) {
        if (!n.alive())
          return false;
        for (const auto& p : n.member().partitions())
          if (p.role() == v1::PARTITION_ROLE_ACTIVE)
            active[n.member().node_id()].push_back(p.partition());
      }
      return active == view->partitions_of;
    });
    EXPECT_TRUE(agree) << "GetCluster via " << via.id() << " disagrees with the nodes' own view";
  }
  EXPECT_EQ(covered.size(), static_cast<size_t>(c().partitions()));
}

// (d, WatchTwins) A watch opened on one node sees the changes of matching twins
// owned by the other nodes too.
TEST_F(NodeClusterTest, WatchOnOneNodeSeesChangesOfTwinsOwnedElsewhere) {
  c().start_nodes(2);
  ASSERT_NO_FATAL_FAILURE(expect_spread(2));
  telemetry_source src{c().bootstrap(), c().topics().telemetry, 20};
  ASSERT_TRUE(src.produce(1)) << src.first_error();
  std::string why;
  ASSERT_TRUE(wait_until_applied(c().node(0), src.acked(), 60s, &why)) << why;

  // North twins (even index) owned by node 0 and by node 1; one south twin.
  std::optional<std::string> local, remote;
  for (size_t i = 0; i < src.assets().size(); i += 2) {
    auto o = c().owner_of(src.assets()[i]);
    ASSERT_TRUE(o);
    (*o == 0 ? local : remote) = src.assets()[i];
  }
  ASSERT_TRUE(local && remote);
  const std::string south = src.assets()[1];

  grpc::ClientContext ctx;
  v1::WatchTwinsRequest req;
  req.set_filter("attributes.fleet = \"north\"");
  auto reader = c().node(0).twins().WatchTwins(&ctx, req);
  reader->WaitForInitialMetadata();  // the watch is registered
  std::mutex mutex;
  std::vector<v1::TwinChange> seen;
  std::thread read([&] {
    v1::TwinChange change;
    while (reader->Read(&change)) {
      std::lock_guard<std::mutex> lock{mutex};
      seen.push_back(change);
    }
  });
  src.send(*local);
  src.send(*remote);
  src.send(south);
  ASSERT_TRUE(src.flush());
  auto saw = [&](const std::string& id) {
    std::lock_guard<std::mutex> lock{mutex};
    return std::any_of(seen.begin(), seen.end(), [&](const auto& c) {
      return c.asset_id() == id && c.version() == 2 && c.sequence() == 2;
    });
  };
  EXPECT_TRUE(eventually([&] { return saw(*local); }, 20s)) << "local twin " << *local;
  EXPECT_TRUE(eventually([&] { return saw(*remote); }, 20s))
      << "twin " << *remote << " owned by " << c().node(1).id() << " not seen by a watch on "
      << c().node(0).id();
  ASSERT_TRUE(wait_until_applied(c().node(0), src.acked(), 60s, &why)) << why;
  EXPECT_FALSE(saw(south)) << "the filter lets a south twin through";
  ctx.TryCancel();
  read.join();
  reader->Finish();
}

// (e) While a partition moves (its owner is killed, later comes back), reads
// through the other nodes get correct data or UNAVAILABLE with a retry-after-ms
// trailer: never NOT_FOUND, never another error, never an older version.
TEST_F(NodeClusterTest, AnswersDuringAMoveAreCorrectOrUnavailable) {
  c().start_nodes(3);
  ASSERT_NO_FATAL_FAILURE(expect_spread(3));
  telemetry_source src{c().bootstrap(), c().topics().telemetry, 60};
  ASSERT_TRUE(src.produce(3)) << src.first_error();
  std::string why;
  ASSERT_TRUE(wait_until_applied(c().node(0), src.acked(), 60s, &why)) << why;

  // The twins of the partitions node 2 (index 1) serves.
  const size_t victim = 1;
  std::vector<std::string> moving;
  for (const auto& id : src.assets())
    if (c().owner_of(id) == victim && moving.size() < 8)
      moving.push_back(id);
  ASSERT_FALSE(moving.empty());

  struct outcome {
    uint64_t ok = 0, unavailable = 0;
    std::chrono::milliseconds slowest{0};
    std::map<std::string, uint64_t> version;  // last version seen, per twin
    std::set<std::string> errors;             // distinct problems, at most 20
  };
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> answers{0};  // calls answered, by any reader
  std::vector<outcome> outcomes(2);
  std::vector<std::thread> hammers;
  std::vector<size_t> readers{0, 2};
  for (size_t h = 0; h < readers.size(); ++h) {
    hammers.emplace_back([&, h] {
      auto& out = outcomes[h];
      auto& via = c().node(readers[h]);
      auto error = [&](std::string text) {
        if (out.errors.size() < 20)
          out.errors.insert("via " + via.id() + ": " + text);
      };
      while (!stop) {
        for (const auto& id : moving) {
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + 10s);
          v1::GetTwinRequest req;
          req.set_name("twins/" + id);
          v1::Twin t;
          auto asked = std::chrono::steady_clock::now();
          auto s = via.twins().GetTwin(&ctx, req, &t);
          ++answers;
          out.slowest = std::max(out.slowest, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  std::chrono::steady_clock::now() - asked));
          auto produced = src.sent().at(id);  // after the answer: an upper bound
          if (s.ok()) {
            ++out.ok;
            if (t.version() < out.version[id])
              error(id + ": version went back from " + std::to_string(out.version[id]) + " to " +
                    std::to_string(t.version()));
            out.version[id] = std::max(out.version[id], t.version());
            if (t.applied_records() > produced)
              error(id + ": applied " + std::to_string(t.applied_records()) + " of " +
                    std::to_string(produced) + " produced");
            if (t.duplicates() != 0 || t.last_sequence() != t.applied_records() ||
                t.version() != t.applied_records() ||
                speed_of(t) != static_cast<double>(t.last_sequence()))
              error(id + ": inconsistent twin: applied " + std::to_string(t.applied_records()) +
                    ", version " + std::to_string(t.version()) + ", last sequence " +
                    std::to_string(t.last_sequence()) + ", duplicates " +
                    std::to_string(t.duplicates()) + ", speed " + std::to_string(speed_of(t)));
          } else if (s.error_code() == StatusCode::UNAVAILABLE) {
            ++out.unavailable;
            auto trailers = ctx.GetServerTrailingMetadata();
            auto it = trailers.find("retry-after-ms");
            if (it == trailers.end())
              error(id + ": UNAVAILABLE without retry-after-ms: " + s.error_message());
            else if (std::atol(std::string(it->second.data(), it->second.size()).c_str()) <= 0)
              error(id + ": bad retry-after-ms " +
                    std::string(it->second.data(), it->second.size()));
          } else {
            error(id + ": " + describe(s));
          }
        }
      }
    });
  }
  src.start(100, moving);
  // Each phase lasts until the readers got 100 more answers (OK or
  // UNAVAILABLE), so that every state of the move is read several times.
  auto phase = [&] {
    const auto from = answers.load();
    EXPECT_TRUE(eventually([&] { return answers.load() >= from + 100; }, 60s))
        << "the readers got no answers";
  };
  phase();
  c().node(victim).kill9();
  bool moved = c().wait_until_all_partitions_served(60s, &why);
  EXPECT_TRUE(moved) << "after kill -9 of " << c().node(victim).id() << ": " << why;
  phase();
  if (moved) {
    c().node(victim).start();  // joins again: partitions move back
    EXPECT_NO_FATAL_FAILURE(expect_spread(3));
    phase();
  }
  stop = true;
  for (auto& t : hammers)
    t.join();
  ASSERT_TRUE(src.stop()) << src.first_error();

  for (size_t h = 0; h < outcomes.size(); ++h) {
    const auto& o = outcomes[h];
    std::cout << "reads via " << c().node(readers[h]).id() << ": " << o.ok << " OK, "
              << o.unavailable << " UNAVAILABLE, slowest answer " << o.slowest.count() << " ms\n";
    EXPECT_GT(o.ok, 0u);
    for (const auto& e : o.errors)
      ADD_FAILURE() << e;
  }
  ASSERT_NO_FATAL_FAILURE(expect_exact_counts(c().node(0), src));
}

// A Kafka broker forms a new consumer group group.initial.rebalance.delay.ms
// after its first member joined (3 s by Kafka's default), but gives the member
// its id at once. A node is not ready before the group's first assignment:
// before, it said ready for those seconds with no partition assigned, and a
// load balancer (or the benchmarks, which start their load at readiness) took
// it at its word.
TEST(NodeReadinessTest, NotReadyBeforeTheGroupsFirstAssignment) {
  cluster_options o;
  o.group_delay_ms = 4'000;
  // Without read leases (a node whose readiness goes by its consumer alone;
  // with them it waits for the group to be Stable anyway).
  o.node_flags = {"--read-lease-ms", "0"};
  cluster c{o};
  c.start_nodes(1);  // returns once the node answers Ping
  const auto started = std::chrono::steady_clock::now();
  int not_ready = 0;
  std::string last;
  const bool ready = eventually(
      [&] {
        v1::NodeStatus st;
        if (!get_status(c.node(0), st).ok())
          return false;
        last = st.not_ready_reason();
        if (!st.ready()) {
          ++not_ready;
          return false;
        }
        // Ready means serving: every partition, the group having formed.
        EXPECT_EQ(st.partitions_size(), c.partitions()) << "ready with too few partitions";
        return true;
      },
      60s, 50ms);
  ASSERT_TRUE(ready) << last;
  const double after =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  // The group's delay was mostly still to run when the node answered Ping.
  EXPECT_GT(not_ready, 10) << "ready after " << after << " s";
}

}  // namespace
}  // namespace fleettwin::test

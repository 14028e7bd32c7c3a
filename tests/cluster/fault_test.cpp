// Faults beyond kill -9, on a real broker with node processes, while
// telemetry flows and clients read through every node: a node frozen longer
// than its session, broker outages shorter and longer than the transaction
// timeout, one broker of three gone, a full disk, a recreated topic. Each
// scenario ends with the same checks: every twin applied exactly the
// records produced (a quarter of the assets send no sequences, so nothing
// but exactly-once delivery prevents a double apply), the committed change
// events hold each change once, no read went backwards or hung, and the
// nodes are alive.
//
// Fast by default (for `make test`); `make chaos-soak` runs them longer:
//   FLEETTWIN_FAULT_PAUSE_SECONDS    how long a node is frozen (default 9)
//   FLEETTWIN_FAULT_OUTAGES          broker outages in seconds before the restart
//                                    (default "2,16"; the restart adds about 12 s)
//   FLEETTWIN_FAULT_RATE             records/s (default 500)

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "cluster_harness.hpp"
#include "read_checker.hpp"
#include "support/kafka_io.hpp"
#include "support/metrics_scrape.hpp"

#include <librdkafka/rdkafka.h>

namespace fleettwin::test {
namespace {

using clock = std::chrono::steady_clock;

double seconds_since(clock::time_point t) {
  return std::chrono::duration<double>(clock::now() - t).count();
}

std::vector<long> env_list(const char* name, std::vector<long> fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v)
    return fallback;
  std::vector<long> out;
  std::stringstream in{v};
  for (std::string item; std::getline(in, item, ',');)
    out.push_back(std::stol(item));
  return out;
}

struct FaultTest : cluster_fixture {
  std::unique_ptr<telemetry_source> src;
  std::unique_ptr<read_checker> reads;

  /// A cluster of `nodes` nodes on `brokers` brokers, every partition served.
  void start_cluster(size_t nodes, int brokers = 1, std::vector<std::string> flags = {}) {
    cluster_options opts;
    opts.brokers = brokers;
    opts.node_flags = std::move(flags);
    c_ = std::make_unique<cluster>(opts);
    c_->start_nodes(nodes);
    std::string why;
    ASSERT_TRUE(c_->wait_until_balanced(90s, &why)) << why;
  }

  /// Telemetry at `rate` records/s over `assets` assets, and readers.
  void start_traffic(size_t assets = 120, double rate = 0) {
    if (rate <= 0)
      rate = static_cast<double>(env_or("FLEETTWIN_FAULT_RATE", 500));
    src = std::make_unique<telemetry_source>(c_->bootstrap(), c_->topics().telemetry, assets);
    src->leave_unsequenced(4);
    src->start(rate);
    std::vector<std::string> addresses;
    for (size_t i = 0; i < c_->size(); ++i)
      addresses.push_back(c_->node(i).grpc_address());
    reads = std::make_unique<read_checker>(addresses, src->assets(), 3);
  }

  /// Stops the traffic and checks everything a scenario promises; calls
  /// cut off by a server that stops gracefully are allowed where nodes are
  /// stopped (`max_cancelled`).
  void finish(const std::string& scenario, uint64_t max_cancelled = 0) {
    ASSERT_TRUE(src->stop(180s)) << src->failed() << " deliveries failed: " << src->first_error();
    for (size_t i = 0; i < c_->size(); ++i)
      ASSERT_TRUE(c_->node(i).running()) << c_->node(i).id() << " is not running at the end";
    std::string why;
    ASSERT_TRUE(c_->wait_until_all_partitions_served(90s, &why)) << why;
    auto seen = reads->stop();
    std::string figures;
    auto problems = check_exactly_once(*c_, *src, c_->node(0), 180s, &figures);
    EXPECT_EQ(problems, "");
    std::string backwards;
    for (const auto& b : seen.backwards)
      backwards += b + "\n";
    EXPECT_EQ(backwards, "") << "reads that went backwards";
    EXPECT_EQ(seen.hung, 0u) << "reads that ran into their 10 s deadline";
    EXPECT_EQ(seen.other, 0u) << seen.first_other;
    EXPECT_LE(seen.cancelled, max_cancelled) << "calls cut off with CANCELLED";
    std::cout << scenario << ": " << figures << " reads ok=" << seen.ok
              << " unavailable=" << seen.unavailable << " not_found=" << seen.not_found
              << " hung=" << seen.hung << " cancelled=" << seen.cancelled
              << " slowest=" << seen.max_seconds << "s\n";
  }

  double node_metric(size_t i, const std::string& series) {
    return metric_value(scrape(c_->node(i).metrics_port()), series);
  }

  /// The nodes in `serving` (indexes) together serve every partition, each
  /// ACTIVE on exactly one of them (their own records).
  bool served_by(const std::vector<size_t>& serving, std::string& why) {
    std::map<int32_t, int> active;
    for (auto i : serving) {
      v1::ClusterStatus cs;
      auto s = get_cluster(c_->node(i), cs);
      if (!s.ok()) {
        why = c_->node(i).id() + ": " + s.error_message();
        return false;
      }
      for (const auto& n : cs.nodes())
        if (n.member().node_id() == c_->node(i).id())
          for (const auto& p : n.member().partitions())
            if (p.role() == v1::PARTITION_ROLE_ACTIVE)
              ++active[p.partition()];
    }
    for (int32_t p = 0; p < c_->partitions(); ++p)
      if (active[p] != 1) {
        why = "partition " + std::to_string(p) + " is active on " + std::to_string(active[p]) +
              " of the serving nodes";
        return false;
      }
    return true;
  }
};

TEST_F(FaultTest, FrozenNodeIsFencedAndNoReadGoesBackwards) {
  // SIGSTOP longer than the session timeout (a long GC pause, a VM freeze):
  // the group moves the node's partitions; after SIGCONT the node must not
  // answer from what it remembers, only the new owners do.
  const auto pause = std::chrono::seconds{env_or("FLEETTWIN_FAULT_PAUSE_SECONDS", 9)};
  start_cluster(3);
  start_traffic();
  ASSERT_TRUE(eventually([&] { return reads->reads() > 200; }, 30s));
  auto& frozen = c_->node(1);
  reads->exclude(frozen.grpc_address());  // a frozen process answers nobody
  frozen.pause();
  auto frozen_at = clock::now();
  std::string why;
  ASSERT_TRUE(eventually(
      [&] {
        return served_by({0, 2}, why);
      },
      60s, 100ms))
      << "the others did not take the frozen node's partitions over: " << why;
  const double moved_after = seconds_since(frozen_at);
  std::this_thread::sleep_until(frozen_at + pause);  // the freeze lasts `pause`
  frozen.resume();
  // Straight away: reads through the node that was frozen, whose memory
  // holds the state of partitions that moved on.
  reads->include(frozen.grpc_address());
  ASSERT_TRUE(c_->wait_until_balanced(90s, &why)) << why;
  const double rejoined_after = seconds_since(frozen_at);
  auto before = reads->reads();
  ASSERT_TRUE(eventually([&] { return reads->reads() > before + 300; }, 60s));
  std::cout << "frozen for " << pause.count() << " s: partitions moved after " << moved_after
            << " s, node serving again after " << rejoined_after << " s\n";
  finish("frozen node");
  EXPECT_GE(node_metric(1, "fleettwin_read_lease_held"), 1);
}

TEST_F(FaultTest, GracefulStopsWhileOtherNodesForwardCallsToTheStoppingNode) {
  // Every entry point stops taking work before what it calls is torn down:
  // a node stopped (SIGTERM) while the others forward calls to it exits 0,
  // never with a crash, and the callers get answers or UNAVAILABLE.
  start_cluster(3);
  start_traffic(120, 300);
  std::string why;
  for (int round = 0; round < 3; ++round) {
    auto before = reads->reads();
    ASSERT_TRUE(eventually([&] { return reads->reads() > before + 300; }, 60s));
    auto& victim = c_->node(1 + round % 2);
    std::cout << "stopping " << victim.id() << " (" << victim.grpc_address() << ") at "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                         .count() %
                     100'000
              << " ms (wall clock mod 100 s)\n";
    EXPECT_EQ(victim.stop(), 0) << victim.id() << " did not exit cleanly: " << why;
    ASSERT_TRUE(c_->wait_until_all_partitions_served(60s, &why)) << why;
    victim.start();
    ASSERT_TRUE(c_->wait_until_balanced(90s, &why)) << why;
  }
  // A call that reaches a server in the instant it stops (after NOT_SERVING
  // and a drain in which every call was answered) may be cut off.
  finish("graceful stops under forwarded load", 3 * 3);
}

TEST_F(FaultTest, RollingRestartOfEveryNodeUnderLoadLosesNothing) {
  // What an SRE does for an upgrade or a StatefulSet's rolling update: each
  // node in turn stopped with SIGTERM (it hands its partitions over) and
  // started again on its data dir, the next only once the cluster is
  // balanced again. Measured: how long the whole restart takes, and the
  // longest time any partition was served by no node.
  start_cluster(3);
  start_traffic(120, 300);
  const int32_t partitions = c_->partitions();
  std::map<int32_t, clock::time_point> unserved_since;
  double longest = 0;
  int32_t longest_partition = -1;
  // One look at who serves what: closes the unserved spells that ended;
  // true once every partition is served and every running node serves one.
  auto balanced = [&] {
    auto view = c_->serving();
    const auto now = clock::now();
    if (!view)
      return false;
    for (int32_t p = 0; p < partitions; ++p) {
      if (!view->owner.contains(p)) {
        unserved_since.try_emplace(p, now);
      } else if (auto it = unserved_since.find(p); it != unserved_since.end()) {
        const double spell = std::chrono::duration<double>(now - it->second).count();
        if (spell > longest) {
          longest = spell;
          longest_partition = p;
        }
        unserved_since.erase(it);
      }
    }
    if (!unserved_since.empty())
      return false;
    for (auto i : c_->running())
      if (view->partitions_of[c_->node(i).id()].empty())
        return false;
    return true;
  };
  const auto began = clock::now();
  for (size_t i = 0; i < c_->size(); ++i) {
    auto before = reads->reads();
    ASSERT_TRUE(eventually([&] { return reads->reads() > before + 200; }, 60s));
    auto& victim = c_->node(i);
    // Its partitions count as unserved from the moment it is told to stop.
    if (auto view = c_->serving())
      for (const auto& [p, owner] : view->owner)
        if (owner == victim.id())
          unserved_since.try_emplace(p, clock::now());
    EXPECT_EQ(victim.stop(), 0) << victim.id() << " did not exit cleanly";
    ASSERT_TRUE(eventually(balanced, 60s, 100ms))
        << "the other nodes did not take over from " << victim.id();
    victim.start();
    ASSERT_TRUE(eventually(balanced, 90s, 100ms)) << victim.id() << " did not get its share back";
  }
  const double took = seconds_since(began);
  std::cout << "rolling restart of " << c_->size() << " nodes under load: " << took
            << " s; the longest a partition was unserved: " << longest << " s (partition "
            << longest_partition << ")\n";
  // Calls cut off in the instant a server stops may end CANCELLED.
  finish("rolling restart", 3 * 3);
  EXPECT_LT(longest, 30.0) << "a partition was unserved for " << longest << " s";
}

TEST_F(FaultTest, ASecondProcessWithTheSameNodeIdStopsTheOlderOne) {
  // Two processes configured with one node id fence each other's producers
  // (one transactional id). Only that stops a node, and the newest process
  // wins (as in Kafka's fencing, so that a zombie never beats its
  // replacement): the older one exits 1 and says why; nothing is lost.
  start_cluster(2);
  start_traffic(120, 300);
  ASSERT_TRUE(eventually([&] { return reads->reads() > 200; }, 30s));
  auto second = c_->add_same_id_as(0);
  c_->node(second).start();
  ASSERT_TRUE(eventually([&] { return !c_->node(0).running(); }, 90s))
      << "the older process with the same node id kept running";
  auto log = file_tail(c_->node(0).log_path(), 400);
  EXPECT_NE(log.find("event=duplicate_node_id"), std::string::npos) << log;
  EXPECT_TRUE(c_->node(second).running());
  EXPECT_TRUE(c_->node(1).running());
  std::string why;
  ASSERT_TRUE(eventually([&] { return served_by({1, second}, why); }, 90s, 100ms)) << why;
  ASSERT_TRUE(src->stop(180s)) << src->failed() << " deliveries failed: " << src->first_error();
  auto seen = reads->stop();
  std::string figures;
  EXPECT_EQ(check_exactly_once(*c_, *src, c_->node(1), 180s, &figures), "");
  EXPECT_EQ(seen.hung, 0u);
  EXPECT_TRUE(seen.backwards.empty()) << seen.backwards.front();
  std::cout << "same node id twice: the older process stopped; " << figures << "\n";
}

TEST_F(FaultTest, BrokerOutagesShorterAndLongerThanTheTransactionTimeoutAreSurvived) {
  // The single broker killed with -9 and restarted on its data: once for
  // less than the transaction timeout, once for more,
  // so that the broker aborts the nodes' open transactions and fences their
  // producers. The nodes stay up, answer UNAVAILABLE meanwhile, and resume
  // exactly-once.
  // The broker needs about 12 s to come back after a kill on these
  // machines: with a transaction timeout of 20 s, the first outage (2 s plus
  // the restart) stays below it, the second (16 s plus the restart) does not.
  const auto outages = env_list("FLEETTWIN_FAULT_OUTAGES", {2, 16});
  start_cluster(3, 1, {"--transaction-timeout-ms", "20000"});
  start_traffic(120, 300);
  ASSERT_TRUE(eventually([&] { return reads->reads() > 200; }, 30s));
  std::string why;
  for (auto seconds : outages) {
    auto killed = clock::now();
    c_->broker().kill_broker(1);
    std::this_thread::sleep_until(killed + std::chrono::seconds{seconds});  // the outage
    c_->broker().restart_broker(1);
    auto back = clock::now();  // the broker serves again
    ASSERT_TRUE(c_->wait_until_all_partitions_served(120s, &why))
        << "after an outage of " << seconds << " s: " << why;
    const double recovered = seconds_since(back);
    for (size_t i = 0; i < c_->size(); ++i)
      ASSERT_TRUE(c_->node(i).running())
          << c_->node(i).id() << " died in a " << seconds << " s broker outage";
    auto before = reads->reads();
    ASSERT_TRUE(eventually([&] { return reads->reads() > before + 200; }, 60s));
    double replaced = 0;
    for (size_t i = 0; i < c_->size(); ++i)
      replaced += node_metric(i, "fleettwin_producer_replacements_total");
    std::cout << "broker outage of " << seconds << " s (broker back after "
              << std::chrono::duration<double>(back - killed).count()
              << " s): all partitions served " << recovered
              << " s after it was back; producers replaced so far: " << replaced << "\n";
  }
  finish("broker outages");
}

TEST_F(FaultTest, OneOfThreeBrokersDownIsSurvived) {
  // Three brokers, every topic replicated three times (min.insync.replicas
  // 2): with one broker gone, telemetry, transactions and queries go on,
  // whichever coordinator or leader it was.
  // Three brokers (three JVMs) share two cores here with the nodes and the
  // test: two nodes rather than three, and a session of 6 s (the default)
  // rather than the 3 s of the other tests.
  start_cluster(2, 3, {"--session-timeout-ms", "6000"});
  start_traffic(120, 300);
  ASSERT_TRUE(eventually([&] { return reads->reads() > 200; }, 30s));
  auto killed = clock::now();
  c_->broker().kill_broker(2);
  auto applied_before = src->acked_total();
  ASSERT_TRUE(eventually([&] { return src->acked_total() > applied_before + 2000; }, 90s))
      << "telemetry stopped flowing with one broker of three down";
  std::string why;
  ASSERT_TRUE(c_->wait_until_all_partitions_served(90s, &why)) << why;
  const double served = seconds_since(killed);
  c_->broker().restart_broker(2);
  ASSERT_TRUE(c_->wait_until_all_partitions_served(90s, &why)) << why;
  std::cout << "one broker of three down: all partitions served " << served
            << " s after the kill\n";
  finish("one broker of three down");
}

TEST_F(FaultTest, FullDiskStopsTheNodeWhichLosesNothing) {
  // A node whose disk fills up (RLIMIT_FSIZE: writes past 4 MiB fail with
  // EFBIG) must stop taking work and say why, without corrupting its store:
  // the other node takes its partitions over, and once there is room again
  // it comes back with exactly the committed state.
  cluster_options opts;
  c_ = std::make_unique<cluster>(opts);
  auto full = c_->add_node();
  c_->node(full).limit_file_size(4 << 20);
  c_->node(full).start();
  c_->node(c_->add_node()).start();
  std::string why;
  ASSERT_TRUE(c_->wait_until_balanced(90s, &why)) << why;
  start_traffic(300, 1500);
  ASSERT_TRUE(eventually([&] { return !c_->node(full).running(); }, 180s))
      << "the node with a full disk kept running";
  auto log = file_tail(c_->node(full).log_path(), 400);
  EXPECT_NE(log.find("event=fatal"), std::string::npos) << log;
  EXPECT_NE(log.find("RocksDB"), std::string::npos) << log;
  ASSERT_TRUE(eventually([&] { return served_by({1}, why); }, 60s, 100ms)) << why;
  // Room on the disk again: the node restarts on its data dir.
  c_->node(full).limit_file_size(0);
  c_->node(full).start();
  ASSERT_TRUE(c_->wait_until_balanced(90s, &why)) << why;
  // The node stops like a graceful stop (drained first), so the same few
  // calls racing the server's final stop may be cut off.
  finish("full disk", 3);
}

TEST_F(FaultTest, TransactionalTelemetryWithAbortedTransactionsIsReadExactly) {
  // Telemetry written by a transactional producer (an upstream stream job):
  // its commit markers and aborted records leave gaps in the offsets a
  // read_committed consumer sees. Those gaps are real and must be passed,
  // while records of committed transactions are all applied and records of
  // aborted ones never.
  start_cluster(1);
  char err[512];
  auto* conf = rd_kafka_conf_new();
  for (const auto& [k, v] :
       std::map<std::string, std::string>{{"bootstrap.servers", c_->bootstrap()},
                                          {"transactional.id", "upstream-job"},
                                          {"partitioner", "murmur2_random"}})
    ASSERT_EQ(rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)), RD_KAFKA_CONF_OK);
  kafka::kafka_handle rk{rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))};
  ASSERT_TRUE(rk) << err;
  auto check = [](rd_kafka_error_t* e) {
    std::string text = e ? rd_kafka_error_string(e) : "";
    if (e)
      rd_kafka_error_destroy(e);
    return text;
  };
  ASSERT_EQ(check(rd_kafka_init_transactions(rk.get(), 30'000)), "");
  const std::vector<std::string> assets{"txn-a", "txn-b", "txn-c", "txn-d"};
  std::map<std::string, uint64_t> committed;
  uint64_t seq = 0;
  // One record of every asset in a transaction (not committed yet).
  auto produce_all = [&] {
    ASSERT_EQ(check(rd_kafka_begin_transaction(rk.get())), "");
    ++seq;
    for (const auto& a : assets) {
      auto value = telemetry(a, seq, 1'700'000'000'000 + static_cast<int64_t>(seq) * 1000,
                             {{"speed", double(seq)}});
      ASSERT_EQ(rd_kafka_producev(rk.get(), RD_KAFKA_V_TOPIC(c_->topics().telemetry.c_str()),
                                  RD_KAFKA_V_KEY(a.data(), a.size()),
                                  RD_KAFKA_V_VALUE(value.data(), value.size()),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                RD_KAFKA_RESP_ERR_NO_ERROR);
    }
  };
  for (int t = 0; t < 12; ++t) {
    const bool abort = t % 3 == 1;  // every third transaction is rolled back
    ASSERT_NO_FATAL_FAILURE(produce_all());
    if (!abort)
      for (const auto& a : assets)
        ++committed[a];
    ASSERT_EQ(rd_kafka_flush(rk.get(), 30'000), RD_KAFKA_RESP_ERR_NO_ERROR);
    if (abort)
      ASSERT_EQ(check(rd_kafka_abort_transaction(rk.get(), 30'000)), "");
    else
      ASSERT_EQ(check(rd_kafka_commit_transaction(rk.get(), 30'000)), "");
  }
  std::string why;
  ASSERT_TRUE(wait_until_applied(c_->node(0), committed, 60s, &why)) << why;
  for (const auto& a : assets) {
    v1::Twin tw;
    ASSERT_TRUE(get_twin(c_->node(0).twins(), a, tw).ok());
    EXPECT_EQ(tw.applied_records(), 8u) << a;
    EXPECT_EQ(tw.duplicates(), 0u) << a;
    EXPECT_EQ(tw.last_sequence(), 12u) << a;  // the last transaction committed
  }
  // A stream job upstream commits small transactions all the time: a marker
  // after each leaves a gap at the head of the topic, and judging them must
  // not hold ingestion back.
  const int transactions = 400;
  auto started = std::chrono::steady_clock::now();
  for (int t = 0; t < transactions; ++t) {
    ASSERT_NO_FATAL_FAILURE(produce_all());
    for (const auto& a : assets)
      ++committed[a];
    ASSERT_EQ(check(rd_kafka_commit_transaction(rk.get(), 30'000)), "");
  }
  const double producing = seconds_since(started);
  auto last_commit = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until_applied(c_->node(0), committed, 60s, &why)) << why;
  const double behind = seconds_since(last_commit);
  for (const auto& a : assets) {
    v1::Twin tw;
    ASSERT_TRUE(get_twin(c_->node(0).twins(), a, tw).ok());
    EXPECT_EQ(tw.applied_records(), 8u + transactions) << a;
    EXPECT_EQ(tw.duplicates(), 0u) << a;
  }
  const auto gaps = node_metric(0, "fleettwin_offset_gaps_total{verdict=\"empty\"}");
  EXPECT_GE(gaps, transactions) << "every commit marker is a gap the consumer passes";
  std::cout << "transactional telemetry: " << transactions << " transactions in " << producing
            << " s, all applied " << behind << " s after the last commit; gaps passed " << gaps
            << ", re-read " << node_metric(0, "fleettwin_offset_gaps_total{verdict=\"skipped\"}")
            << " + " << node_metric(0, "fleettwin_offset_gaps_total{verdict=\"unknown\"}") << "\n";
}

TEST_F(FaultTest, RestartedNodeAnswersPromptlyWhileItCatchesUpABacklog) {
  // A node restarted onto a large backlog: operators watch its lag through
  // GetStatus and clients keep reading through it while it catches up.
  // Neither may wait behind the backlog.
  start_cluster(1);
  src = std::make_unique<telemetry_source>(c_->bootstrap(), c_->topics().telemetry, 1000);
  src->leave_unsequenced(4);
  ASSERT_EQ(c_->node(0).stop(), 0);
  const int per_asset = static_cast<int>(env_or("FLEETTWIN_FAULT_BACKLOG", 300));
  ASSERT_TRUE(src->produce(per_asset, 180s));
  const auto starting = clock::now();
  c_->node(0).start();
  const double answering = seconds_since(starting);
  double slowest_status = 0;
  double slowest_get = 0;
  int calls = 0;
  int read_ok = 0;
  std::string last;
  std::string failed;  // the first call that did not answer as it must
  const bool caught_up = eventually(
      [&] {
        v1::NodeStatus status;
        auto t0 = clock::now();
        auto st = get_status(c_->node(0), status);
        slowest_status = std::max(slowest_status, seconds_since(t0));
        if (!st.ok()) {
          failed = "GetStatus: " + st.error_message();
          return true;
        }
        v1::Twin tw;
        t0 = clock::now();
        auto gs =
            get_twin(c_->node(0).twins(), src->assets()[static_cast<size_t>(calls) % 1000], tw, 5s);
        slowest_get = std::max(slowest_get, seconds_since(t0));
        // Answered, or UNAVAILABLE with retry-after while the node cannot
        // yet: never held past the deadline.
        if (gs.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
          failed = "GetTwin ran into its deadline: " + gs.error_message();
          return true;
        }
        read_ok += gs.ok();
        ++calls;
        bool done = status.ready() && status.partitions_size() == c_->partitions();
        for (const auto& ps : status.partitions())
          done = done && ps.lag() == 0;
        last = "applied " + std::to_string(status.records_applied()) +
               ", ready=" + std::to_string(status.ready()) + " " + status.not_ready_reason();
        return done;
      },
      240s, 50ms);
  ASSERT_EQ(failed, "");
  ASSERT_TRUE(caught_up) << last;
  const double caught_up_after = seconds_since(starting);
  ASSERT_GE(calls, 10) << "caught up before it could be watched: make the backlog larger";
  EXPECT_LT(slowest_status, 0.5) << "GetStatus waited behind the backlog";
  std::string figures;
  EXPECT_EQ(check_exactly_once(*c_, *src, c_->node(0), 180s, &figures), "");
  std::cout << "backlog of " << src->acked_total() << " records: answering after " << answering
            << " s, caught up after " << caught_up_after << " s; " << calls
            << " GetStatus+GetTwin pairs meanwhile (" << read_ok
            << " reads answered), slowest GetStatus " << slowest_status << " s, slowest GetTwin "
            << slowest_get << " s; " << figures << "\n";
}

TEST_F(FaultTest, RecreatedTelemetryTopicIsConsumedFromItsStart) {
  // The telemetry topic is deleted and created again (an operator's
  // mistake, a migration): the offsets the nodes stored lie beyond the new
  // log's end. Nothing new may be skipped: the nodes say so, count it, and
  // consume the new log from its start; the twins keep their state.
  start_cluster(2);
  src = std::make_unique<telemetry_source>(c_->bootstrap(), c_->topics().telemetry, 60);
  src->leave_unsequenced(4);
  ASSERT_TRUE(src->produce(40));
  std::string why;
  ASSERT_TRUE(wait_until_applied(c_->node(0), src->acked(), 90s, &why)) << why;
  for (size_t i = 0; i < c_->size(); ++i)
    ASSERT_EQ(c_->node(i).stop(), 0);
  ASSERT_TRUE(c_->broker().delete_topic(c_->topics().telemetry, why)) << why;
  ASSERT_TRUE(c_->broker().create_topic(c_->topics().telemetry, c_->partitions(), 1, {}, why))
      << why;
  for (size_t i = 0; i < c_->size(); ++i)
    c_->node(i).start();
  ASSERT_TRUE(c_->wait_until_balanced(90s, &why)) << why;
  ASSERT_TRUE(src->produce(15));  // sequences continue: 41..55
  reads = std::make_unique<read_checker>(
      std::vector<std::string>{c_->node(0).grpc_address(), c_->node(1).grpc_address()},
      src->assets(), 1);
  double resets = 0;
  ASSERT_TRUE(wait_until_applied(c_->node(1), src->acked(), 90s, &why)) << why;
  for (size_t i = 0; i < c_->size(); ++i)
    resets += node_metric(i, "fleettwin_input_resets_total{reason=\"log_truncated\"}");
  EXPECT_GE(resets, 1) << "the reset must be counted";
  std::string logs;
  for (size_t i = 0; i < c_->size(); ++i)
    logs += file_tail(c_->node(i).log_path(), 400);
  EXPECT_NE(logs.find("event=input_position_reset"), std::string::npos);
  finish("recreated topic");
}

}  // namespace
}  // namespace fleettwin::test

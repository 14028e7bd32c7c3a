// fleettwin-bench: the benchmarks of DESIGN.md, each against its baseline in
// the same run (the machines are shared and noisy: ratios, not absolutes).
//
//   fleettwin-bench ingest  [--records N] [--assets N] [--partitions N] [--aggregates FILE]
//   fleettwin-bench ingest  --kafka BOOTSTRAP [--nodes 1|3] [--guarantee G] [--partitions N]
//                           [--format protobuf|json] [--broker-pid PID]
//   fleettwin-bench query   [--twins N] [--seconds S] [--threads T]
//   fleettwin-bench memory  [--twins N]
//   fleettwin-bench aggregates [--assets N] [--rate R | --rates R1,R2,..] [--seconds S]
//                              [--aggregates FILE]
//                              [--kafka BOOTSTRAP [--guarantee G]]
//
// Each prints human-readable lines and a final JSON line.

#include <arpa/inet.h>
#include <jemalloc/jemalloc.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <caf/all.hpp>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include "actors/runtime/partition_actor.hpp"
#include "fleettwin/v1/aggregate.grpc.pb.h"
#include "fleettwin/v1/service.grpc.pb.h"
#include "services/kafka/embedded_kafka.hpp"
#include "services/kafka/telemetry_decoder.hpp"
#include "services/kafka/topic_admin.hpp"
#include "services/node/node.hpp"
#include "services/security/tls.hpp"
#include "services/security/token_verifier.hpp"
#include "services/storage/rocksdb_store.hpp"
#include "tools/bench/failover_probe.hpp"
#include "tools/bench/flood.hpp"
#include "tools/bench/proc_cpu.hpp"
#include "tools/bench/scrape.hpp"
#include "tools/sim/generator.hpp"
#include "tools/sim/truth.hpp"

using namespace fleettwin;
using fleettwin::bench::metric;
using fleettwin::bench::metric_sum;
using fleettwin::bench::scrape_metrics;
using clock_type = std::chrono::steady_clock;

namespace {

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

size_t rss_bytes() {
  std::ifstream in{"/proc/self/statm"};
  size_t pages = 0;
  size_t resident = 0;
  in >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

/// Returns freed memory to the OS, as an idle node does over time (jemalloc
/// purges dirty pages after its decay time; this does it now).
void release_free_memory() {
  static const std::string purge = "arena." + std::to_string(MALLCTL_ARENAS_ALL) + ".purge";
  mallctl(purge.c_str(), nullptr, nullptr, nullptr, 0);
  malloc_trim(0);
}

std::string temp_dir(const std::string& name) {
  auto dir =
      std::filesystem::temp_directory_path() / fmt::format("fleettwin-bench-{}-{}", name, getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

/// Produces `count` simulator records (protobuf unless `format` says) for
/// `assets` assets.
/// `idempotent`: no reordering or duplicates when a request is retried (on a
/// real broker, e.g. while a just-created topic's leaders are elected).
void produce(const std::string& bootstrap, const std::string& topic, uint64_t count,
             uint32_t assets, bool idempotent = false,
             sim::payload_format format = sim::payload_format::protobuf) {
  char err[512];
  auto* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  if (idempotent)
    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err));
  rd_kafka_conf_set(conf, "partitioner", "murmur2_random", err, sizeof(err));
  rd_kafka_conf_set(conf, "linger.ms", "20", err, sizeof(err));
  rd_kafka_conf_set(conf, "batch.num.messages", "10000", err, sizeof(err));
  rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", err, sizeof(err));
  auto* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  sim::config cfg;
  cfg.assets = assets;
  cfg.count = count;
  cfg.rate = 1000;
  cfg.format = format;
  sim::generator gen{cfg};
  sim::record r;
  while (gen.next(r)) {
    auto* h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "content-type", -1, r.content_type.data(),
                        static_cast<ssize_t>(r.content_type.size()));
    while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                             RD_KAFKA_V_KEY(const_cast<char*>(r.key.data()), r.key.size()),
                             RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(rk, 10);
  }
  rd_kafka_flush(rk, 60'000);
  rd_kafka_destroy(rk);
}

/// Drains `count` records with a plain consumer; returns records/s measured
/// from the first record to the last (group join excluded).
double plain_consumer(const std::string& bootstrap, const std::string& topic, uint64_t count,
                      const std::string& group = "bench-plain") {
  char err[512];
  auto* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err));
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
  rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "65536", err, sizeof(err));
  auto* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  rd_kafka_poll_set_consumer(rk);
  auto* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  auto* queue = rd_kafka_queue_get_consumer(rk);
  std::vector<rd_kafka_message_t*> msgs(10'000);
  uint64_t seen = 0;
  uint64_t bytes = 0;
  clock_type::time_point first;
  auto deadline = clock_type::now() + std::chrono::minutes{5};
  while (seen < count && clock_type::now() < deadline) {
    auto n = rd_kafka_consume_batch_queue(queue, 100, msgs.data(), msgs.size());
    for (ssize_t i = 0; i < n; ++i) {
      if (!msgs[i]->err) {
        if (seen++ == 0)
          first = clock_type::now();
        bytes += msgs[i]->len;
      }
      rd_kafka_message_destroy(msgs[i]);
    }
  }
  double secs = seconds_since(first);
  rd_kafka_queue_destroy(queue);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (seen < count)
    throw std::runtime_error(fmt::format("plain consumer saw {} of {} records", seen, count));
  return static_cast<double>(count) / secs;
}

/// The nodes' --change-events (the ingest and aggregates benches' --change-events).
bool nodes_merge_changes = true;

node::node_config node_config_for(const std::string& bootstrap, const std::string& dir) {
  node::node_config cfg;
  cfg.merge_changes = nodes_merge_changes;
  cfg.kafka = bootstrap;
  cfg.data_dir = dir;
  cfg.grpc_address = "127.0.0.1:0";
  cfg.metrics_address = "127.0.0.1:0";
  cfg.group_id = "bench-node";
  cfg.node_id = "bench";
  // FLEETTWIN_BENCH_LOG_LEVEL=info shows the node's events (default: warn).
  const char* level = std::getenv("FLEETTWIN_BENCH_LOG_LEVEL");
  cfg.log_level = level ? level : "warn";
  // The mock cluster has no real transactions and cannot create topics: the
  // node runs as it does on its embedded Kafka (at-least-once, no changelog).
  cfg.guarantee = "at-least-once";
  cfg.changelog = false;
  cfg.create_topics = false;
  cfg.fetch_wait_ms = node::embedded_fetch_wait_ms;  // as on the node's own embedded Kafka
  cfg.cluster_port = 0;
  return cfg;
}

/// A run's topic prefix on a real Kafka (fresh topics every run).
std::string run_prefix() {
  return fmt::format("bench-{}-{}", getpid(),
                     std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count());
}

/// Deletes a run's topics on a real Kafka when the run ends (declared before
/// the run's nodes, so that they have stopped by then): each run makes fresh
/// topics, and a broker would otherwise keep every earlier run's. Not
/// copyable: a copy's end would delete the topics of a run still going.
struct run_topics_cleanup {
  std::string bootstrap;  // empty: nothing to delete
  std::string prefix;

  run_topics_cleanup() = default;
  run_topics_cleanup(std::string b, std::string p)
      : bootstrap(std::move(b)), prefix(std::move(p)) {}
  run_topics_cleanup(const run_topics_cleanup&) = delete;
  run_topics_cleanup& operator=(const run_topics_cleanup&) = delete;

  ~run_topics_cleanup() {
    if (bootstrap.empty())
      return;
    std::string error;
    if (!kafka::delete_topics_with_prefix(bootstrap, {}, prefix + ".", std::chrono::seconds{30},
                                          error))
      fmt::print(stderr, "warning: the run's topics ({}.*) were not deleted: {}\n", prefix, error);
  }
};

/// Creates the run's telemetry topic on a real Kafka; the nodes create the
/// others with its partition count when they start.
kafka::topic_names real_topics(const std::string& bootstrap, const std::string& prefix,
                               int partitions) {
  auto topics = kafka::topic_names::with_prefix(prefix);
  if (auto err = kafka::ensure_topics(bootstrap, {}, {{topics.telemetry, partitions, -1, {}, true}},
                                      std::chrono::seconds{30}))
    throw std::runtime_error("Kafka at " + bootstrap + ": " + *err);
  return topics;
}

/// A node on a real Kafka as production runs it: its own group and topics,
/// the changelog on, `guarantee` as asked.
void on_real_kafka(node::node_config& cfg, const std::string& prefix, int partitions,
                   const std::string& guarantee) {
  cfg.group_id = prefix + "-nodes";
  cfg.topic_prefix = prefix;
  cfg.partitions = partitions;
  cfg.guarantee = guarantee;
  cfg.changelog = true;
  cfg.create_topics = true;
  cfg.fetch_wait_ms = -1;
}

/// The Kafka of one benchmark run: the embedded one (in this process), or fresh topics on a
/// real one; and a node's configuration for it (data in `dir`).
struct bench_kafka {
  std::unique_ptr<kafka::embedded_kafka> embedded;
  kafka::topic_names topics;
  std::string bootstrap;
  std::string prefix = run_prefix();
  run_topics_cleanup cleanup;

  bench_kafka(const std::string& real_kafka, int partitions) : bootstrap(real_kafka) {
    if (real_kafka.empty()) {
      std::string error;
      embedded = kafka::embedded_kafka::start(1, partitions, topics, error);
      if (!embedded)
        throw std::runtime_error(error);
      bootstrap = embedded->bootstrap();
    } else {
      topics = real_topics(bootstrap, prefix, partitions);
      cleanup.bootstrap = bootstrap;  // the run's topics go when it ends
      cleanup.prefix = prefix;
    }
  }
  node::node_config node_config(const std::string& dir, int partitions,
                                const std::string& guarantee) const {
    auto cfg = node_config_for(bootstrap, dir);
    if (!embedded)
      on_real_kafka(cfg, prefix, partitions, guarantee);
    return cfg;
  }
};

uint64_t records_applied(node::node& n) {
  std::promise<uint64_t> p;
  n.node_status([&p](fleettwin::v1::NodeStatus s) { p.set_value(s.records_applied()); });
  return p.get_future().get();
}

/// Telemetry records the node has committed (applied, or consumed and found
/// to change nothing): the sum of its partitions' committed offsets. Offsets
/// are dense from 0 on the bench's topics (its producer is not transactional).
uint64_t records_committed(node::node& n) {
  std::promise<uint64_t> p;
  n.node_status([&p](fleettwin::v1::NodeStatus s) {
    uint64_t sum = 0;
    for (const auto& part : s.partitions())
      sum += static_cast<uint64_t>(std::max<int64_t>(0, part.committed_offset()));
    p.set_value(sum);
  });
  return p.get_future().get();
}

/// Drains the backlog with a fresh node (its own data dir; the embedded
/// Kafka keeps the records): records/s from the first applied record to the
/// last.
double node_drain(const std::string& bootstrap, uint64_t records, bool publish, int history,
                  const std::string& aggregates, bool analytics = true,
                  const std::string& models = {}) {
  auto dir = temp_dir("ingest");
  auto cfg = node_config_for(bootstrap, dir);
  cfg.analytics = analytics;
  cfg.models_file = models;
  cfg.publish_changes = publish;
  cfg.history = history;
  cfg.aggregates_file = aggregates;
  std::string error;
  auto n = node::node::start(cfg, error);
  if (!n)
    throw std::runtime_error(error);
  clock_type::time_point first{};
  auto deadline = clock_type::now() + std::chrono::minutes{10};
  uint64_t applied = 0;
  while (applied < records && clock_type::now() < deadline) {
    applied = records_applied(*n);
    if (applied > 0 && first == clock_type::time_point{})
      first = clock_type::now();
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  auto last = clock_type::now();
  const auto all_applied = last;
  if (!aggregates.empty()) {
    // Done when the aggregates have folded in every contribution too: their
    // update counter stays put for a second (the clock stops at its last move).
    double seen = -1;
    auto quiet_since = clock_type::now();
    while (clock_type::now() - quiet_since < std::chrono::seconds{1} &&
           clock_type::now() < deadline) {
      auto now_seen = metric(scrape_metrics(n->metrics_port()),
                             "fleettwin_aggregate_member_updates_applied_total");
      if (now_seen != seen) {
        seen = now_seen;
        quiet_since = last = clock_type::now();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{50});
    }
  }
  double secs = std::chrono::duration<double>(last - first).count();
  if (!aggregates.empty())
    fmt::print(
        "node with aggregates: every record applied after {:.3f} s, aggregates settled {:.3f} s "
        "later\n",
        std::chrono::duration<double>(all_applied - first).count(),
        std::chrono::duration<double>(last - all_applied).count());
  auto stats = n->store().stats();
  auto metrics = scrape_metrics(n->metrics_port());
  auto batches = metric(metrics, "fleettwin_batches_total");
  auto commit_sum = metric(metrics, "fleettwin_batch_commit_duration_seconds_sum");
  fmt::print(
      "node{}: {:.0f} batches ({:.0f} records each), {:.3f} s in RocksDB commits "
      "({:.2f} ms each), sst={} MiB\n",
      aggregates.empty() ? "" : " with aggregates", batches, records / std::max(batches, 1.0),
      commit_sum, 1e3 * commit_sum / std::max(batches, 1.0), stats.sst_bytes >> 20);
  if (!aggregates.empty())
    fmt::print(
        "  aggregates: {:.0f} contributions produced, {:.0f} member updates applied, {:.0f} "
        "aggregate changes, {:.0f} records rejected\n",
        metric(metrics, "fleettwin_aggregate_contributions_produced_total"),
        metric(metrics, "fleettwin_aggregate_member_updates_applied_total"),
        metric(metrics, "fleettwin_aggregate_changes_total"),
        metric(metrics, "fleettwin_records_rejected_total"));
  n->shutdown();
  n.reset();
  std::filesystem::remove_all(dir);
  if (applied < records)
    throw std::runtime_error(fmt::format("node applied {} of {} records", applied, records));
  return static_cast<double>(records) / secs;
}

/// Observations of a Prometheus histogram at or below each bucket bound.
std::vector<std::pair<double, double>> histogram(const std::string& text, const std::string& name,
                                                 const std::string& labels) {
  std::vector<std::pair<double, double>> out;
  const std::string prefix = "\n" + name + "_bucket{" + labels + ",le=\"";
  for (size_t pos = text.find(prefix); pos != std::string::npos; pos = text.find(prefix, pos + 1)) {
    auto le_begin = pos + prefix.size();
    auto le_end = text.find('"', le_begin);
    auto le = text.substr(le_begin, le_end - le_begin);
    auto value = std::stod(text.substr(text.find(' ', le_end) + 1));
    out.emplace_back(le == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(le), value);
  }
  return out;
}

/// The smallest bucket bound below which `q` of the observations lie.
double quantile_bound(const std::vector<std::pair<double, double>>& buckets, double q) {
  if (buckets.empty() || buckets.back().second == 0)
    return 0;
  const double total = buckets.back().second;
  for (const auto& [le, n] : buckets)
    if (n >= q * total)
      return le;
  return std::numeric_limits<double>::infinity();
}

/// Aggregates under load: the simulator's topology (meters -> transformers ->
/// feeders -> substations -> grid; vehicles -> fleets, depots, chargers ->
/// regions; machines -> lines -> plants) produced at `rate` records/s for
/// `seconds` by an ordinary producer (linger 5 ms) into the embedded Kafka,
/// while one node with the kinds folds it in. Reports whether the node kept
/// up (lag during the load, time to drain after), the leaf-to-aggregate
/// latency by levels (the node's histogram: from a twin change's ingest to
/// the committed change of the aggregate), and whether every aggregate ends
/// equal to the simulator's ground truth.
/// Read-after-ingest while a load runs: every `every`, one JSON record for
/// the probe asset, produced alone (linger 0) and acknowledged, then GetTwin
/// until the twin shows it; the time from the acknowledgement to the read.
class ingest_probe_loop {
public:
  ingest_probe_loop(const std::string& bootstrap, const std::string& topic, int grpc_port,
                    std::chrono::milliseconds every)
      : topic_(topic), every_(every) {
    char err[512];
    auto* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
    rd_kafka_conf_set(conf, "partitioner", "murmur2_random", err, sizeof(err));
    rd_kafka_conf_set(conf, "linger.ms", "0", err, sizeof(err));
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    stub_ = fleettwin::v1::TwinService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(grpc_port), grpc::InsecureChannelCredentials()));
    thread_ = std::thread{[this] { run(); }};
  }
  ~ingest_probe_loop() {
    stop();
    rd_kafka_destroy(rk_);
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable())
      thread_.join();
  }
  /// Latencies in ms, sorted (call after stop()): of every probe, or of those
  /// acknowledged at or after `since`.
  std::vector<double> latencies(clock_type::time_point since = {}) const {
    std::vector<double> out;
    for (const auto& [acked, ms] : latencies_)
      if (acked >= since)
        out.push_back(ms);
    std::sort(out.begin(), out.end());
    return out;
  }
  uint64_t lost() const {
    return lost_;
  }
  /// Probe records produced.
  uint64_t sent() const {
    return sent_.load();
  }

private:
  void run() {
    const std::string asset = "bench-probe";
    for (uint64_t seq = 1; !stop_; ++seq) {
      const auto slot = clock_type::now() + every_;
      const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
      const auto value = fmt::format(
          R"({{"asset_id":"{}","kind":"probe","sequence":{},"source_time_ms":{},"metrics":{{"n":{}}}}})",
          asset, seq, now_ms, seq);
      auto* h = rd_kafka_headers_new(1);
      rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
      rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(topic_.c_str()),
                        RD_KAFKA_V_KEY(const_cast<char*>(asset.data()), asset.size()),
                        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                        RD_KAFKA_V_END);
      sent_.fetch_add(1);
      if (rd_kafka_flush(rk_, 10'000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ++lost_;
        continue;
      }
      const auto acked = clock_type::now();
      bool seen = false;
      while (!seen && !stop_ && clock_type::now() - acked < std::chrono::seconds{10}) {
        grpc::ClientContext ctx;
        fleettwin::v1::GetTwinRequest req;
        req.set_name("twins/" + asset);
        fleettwin::v1::Twin tw;
        if (stub_->GetTwin(&ctx, req, &tw).ok() && tw.version() >= seq)
          seen = true;
        else  // finer while the wait is short, coarser (less load) beyond
          std::this_thread::sleep_for(clock_type::now() - acked < std::chrono::milliseconds{100}
                                          ? std::chrono::microseconds{1'000}
                                          : std::chrono::microseconds{5'000});
      }
      if (!seen) {
        if (!stop_)
          ++lost_;
        continue;
      }
      latencies_.emplace_back(
          acked, std::chrono::duration<double, std::milli>(clock_type::now() - acked).count());
      std::this_thread::sleep_until(slot);
    }
  }

  std::string topic_;
  std::chrono::milliseconds every_;
  rd_kafka_t* rk_ = nullptr;
  std::unique_ptr<fleettwin::v1::TwinService::Stub> stub_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::vector<std::pair<clock_type::time_point, double>> latencies_;  // acked, ms
  uint64_t lost_ = 0;
  std::atomic<uint64_t> sent_{0};
};

/// What each kind of thread of this process used between two snapshots,
/// the busiest first, in `scale` units (e.g. us per record).
std::string threads_per_record(const std::map<pid_t, bench::thread_cpu>& before,
                               const std::map<pid_t, bench::thread_cpu>& after, double scale) {
  std::vector<std::pair<double, std::string>> sorted;
  for (const auto& [kind, s] : bench::cpu_by_thread_kind(before, after))
    if (s > 0)
      sorted.emplace_back(s, kind);
  std::sort(sorted.rbegin(), sorted.rend());
  std::string line;
  for (const auto& [s, kind] : sorted)
    line += fmt::format("{}{} {:.2f}", line.empty() ? "" : ", ", kind, s * scale);
  return line;
}

/// CPU seconds this process used so far (user + system).
double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct pipeline_options {
  size_t max_items_in_flight = 0;  // 0: the node's default
  int64_t item_linger_ms = -1;     // -1: the node's default
  /// Extra librdkafka settings of the node's clients ("key=value").
  std::vector<std::string> kafka_options;
};

/// What one load run measured (`aggregates`), for the rate sweep's summary.
struct load_run {
  double rate = 0;
  uint64_t sent = 0;
  double lag_p50 = 0;
  double lag_p99 = 0;
  double load_s = 0;     // the producer's time to send them
  double skipped = 0;    // records the node never read (the mock's retention)
  bool drained = false;  // every record committed after the load
  double drain_s = 0;    // from the end of the load until then
  double cpu_us = 0;     // of this process, per record
  double probe_p50_ms = 0;
  double probe_p99_ms = 0;
  double steady_p50_ms = 0;  // the probes after the first quarter of the load
  double steady_p99_ms = 0;
  bool exact = false;
  /// Records per second the producer sent.
  double achieved() const {
    return load_s > 0 ? static_cast<double>(sent) / load_s : 0;
  }
};

load_run run_aggregates(uint32_t assets, double rate, double seconds, int partitions,
                        const std::string& aggregates, const std::string& real_kafka,
                        const std::string& guarantee, int64_t commit_interval_ms,
                        const pipeline_options& pipeline, double hot_rate) {
  bench_kafka run_kafka{real_kafka, partitions};
  const auto& topics = run_kafka.topics;
  const auto& bootstrap = run_kafka.bootstrap;
  std::string error;
  if (!real_kafka.empty())
    fmt::print("real Kafka at {}: topic prefix {}, {}\n", bootstrap, run_kafka.prefix, guarantee);
  auto dir = temp_dir("aggregates");
  auto cfg = run_kafka.node_config(dir, partitions, guarantee);
  // "none": plain telemetry of the simulator's fleet, no aggregates.
  const bool with_aggregates = aggregates != "none";
  cfg.aggregates_file = with_aggregates ? aggregates : "";
  if (commit_interval_ms >= 0)
    cfg.commit_interval_ms = commit_interval_ms;
  if (pipeline.max_items_in_flight > 0)
    cfg.max_items_in_flight = pipeline.max_items_in_flight;
  if (pipeline.item_linger_ms >= 0)
    cfg.item_linger_ms = pipeline.item_linger_ms;
  for (const auto& o : pipeline.kafka_options)
    cfg.kafka_options.push_back(o);
  fmt::print("node: {} work items in flight per partition at most, linger {} ms\n",
             cfg.max_items_in_flight, cfg.item_linger_ms);
  cfg.max_active_twins = std::max<size_t>(cfg.max_active_twins, assets + 100'000);
  auto n = node::node::start(cfg, error);
  if (!n)
    throw std::runtime_error(error);
  // Load starts once the node serves every partition (no start-up backlog).
  for (auto until = clock_type::now() + std::chrono::seconds{60}; clock_type::now() < until;) {
    std::promise<bool> ready;
    n->node_status([&ready](fleettwin::v1::NodeStatus s) { ready.set_value(s.ready()); });
    if (ready.get_future().get())
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }

  sim::config scfg;
  scfg.assets = assets;
  scfg.topology = with_aggregates;
  scfg.rate = rate;
  scfg.start_time_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  scfg.count = static_cast<uint64_t>(rate * seconds);
  sim::generator gen{scfg};
  sim::ground_truth truth{gen};
  char err[512];
  auto* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "partitioner", "murmur2_random", err, sizeof(err));
  rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err));
  rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", err, sizeof(err));
  auto* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  std::atomic<uint64_t> telemetry_sent{0};
  std::atomic<bool> producing{true};
  std::atomic<bool> fleet_sent_all{false};
  fmt::print("producing the simulated topology of {} assets at {:.0f} records/s for {:.0f} s...\n",
             assets, rate, seconds);
  std::thread producer{[&] {
    sim::record r;
    const auto began = clock_type::now();
    uint64_t i = 0;
    while (gen.next(r)) {
      truth.observe(r);
      const bool relation = r.type == sim::record_type::relation;
      const auto& topic = relation ? topics.relations : topics.telemetry;
      auto* h = rd_kafka_headers_new(1);
      rd_kafka_header_add(h, "content-type", -1, r.content_type.data(),
                          static_cast<ssize_t>(r.content_type.size()));
      while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                               RD_KAFKA_V_KEY(const_cast<char*>(r.key.data()), r.key.size()),
                               RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                               RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 10);
      if (!relation)
        telemetry_sent.fetch_add(1, std::memory_order_relaxed);
      // Paced in real time: record i is due at i / rate.
      if (++i % 256 == 0) {
        rd_kafka_poll(rk, 0);
        auto due = began + std::chrono::duration_cast<clock_type::duration>(
                               std::chrono::duration<double>(static_cast<double>(i) / rate));
        if (due > clock_type::now())
          std::this_thread::sleep_until(due);
      }
    }
    fleet_sent_all = true;  // the hot twin's producer stops too
    rd_kafka_flush(rk, 60'000);
    producing = false;
  }};
  // A hot twin beside the fleet: one asset's JSON records at hot_rate, paced like the
  // fleet, by the same ordinary producer, for as long as the fleet produces.
  const std::string hot_asset = "bench-hot";
  std::atomic<uint64_t> hot_sent{0};
  std::thread hot_producer;
  if (hot_rate > 0) {
    fmt::print("and one hot twin ({}) at {:.0f} records/s\n", hot_asset, hot_rate);
    hot_producer = std::thread{[&] {
      const auto began = clock_type::now();
      std::string payload;
      for (uint64_t seq = 1; !fleet_sent_all; ++seq) {
        const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
        payload = fmt::format(
            R"({{"asset_id":"{}","kind":"vehicle","sequence":{},"source_time_ms":{},"metrics":{{"speed_kmh":{:.1f},"battery_pct":{:.2f}}}}})",
            hot_asset, seq, now_ms, 40.0 + static_cast<double>(seq % 400) / 10.0,
            100.0 - static_cast<double>(seq % 10'000) / 100.0);
        auto* h = rd_kafka_headers_new(1);
        rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
        while (
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topics.telemetry.c_str()),
                              RD_KAFKA_V_KEY(const_cast<char*>(hot_asset.data()), hot_asset.size()),
                              RD_KAFKA_V_VALUE(payload.data(), payload.size()),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                              RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
          rd_kafka_poll(rk, 10);
        hot_sent.fetch_add(1, std::memory_order_relaxed);
        if (seq % 64 == 0) {
          auto due =
              began + std::chrono::duration_cast<clock_type::duration>(
                          std::chrono::duration<double>(static_cast<double>(seq) / hot_rate));
          if (due > clock_type::now())
            std::this_thread::sleep_until(due);
        }
      }
    }};
  }
  auto twins_stub = fleettwin::v1::TwinService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(n->grpc_port()), grpc::InsecureChannelCredentials()));
  // The hot twin's version (records applied to it): the last one read (0 before it
  // exists; a read that fails or times out keeps the previous one).
  uint64_t hot_seen = 0;
  auto hot_version = [&]() -> uint64_t {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{5});
    fleettwin::v1::GetTwinRequest req;
    req.set_name("twins/" + hot_asset);
    fleettwin::v1::Twin tw;
    if (twins_stub->GetTwin(&ctx, req, &tw).ok())
      hot_seen = std::max<uint64_t>(hot_seen, tw.version());
    return hot_seen;
  };
  std::vector<double> hot_lags;
  uint64_t hot_version_warm = 0;
  clock_type::time_point hot_warm_at;
  // Lag while producing: records sent but not committed yet. Latency under
  // load: the node's histograms between the end of a warm-up (the first
  // quarter of the load: twins and aggregates are created then) and the end
  // of the load.
  std::vector<double> lags;
  const auto load_began = clock_type::now();
  const double cpu_began = process_cpu_seconds();
  const auto threads_began = bench::thread_cpu_seconds();
  ingest_probe_loop probe{bootstrap, topics.telemetry, n->grpc_port(),
                          std::chrono::milliseconds{50}};
  const auto warm_up = std::chrono::duration<double>(seconds / 4);
  std::string warm_metrics;
  while (producing) {
    std::this_thread::sleep_for(std::chrono::milliseconds{100});
    const double sent = static_cast<double>(telemetry_sent.load());
    lags.push_back(std::max(0.0, sent - static_cast<double>(records_committed(*n))));
    if (hot_rate > 0) {
      const double hot = static_cast<double>(hot_sent.load());
      const auto v = hot_version();
      hot_lags.push_back(std::max(0.0, hot - static_cast<double>(v)));
      if (hot_version_warm == 0 && clock_type::now() - load_began >= warm_up) {
        hot_version_warm = v;
        hot_warm_at = clock_type::now();
      }
    }
    if (warm_metrics.empty() && clock_type::now() - load_began >= warm_up)
      warm_metrics = scrape_metrics(n->metrics_port());
  }
  const auto loaded_metrics = scrape_metrics(n->metrics_port());
  const uint64_t hot_version_loaded = hot_rate > 0 ? hot_version() : 0;
  const auto hot_loaded_at = clock_type::now();
  probe.stop();
  if (hot_producer.joinable())
    hot_producer.join();
  producer.join();
  rd_kafka_destroy(rk);
  const auto stopped = clock_type::now();
  const double load_s = std::chrono::duration<double>(stopped - load_began).count();
  const uint64_t sent = telemetry_sent.load();
  // The probe's records are in the telemetry topic too.
  const uint64_t offered = sent + probe.sent() + hot_sent.load();
  while (records_committed(*n) < offered && clock_type::now() - stopped < std::chrono::minutes{2})
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  const double drain_s = std::chrono::duration<double>(clock_type::now() - stopped).count();
  const bool drained = records_committed(*n) >= offered;
  if (!drained) {
    // Which partitions are behind, and by how much (the node's own gauges).
    const auto text = scrape_metrics(n->metrics_port());
    std::string behind;
    const std::string prefix = "\nfleettwin_consumer_lag_records{";
    for (auto pos = text.find(prefix); pos != std::string::npos; pos = text.find(prefix, pos + 1)) {
      const auto end = text.find('\n', pos + 1);
      const auto line = text.substr(pos + 1, end - pos - 1);
      if (line.substr(line.rfind(' ') + 1) != "0")
        behind += "\n  " + line;
    }
    fmt::print("not drained after 2 minutes: {} of {} committed; partitions behind:{}\n",
               records_committed(*n), offered,
               behind.empty() ? " none by their lag gauges" : behind);
    // Where the others went.
    for (const char* series :
         {"fleettwin_records_consumed_total", "fleettwin_duplicates_total",
          "fleettwin_out_of_order_records_total", "fleettwin_unchanged_records_total",
          "fleettwin_records_applied_total", "fleettwin_records_rejected_total",
          "fleettwin_sequence_restarts_total", "fleettwin_partition_revivals_total"})
      fmt::print("  {} {}\n", series, metric(text, series));
    for (const std::string family :
         {"fleettwin_records_skipped_total{", "fleettwin_offset_gaps_total{",
          "fleettwin_records_rejected_total{"})
      for (auto pos = text.find("\n" + family); pos != std::string::npos;
           pos = text.find("\n" + family, pos + 1))
        fmt::print("  {}\n", text.substr(pos + 1, text.find('\n', pos + 1) - pos - 1));
  }
  std::sort(lags.begin(), lags.end());
  auto lag_at = [&](double q) {
    return lags.empty() ? 0.0 : lags[static_cast<size_t>(q * static_cast<double>(lags.size() - 1))];
  };
  const double cpu_s = process_cpu_seconds() - cpu_began;
  const auto threads_ended = bench::thread_cpu_seconds();
  fmt::print(
      "sent {} telemetry records; lag during the load p50 {:.0f} p99 {:.0f} records; all "
      "committed {:.3f} s after the load stopped\n",
      sent, lag_at(0.5), lag_at(0.99), drain_s);
  // Per record of the fleet and the hot twin together.
  const double cpu_records = static_cast<double>(sent + hot_sent.load());
  fmt::print(
      "CPU of this process (node, producers, probe) during load and drain: {:.1f} s, {:.1f} "
      "us per record\n",
      cpu_s, 1e6 * cpu_s / std::max<double>(1, cpu_records));
  // librdkafka's threads (rdk:*) serve the node's clients and the bench's producers alike.
  fmt::print(
      "  by thread, us per record: {}\n",
      threads_per_record(threads_began, threads_ended, 1e6 / std::max<double>(1, cpu_records)));
  double hot_updates_per_s = 0;
  if (hot_rate > 0) {
    std::sort(hot_lags.begin(), hot_lags.end());
    const double span = std::chrono::duration<double>(hot_loaded_at - hot_warm_at).count();
    hot_updates_per_s =
        span > 0 ? static_cast<double>(hot_version_loaded - hot_version_warm) / span : 0;
    const uint64_t hot_final = hot_version();
    fmt::print(
        "hot twin: {} records sent, {:.0f} updates/s applied under load (after the first "
        "quarter), its lag p50 {:.0f} p99 {:.0f} records; {} applied in the end{}\n",
        hot_sent.load(), hot_updates_per_s, hot_lags.empty() ? 0.0 : hot_lags[hot_lags.size() / 2],
        hot_lags.empty() ? 0.0 : hot_lags[static_cast<size_t>(0.99 * double(hot_lags.size() - 1))],
        hot_final, hot_final == hot_sent.load() ? "" : " (NOT all of them)");
  }
  const auto probed = probe.latencies();
  auto quantile = [](const std::vector<double>& sorted, double q) {
    return sorted.empty() ? 0.0
                          : sorted[static_cast<size_t>(q * static_cast<double>(sorted.size() - 1))];
  };
  auto probe_at = [&](double q) { return quantile(probed, q); };
  // Steady state: the probes after the first quarter of the load, when the fleet's
  // twins exist (the first record of each asset creates its twin).
  const auto steady =
      probe.latencies(load_began + std::chrono::duration_cast<clock_type::duration>(warm_up));
  fmt::print(
      "read-after-ingest (probe record acknowledged -> GetTwin shows it): {} probes, p50 {:.1f} "
      "ms, p99 {:.1f} ms, max {:.1f} ms, {} not seen\n",
      probed.size(), probe_at(0.5), probe_at(0.99), probed.empty() ? 0.0 : probed.back(),
      probe.lost());
  fmt::print(
      "  after the first quarter of the load: {} probes, p50 {:.1f} ms, p99 {:.1f} ms, max "
      "{:.1f} ms\n",
      steady.size(), quantile(steady, 0.5), quantile(steady, 0.99),
      steady.empty() ? 0.0 : steady.back());

  // Every aggregate as the simulator's ground truth says.
  google::protobuf::Struct doc;
  if (!google::protobuf::util::JsonStringToMessage(truth.json(0), &doc).ok())
    throw std::runtime_error("unreadable ground truth");
  const google::protobuf::Struct none;
  const auto& expected =
      with_aggregates ? doc.fields().at("aggregates").struct_value().fields() : none.fields();
  auto stub = fleettwin::v1::AggregateService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(n->grpc_port()), grpc::InsecureChannelCredentials()));
  std::string diff;
  auto exact = [&] {
    for (const auto& [id, want] : expected) {
      grpc::ClientContext ctx;
      fleettwin::v1::GetAggregateRequest req;
      req.set_name("aggregates/" + id);
      fleettwin::v1::Aggregate a;
      if (!stub->GetAggregate(&ctx, req, &a).ok()) {
        diff = id + " missing";
        return false;
      }
      const auto twins = want.struct_value().fields().at("twins").number_value();
      if (static_cast<double>(a.member_twins()) != twins) {
        diff = fmt::format("{}: {} twins, want {}", id, a.member_twins(), twins);
        return false;
      }
    }
    return true;
  };
  const auto check_began = clock_type::now();
  bool ok = false;
  while (!(ok = exact()) && clock_type::now() - check_began < std::chrono::seconds{60})
    std::this_thread::sleep_for(std::chrono::milliseconds{200});
  fmt::print("{} aggregates {} the ground truth{}\n", expected.size(), ok ? "equal" : "DIFFER from",
             ok ? "" : " (" + diff + ")");

  const auto metrics = scrape_metrics(n->metrics_port());
  fmt::print(
      "leaf-to-aggregate latency under load, after the first quarter (from a twin change's "
      "ingest to the aggregate's commit):\n");
  std::string json_levels;
  for (const char* level : {"1", "2", "3", "4+"}) {
    const auto labels = std::string{"levels=\""} + level + "\"";
    auto b = histogram(loaded_metrics, "fleettwin_aggregate_propagation_seconds", labels);
    const auto before = histogram(warm_metrics, "fleettwin_aggregate_propagation_seconds", labels);
    for (size_t i = 0; i < b.size() && i < before.size(); ++i)
      b[i].second -= before[i].second;
    const double count = b.empty() ? 0 : b.back().second;
    std::string shares;
    for (const auto& [le, n] : b)
      if (count > 0 && std::isfinite(le))
        shares += fmt::format(" {}:{:.1f}%", le, 100.0 * n / count);
    fmt::print("  {} level(s): {:.0f} changes, p50 <= {} s, p99 <= {} s (at or below:{})\n", level,
               count, quantile_bound(b, 0.5), quantile_bound(b, 0.99), shares);
    json_levels += fmt::format(R"({}"{}":{{"changes":{:.0f},"p50_le":{},"p99_le":{}}})",
                               json_levels.empty() ? "" : ",", level, count, quantile_bound(b, 0.5),
                               quantile_bound(b, 0.99));
  }
  fmt::print("  {:.0f} contributions, {:.0f} member updates, {:.0f} aggregate changes\n",
             metric(metrics, "fleettwin_aggregate_contributions_produced_total"),
             metric(metrics, "fleettwin_aggregate_member_updates_applied_total"),
             metric(metrics, "fleettwin_aggregate_changes_total"));
  const double commits = metric(metrics, "fleettwin_batch_commit_duration_seconds_count");
  fmt::print("  {:.0f} telemetry batches, {:.0f} commits ({:.1f} ms each in RocksDB)\n",
             metric(metrics, "fleettwin_batches_total"), commits,
             1e3 * metric(metrics, "fleettwin_batch_commit_duration_seconds_sum") /
                 std::max(commits, 1.0));
  if (const double txns = metric(metrics, "fleettwin_transactions_committed_total"); txns > 0)
    fmt::print("  {:.0f} Kafka transactions, {:.1f} ms each to commit\n", txns,
               1e3 * metric(metrics, "fleettwin_transaction_commit_seconds_total") / txns);
  for (const char* phase : {"apply", "publish"}) {
    const auto labels = std::string{"phase=\""} + phase + "\"";
    auto b = histogram(metrics, "fleettwin_work_item_phase_seconds", labels);
    const double items = b.empty() ? 0 : b.back().second;
    fmt::print("  work items, {} phase: {:.0f}, mean {:.1f} ms, p50 <= {} s, p99 <= {} s\n", phase,
               items,
               1e3 * metric(metrics, "fleettwin_work_item_phase_seconds_sum{" + labels + "}") /
                   std::max(items, 1.0),
               quantile_bound(b, 0.5), quantile_bound(b, 0.99));
  }
  fmt::print(
      R"({{"bench":"aggregates","assets":{},"rate":{:.0f},"seconds":{:.0f},"sent":{},"lag_p99":{:.0f},"drain_s":{:.3f},"cpu_us_per_record":{:.2f},"probe_p50_ms":{:.1f},"probe_p99_ms":{:.1f},"steady_probe_p50_ms":{:.1f},"steady_probe_p99_ms":{:.1f},"hot_rate":{:.0f},"hot_updates_per_s":{:.0f},"exact":{},"aggregates":{},"levels":{{{}}}}})"
      "\n",
      assets, rate, seconds, sent, lag_at(0.99), drain_s,
      1e6 * cpu_s / std::max<double>(1, cpu_records), probe_at(0.5), probe_at(0.99),
      quantile(steady, 0.5), quantile(steady, 0.99), hot_rate, hot_updates_per_s, ok,
      expected.size(), json_levels);
  n->shutdown();
  n.reset();
  std::filesystem::remove_all(dir);
  load_run run;
  run.rate = rate;
  run.sent = sent;
  run.lag_p50 = lag_at(0.5);
  run.lag_p99 = lag_at(0.99);
  run.drained = drained;
  run.load_s = load_s;
  run.skipped = metric_sum(metrics, "fleettwin_records_skipped_total");
  run.drain_s = drain_s;
  run.cpu_us = 1e6 * cpu_s / std::max<double>(1, cpu_records);
  run.probe_p50_ms = probe_at(0.5);
  run.probe_p99_ms = probe_at(0.99);
  run.steady_p50_ms = quantile(steady, 0.5);
  run.steady_p99_ms = quantile(steady, 0.99);
  run.exact = ok;
  return run;
}

/// The highest rate a node sustains: one load run per rate, in the order given, until a
/// rate is not sustained. Sustained: every record committed within `max_drain_s` after
/// the load stopped (the lag back to 0), and the aggregates exact.
int run_rate_sweep(const std::vector<double>& rates, double max_drain_s,
                   const std::function<load_run(double)>& run_at) {
  // Also: every record read (none lost to retention), the aggregates exact, and the
  // rate offered for real (the producer kept within 5% of its schedule).
  auto sustained = [max_drain_s](const load_run& r) {
    return r.drained && r.drain_s <= max_drain_s && r.skipped == 0 && r.exact &&
           r.achieved() >= 0.95 * r.rate;
  };
  std::vector<load_run> runs;
  for (double rate : rates) {
    fmt::print("== {:.0f} records/s\n", rate);
    runs.push_back(run_at(rate));
    const auto& r = runs.back();
    if (!sustained(r))
      break;
  }
  fmt::print(
      "\nrate sweep (sustained: sent within 5% of the rate, lag back to 0 within {:.1f} s after "
      "the load stops, nothing skipped; read-after-ingest probes: all, and after the first "
      "quarter of the load)\n"
      "{:>10} {:>10} {:>9} {:>9} {:>8} {:>8} {:>9} {:>10} {:>10} {:>10} {:>10} {:>7}\n",
      max_drain_s, "offered/s", "sent/s", "lag p50", "lag p99", "drain s", "skipped", "sustained",
      "probe p50", "probe p99", "steady p50", "steady p99", "us/rec");
  double best = 0;
  for (const auto& r : runs) {
    const bool ok = sustained(r);
    if (ok)
      best = std::max(best, r.rate);
    fmt::print(
        "{:>10.0f} {:>10.0f} {:>9.0f} {:>9.0f} {:>8} {:>8.0f} {:>9} {:>7.1f} ms {:>7.1f} ms "
        "{:>7.1f} ms {:>7.1f} ms {:>7.1f}{}\n",
        r.rate, r.achieved(), r.lag_p50, r.lag_p99,
        r.drained ? fmt::format("{:.2f}", r.drain_s) : std::string{"never"}, r.skipped,
        ok ? "yes" : "no", r.probe_p50_ms, r.probe_p99_ms, r.steady_p50_ms, r.steady_p99_ms,
        r.cpu_us, r.exact ? "" : " (aggregates not exact)");
  }
  fmt::print("highest rate sustained: {:.0f} records/s{}\n", best,
             runs.size() == rates.size() && best == rates.back() ? " (every rate offered)" : "");
  fmt::print(R"({{"bench":"rate_sweep","max_drain_s":{:.1f},"highest_sustained":{:.0f}}})"
             "\n",
             max_drain_s, best);
  return best > 0 ? 0 : 1;
}

/// One pair of drains: without and with the feature under test.
struct drain_pair {
  double without = 0;
  double with = 0;
  double ratio() const {
    return with / without;
  }
};

/// Runs `pairs` pairs of drains whose order alternates (a drain can be
/// slowed by the one before it: its files still being written back), prints
/// each pair, and returns them sorted by ratio (the median is in the middle).
std::vector<drain_pair> alternating_pairs(int pairs, const std::string& feature,
                                          const std::function<double()>& without,
                                          const std::function<double()>& with) {
  std::vector<drain_pair> out;
  for (int i = 0; i < pairs; ++i) {
    drain_pair p;
    if (i % 2 == 0) {
      p.without = without();
      p.with = with();
    } else {
      p.with = with();
      p.without = without();
    }
    fmt::print("pair {} ({} first): {:.0f} records/s without {}, {:.0f} with = {:.0f}%\n", i + 1,
               i % 2 == 0 ? "without" : "with", p.without, feature, p.with, 100 * p.ratio());
    out.push_back(p);
  }
  std::sort(out.begin(), out.end(),
            [](const drain_pair& a, const drain_pair& b) { return a.ratio() < b.ratio(); });
  fmt::print("with {} / without, median of {} pairs: {:.0f}%\n", feature, pairs,
             100 * out[out.size() / 2].ratio());
  return out;
}

int run_ingest(uint64_t records, uint32_t assets, int partitions, bool publish, int history,
               const std::string& aggregates, int pairs, int analytics_pairs,
               const std::string& models) {
  kafka::topic_names topics;
  std::string error;
  auto k = kafka::embedded_kafka::start(1, partitions, topics, error);
  if (!k)
    throw std::runtime_error(error);
  fmt::print("producing {} records for {} assets into {} partitions...\n", records, assets,
             partitions);
  produce(k->bootstrap(), topics.telemetry, records, assets);
  double plain = plain_consumer(k->bootstrap(), topics.telemetry, records);
  fmt::print("plain librdkafka consumer: {:.0f} records/s\n", plain);
  if (analytics_pairs > 0) {
    alternating_pairs(
        analytics_pairs, "analytics",
        [&] { return node_drain(k->bootstrap(), records, publish, history, {}, false); },
        [&] { return node_drain(k->bootstrap(), records, publish, history, {}, true, models); });
    return 0;
  }
  double node_rate = 0;
  double with_aggregates = 0;
  double aggregates_ratio = 0;
  std::string json_pairs;
  auto without = [&] {
    const double rate = node_drain(k->bootstrap(), records, publish, history, {});
    fmt::print(
        "fleettwin-node ingest (durable group commit{}): {:.0f} records/s = {:.0f}% of the "
        "plain consumer\n",
        publish ? ", change events published" : "", rate, 100 * rate / plain);
    return rate;
  };
  if (aggregates.empty()) {
    node_rate = without();
  } else {
    // The same backlog drained by a node without aggregate kinds and by one
    // with them: the median pair's ratio.
    auto runs = alternating_pairs(pairs, "aggregates", without, [&] {
      return node_drain(k->bootstrap(), records, publish, history, aggregates);
    });
    // Sorted by ratio, for the JSON line.
    for (const auto& p : runs)
      json_pairs += fmt::format(R"({}{{"without":{:.0f},"with":{:.0f},"ratio":{:.3f}}})",
                                json_pairs.empty() ? "" : ",", p.without, p.with, p.ratio());
    const auto& median = runs[runs.size() / 2];
    aggregates_ratio = median.ratio();
    node_rate = median.without;
    with_aggregates = median.with;
  }
  fmt::print(
      R"({{"bench":"ingest","records":{},"assets":{},"partitions":{},"publish_changes":{},"history":{},"plain_records_per_s":{:.0f},"node_records_per_s":{:.0f},"ratio":{:.3f},"with_aggregates_records_per_s":{:.0f},"aggregates_ratio":{:.3f},"pairs":[{}]}})"
      "\n",
      records, assets, partitions, publish, history, plain, node_rate, node_rate / plain,
      with_aggregates, aggregates_ratio, json_pairs);
  return 0;
}

/// The high watermark of every partition of `topic`. The bench's producer is
/// not transactional, so a partition's offsets are dense from 0 and a node
/// that committed up to the watermark has applied every record in it.
std::vector<int64_t> end_offsets(const std::string& bootstrap, const std::string& topic,
                                 int partitions) {
  char err[512];
  auto* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  auto* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (!rk)
    throw std::runtime_error(std::string{"cannot create a Kafka client: "} + err);
  std::vector<int64_t> out(static_cast<size_t>(partitions), 0);
  for (int p = 0; p < partitions; ++p) {
    int64_t lo = 0;
    int64_t hi = 0;
    auto e = rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &lo, &hi, 10'000);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_destroy(rk);
      throw std::runtime_error(
          fmt::format("watermarks of {}[{}]: {}", topic, p, rd_kafka_err2str(e)));
    }
    out[static_cast<size_t>(p)] = hi;
  }
  rd_kafka_destroy(rk);
  return out;
}

/// The node's status, or nullopt when it does not answer within 10 s.
std::optional<fleettwin::v1::NodeStatus> status_of(node::node& n) {
  auto p = std::make_shared<std::promise<fleettwin::v1::NodeStatus>>();
  auto f = p->get_future();
  n.node_status([p](fleettwin::v1::NodeStatus s) { p->set_value(std::move(s)); });
  if (f.wait_for(std::chrono::seconds{10}) != std::future_status::ready)
    return std::nullopt;
  return f.get();
}

/// fleettwin-bench ingest --kafka: the node on a real Apache Kafka, `nodes`
/// instances in this process (one consumer group), against a plain consumer
/// on the same topic in the same run. The broker is the caller's
/// (tools/bench/cluster.sh starts one); every run uses fresh topics.
int run_ingest_cluster(const std::string& bootstrap, int nodes, const std::string& guarantee,
                       uint64_t records, uint32_t assets, int partitions, bool publish, int history,
                       sim::payload_format format, pid_t broker_pid) {
  const auto prefix = run_prefix();
  const auto topics = real_topics(bootstrap, prefix, partitions);
  const run_topics_cleanup cleanup{bootstrap, prefix};
  fmt::print("real Kafka at {}: topic prefix {}\n", bootstrap, prefix);
  // Everything is produced before the nodes start, so that they set the pace
  // (a producer sharing the cores with them would).
  fmt::print("producing {} {} records for {} assets into {} partitions...\n", records,
             sim::to_string(format), assets, partitions);
  auto produce_start = clock_type::now();
  produce(bootstrap, topics.telemetry, records, assets, true, format);
  const double produce_secs = seconds_since(produce_start);
  if (broker_pid > 0 && bench::process_cpu_seconds_of(broker_pid) < 0)
    throw std::runtime_error(fmt::format("--broker-pid {}: no such process", broker_pid));
  // CPU per record: this process (the nodes; the backlog is produced before
  // and the plain consumer runs after) and the broker, from the nodes' start
  // and from their first applied record to the last record committed.
  struct cpu_point {
    double process = 0;
    double broker = 0;
    std::map<pid_t, bench::thread_cpu> threads;
    static cpu_point now(pid_t broker) {
      return {process_cpu_seconds(), broker > 0 ? bench::process_cpu_seconds_of(broker) : 0,
              bench::thread_cpu_seconds()};
    }
  };
  const auto cpu_at_start = cpu_point::now(broker_pid);
  cpu_point cpu_at_first;
  auto dir = temp_dir("cluster");
  std::vector<std::future<std::unique_ptr<node::node>>> starting;
  for (int i = 1; i <= nodes; ++i) {
    auto cfg = node_config_for(bootstrap, fmt::format("{}/node-{}", dir, i));
    cfg.node_id = fmt::format("bench-{}", i);
    on_real_kafka(cfg, prefix, partitions, guarantee);
    cfg.publish_changes = publish;
    cfg.history = history;
    starting.push_back(std::async(std::launch::async, [cfg] {
      std::string error;
      auto n = node::node::start(cfg, error);
      if (!n)
        throw std::runtime_error(cfg.node_id + ": " + error);
      return n;
    }));
  }
  std::vector<std::unique_ptr<node::node>> running;
  std::string start_error;
  for (auto& f : starting) {
    try {
      running.push_back(f.get());
    } catch (const std::exception& e) {
      start_error = e.what();
    }
  }
  auto stop_all = [&running] {
    // In parallel: one by one, each leaving node would hand its partitions to
    // the others first.
    std::vector<std::thread> stops;
    for (auto& n : running)
      stops.emplace_back([&n] { n->shutdown(); });
    for (auto& t : stops)
      t.join();
    running.clear();
  };
  if (!start_error.empty()) {
    stop_all();
    std::filesystem::remove_all(dir);
    throw std::runtime_error(start_error);
  }
  // A node that fails (e.g. its producer is fenced) asks to stop: fail the run.
  std::atomic<int> failed{0};
  std::vector<std::thread> watchers;
  for (size_t i = 0; i < running.size(); ++i)
    watchers.emplace_back([&failed, &n = *running[i], i] {
      if (n.wait() != 0)
        failed = static_cast<int>(i) + 1;
    });
  auto release_watchers = [&] {
    for (auto& n : running)
      n->request_stop(0);
    for (auto& w : watchers)
      w.join();
    watchers.clear();
  };
  // The measurement starts with the first applied record. The group settles
  // meanwhile (the nodes join at slightly different times; the broker of
  // tools/bench/cluster.sh waits a few seconds before it forms a new group,
  // so they usually start together). Settled = every partition active on
  // exactly one node and the partitions spread evenly.
  clock_type::time_point first{};
  auto note_first = [&](const fleettwin::v1::NodeStatus& st) {
    if (first == clock_type::time_point{} && st.records_applied() > 0) {
      first = clock_type::now();
      cpu_at_first = cpu_point::now(broker_pid);
    }
  };
  {
    auto settle_deadline = clock_type::now() + std::chrono::seconds{60};
    for (;;) {
      int owned = 0;
      int fewest = partitions;
      int most = 0;
      for (auto& n : running) {
        auto st = status_of(*n);
        int have = st ? st->partitions_size() : 0;
        if (st)
          note_first(*st);
        owned += have;
        fewest = std::min(fewest, have);
        most = std::max(most, have);
      }
      if (owned == partitions && fewest >= partitions / nodes &&
          most <= (partitions + nodes - 1) / nodes)
        break;
      if (failed || clock_type::now() > settle_deadline) {
        release_watchers();
        stop_all();
        std::filesystem::remove_all(dir);
        throw std::runtime_error(
            fmt::format("the group did not settle: {} of {} partitions active", owned, partitions));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
  }
  // Restores so far (a partition moving while the group formed); those after
  // this point are partitions moving while the records are ingested.
  double restores_before = 0;
  for (auto& n : running)
    restores_before += metric(scrape_metrics(n->metrics_port()), "fleettwin_restores_total");
  fmt::print("{} node(s) started ({}), group settled\n", nodes, guarantee);
  const bool produced = true;
  // Progress: per partition, the highest offset committed with the twin
  // state on any node (a partition moving between nodes keeps its progress).
  // The producer is idempotent and not transactional: offsets are dense from
  // 0, so a partition is done when its committed offset is its end offset.
  std::vector<int64_t> committed(static_cast<size_t>(partitions), 0);
  std::vector<int64_t> ends;
  int64_t total = -1;  // known once everything is produced
  auto progress = [&] {
    bool any = false;
    for (auto& n : running) {
      auto st = status_of(*n);
      if (!st)
        continue;
      any = any || st->records_applied() > 0;
      note_first(*st);
      for (const auto& p : st->partitions())
        if (p.partition() >= 0 && p.partition() < partitions) {
          auto& c = committed[static_cast<size_t>(p.partition())];
          c = std::max(c, p.committed_offset());
        }
    }
    int64_t done = 0;
    for (size_t p = 0; p < committed.size(); ++p) {
      any = any || committed[p] > 0;
      done += ends.empty() ? committed[p] : std::min(committed[p], ends[p]);
    }
    return std::pair{any, done};
  };
  auto deadline = clock_type::now() + std::chrono::minutes{10};
  int64_t done = 0;
  while (clock_type::now() < deadline && !failed) {
    if (total < 0 && produced) {
      ends = end_offsets(bootstrap, topics.telemetry, partitions);
      total = 0;
      for (auto e : ends)
        total += e;
    }
    auto [any, d] = progress();
    done = d;
    if (any && first == clock_type::time_point{}) {
      first = clock_type::now();  // records applied before any status showed them
      cpu_at_first = cpu_point::now(broker_pid);
    }
    if (total >= 0 && done >= total)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
  double secs = seconds_since(first);
  const auto cpu_at_end = cpu_point::now(broker_pid);
  // The last Kafka transactions commit after the state they carry: let them
  // finish before the counters are read (not measured).
  std::this_thread::sleep_for(std::chrono::seconds{1});
  struct node_figures {
    std::string id;
    double consumed = 0;
    double applied = 0;
    double duplicates = 0;
    double out_of_order = 0;
    double transactions = 0;
    double aborted = 0;
    double restores = 0;
    double restore_records = 0;
    int partitions = 0;
  };
  std::vector<node_figures> figures;
  for (int i = 0; i < nodes; ++i) {
    auto& n = *running[static_cast<size_t>(i)];
    auto m = scrape_metrics(n.metrics_port());
    node_figures f;
    f.id = fmt::format("bench-{}", i + 1);
    f.consumed = metric(m, "fleettwin_records_consumed_total");
    f.applied = metric(m, "fleettwin_records_applied_total");
    f.duplicates = metric(m, "fleettwin_duplicates_total");
    f.out_of_order = metric(m, "fleettwin_out_of_order_records_total");
    f.transactions = metric(m, "fleettwin_transactions_committed_total");
    f.aborted = metric(m, "fleettwin_transactions_aborted_total");
    f.restores = metric(m, "fleettwin_restores_total");
    f.restore_records = metric(m, "fleettwin_restore_records_total");
    f.partitions = static_cast<int>(metric(m, "fleettwin_partitions_assigned"));
    figures.push_back(f);
  }
  release_watchers();
  stop_all();
  std::filesystem::remove_all(dir);
  if (failed)
    throw std::runtime_error(
        fmt::format("node bench-{} failed (its log above says why)", failed.load()));
  if (total < 0 || done < total)
    throw std::runtime_error(fmt::format("the nodes applied {} of {} records", done, total));
  if (total != static_cast<int64_t>(records))
    fmt::print("note: the topic holds {} records for {} produced\n", total, records);
  fmt::print("produced in {:.2f} s ({:.0f} records/s) before the nodes started\n", produce_secs,
             records / produce_secs);
  // The baseline: a plain consumer drains the same topic, nodes stopped.
  double plain =
      plain_consumer(bootstrap, topics.telemetry, static_cast<uint64_t>(total), prefix + "-plain");
  fmt::print("plain librdkafka consumer: {:.0f} records/s\n", plain);
  double node_rate = static_cast<double>(total) / secs;
  // A restore after the group settled is a partition that moved between
  // nodes while the records were ingested (a rebalance): the measured time
  // includes it.
  double restores = 0;
  for (const auto& f : figures)
    restores += f.restores;
  const int moves = std::max(0, static_cast<int>(restores - restores_before));
  if (moves > 0)
    fmt::print("note: {} partition move(s) between nodes while ingesting (a rebalance)\n", moves);
  for (const auto& f : figures)
    fmt::print(
        "  {}: {} partitions at the end, {:.0f} records consumed, {:.0f} applied ({:.0f} "
        "duplicates, {:.0f} out of order), {:.0f} transactions committed ({:.0f} aborted), "
        "{:.0f} restores ({:.0f} changelog records)\n",
        f.id, f.partitions, f.consumed, f.applied, f.duplicates, f.out_of_order, f.transactions,
        f.aborted, f.restores, f.restore_records);
  fmt::print(
      "fleettwin-node ingest on real Kafka ({} node{}, {}, changelog{}): {:.0f} records/s in "
      "{:.2f} s = {:.0f}% of the plain consumer\n",
      nodes, nodes == 1 ? "" : "s", guarantee, publish ? ", change events published" : "",
      node_rate, secs, 100 * node_rate / plain);
  // Per record of the topic: the drain (first applied record to the last
  // committed), and the nodes' whole life up to it (start, group join,
  // restore of empty changelogs included).
  const double per_record = 1e6 / static_cast<double>(total);
  const double node_drain_us = (cpu_at_end.process - cpu_at_first.process) * per_record;
  const double node_whole_us = (cpu_at_end.process - cpu_at_start.process) * per_record;
  const double broker_drain_us =
      broker_pid > 0 ? (cpu_at_end.broker - cpu_at_first.broker) * per_record : 0;
  fmt::print(
      "CPU per record ({}): node {:.2f} us over the drain ({:.2f} us from its start), broker "
      "{}\n",
      sim::to_string(format), node_drain_us, node_whole_us,
      broker_pid > 0 ? fmt::format("{:.2f} us over the drain", broker_drain_us)
                     : std::string{"not measured (--broker-pid)"});
  fmt::print("  the node's threads over the drain, us per record: {}\n",
             threads_per_record(cpu_at_first.threads, cpu_at_end.threads, per_record));
  std::string per_node;
  for (const auto& f : figures)
    per_node += fmt::format(
        R"({}{{"node":"{}","partitions":{},"records_consumed":{:.0f},"records_applied":{:.0f},"transactions_committed":{:.0f},"transactions_aborted":{:.0f},"restore_records":{:.0f}}})",
        per_node.empty() ? "" : ",", f.id, f.partitions, f.consumed, f.applied, f.transactions,
        f.aborted, f.restore_records);
  fmt::print(
      R"({{"bench":"ingest","kafka":"real","nodes":{},"guarantee":"{}","format":"{}","records":{},"assets":{},"partitions":{},"publish_changes":{},"change_events":"{}","history":{},"plain_records_per_s":{:.0f},"node_records_per_s":{:.0f},"ratio":{:.3f},"seconds":{:.3f},"node_cpu_us_per_record":{:.2f},"node_cpu_us_per_record_from_start":{:.2f},"broker_cpu_us_per_record":{},"partition_moves":{},"per_node":[{}]}})"
      "\n",
      nodes, guarantee, sim::to_string(format), total, assets, partitions, publish,
      nodes_merge_changes ? "item" : "each", history, plain, node_rate, node_rate / plain, secs,
      node_drain_us, node_whole_us,
      broker_pid > 0 ? fmt::format("{:.2f}", broker_drain_us) : std::string{"null"}, moves,
      per_node);
  return 0;
}

struct load_result {
  double qps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
};

/// A channel with a connection of its own (client thread `t`).
/// What the query benchmark's clients connect with: plaintext, or (query --secure) TLS
/// with a bearer token on every call.
std::shared_ptr<grpc::ChannelCredentials>& query_credentials() {
  static std::shared_ptr<grpc::ChannelCredentials> c = grpc::InsecureChannelCredentials();
  return c;
}

std::shared_ptr<grpc::Channel> own_channel(const std::string& address, int t) {
  grpc::ChannelArguments args;
  args.SetInt("fleettwin.channel", t);
  return grpc::CreateCustomChannel(address, query_credentials(), args);
}

/// query --secure: a CA and a node certificate (tools/scripts/make-certs.sh), an HS256
/// secret and a viewer's token; the node serves TLS and checks the token on every call.
void secure_query_node(node::node_config& cfg, const std::string& dir) {
  const std::string script = std::string{FLEETTWIN_SOURCE_DIR} + "/tools/scripts/make-certs.sh";
  for (const char* what : {" ca", " node bench"})
    if (std::system((script + " " + dir + "/certs" + what + " >/dev/null 2>&1").c_str()) != 0)
      throw std::runtime_error("make-certs.sh" + std::string{what} + " failed");
  const std::string secret = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz";
  std::ofstream{dir + "/hs256.key"} << secret;
  cfg.tls_cert = dir + "/certs/bench.crt";
  cfg.tls_key = dir + "/certs/bench.key";
  cfg.tls_client_auth = "none";
  cfg.auth.hs256_secret_file = dir + "/hs256.key";
  cfg.auth.audience = "fleettwin";
  const auto exp = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count() +
                   3600;
  const std::string input =
      security::base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." +
      security::base64url_encode(R"({"sub":"bench","roles":["viewer"],"aud":"fleettwin","exp":)" +
                                 std::to_string(exp) + "}");
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  const auto token = input + "." + security::base64url_encode({reinterpret_cast<char*>(mac), len});
  security::client_tls tls;
  tls.ca_file = dir + "/certs/ca.crt";
  std::string error;
  auto channel = security::channel_credentials(tls, error);
  if (!channel)
    throw std::runtime_error(error);
  query_credentials() =
      grpc::CompositeChannelCredentials(channel, grpc::AccessTokenCredentials(token));
}

/// Calls per second over `seconds`, and latency percentiles, of the calls
/// every thread timed (milliseconds).
load_result summarize(const std::vector<std::vector<double>>& latencies, double seconds) {
  std::vector<double> all;
  for (const auto& l : latencies)
    all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  load_result r;
  r.qps = static_cast<double>(all.size()) / seconds;
  if (!all.empty()) {
    r.p50_ms = all[all.size() / 2];
    r.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  return r;
}

/// Closed loop (target_qps = 0) or paced open loop over `threads` channels.
template <class Call>
load_result drive(const std::string& address, int threads, double seconds, double target_qps,
                  Call call) {
  std::vector<std::vector<double>> latencies(static_cast<size_t>(threads));
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      auto ch = own_channel(address, t);
      auto twins = fleettwin::v1::TwinService::NewStub(ch);
      auto nodes = fleettwin::v1::NodeService::NewStub(ch);
      while (!go)
        std::this_thread::yield();
      auto start = clock_type::now();
      auto end = start + std::chrono::duration<double>(seconds);
      auto interval = target_qps > 0 ? std::chrono::duration<double>(threads / target_qps)
                                     : std::chrono::duration<double>(0);
      auto next = start;
      uint64_t i = 0;
      while (clock_type::now() < end) {
        if (target_qps > 0) {
          next += std::chrono::duration_cast<clock_type::duration>(interval);
          std::this_thread::sleep_until(next);
        }
        auto t0 = clock_type::now();
        if (!call(*twins, *nodes, i++))
          throw std::runtime_error("call failed");
        latencies[static_cast<size_t>(t)].push_back(seconds_since(t0) * 1e3);
      }
    });
  }
  go = true;
  for (auto& w : workers)
    w.join();
  return summarize(latencies, seconds);
}

/// Closed loop over `threads` channels reading each name once.
load_result once_each(const std::string& address, int threads,
                      const std::vector<std::string>& names) {
  std::atomic<size_t> next{0};
  std::vector<std::vector<double>> latencies(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  auto start = clock_type::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      auto ch = own_channel(address, t);
      auto stub = fleettwin::v1::TwinService::NewStub(ch);
      for (size_t i = next++; i < names.size(); i = next++) {
        auto t0 = clock_type::now();
        grpc::ClientContext ctx;
        fleettwin::v1::GetTwinRequest req;
        req.set_name(names[(i * 7919) % names.size()]);
        fleettwin::v1::Twin resp;
        if (!stub->GetTwin(&ctx, req, &resp).ok())
          throw std::runtime_error("GetTwin failed");
        latencies[static_cast<size_t>(t)].push_back(seconds_since(t0) * 1e3);
      }
    });
  }
  for (auto& w : workers)
    w.join();
  return summarize(latencies, seconds_since(start));
}

/// One BulkUpdateDesired call over every twin (`mode` set to `value`): seconds, and the
/// twins it changed.
std::pair<double, int64_t> bulk_once(const std::string& address, uint32_t twins,
                                     const std::string& value, bool dry_run = false) {
  auto stub = fleettwin::v1::TwinService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  fleettwin::v1::BulkUpdateDesiredRequest req;
  req.set_filter("version > 0");
  req.set_max_twins(twins + 1000);
  req.set_dry_run(dry_run);
  (*req.mutable_desired())["mode"].set_string_value(value);
  grpc::ClientContext ctx;
  auto started = clock_type::now();
  auto reader = stub->BulkUpdateDesired(&ctx, req);
  fleettwin::v1::BulkUpdateDesiredProgress m, last;
  while (reader->Read(&m))
    last = m;
  auto status = reader->Finish();
  auto secs = std::chrono::duration<double>(clock_type::now() - started).count();
  if (!status.ok())
    throw std::runtime_error("BulkUpdateDesired: " + status.error_message());
  if (last.failed() + last.not_found() + last.conflicts() > 0)
    throw std::runtime_error(fmt::format("BulkUpdateDesired: {} failed, {} not found, {} conflicts",
                                         last.failed(), last.not_found(), last.conflicts()));
  return {secs, last.changed()};
}

/// BulkUpdateDesired over every twin, with desired updates queued together applied as one
/// work item (the default) and, as the baseline, one item (one transaction) per update.
int run_bulk(uint32_t twins, int partitions, const std::string& real_kafka,
             const std::string& guarantee) {
  struct result {
    size_t max_item_writes;
    std::vector<double> seconds;
  };
  std::vector<result> results;
  for (size_t writes : {size_t{1'000}, size_t{1}}) {
    bench_kafka run_kafka{real_kafka, partitions};
    produce(run_kafka.bootstrap, run_kafka.topics.telemetry, twins, twins);
    auto dir = temp_dir("bulk");
    auto cfg = run_kafka.node_config(dir, partitions, guarantee);
    cfg.max_item_writes = writes;
    std::string error;
    auto n = node::node::start(cfg, error);
    if (!n)
      throw std::runtime_error(error);
    auto deadline = clock_type::now() + std::chrono::minutes{5};
    while (records_committed(*n) < twins && clock_type::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    auto address = fmt::format("127.0.0.1:{}", n->grpc_port());
    // The selection reads what is stored: wait until a dry run selects every twin.
    while (clock_type::now() < deadline && bulk_once(address, twins, "x", true).second < twins)
      std::this_thread::sleep_for(std::chrono::milliseconds{50});
    result r{writes, {}};
    const int calls = writes == 1 ? 1 : 3;  // the baseline is slow
    for (int i = 0; i < calls; ++i) {
      auto [secs, changed] = bulk_once(address, twins, fmt::format("m{}", i));
      if (changed != twins)
        throw std::runtime_error(fmt::format("changed {} of {} twins", changed, twins));
      r.seconds.push_back(secs);
    }
    n->shutdown();
    n.reset();
    std::filesystem::remove_all(dir);
    results.push_back(std::move(r));
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double now = median(results[0].seconds), base = median(results[1].seconds);
  fmt::print("BulkUpdateDesired of {} twins ({}), {} partitions:\n", twins,
             real_kafka.empty() ? "embedded Kafka" : "real Kafka, " + guarantee, partitions);
  fmt::print(
      "  updates queued together as one item: median {:.2f} s of {} calls ({:.0f} twins/s)\n", now,
      results[0].seconds.size(), twins / now);
  fmt::print(
      "  one item (one transaction) per update: {:.2f} s ({:.0f} twins/s) = {:.1f}x slower\n", base,
      twins / base, base / now);
  fmt::print(
      R"({{"bench":"bulk","twins":{},"partitions":{},"kafka":"{}","seconds":{:.3f},"baseline_seconds":{:.3f},"speedup":{:.2f}}})"
      "\n",
      twins, partitions, real_kafka.empty() ? "embedded" : guarantee, now, base, base / now);
  return 0;
}

int run_query(uint32_t twins, double seconds, int threads, bool secure) {
  kafka::topic_names topics;
  std::string error;
  auto k = kafka::embedded_kafka::start(1, 8, topics, error);
  if (!k)
    throw std::runtime_error(error);
  produce(k->bootstrap(), topics.telemetry, twins, twins);
  auto dir = temp_dir("query");
  auto cfg = node_config_for(k->bootstrap(), dir);
  if (secure)
    secure_query_node(cfg, dir);
  auto n = node::node::start(cfg, error);
  if (!n)
    throw std::runtime_error(error);
  auto deadline = clock_type::now() + std::chrono::minutes{5};
  while (records_applied(*n) < twins && clock_type::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  sim::config scfg;
  scfg.assets = twins;
  sim::generator gen{scfg};
  std::vector<std::string> names;
  for (uint32_t i = 0; i < twins; ++i)
    names.push_back("twins/" + gen.asset_id(i));
  auto address = fmt::format("127.0.0.1:{}", n->grpc_port());
  auto ping = [](auto&, fleettwin::v1::NodeService::Stub& nodes, uint64_t) {
    grpc::ClientContext ctx;
    fleettwin::v1::PingResponse resp;
    return nodes.Ping(&ctx, {}, &resp).ok();
  };
  auto get = [&names](fleettwin::v1::TwinService::Stub& t, auto&, uint64_t i) {
    grpc::ClientContext ctx;
    fleettwin::v1::GetTwinRequest req;
    req.set_name(names[(i * 7919) % names.size()]);
    fleettwin::v1::Twin resp;
    return t.GetTwin(&ctx, req, &resp).ok();
  };
  {
    // Warm up: every twin read once (resident, its snapshot cached).
    auto ch = grpc::CreateChannel(address, query_credentials());
    auto stub = fleettwin::v1::TwinService::NewStub(ch);
    for (const auto& name : names) {
      grpc::ClientContext ctx;
      fleettwin::v1::GetTwinRequest req;
      req.set_name(name);
      fleettwin::v1::Twin resp;
      if (!stub->GetTwin(&ctx, req, &resp).ok())
        throw std::runtime_error("warm-up GetTwin failed");
    }
  }
  auto p = drive(address, threads, seconds, 0, ping);
  auto g = drive(address, threads, seconds, 0, get);
  auto half = drive(address, threads, seconds, g.qps / 2, get);
  // Every twin changes once more (its cached snapshot withdrawn), then each
  // is read once: the first read after a change asks the twin's actor.
  produce(k->bootstrap(), topics.telemetry, 2 * uint64_t{twins}, twins);
  deadline = clock_type::now() + std::chrono::minutes{5};
  while (records_applied(*n) < 2 * uint64_t{twins} && clock_type::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  auto cold = once_each(address, threads, names);
  n->shutdown();
  n.reset();
  std::filesystem::remove_all(dir);
  fmt::print("Ping (no-op) saturation: {:.0f} QPS (p50 {:.3f} ms, p99 {:.3f} ms)\n", p.qps,
             p.p50_ms, p.p99_ms);
  fmt::print(
      "GetTwin saturation:     {:.0f} QPS = {:.0f}% of no-op (p50 {:.3f} ms, p99 {:.3f} ms)\n",
      g.qps, 100 * g.qps / p.qps, g.p50_ms, g.p99_ms);
  fmt::print(
      "GetTwin at half saturation ({:.0f} QPS offered, {:.0f} done): p50 {:.3f} ms, p99 "
      "{:.3f} ms\n",
      g.qps / 2, half.qps, half.p50_ms, half.p99_ms);
  fmt::print(
      "GetTwin, first read after a change (each twin once, its actor answers): {:.0f} QPS = "
      "{:.0f}% of no-op (p50 {:.3f} ms, p99 {:.3f} ms)\n",
      cold.qps, 100 * cold.qps / p.qps, cold.p50_ms, cold.p99_ms);
  fmt::print(
      R"({{"bench":"query","secure":{},"twins":{},"threads":{},"ping_qps":{:.0f},"gettwin_qps":{:.0f},"ratio":{:.3f},"half_p50_ms":{:.3f},"half_p99_ms":{:.3f},"changed_qps":{:.0f},"changed_ratio":{:.3f},"changed_p99_ms":{:.3f}}})"
      "\n",
      secure, twins, threads, p.qps, g.qps, g.qps / p.qps, half.p50_ms, half.p99_ms, cold.qps,
      cold.qps / p.qps, cold.p99_ms);
  return 0;
}

int run_memory(uint32_t twins, int partitions, uint32_t max_active) {
  auto dir = temp_dir("memory");
  storage::store_options so;
  so.path = dir + "/rocksdb";
  so.block_cache_bytes = 64 << 20;
  std::string error;
  std::shared_ptr<storage::rocksdb_store> store{storage::rocksdb_store::open(so, error)};
  if (!store)
    throw std::runtime_error(error);
  caf::actor_system_config acfg;
  acfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{acfg};
  auto assets = std::make_shared<runtime::asset_config>();
  std::atomic<uint64_t> committed{0};
  std::vector<std::atomic<uint64_t>> committed_by(static_cast<size_t>(partitions));
  std::vector<runtime::partition_actor> parts;
  auto configure = [&](int p) {
    runtime::partition_config pc;
    pc.partition = p;
    pc.assets = assets;
    pc.store = store;
    pc.make_decoder = [] { return kafka::make_telemetry_decoder(1 << 20); };
    // Nothing passivates while the twins are created and measured resident, unless
    // at most max_active may be (the least recently used beyond it passivate).
    pc.passivate_after = std::chrono::hours{1};
    pc.tick_interval = max_active > 0 ? std::chrono::milliseconds{100} : std::chrono::hours{1};
    if (max_active > 0)
      pc.max_active_twins = std::max<size_t>(1, max_active / static_cast<uint32_t>(partitions));
    return pc;
  };
  for (int p = 0; p < partitions; ++p) {
    auto pc = configure(p);
    pc.on_committed = [&committed, &committed_by](int32_t p, runtime::input, int64_t next, size_t,
                                                  std::optional<int64_t>) {
      // Offsets are dense here: the next offset counts this partition's records.
      committed_by[static_cast<size_t>(p)] = static_cast<uint64_t>(next);
      uint64_t sum = 0;
      for (auto& c : committed_by)
        sum += c.load();
      committed = sum;
    };
    parts.push_back(sys.spawn(runtime::partition, std::move(pc)));
  }
  auto active = [&] {
    uint64_t total = 0;
    for (auto& a : parts) {
      std::promise<uint64_t> pr;
      caf::anon_send(a, runtime::status_atom::value,
                     runtime::partition_info_completion{
                         [&pr](runtime::partition_info i) { pr.set_value(i.active_twins); },
                         runtime::partition_info{}});
      total += pr.get_future().get();
    }
    return total;
  };
  release_free_memory();
  auto base = rss_bytes();
  // One record per twin, fed in batches of 10k as the consumer would.
  sim::config scfg;
  scfg.assets = twins;
  scfg.count = twins;
  sim::generator gen{scfg};
  sim::record r;
  uint64_t sent = 0;
  std::vector<int64_t> next_offsets(static_cast<size_t>(partitions), 0);
  auto start = clock_type::now();
  while (sent < twins) {
    std::vector<std::shared_ptr<runtime::raw_batch>> batches(static_cast<size_t>(partitions));
    auto keep = std::make_shared<std::vector<std::string>>();
    keep->reserve(20'000);
    for (int i = 0; i < 10'000 && gen.next(r); ++i, ++sent) {
      auto p = static_cast<size_t>(r.asset_index % static_cast<uint32_t>(partitions));
      auto& b = batches[p];
      if (!b) {
        b = std::make_shared<runtime::raw_batch>();
        b->partition = static_cast<int32_t>(p);
        b->owner = keep;
      }
      keep->emplace_back(r.key);
      std::string_view key = keep->back();
      keep->emplace_back(r.value);
      auto offset = next_offsets[p]++;
      b->records.push_back(runtime::raw_record{key, keep->back(), "", offset, 0});
      b->next_offset = offset + 1;
    }
    for (auto& b : batches)
      if (b)
        caf::anon_send(parts[static_cast<size_t>(b->partition)], runtime::batch_atom::value,
                       runtime::raw_batch_ptr{b});
    while (committed + 50'000 < sent)
      std::this_thread::sleep_for(std::chrono::milliseconds{1});
  }
  while (committed < twins)
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  double ingest_secs = seconds_since(start);
  // Wait until the last replies are in and every twin is resident.
  auto resident = active();
  release_free_memory();
  auto with_active = rss_bytes();
  auto stats_active = store->stats();
  // Stopping a partition passivates its twins (their state is in RocksDB).
  auto stop_all = [&] {
    for (auto& a : parts) {
      std::promise<void> stopped;
      caf::anon_send(a, runtime::stop_atom::value,
                     std::function<void()>{[&stopped] { stopped.set_value(); }});
      stopped.get_future().wait();
    }
    sys.await_all_actors_done();
  };
  // Passivate every twin: what stays resident is the store and the runtime.
  stop_all();
  release_free_memory();
  auto passivated = rss_bytes();
  auto stats_passive = store->stats();
  // What one count of fleettwin_alerts_open costs (services/node/analytics.cpp):
  // every stored twin read and decoded.
  std::vector<int32_t> all_partitions;
  for (int p = 0; p < partitions; ++p)
    all_partitions.push_back(p);
  auto scan_start = clock_type::now();
  uint64_t scanned = 0, open_alerts = 0;
  store->list_twins(
      all_partitions, {},
      [&](const core::twin& tw) {
        ++scanned;
        for (const auto& [name, a] : tw.analysis)
          open_alerts += a.alert.active ? 1 : 0;
        return false;
      },
      0, 0, error);
  const double scan_secs = seconds_since(scan_start);

  // A restart: the store closed and opened again, the partitions spawned again, and
  // the first twin served (read from RocksDB, its actor spawned), then 10,000 more
  // twins read once each, spread over the id space.
  auto close_start = clock_type::now();
  store.reset();  // a clean stop: the memtables are written out
  const double close_secs = seconds_since(close_start);
  auto restart_start = clock_type::now();
  store = storage::rocksdb_store::open(so, error);
  if (!store)
    throw std::runtime_error(error);
  const double open_secs = seconds_since(restart_start);
  parts.clear();
  for (int p = 0; p < partitions; ++p)
    parts.push_back(sys.spawn(runtime::partition, configure(p)));
  auto read = [&](uint32_t index) {
    std::promise<runtime::twin_reply> pr;
    const auto id = gen.asset_id(index);
    // As the twins were fed: by asset index.
    caf::anon_send(parts[index % static_cast<uint32_t>(partitions)], runtime::get_atom::value, id,
                   runtime::twin_completion{
                       [&pr](runtime::twin_reply r) { pr.set_value(std::move(r)); },
                       runtime::twin_reply{runtime::query_error::unavailable, "dropped", {}}});
    auto r = pr.get_future().get();
    if (r.error != runtime::query_error::none)
      throw std::runtime_error("reading twin " + id + " after the restart: " + r.message);
  };
  read(twins / 2);
  const double first_serve_secs = seconds_since(restart_start);
  const uint32_t cold_reads = std::min<uint32_t>(twins, 10'000);
  auto cold_start = clock_type::now();
  for (uint32_t i = 0; i < cold_reads; ++i)
    read(static_cast<uint32_t>((uint64_t(i) * 7919 + 13) % twins));
  const double cold_secs = seconds_since(cold_start);
  stop_all();
  parts.clear();

  // Per resident actor (all twins, or at most --max-active of them).
  double per_active =
      double(with_active - base) / static_cast<double>(std::max<uint64_t>(resident, 1));
  double per_passive = passivated > base ? double(passivated - base) / twins : 0.0;
  fmt::print("{} twins created in {:.1f} s ({:.0f} records/s without Kafka)\n", twins, ingest_secs,
             twins / ingest_secs);
  fmt::print(
      "resident memory per active twin:     {:.0f} bytes ({} actors resident; RocksDB "
      "memtables {} MiB, block cache {} MiB)\n",
      per_active, resident, stats_active.memtable_bytes >> 20,
      stats_active.block_cache_bytes >> 20);
  fmt::print(
      "resident memory per passivated twin: {:.0f} bytes (RocksDB memtables {} MiB, block "
      "cache {} MiB included)\n",
      per_passive, stats_passive.memtable_bytes >> 20, stats_passive.block_cache_bytes >> 20);
  fmt::print(
      "counting open alerts over the stored twins (one fleettwin_alerts_open count): {} twins "
      "in {:.2f} s ({} open)\n",
      scanned, scan_secs, open_alerts);
  fmt::print(
      "a restart: store closed in {:.2f} s, opened in {:.2f} s, first twin served {:.0f} ms "
      "after the open began; {} cold reads (one twin each, one at a time) in {:.2f} s ({:.0f} "
      "reads/s)\n",
      close_secs, open_secs, first_serve_secs * 1000, cold_reads, cold_secs,
      cold_reads / cold_secs);
  fmt::print(
      R"({{"bench":"memory","twins":{},"max_active":{},"twins_per_second":{:.0f},"bytes_per_active_twin":{:.0f},"bytes_per_passivated_twin":{:.0f},"first_serve_ms":{:.0f}}})"
      "\n",
      twins, max_active, twins / ingest_secs, per_active, per_passive, first_serve_secs * 1000);
  store.reset();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"fleettwin-bench: FleetTwin benchmarks against their baselines"};
  app.require_subcommand(1);
  uint64_t records = 400'000;
  uint32_t assets = 10'000;
  int partitions = 32;
  bool publish = true;
  auto* ingest = app.add_subcommand("ingest", "node ingest vs a plain librdkafka consumer");
  ingest->add_option("--records", records, "records to ingest")->capture_default_str();
  ingest->add_option("--assets", assets, "distinct assets")->capture_default_str();
  ingest->add_option("--partitions", partitions, "topic partitions")->capture_default_str();
  int history = 256;
  ingest->add_option("--history", history, "history samples kept per property")
      ->capture_default_str();
  ingest->add_flag("--publish-changes,!--no-publish-changes", publish,
                   "publish change events (node default)");
  auto change_events = [](const std::string& v) { nodes_merge_changes = v == "item"; };
  ingest
      ->add_option_function<std::string>("--change-events", change_events,
                                         "the nodes' --change-events (item, the default, or each)")
      ->check(CLI::IsMember({"item", "each"}));
  std::string kafka_bootstrap;
  std::string aggregates_file;
  ingest
      ->add_option("--aggregates", aggregates_file,
                   "also drain the backlog with these aggregate kinds (e.g. "
                   "deploy/aggregates.toml) and compare")
      ->check(CLI::ExistingFile);
  int analytics_pairs = 0;
  ingest
      ->add_option("--analytics-pairs", analytics_pairs,
                   "instead: drains without and with analytics in this many pairs, alternating "
                   "which goes first")
      ->check(CLI::Range(0, 99));
  std::string models_file;
  ingest
      ->add_option("--models", models_file,
                   "with --analytics-pairs: the node with analytics loads these asset models "
                   "(e.g. deploy/models.toml: operating states, thresholds)")
      ->check(CLI::ExistingFile);
  int pairs = 5;
  ingest
      ->add_option("--pairs", pairs,
                   "with --aggregates: drains without and with them, alternating which goes first")
      ->check(CLI::Range(1, 99))
      ->capture_default_str();
  ingest->add_option("--kafka", kafka_bootstrap,
                     "a real Kafka's bootstrap (default: librdkafka's mock cluster in-process)");
  int nodes = 1;
  ingest->add_option("--nodes", nodes, "nodes in-process (with --kafka)")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  std::string guarantee = "exactly-once";
  ingest->add_option("--guarantee", guarantee, "delivery guarantee of the nodes (with --kafka)")
      ->check(CLI::IsMember({"exactly-once", "at-least-once"}))
      ->capture_default_str();
  std::string ingest_format = "protobuf";
  ingest->add_option("--format", ingest_format, "the backlog's payloads (with --kafka)")
      ->check(CLI::IsMember({"protobuf", "json"}))
      ->capture_default_str();
  pid_t broker_pid = 0;
  ingest->add_option("--broker-pid", broker_pid,
                     "with --kafka: also the broker's CPU per record (its process id; "
                     "tools/kafka/kafka.sh writes it to DIR/pids)");
  uint32_t twins = 10'000;
  double seconds = 5;
  int threads = 4;
  auto* query = app.add_subcommand("query", "GetTwin vs the no-op Ping on the same server");
  query->add_option("--twins", twins, "twins to query")->capture_default_str();
  query->add_option("--seconds", seconds, "seconds per measurement")->capture_default_str();
  query->add_option("--threads", threads, "client threads (one connection each)")
      ->capture_default_str();
  bool secure = false;
  query->add_flag("--secure", secure,
                  "TLS (server certificate) and an HS256 bearer token checked on every call");
  uint32_t bulk_twins = 10'000;
  auto* bulk = app.add_subcommand(
      "bulk", "BulkUpdateDesired over every twin vs one transaction per desired update");
  bulk->add_option("--twins", bulk_twins, "twins to change")->capture_default_str();
  bulk->add_option("--partitions", partitions, "telemetry partitions")->capture_default_str();
  bulk->add_option("--kafka", kafka_bootstrap,
                   "a real Kafka's bootstrap (default: the embedded one)");
  bulk->add_option("--guarantee", guarantee, "delivery guarantee of the node (with --kafka)")
      ->capture_default_str();
  uint32_t mem_twins = 1'000'000;
  auto* memory = app.add_subcommand("memory", "resident bytes per active and passivated twin");
  memory->add_option("--twins", mem_twins, "twins to create")->capture_default_str();
  uint32_t mem_max_active = 0;
  memory
      ->add_option("--max-active", mem_max_active,
                   "twins resident at most while creating (least recently used passivate "
                   "beyond it); 0: all stay resident")
      ->capture_default_str();
  memory->add_option("--partitions", partitions, "partitions")->capture_default_str();
  auto* aggs = app.add_subcommand(
      "aggregates", "the simulator's topology at a fixed rate: lag, latency by level, exactness");
  uint32_t agg_assets = 100'000;
  double agg_rate = 100'000;
  double agg_seconds = 20;
  std::string agg_file = "deploy/aggregates.toml";
  aggs->add_option("--assets", agg_assets, "simulated assets")->capture_default_str();
  aggs->add_option("--rate", agg_rate, "records per second offered")->capture_default_str();
  aggs->add_option("--seconds", agg_seconds, "seconds of load")->capture_default_str();
  std::vector<double> agg_rates;
  aggs->add_option("--rates", agg_rates,
                   "instead of --rate: one run per rate (comma-separated, rising) until one is "
                   "not sustained, and the highest rate sustained")
      ->delimiter(',');
  double max_drain_s = 1.0;
  aggs->add_option("--max-drain-seconds", max_drain_s,
                   "with --rates: a rate is sustained if every record is committed within this "
                   "long after the load stops")
      ->capture_default_str();
  double hot_rate = 0;
  aggs->add_option("--hot-rate", hot_rate,
                   "also produce one hot twin's records at this rate beside the fleet (JSON)")
      ->capture_default_str();
  aggs->add_option("--aggregates", agg_file,
                   "aggregate kinds; \"none\": the simulator's fleet without topology or "
                   "aggregates (plain telemetry)")
      ->capture_default_str();
  aggs->add_option("--partitions", partitions, "topic partitions")->capture_default_str();
  aggs->add_option("--kafka", kafka_bootstrap,
                   "a real Kafka's bootstrap (default: librdkafka's mock cluster in-process)");
  aggs->add_option("--guarantee", guarantee, "delivery guarantee of the node (with --kafka)")
      ->check(CLI::IsMember({"exactly-once", "at-least-once"}))
      ->capture_default_str();
  int64_t commit_interval_ms = -1;
  aggs->add_option("--commit-interval-ms", commit_interval_ms,
                   "the node's --commit-interval-ms (default: the node's default)");
  pipeline_options pipeline;
  aggs->add_option("--max-items-in-flight", pipeline.max_items_in_flight,
                   "the node's --max-items-in-flight (default: the node's default)");
  aggs->add_option("--item-linger-ms", pipeline.item_linger_ms,
                   "the node's --item-linger-ms (default: the node's default)");
  aggs->add_option_function<std::string>("--change-events", change_events,
                                         "the node's --change-events (item, the default, or each)")
      ->check(CLI::IsMember({"item", "each"}));
  aggs->add_option("--kafka-option", pipeline.kafka_options,
                   "extra librdkafka setting of the node's clients, key=value (repeatable)");
  bench::flood_options flood_opts;
  flood_opts.node_binary = std::string{FLEETTWIN_SOURCE_DIR} + "/build/fleettwin-node";
  auto* flood = app.add_subcommand(
      "flood",
      "a node (its own process, on a real Kafka) under bad records and requests far "
      "beyond what it handles: its resident memory before, during and after");
  flood->add_option("--kafka", flood_opts.kafka, "a real Kafka's bootstrap")->required();
  flood->add_option("--node", flood_opts.node_binary, "the fleettwin-node binary")
      ->capture_default_str();
  flood->add_option("--seconds", flood_opts.seconds, "seconds of flood")->capture_default_str();
  flood->add_option("--record-threads", flood_opts.record_threads, "producer threads")
      ->capture_default_str();
  flood
      ->add_option("--request-threads", flood_opts.request_threads,
                   "gRPC client threads (a connection each)")
      ->capture_default_str();
  flood->add_option("--watchers", flood_opts.watchers, "watch streams that never read")
      ->capture_default_str();
  flood->add_option("--twins", flood_opts.twins, "twins seeded before the flood")
      ->capture_default_str();
  bench::failover_probe_options probe_opts;
  auto* probe = app.add_subcommand(
      "failover-probe",
      "one client of a node that took over after a kill (tools/bench/failover.sh): after "
      "\"go T0\" on stdin, the seconds until it serves every partition and sampled twins answer");
  probe->add_option("--server", probe_opts.server, "the node's gRPC endpoint")->required();
  probe->add_option("--node-id", probe_opts.node_id, "the node's id")->required();
  probe->add_option("--partitions", probe_opts.partitions, "partitions of the topic")->required();
  probe
      ->add_option("--victim-partitions", probe_opts.victim_partitions,
                   "the killed node's partitions")
      ->required()
      ->delimiter(',');
  probe->add_option("--sample", probe_opts.sample_file, "\"asset_id version\" lines")->required();
  probe->add_option("--poll-seconds", probe_opts.poll_seconds, "the polling period")
      ->capture_default_str();
  probe->add_option("--timeout-seconds", probe_opts.timeout_seconds, "give up after")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const char* level = std::getenv("FLEETTWIN_BENCH_LOG_LEVEL");
  spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::warn);
  try {
    if (*ingest && !kafka_bootstrap.empty())
      return run_ingest_cluster(kafka_bootstrap, nodes, guarantee, records, assets, partitions,
                                publish, history, *sim::parse_payload_format(ingest_format),
                                broker_pid);
    if (*ingest) {
      if (ingest->count("--nodes") || ingest->count("--guarantee") || ingest->count("--format") ||
          ingest->count("--broker-pid"))
        throw std::runtime_error("--nodes, --guarantee, --format and --broker-pid need --kafka");
      return run_ingest(records, assets, partitions, publish, history, aggregates_file, pairs,
                        analytics_pairs, models_file);
    }
    if (*query)
      return run_query(twins, seconds, threads, secure);
    if (*bulk)
      return run_bulk(bulk_twins, partitions, kafka_bootstrap, guarantee);
    if (*flood)
      return bench::run_flood(flood_opts);
    if (*probe)
      return bench::run_failover_probe(probe_opts);
    if (*aggs) {
      auto run_at = [&](double rate) {
        return run_aggregates(agg_assets, rate, agg_seconds, partitions, agg_file, kafka_bootstrap,
                              guarantee, commit_interval_ms, pipeline, hot_rate);
      };
      if (!agg_rates.empty()) {
        if (aggs->count("--rate"))
          throw std::runtime_error("--rate and --rates exclude each other");
        return run_rate_sweep(agg_rates, max_drain_s, run_at);
      }
      return run_at(agg_rate).exact ? 0 : 1;
    }
    return run_memory(mem_twins, partitions, mem_max_active);
  } catch (const std::exception& e) {
    std::cerr << "fleettwin-bench: " << e.what() << "\n";
    return 1;
  }
}

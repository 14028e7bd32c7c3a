#pragma once

// A FleetTwin cluster for tests: a real Kafka broker (kafka_broker), its topics,
// and N fleettwin-node processes with unique node ids, their own data dirs and
// free loopback ports; gRPC stubs per node; a telemetry source that numbers
// every asset's records 1, 2, 3... and counts what Kafka acknowledged; a
// read_committed reader of the twin-changes topic; node logs on failure.

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "fleettwin/v1/service.grpc.pb.h"
#include "kafka_broker.hpp"
#include "services/kafka/kafka_config.hpp"
#include "support/process.hpp"
#include "support/twin_calls.hpp"

namespace fleettwin::test {

using namespace std::chrono_literals;

/// One fleettwin-node of a cluster. Its id, data dir and ports stay the same
/// across restarts, so a restart is the same node coming back.
class cluster_node {
public:
  cluster_node(std::string id, std::string data_dir, std::string log_path,
               std::vector<std::string> args);
  cluster_node(const cluster_node&) = delete;
  cluster_node& operator=(const cluster_node&) = delete;

  /// Starts the process and waits until its gRPC server answers Ping; throws
  /// std::runtime_error when it exits or does not answer in time. Replaces the
  /// node's stubs: do not use them from other threads meanwhile.
  void start(std::chrono::milliseconds timeout = 60s);
  /// SIGKILL: a crash.
  void kill9();
  /// SIGSTOP / SIGCONT: the process freezes (GC pause, VM freeze) and thaws.
  void pause();
  void resume();
  /// Later starts cannot grow a file beyond `bytes` (0: no limit): a full
  /// disk (RLIMIT_FSIZE; the node's writes fail with EFBIG).
  void limit_file_size(uint64_t bytes) {
    max_file_bytes_ = bytes;
  }
  /// SIGTERM and wait: a graceful leave. Returns the exit status (0 = clean).
  int stop(std::chrono::milliseconds timeout = 30s);
  bool running();

  const std::string& id() const {
    return id_;
  }
  const std::string& data_dir() const {
    return data_dir_;
  }
  const std::string& log_path() const {
    return log_;
  }
  std::string grpc_address() const {
    return "127.0.0.1:" + std::to_string(grpc_port_);
  }
  int metrics_port() const {
    return metrics_port_;
  }
  /// Credentials of the test's gRPC calls to this node (default: plaintext).
  void use_credentials(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    credentials_ = std::move(credentials);
  }
  v1::TwinService::Stub& twins() {
    return *twins_;
  }
  v1::NodeService::Stub& nodes() {
    return *nodes_;
  }
  v1::AdminService::Stub& admin() {
    return *admin_;
  }

private:
  void connect();

  std::string id_;
  std::string data_dir_;
  std::string log_;
  std::vector<std::string> args_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  uint64_t max_file_bytes_ = 0;
  child_process process_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_ = grpc::InsecureChannelCredentials();
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TwinService::Stub> twins_;
  std::unique_ptr<v1::NodeService::Stub> nodes_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

struct cluster_options {
  /// Kafka brokers (1 or 3).
  int brokers = 1;
  /// Partitions of the telemetry topic and of the topics that follow it.
  int partitions = 6;
  std::string topic_prefix = "ft";
  /// Extra flags for every node.
  std::vector<std::string> node_flags;
  /// The broker's group.initial.rebalance.delay.ms (Kafka's default is 3 s;
  /// test brokers form groups at once).
  int group_delay_ms = 0;
};

/// Who serves what, as the nodes themselves report it.
struct serving_view {
  /// partition -> id of the node that serves it (ACTIVE in its own live record).
  std::map<int32_t, std::string> owner;
  /// node id -> partitions it serves.
  std::map<std::string, std::vector<int32_t>> partitions_of;
};

/// A broker with the cluster's topics and the nodes added to it. The
/// destructor kills every node that still runs and removes the temp dir
/// (kept when FLEETTWIN_KEEP_TEST_DIR is set).
class cluster {
public:
  explicit cluster(cluster_options opts = {});
  ~cluster();
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  kafka_broker& broker() {
    return *broker_;
  }
  const std::string& bootstrap() const {
    return broker_->bootstrap();
  }
  const kafka::topic_names& topics() const {
    return topics_;
  }
  int partitions() const {
    return opts_.partitions;
  }
  const std::string& dir() const {
    return dir_;
  }

  /// Adds a node (not started) with an id of its own ("node-<n>" when empty)
  /// and an empty data dir; returns its index.
  size_t add_node(std::string id = {}, std::vector<std::string> extra_flags = {},
                  bool same_id = false);
  /// Adds a node (not started) that uses the node id of node `i` with its own
  /// data dir and ports: a second process configured with the same id.
  size_t add_same_id_as(size_t i);
  /// Adds and starts `n` nodes one after another (each waits for Ping).
  void start_nodes(size_t n);
  cluster_node& node(size_t i) {
    return *nodes_.at(i);
  }
  size_t size() const {
    return nodes_.size();
  }
  /// Indexes of the nodes whose process runs.
  std::vector<size_t> running();

  /// The partition of an asset (Kafka's default partitioner).
  int32_t partition_of(const std::string& asset_id) const;

  /// True when every running node's GetCluster shows no unserved partition and the
  /// running nodes' own records together serve every partition exactly once (ACTIVE,
  /// nothing RESTORING). `why` says what is missing otherwise.
  bool all_partitions_served(std::string* why = nullptr);
  /// Polls all_partitions_served(); false (and `why`) at the deadline.
  bool wait_until_all_partitions_served(std::chrono::milliseconds timeout = 60s,
                                        std::string* why = nullptr);
  /// wait_until_all_partitions_served(), and every running node serves at least one
  /// partition (a node that just joined got its share).
  bool wait_until_balanced(std::chrono::milliseconds timeout = 60s, std::string* why = nullptr);
  /// The serving view of the running nodes (each node's own live record).
  std::optional<serving_view> serving();
  /// The running node that serves `asset_id`'s partition, if one does.
  std::optional<size_t> owner_of(const std::string& asset_id);

  /// Writes the last `lines` lines of every node's log to `out`.
  void dump_logs(std::ostream& out, size_t lines = 300);

private:
  cluster_options opts_;
  std::string dir_;
  std::unique_ptr<kafka_broker> broker_;
  kafka::topic_names topics_;
  std::vector<std::unique_ptr<cluster_node>> nodes_;
};

/// Produces fleettwin.v1.Telemetry records keyed by asset id, numbering every
/// asset's records 1, 2, 3... (idempotent producer, acks=all), and counts per
/// asset the records Kafka acknowledged. Record n of an asset carries
/// speed = n, odometer = 10 * n and source time base + n seconds, so every
/// record is newer than the one before.
class telemetry_source {
public:
  /// `assets` ids "veh-0000".."veh-<assets-1>"; attribute fleet = north (even) / south (odd).
  telemetry_source(const std::string& bootstrap, std::string topic, size_t assets);
  ~telemetry_source();
  telemetry_source(const telemetry_source&) = delete;
  telemetry_source& operator=(const telemetry_source&) = delete;

  static std::string asset_name(size_t i);
  static constexpr int64_t base_time_ms = 1'700'000'000'000;

  const std::vector<std::string>& assets() const {
    return assets_;
  }

  /// Sends `per_asset` more records of every asset (round robin) and waits for
  /// their acknowledgements; false when a delivery failed or timed out.
  bool produce(int per_asset, std::chrono::milliseconds timeout = 60s);
  /// Sends one more record of `asset` (not flushed).
  void send(const std::string& asset);
  /// Waits for every outstanding acknowledgement; false on failure or timeout.
  bool flush(std::chrono::milliseconds timeout = 60s);

  /// Every `every`-th asset (indexes every-1, 2*every-1, ...) sends its
  /// records with sequence 0 ("none"): nothing but exactly-once delivery
  /// keeps a replay of those from being applied twice.
  void leave_unsequenced(size_t every) {
    unsequenced_every_ = every;
  }
  bool unsequenced(const std::string& asset) const {
    return unsequenced_every_ > 0 &&
           index_.at(asset) % unsequenced_every_ == unsequenced_every_ - 1;
  }

  /// Sends records of `subset` (every asset when empty), round robin, at `rate`
  /// records/s from a background thread until stop().
  void start(double rate, std::vector<std::string> subset = {});
  /// Stops the background thread and flushes; false when a delivery failed.
  bool stop(std::chrono::milliseconds timeout = 60s);

  /// Records acknowledged per asset (every asset listed, 0 included).
  std::map<std::string, uint64_t> acked() const;
  /// Records sent (sequence numbers handed out) per asset.
  std::map<std::string, uint64_t> sent() const;
  uint64_t acked_total() const;
  uint64_t failed() const;
  std::string first_error() const;

private:
  void send_locked(const std::string& asset);
  static void on_delivery(void* rk, const void* msg, void* opaque);

  std::string topic_;
  std::vector<std::string> assets_;
  std::map<std::string, size_t> index_;
  void* rk_ = nullptr;
  mutable std::mutex mutex_;  // guards the counters below and sending
  std::vector<uint64_t> next_seq_;
  size_t unsequenced_every_ = 0;
  std::vector<uint64_t> acked_;
  uint64_t failed_ = 0;
  std::string first_error_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

/// One record of the twin-changes topic.
struct change_record {
  std::string asset_id;
  uint64_t version = 0;
  /// The first version the event covers (a node merges a work item's changes
  /// of a twin into one event); version for a single change.
  uint64_t first_version = 0;
  uint64_t sequence = 0;
  int type = 0;  // fleettwin.v1.ChangeType
  std::string ce_id;
  std::string source;  // ce_source: the node that committed it
  std::string time;    // ce_time
  int32_t partition = 0;
  int64_t offset = 0;
};

/// Reads `topic` from the beginning of every partition with a read_committed
/// consumer until at least `expected` records were read (for twin changes: the
/// changes their events cover) and every partition is at its end, or the
/// deadline (then it returns what it read).
std::vector<change_record> read_changes(const std::string& bootstrap, const std::string& topic,
                                        size_t expected, std::chrono::milliseconds timeout,
                                        bool committed_only = true);

/// For a failure message: where the records of `asset_id` that no committed
/// change event covers are (telemetry offsets), and whether aborted
/// transactions carried change events for them.
std::string explain_missing(const cluster& c, const std::string& asset_id, uint64_t produced);

/// gRPC helpers (get_twin: support/twin_calls.hpp).
/// Every twin ListTwins returns through `stub`, page by page; stops at the first error.
grpc::Status list_all(v1::TwinService::Stub& stub, const std::string& filter, int page_size,
                      std::vector<v1::Twin>& out, int* pages = nullptr);
grpc::Status get_cluster(cluster_node& n, v1::ClusterStatus& out);
grpc::Status get_status(cluster_node& n, v1::NodeStatus& out);

/// A copy of the twin without what depends on when it is read (connectivity).
v1::Twin comparable(v1::Twin t);
/// Empty when equal apart from connectivity, else a description of the differences.
std::string twin_diff(const v1::Twin& a, const v1::Twin& b);

/// Waits until the twins read through `via` (ListTwins, i.e. committed state)
/// have applied exactly `expected` records each (and no twin is missing or
/// extra). `why` describes the last mismatch.
bool wait_until_applied(cluster_node& via, const std::map<std::string, uint64_t>& expected,
                        std::chrono::milliseconds timeout, std::string* why = nullptr);

/// What a fault scenario verifies at its end, through `via`: every twin
/// applied exactly the records acknowledged for it (applied count = version =
/// produced, no duplicates, no out-of-order; the last sequence where the
/// asset numbers its records), and the committed twin-changes topic (read
/// with read_committed) holds exactly one change per record, in order.
/// Returns the problems found (empty: none); `summary` gets the figures.
/// `extra`: twins the test fed itself, with the records it produced for each
/// (numbered 1..n), checked the same way.
std::string check_exactly_once(cluster& c, const telemetry_source& src, cluster_node& via,
                               std::chrono::milliseconds timeout, std::string* summary = nullptr,
                               const std::map<std::string, uint64_t>& extra = {});

/// Integer from the environment, or `fallback`.
long env_or(const char* name, long fallback);

/// Base fixture: owns the cluster and dumps every node's log when a test fails.
class cluster_fixture : public ::testing::Test {
protected:
  void TearDown() override;
  std::unique_ptr<cluster> c_;
};

}  // namespace fleettwin::test

#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "services/security/tls.hpp"
#include "services/security/token_verifier.hpp"

namespace fleettwin::node {

/// Every option of fleettwin-node. Flags, FLEETTWIN_* environment variables
/// and an optional TOML/INI config file (--config) set them; flags win.
struct node_config {
  std::string grpc_address = "127.0.0.1:50051";
  std::string metrics_address = "127.0.0.1:9464";
  std::string data_dir = "./data";
  /// Empty: start an embedded Kafka on loopback.
  std::string kafka;
  /// Extra librdkafka settings ("key=value") for every Kafka client.
  std::vector<std::string> kafka_options;
  /// librdkafka settings from a file (merged into kafka_options before them).
  std::string kafka_options_file;
  std::string topic_prefix = "fleettwin";
  std::string group_id = "fleettwin";
  std::string node_id;
  int partitions = 8;
  int history = 256;
  int64_t stale_after_ms = 300'000;
  int64_t passivate_after_ms = 60'000;
  size_t max_active_twins = 1'000'000;
  size_t max_record_bytes = 1 << 20;
  size_t max_poll_records = 10'000;
  /// Work items a partition keeps in flight (applying one while earlier ones
  /// wait for Kafka and the store); 1: one at a time (the default; more is
  /// experimental, see README "Benchmarks").
  size_t max_items_in_flight = 1;
  /// Behind items in flight, small batches gather this long into one item.
  int64_t item_linger_ms = 5;
  /// Desired updates of distinct twins queued together apply as one work item (one
  /// transaction) up to this many; 1: one item per update.
  size_t max_item_writes = 1'000;
  bool sync_commits = false;
  bool publish_changes = true;
  /// One reported change event per twin per work item, merging the item's
  /// changes of the twin (`--change-events item`); false: one per record (`each`).
  bool merge_changes = true;
  /// Also publish the changes with sensitive values left out (while a model
  /// marks a property sensitive).
  bool redacted_changes = true;
  size_t rocksdb_cache_mb = 256;
  int query_threads = 2;
  /// Per-principal limits of the gRPC API (0: none).
  double principal_requests_per_s = 0;
  double principal_burst = 0;
  size_t principal_watch_streams = 64;
  /// Bulk calls (batches, listings, histories ...) in progress on the node (0: no limit).
  size_t max_bulk_calls = 64;
  /// What-if scenarios the node holds, twins one may fork, runs at once.
  size_t scenario_max = 16;
  size_t scenario_max_twins = 100'000;
  size_t scenario_max_running = 1;
  int actor_threads = 0;  // 0: one per core
  std::string log_level = "info";
  /// Where the embedded Kafka's bootstrap address is written.
  std::string bootstrap_file;
  /// TOML file of aggregate kinds and relation rules; empty: no aggregates.
  std::string aggregates_file;
  /// Asset models (TOML); empty: defaults for every property.
  std::string models_file;
  /// Forecasts, anomaly scores and alerts on every numeric sample.
  bool analytics = true;
  /// How often resident aggregates are compared with a full recompute (0: never).
  int64_t aggregate_check_interval_ms = 60'000;
  /// How often the open alerts of the served twins are counted for
  /// fleettwin_alerts_open (a count reads every stored twin; 0: never).
  int64_t alert_count_interval_ms = 60'000;
  /// Aggregates write changed member records at most this often (a
  /// checkpoint; a restore replays the contributions since); 0: with every
  /// commit.
  int64_t member_checkpoint_ms = 10'000;

  // --- cluster (real Kafka) --------------------------------------------------
  /// "exactly-once" or "at-least-once"; empty: exactly-once on a real Kafka,
  /// at-least-once on the embedded one (its transactions are not real).
  std::string guarantee;
  /// Keep the compacted changelog topic (restore on another node); empty
  /// (unset): on with a real Kafka, off with the embedded one.
  std::optional<bool> changelog;
  int64_t commit_interval_ms = 50;
  /// How long the node's consumers let a fetch wait for records (librdkafka's
  /// fetch.wait.max.ms); -1: 5 ms with the embedded Kafka, whose fetches wait out
  /// the whole time when no records are there (a real broker answers when they
  /// arrive), and each consumer's own default (50 ms for telemetry) with a real one.
  int64_t fetch_wait_ms = -1;
  int64_t transaction_timeout_ms = 30'000;
  /// Partitions of other nodes this node keeps warm from the changelog.
  int standby_replicas = 0;
  /// Create missing topics on a real Kafka (partitions from --partitions).
  bool create_topics = true;
  int replication_factor = -1;  // -1: the broker's default
  int64_t session_timeout_ms = 6'000;
  /// Read fencing lease (see cluster::group_lease); -1: half the session
  /// timeout with a real Kafka, off with the embedded one; 0: off.
  int64_t read_lease_ms = -1;
  /// Node-to-node calls (CAF remoting): listen port (0 = any free port) and
  /// the host other nodes and clients reach this node at.
  int cluster_port = 4242;
  std::string advertise_host = "127.0.0.1";

  // --- security ------------------------------------------------------------
  /// This node's certificate chain and key (PEM): TLS on the gRPC port (and, once
  /// CAF's OpenSSL module is wired, on the cluster port).
  std::string tls_cert;
  std::string tls_key;
  /// CA bundle that client (and peer) certificates are verified against.
  std::string tls_ca;
  /// none | optional | require; empty: require with --tls-ca, none without.
  std::string tls_client_auth;
  /// How often the certificate files are checked for rotation.
  unsigned tls_refresh_s = 60;
  /// Allows plaintext listeners on non-loopback addresses.
  bool insecure = false;
  /// Bearer tokens (JWT) on every gRPC call: RS256/ES256 keys (JWKS) and/or an HS256
  /// secret; the claims checked and read.
  security::token_settings auth;
  int auth_reload_s = 10;
  /// Client certificate identities ("ID=ROLE": SPIFFE id, URI, DNS name or common name)
  /// and the role each grants to calls without a token.
  std::vector<std::string> auth_cert_roles;

  /// Whether calls are authenticated (tokens or client certificates with roles).
  bool authenticates() const {
    return auth.enabled() || !auth_cert_roles.empty();
  }

  /// The gRPC port's TLS settings (disabled when no certificate is given).
  security::server_tls grpc_tls() const;

  /// Mutual TLS between nodes on the cluster port (CAF's OpenSSL module): with this
  /// node's certificate and the CA that peers are verified against.
  bool cluster_tls() const {
    return !tls_cert.empty() && !tls_ca.empty();
  }

  bool exactly_once() const {
    return guarantee == "exactly-once";
  }
  bool keeps_changelog() const {
    return changelog.value_or(!kafka.empty());
  }
};

/// Parses argv; returns the exit code to use when the program should stop
/// (e.g. --help), or nullopt to run.
std::optional<int> parse_config(int argc, char** argv, node_config& cfg, std::ostream& out,
                                std::ostream& err);

/// fetch.wait.max.ms of the node's consumers on the embedded Kafka (see
/// consumer_settings); the benchmarks' in-process mock cluster uses it too.
inline constexpr int64_t embedded_fetch_wait_ms = 5;

/// The librdkafka settings of the node's consumers: `kafka_settings` (the
/// --kafka-option ones, which win) and fetch.wait.max.ms from --fetch-wait-ms (with
/// -1: 5 ms on the embedded Kafka, else unset, each consumer's own default).
std::map<std::string, std::string> consumer_settings(
    const std::map<std::string, std::string>& kafka_settings, int64_t fetch_wait_ms,
    bool embedded_kafka);

/// A listener without TLS on an address other than loopback.
struct plaintext_listener {
  std::string what;    ///< "gRPC", "metrics", "the cluster port"
  std::string option;  ///< the option that set its address
  std::string address;
};
std::vector<plaintext_listener> plaintext_listeners(const node_config& cfg);

/// Why the node must not start with these listeners: a plaintext listener on an address
/// other than loopback, without --insecure. nullopt when it may.
std::optional<std::string> plaintext_refusal(const node_config& cfg);

}  // namespace fleettwin::node

#pragma once

// fleettwin-node, split by capability:
//   node.cpp        wiring: start (Kafka, RocksDB, actors, gRPC, metrics) and shutdown
//   partitions.cpp  partition lifecycle: assign, restore, activate, revive, revoke, routing
//                   of a twin to its partition actor
//   cluster.cpp     the cluster: members topic, forwarding, watch relays, standbys
//   status.cpp      what the node reports: GetStatus, GetCluster, readiness, gauges

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "actors/runtime/partition_actor.hpp"
#include "services/cluster/group_lease.hpp"
#include "services/cluster/membership.hpp"
#include "services/cluster/remoting.hpp"
#include "services/grpc/aggregate_service.hpp"
#include "services/grpc/aggregate_watch.hpp"
#include "services/grpc/alert_service.hpp"
#include "services/grpc/model_service.hpp"
#include "services/grpc/scenario_part_service.hpp"
#include "services/grpc/scenario_service.hpp"
#include "services/grpc/twin_service.hpp"
#include "services/kafka/audit_log.hpp"
#include "services/kafka/changelog_restorer.hpp"
#include "services/kafka/embedded_kafka.hpp"
#include "services/kafka/event_producer.hpp"
#include "services/kafka/telemetry_consumer.hpp"
#include "services/kafka/topic_admin.hpp"
#include "services/kafka/topic_feed.hpp"
#include "services/metrics/metrics.hpp"
#include "services/node/config.hpp"
#include "services/node/definitions.hpp"
#include "services/node/kind_catalog.hpp"
#include "services/node/model_catalog.hpp"
#include "services/node/readiness.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::node {

/// A running fleettwin-node: wires Kafka, RocksDB, actors, gRPC and metrics.
class node final : public grpc_api::twin_backend, public kafka::partition_host {
public:
  static std::unique_ptr<node> start(node_config cfg, std::string& error);
  ~node() override;

  /// Blocks until request_stop() or a fatal error; returns the exit code.
  int wait();
  void request_stop(int exit_code = 0);
  /// Graceful shutdown: NOT_SERVING, stop taking forwarded calls, stop gRPC,
  /// revoke partitions (flush and commit), close.
  void shutdown();

  const std::string& kafka_bootstrap() const {
    return bootstrap_;
  }
  int grpc_port() const {
    return grpc_port_;
  }
  uint16_t metrics_port() const {
    return metrics_->port();
  }
  uint16_t cluster_port() const {
    return cluster_port_;
  }

  // twin_backend
  std::optional<grpc_api::route> route_asset(const std::string& asset_id,
                                             std::string& why) override;
  std::vector<int32_t> local_partitions() override;
  storage::rocksdb_store& store() override {
    return *store_;
  }
  int64_t stale_after_ms() const override {
    return cfg_.stale_after_ms;
  }
  void node_status(std::function<void(fleettwin::v1::NodeStatus)> done) override;
  std::optional<std::string> remote_owner(const std::string& asset_id, std::string& why) override;
  std::optional<std::map<std::string, std::vector<int32_t>>> list_plan(std::vector<int32_t>& local,
                                                                       std::string& why) override;
  void forward(const std::string& endpoint, const std::string& method, std::string request,
               std::string metadata, runtime::forward_completion done) override;
  void cluster_status(std::function<void(fleettwin::v1::ClusterStatus)> done) override;
  void audit(runtime::audit_entry entry) override;
  ::grpc::Status audit_trail(const std::string& target, int64_t since_ms, size_t limit,
                             fleettwin::v1::ListAuditEventsResponse& out) override;
  grpc_api::admission* gate() override {
    return gate_.get();
  }
  void watch_cluster(grpc_api::watch_stream* stream, const std::string& asset_id,
                     const std::string& filter) override;
  std::shared_ptr<const core::twin> cached_twin(const std::string& asset_id) override {
    return cache_->find(asset_id);
  }

  // partition_host
  kafka::assignment on_assigned(int32_t partition) override;
  void on_revoked(int32_t partition, bool lost) override;
  void dispatch(runtime::raw_batch_ptr batch) override;

private:
  /// Milliseconds since the epoch (wall clock).
  static int64_t wall_ms();
  explicit node(node_config cfg);
  bool init(std::string& error);
  /// Every topic the node uses, as it creates them (`partitions` for the partitioned ones).
  std::vector<kafka::topic_spec> topic_specs(int partitions) const;
  bool prepare_topics(std::string& error);
  /// Warns about output topics that refuse records as large as the node may write.
  void check_record_limits();
  /// The stored input positions still refer to the Kafka log at hand; when
  /// they cannot (a new embedded broker, another cluster id), forgets them,
  /// logging and counting what was forgotten.
  bool check_stored_positions(std::string& error);
  bool start_grpc(std::string& error);
  bool start_remoting(std::string& error);

  // --- analytics.cpp ----------------------------------------------------------
  /// The asset models of --models into `acfg`.
  bool load_models(runtime::asset_config& acfg, std::string& error);
  /// Follows the alerts topic for WatchAlerts.
  bool start_alert_feed(std::string& error);
  /// Follows `topic` (every node's committed records) into a watch hub.
  template <class Hub>
  std::unique_ptr<kafka::topic_feed> start_feed(const std::string& topic, const char* client_suffix,
                                                Hub& hub, std::string& error) {
    kafka::topic_feed_options fo;
    fo.bootstrap = bootstrap_;
    fo.topic = topic;
    fo.client_id = cfg_.node_id + client_suffix;
    fo.settings = consumer_settings_;
    return kafka::topic_feed::start(
        fo, [&hub](std::string_view k, std::string_view v) { hub.on_record(k, v); }, error);
  }

  /// Another live process uses this node's id (its producer fenced ours).
  bool another_instance(const std::string& why);

  // --- partitions.cpp ---------------------------------------------------------
  /// The telemetry topic's partition count, when calls can be routed (not
  /// while the node shuts down or before the count is known; `why` says so).
  std::optional<int32_t> routable_partitions(std::string& why);
  /// Spawns the actor of a partition whose state is local and complete;
  /// false when the restore of `generation` was revoked meanwhile.
  /// `then` runs once the actor serves the partition, before a revocation
  /// can intervene (under the routes lock).
  bool activate(int32_t partition, std::optional<int64_t> resume_offset,
                std::optional<uint64_t> generation, uint64_t epoch = 0,
                const std::function<void()>& then = {});
  /// Replaces a partition actor whose uncommitted work was lost (an aborted
  /// transaction, failed outputs) by a fresh one over the committed state:
  /// with a changelog, the partition is held and restored again (the tail
  /// the store may lack) and resumes at the group's committed offset, never
  /// before it; without one, it rewinds to the offset stored with the state.
  void revive(int32_t partition, const std::string& why);
  /// Restores an assigned (or revived) partition from the changelog, then
  /// activates it with batches of consumer epoch `epoch`.
  void restore(int32_t partition, uint64_t generation, uint64_t epoch);
  /// A partition actor cannot continue.
  void partition_failed(int32_t partition, const std::string& why, bool retryable);

  // --- cluster.cpp ------------------------------------------------------------
  /// This node's record for the members topic.
  fleettwin::v1::Member member_record();
  /// Follows, from the changelog, the partitions this node stands by for:
  /// those whose owner comes right before it (--standby-replicas deep) in
  /// the ring of live nodes ordered by node id, and those of a peer whose
  /// connection dropped (lost_peers_).
  void update_standbys();
  /// The forwarder's news of a peer's connection (its thread).
  void on_peer_event(const std::string& endpoint, cluster::peer_event e);
  /// The gateways of the other live nodes, for watch relays.
  std::vector<std::string> peer_endpoints();
  void refresh_watch_relays();
  /// Tells the forwarder which nodes left the group (their calls fail now).
  void forget_gone_peers();
  /// Where another node serves `partition`; nullopt with the reason.
  std::optional<std::string> owner_endpoint(int32_t partition, std::string& why);

  // --- status.cpp -------------------------------------------------------------
  void register_scrape_gauges();
  /// fleettwin_alerts_open{severity}: counted from the store on a thread of
  /// its own every alert_count_interval_ms (analytics.cpp).
  void register_alert_gauges();
  void stop_alert_count();

  // --- scenarios.cpp ------------------------------------------------------------
  /// The scenario registry, its gRPC service and gauges.
  void start_scenarios();
  /// Empty when the node serves every partition it was given; else why not.
  std::string not_ready_reason();

  node_config cfg_;
  kafka::topic_names topics_;
  std::string bootstrap_;
  std::map<std::string, std::string> kafka_settings_;
  /// kafka_settings_ and what the node's consumers need on top (consumer_settings).
  std::map<std::string, std::string> consumer_settings_;
  int64_t started_ms_ = 0;
  uint64_t incarnation_ = 0;
  std::unique_ptr<kafka::embedded_kafka> embedded_;
  std::unique_ptr<storage::rocksdb_store> store_;
  std::unique_ptr<metrics::node_metrics> metrics_;
  caf::actor_system_config actor_cfg_;
  std::unique_ptr<caf::actor_system> system_;
  std::shared_ptr<kafka::event_producer> producer_;
  std::unique_ptr<kafka::telemetry_consumer> consumer_;
  /// Follow the aggregate-updates and relations partitions of every
  /// partition served here (by follower slot; null without aggregates).
  std::array<std::unique_ptr<kafka::telemetry_consumer>, runtime::follower_input_count> followers_;
  std::unique_ptr<kafka::changelog_restorer> restorer_;
  /// WatchAggregates: the cluster's committed aggregate changes.
  std::unique_ptr<grpc_api::aggregate_watch_hub> aggregate_hub_;
  std::unique_ptr<kafka::topic_feed> aggregate_feed_;
  /// WatchAlerts: the cluster's committed alert events.
  std::unique_ptr<grpc_api::alert_watch_hub> alert_hub_;
  std::unique_ptr<kafka::topic_feed> alert_feed_;
  /// Aggregate kinds of the file and of PutAggregateKind (models topic).
  std::unique_ptr<kind_catalog> kinds_;
  /// The models topic, followed for kinds and models.
  std::unique_ptr<definitions> definitions_ = std::make_unique<definitions>();
  /// Asset models of the file and of PutModel (models topic).
  std::unique_ptr<model_catalog> models_;
  /// Audit entries written outside the partitions' transactions (see audit()).
  std::unique_ptr<kafka::audit_log> audit_log_;
  std::unique_ptr<cluster::group_lease> lease_;
  std::shared_ptr<grpc_api::watch_hub> hub_;
  std::unique_ptr<grpc_api::query_pool> pool_;
  /// Per-principal request rates and watch streams of the gRPC API.
  std::unique_ptr<grpc_api::admission> gate_;
  std::unique_ptr<grpc_api::twin_service> twin_service_;
  std::unique_ptr<grpc_api::node_service> node_service_;
  std::unique_ptr<grpc_api::admin_service> admin_service_;
  std::unique_ptr<grpc_api::aggregate_service> aggregate_service_;
  std::unique_ptr<grpc_api::alert_service> alert_service_;
  std::unique_ptr<grpc_api::model_service> model_service_;
  /// What-if scenarios (scenarios.cpp). Declared after the store: they hold
  /// snapshots of it and go first.
  std::shared_ptr<scenario::registry> scenarios_;
  std::unique_ptr<grpc_api::scenario_service> scenario_service_;
  std::unique_ptr<grpc_api::scenario_part_service> scenario_part_service_;
  std::unique_ptr<cluster::membership> membership_;
  runtime::gateway_actor gateway_;
  std::shared_ptr<cluster::gateway_control> gateway_control_ =
      std::make_shared<cluster::gateway_control>();
  runtime::forwarder_actor forwarder_;
  uint16_t cluster_port_ = 0;
  std::mutex relays_mutex_;
  std::map<uint64_t, caf::actor> relays_;
  uint64_t next_relay_ = 1;
  std::unique_ptr<::grpc::Server> server_;
  int grpc_port_ = 0;
  std::unique_ptr<readiness> readiness_;
  std::shared_ptr<const runtime::asset_config> asset_cfg_;
  std::shared_ptr<runtime::twin_cache> cache_ = std::make_shared<runtime::twin_cache>();

  std::shared_mutex routes_mutex_;
  struct served {
    runtime::partition_actor actor;
    std::shared_ptr<runtime::partition_gauges> gauges;
  };
  std::map<int32_t, served> partitions_;
  /// Assigned partitions being restored, by assignment generation.
  std::map<int32_t, uint64_t> restoring_;
  /// Partitions of other nodes kept warm here.
  std::set<int32_t> standbys_;
  /// Serialises update_standbys (membership and forwarder threads) with the
  /// restorer's end in shutdown.
  std::mutex standbys_mutex_;
  /// Peers (node ids) whose connection dropped while the group still counted
  /// them, since when: their partitions are read from the changelog at once,
  /// so that the restore after the group moves them only reads the tail.
  std::map<std::string, std::chrono::steady_clock::time_point> lost_peers_;
  /// Peers (node ids) this node has a connection to (standbys_mutex_).
  std::set<std::string> connected_peers_;
  uint64_t next_generation_ = 1;
  /// Why the store cannot take writes (disk full, unwritable): the node
  /// stops taking work and says so.
  std::string store_failure_;

  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stop_requested_ = false;
  int exit_code_ = 0;
  std::atomic<bool> shut_down_{false};
  std::atomic<bool> stopping_{false};
  /// The open alerts counter's thread, and its last count.
  struct alert_count;
  std::shared_ptr<alert_count> alert_count_;
  std::thread alert_counter_;
  /// check_record_limits, at start on a real Kafka.
  std::thread record_check_;
  bool started_ = false;
};

}  // namespace fleettwin::node

#include "services/node/node.hpp"
#include "services/node/aggregate_config.hpp"

#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <absl/synchronization/mutex.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>
#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include "grpc/health/v1/health.pb.h"
#include "services/grpc/caller_scope.hpp"
#include "services/kafka/audit_log.hpp"
#include "services/kafka/telemetry_decoder.hpp"
#include "services/kafka/topic_admin.hpp"
#include "services/security/authenticator.hpp"
#include "services/security/tls.hpp"

namespace fleettwin::node {

namespace {

/// The consumer's reports of stored positions the log disagreed with,
/// counted in the node's metrics.
class consumer_metrics final : public kafka::consumer_probe {
public:
  consumer_metrics(metrics::reliability_probe& probe, std::function<void(int32_t)> on_reset)
      : probe_(probe), on_reset_(std::move(on_reset)) {}
  void on_input_reset(int32_t partition, std::string_view reason) override {
    probe_.on_input_reset(reason);
    on_reset_(partition);
  }
  void on_records_skipped(int32_t, std::string_view reason, int64_t n) override {
    probe_.on_records_skipped(reason, n);
  }
  void on_offset_gap(int32_t, std::string_view verdict) override {
    probe_.on_offset_gap(verdict);
  }
  void on_input_refetch(int32_t) override {
    probe_.on_input_refetch();
  }

private:
  metrics::reliability_probe& probe_;
  std::function<void(int32_t)> on_reset_;
};

}  // namespace

node::node(node_config cfg) : cfg_(std::move(cfg)) {}

int64_t node::wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::unique_ptr<node> node::start(node_config cfg, std::string& error) {
  std::unique_ptr<node> n{new node(std::move(cfg))};
  if (!n->init(error))
    return nullptr;
  return n;
}

bool node::init(std::string& error) {
  started_ms_ = wall_ms();
  incarnation_ = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
  // A file size limit (RLIMIT_FSIZE) must fail a write with EFBIG, which the
  // store reports, instead of killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  topics_ = kafka::topic_names::with_prefix(cfg_.topic_prefix);
  std::error_code ec;
  std::filesystem::create_directories(cfg_.data_dir, ec);
  if (ec) {
    error = "cannot create data dir " + cfg_.data_dir + ": " + ec.message();
    return false;
  }
  // Kafka: embedded unless --kafka is given.
  if (cfg_.kafka.empty()) {
    embedded_ = kafka::embedded_kafka::start(1, cfg_.partitions, topics_, error);
    if (!embedded_)
      return false;
    bootstrap_ = embedded_->bootstrap();
    std::ofstream{cfg_.bootstrap_file} << bootstrap_ << "\n";
  } else {
    bootstrap_ = cfg_.kafka;
  }
  // Storage.
  storage::store_options so;
  so.path = cfg_.data_dir + "/rocksdb";
  so.sync_commits = cfg_.sync_commits;
  so.block_cache_bytes = cfg_.rocksdb_cache_mb << 20;
  store_ = storage::rocksdb_store::open(so, error);
  if (!store_)
    return false;
  // Metrics (over TLS with the node's certificate, checked first).
  if (const auto tls = cfg_.grpc_tls(); tls.enabled()) {
    if (auto why = security::check(tls)) {
      error = "TLS: " + *why;
      return false;
    }
  }
  try {
    metrics_ = std::make_unique<metrics::node_metrics>(
        cfg_.metrics_address, metrics::https_files{cfg_.tls_cert, cfg_.tls_key});
  } catch (const std::exception& e) {
    error = "cannot serve metrics on " + cfg_.metrics_address + ": " + e.what();
    return false;
  }
  // Actors.
  if (cfg_.actor_threads > 0)
    actor_cfg_.set("scheduler.max-threads", cfg_.actor_threads);
  actor_cfg_.set("logger.verbosity", caf::atom("quiet"));
  // Idle workers poll less than CAF's defaults (100 spins, then 500 polls
  // 50 us apart): on two shared cores the spinning took CPU from the broker
  // and RocksDB. fleettwin-bench aggregates, 20k records/s on a real broker:
  // CPU per record 61.6 -> 55.3 us, transaction commits 113 -> 58 ms,
  // read-after-ingest p50 288 -> 119 ms; at 5k/s embedded 27% less CPU at
  // the same latency. After a few spins an idle worker waits on its
  // condition variable, which a message from outside the actor system (a
  // gRPC call, a consumed batch) wakes at once; the middle phase of timed
  // sleeps is skipped, as a message arriving in one waited for it to end:
  // fleettwin-bench query, the first GetTwin after a change (answered by the
  // twin's actor) 61% -> 87% of the no-op's QPS, p99 1.6 -> 1.05 ms.
  actor_cfg_.set("work-stealing.aggressive-poll-attempts", size_t{10});
  actor_cfg_.set("work-stealing.moderate-poll-attempts", size_t{0});
  actor_cfg_.set("work-stealing.relaxed-sleep-duration",
                 caf::timespan{std::chrono::milliseconds{2}});
  actor_cfg_.load<caf::io::middleman>();
  if (cfg_.cluster_tls()) {
    // Mutual TLS on the cluster port. CAF's OpenSSL module falls back to anonymous,
    // unauthenticated encryption when no certificate option is set: it is loaded only
    // with all of them (each connection reads the files again, so a rotation applies
    // to new connections).
    actor_cfg_.openssl_certificate = cfg_.tls_cert;
    actor_cfg_.openssl_key = cfg_.tls_key;
    actor_cfg_.openssl_cafile = cfg_.tls_ca;
    actor_cfg_.load<caf::openssl::manager>();
  }
  system_ = std::make_unique<caf::actor_system>(actor_cfg_);
  auto acfg = std::make_shared<runtime::asset_config>();
  acfg->history_capacity = static_cast<uint32_t>(cfg_.history);
  acfg->cache = cache_;
  acfg->stale_after_ms = cfg_.stale_after_ms;
  acfg->checkpoint_members = cfg_.member_checkpoint_ms > 0;
  acfg->analytics = cfg_.analytics;
  acfg->merge_changes = cfg_.merge_changes;
  if (!load_models(*acfg, error))
    return false;
  if (!cfg_.aggregates_file.empty()) {
    auto kinds = load_aggregate_config(cfg_.aggregates_file, error);
    if (!kinds)
      return false;
    spdlog::info("event=aggregate_kinds_loaded file={} kinds={} rules={}", cfg_.aggregates_file,
                 kinds->kinds().size(), kinds->rules().size());
    acfg->kinds = std::make_shared<runtime::kinds_holder>(std::move(kinds));
  }
  asset_cfg_ = acfg;
  // Kafka clients.
  std::map<std::string, std::string> extra;
  for (const auto& kv : cfg_.kafka_options) {
    auto eq = kv.find('=');
    extra[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  kafka_settings_ = extra;
  consumer_settings_ = consumer_settings(extra, cfg_.fetch_wait_ms, embedded_ != nullptr);
  if (!embedded_ && cfg_.create_topics && !prepare_topics(error))
    return false;
  if (!embedded_)  // advisory: on its own thread, never delaying the start
    record_check_ = std::thread{[this] { check_record_limits(); }};
  // Kinds and models set through the API apply before any partition is
  // served.
  if (asset_cfg_->kinds) {
    kinds_ = std::make_unique<kind_catalog>(asset_cfg_->kinds, *store_, *definitions_);
    // Resident aggregates show a changed kind's measures at once, not at
    // their next change.
    kinds_->on_change([this] {
      std::shared_lock<std::shared_mutex> lock{routes_mutex_};
      for (const auto& [p, s] : partitions_)
        caf::anon_send(s.actor, runtime::refresh_atom::value);
    });
    kinds_->load_local();
  }
  models_ = std::make_unique<model_catalog>(asset_cfg_->models, *store_, *definitions_);
  models_->load_local();
  {
    kafka::compacted_log_options lo;
    lo.bootstrap = bootstrap_;
    lo.topic = topics_.models;
    lo.client_id = cfg_.node_id + "-models";
    lo.settings = extra;
    const std::chrono::seconds timeout{30};
    if (!definitions_->start(lo, timeout, error))
      return false;
    if (kinds_)
      kinds_->republish(timeout);
    models_->republish(timeout);
  }
  audit_log_ = kafka::audit_log::start(bootstrap_, topics_.audit, cfg_.node_id, extra, error);
  if (!audit_log_)
    return false;
  kafka::consumer_options co;
  co.settings = consumer_settings_;
  co.settings.emplace("session.timeout.ms", std::to_string(cfg_.session_timeout_ms));
  co.settings.emplace("heartbeat.interval.ms",
                      std::to_string(std::max<int64_t>(cfg_.session_timeout_ms / 3, 100)));
  co.bootstrap = bootstrap_;
  co.group_id = cfg_.group_id;
  co.topic = topics_.telemetry;
  co.client_id = cfg_.node_id;
  co.max_poll_records = cfg_.max_poll_records;
  co.exactly_once = cfg_.exactly_once();
  co.probe = std::make_shared<consumer_metrics>(metrics_->reliability(), [this](int32_t p) {
    // Offsets in the new log start again: the producer's guard against
    // offsets going backwards must not refuse them.
    if (producer_)
      producer_->forget_offsets(p);
  });
  consumer_ = kafka::telemetry_consumer::create(co, error);
  if (!consumer_)
    return false;
  // The aggregate-updates and relations partitions of every assigned
  // partition, read with it: only a node with aggregate kinds has
  // contributions and relations to read.
  if (asset_cfg_->kinds) {
    for (auto in : runtime::follower_inputs) {
      const bool contributions = in == runtime::input::contributions;
      co.topic = contributions ? topics_.aggregate_updates : topics_.relations;
      co.client_id = cfg_.node_id + (contributions ? "-contributions" : "-relations");
      co.follower = true;
      co.source = in;
      co.probe = std::make_shared<kafka::consumer_probe>();
      auto& follower = followers_[runtime::follower_slot(in)];
      follower = kafka::telemetry_consumer::create(co, error);
      if (!follower)
        return false;
    }
    aggregate_hub_ = std::make_unique<grpc_api::aggregate_watch_hub>(
        [this] { return aggregate_feed_ && aggregate_feed_->ready(); },
        [m = metrics_.get()](size_t n) { m->grpc().on_aggregate_watchers(n); });
    aggregate_feed_ = start_feed(topics_.aggregates, "-aggregate-feed", *aggregate_hub_, error);
    if (!aggregate_feed_)
      return false;
  }
  if (!start_alert_feed(error))
    return false;
  if (!check_stored_positions(error))
    return false;
  kafka::producer_options po;
  po.settings = extra;
  po.bootstrap = bootstrap_;
  po.topics = topics_;
  po.node_id = cfg_.node_id;
  po.publish_changes = cfg_.publish_changes;
  if (cfg_.redacted_changes)
    po.models = asset_cfg_->models;
  po.changelog = cfg_.keeps_changelog();
  if (cfg_.exactly_once()) {
    // Stable per node: a restarted node fences its previous incarnation and
    // aborts the transaction it left open.
    po.transactional_id = cfg_.group_id + "-" + cfg_.node_id;
    po.commit_interval = std::chrono::milliseconds{cfg_.commit_interval_ms};
    po.transaction_timeout = std::chrono::milliseconds{cfg_.transaction_timeout_ms};
    po.group_metadata = [c = consumer_.get()] { return c->group_metadata(); };
    po.another_instance = [this](const std::string& why) { return another_instance(why); };
  }
  po.on_fatal = [this](std::string why) {
    spdlog::critical("event=fatal reason=\"{}\"", why);
    request_stop(1);
  };
  producer_ = kafka::event_producer::create(po, error);
  if (!producer_)
    return false;
  if (cfg_.keeps_changelog()) {
    kafka::restorer_options ro;
    ro.bootstrap = bootstrap_;
    ro.topic = topics_.state;
    ro.client_id = cfg_.node_id + "-restorer";
    ro.settings = extra;
    restorer_ = kafka::changelog_restorer::create(ro, *store_, error);
    if (!restorer_)
      return false;
  }
  cluster::lease_options lo;
  lo.bootstrap = bootstrap_;
  lo.group_id = cfg_.group_id;
  lo.topic = topics_.telemetry;
  lo.client_id = cfg_.node_id + "-lease";
  lo.settings = extra;
  lo.duration = std::chrono::milliseconds{cfg_.read_lease_ms};
  lo.interval = std::chrono::milliseconds{std::max<int64_t>(cfg_.read_lease_ms / 4, 100)};
  lo.member_id = [c = consumer_.get()] { return c->member_id(); };
  lease_ = cluster::group_lease::create(lo, error);
  if (!lease_)
    return false;
  // The partition count routes queries; wait for the topic to exist.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{30};
  while (consumer_->fetch_partition_count(std::chrono::seconds{5}, error) <= 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      error = "Kafka at " + bootstrap_ + " is not reachable or has no topic " + topics_.telemetry +
              ": " + error;
      return false;
    }
    spdlog::warn("event=waiting_for_topic topic={} error=\"{}\"", topics_.telemetry, error);
    std::this_thread::sleep_for(std::chrono::seconds{1});
  }
  error.clear();
  if (!start_grpc(error))
    return false;
  if (!start_remoting(error))
    return false;
  register_scrape_gauges();
  register_alert_gauges();
  for (auto& follower : followers_)
    if (follower)
      follower->start(*this);
  consumer_->start(*this);
  started_ = true;
  spdlog::info(
      "event=started node={} grpc=127.0.0.1:{} metrics={}:{} kafka={} embedded={} data_dir={} "
      "partitions={} read_lease_ms={}",
      cfg_.node_id, grpc_port_, cfg_.metrics_address.substr(0, cfg_.metrics_address.rfind(':')),
      metrics_->port(), bootstrap_, embedded_ != nullptr, cfg_.data_dir,
      consumer_->partition_count(), cfg_.read_lease_ms);
  for (const auto& l : plaintext_listeners(cfg_))
    spdlog::warn(
        "event=insecure_listener listener=\"{}\" address={} reason=\"--insecure: "
        "plaintext beyond loopback; anyone who reaches it can read and change twins\"",
        l.what, l.address);
  return true;
}

bool node::check_stored_positions(std::string& error) {
  auto stored = store_->stored_offsets();
  std::string reason;
  std::string detail;
  if (embedded_) {
    // The embedded broker lives in memory: each start is a new, empty log.
    reason = "embedded_kafka_restarted";
    detail = "the embedded Kafka keeps nothing across restarts: its logs start empty";
  } else {
    auto current = consumer_->cluster_id(std::chrono::seconds{10});
    auto known = store_->load_setting("kafka-cluster-id");
    if (!current.empty() && known && *known != current) {
      reason = "kafka_cluster_changed";
      detail =
          "the data dir was used with Kafka cluster " + *known + ", this is cluster " + current;
    }
    if (!current.empty() && (!known || *known != current))
      if (auto err = store_->save_setting("kafka-cluster-id", current)) {
        error = *err;
        return false;
      }
  }
  if (reason.empty() || stored.empty())
    return true;
  std::string offsets;
  for (const auto& [p, o] : stored)
    offsets += (offsets.empty() ? "" : ",") + std::to_string(p) + ":" + std::to_string(o);
  // Twins are kept; the positions refer to logs that are gone, so the new
  // logs are consumed from their beginning.
  spdlog::warn(
      "event=input_position_reset reason={} partitions={} stored_offsets={} twins_kept={} "
      "detail=\"{}; every partition is consumed from the beginning of the new log\"",
      reason, stored.size(), offsets, store_->stored_twins(), detail);
  if (auto err = store_->forget_positions()) {
    error = *err;
    return false;
  }
  metrics_->reliability().on_input_reset(reason, stored.size());
  return true;
}

bool node::another_instance(const std::string& why) {
  // Fenced: by the broker (a transaction outlived its timeout), or by a
  // process that uses this node's id. The newest process with an id wins
  // (as Kafka's fencing does): this one stops only for a newer one. An older
  // one is fenced in turn by this node's replacement producer, and stops
  // when it sees this node's record.
  spdlog::warn("event=producer_fenced reason=\"{}\"", why);
  if (!membership_)
    return false;
  if (auto other = membership_->newer_instance()) {
    spdlog::critical("event=duplicate_node_id node={} newer=\"{}\" action=stopping", cfg_.node_id,
                     *other);
    return true;
  }
  return false;
}

bool node::start_grpc(std::string& error) {
  hub_ = std::make_shared<grpc_api::watch_hub>(
      cfg_.stale_after_ms, [m = metrics_.get()](size_t n) { m->grpc().on_watchers(n); });
  pool_ = std::make_unique<grpc_api::query_pool>(static_cast<size_t>(cfg_.query_threads), 1024);
  gate_ = std::make_unique<grpc_api::admission>(
      grpc_api::admission_limits{cfg_.principal_requests_per_s, cfg_.principal_burst,
                                 cfg_.principal_watch_streams, cfg_.max_bulk_calls},
      [&grpc = metrics_->grpc()](const char* limit) { grpc.on_throttled(limit); });
  twin_service_ = std::make_unique<grpc_api::twin_service>(
      *this, *pool_, *hub_, metrics_->grpc(), grpc_api::service_limits{}, asset_cfg_->models);
  node_service_ = std::make_unique<grpc_api::node_service>(*this, metrics_->grpc());
  admin_service_ = std::make_unique<grpc_api::admin_service>(*this, *pool_, metrics_->grpc());
  aggregate_service_ = std::make_unique<grpc_api::aggregate_service>(
      *this, *pool_, asset_cfg_->kinds, aggregate_hub_.get(),
      [this](core::aggregate_kind& kind, bool& invalid, std::string& error) {
        if (!kinds_) {
          invalid = true;
          error = "this node has no aggregate kinds (start it with --aggregates <file>)";
          return false;
        }
        auto r = kinds_->put(std::move(kind), std::chrono::seconds{10});
        invalid = r.invalid;
        error = std::move(r.error);
        kind = std::move(r.kind);
        return error.empty();
      },
      metrics_->grpc(), grpc_api::service_limits{}, asset_cfg_->models);
  model_service_ = std::make_unique<grpc_api::model_service>(
      asset_cfg_->models, *pool_,
      [this](core::asset_model& model, bool& invalid, std::string& error) {
        auto r = models_->put(std::move(model), std::chrono::seconds{10});
        invalid = r.invalid;
        error = std::move(r.error);
        model = std::move(r.model);
        return error.empty();
      },
      metrics_->grpc(), this);
  alert_service_ =
      std::make_unique<grpc_api::alert_service>(*this, *pool_, alert_hub_.get(), metrics_->grpc(),
                                                grpc_api::service_limits{}, asset_cfg_->models);
  start_scenarios();
  // Registers grpc.health.v1 in the descriptor pool reflection serves from
  // (and keeps its generated code linked in).
  grpc::health::v1::HealthCheckRequest::descriptor();
  ::grpc::EnableDefaultHealthCheckService(true);
  ::grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  // Debian builds Abseil without NDEBUG, which leaves its mutex deadlock
  // detection on: every absl::Mutex lock of gRPC then takes one global spin
  // lock and updates a lock graph (4% of a GetTwin-bound node's CPU in perf).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  ::grpc::ServerBuilder builder;
  std::shared_ptr<::grpc::ServerCredentials> credentials = ::grpc::InsecureServerCredentials();
  if (const auto tls = cfg_.grpc_tls(); tls.enabled()) {
    credentials = security::server_credentials(tls);
    if (cfg_.authenticates()) {
      std::shared_ptr<security::token_verifier> verifier;
      if (cfg_.auth.enabled()) {
        verifier = security::token_verifier::create(cfg_.auth, error);
        if (!verifier) {
          error = "token authentication: " + error;
          return false;
        }
      }
      std::map<std::string, std::string> cert_roles;
      for (const auto& kv : cfg_.auth_cert_roles) {
        auto eq = kv.rfind('=');
        cert_roles[kv.substr(0, eq)] = kv.substr(eq + 1);
      }
      auto processor = std::make_shared<security::authenticator>(
          std::move(verifier), std::chrono::seconds{cfg_.auth_reload_s},
          [m = metrics_.get()](const char* reason) { m->auth_refused(reason); },
          std::move(cert_roles),
          [this](const security::caller& who, std::string_view method, const ::grpc::Status& no) {
            runtime::audit_entry e;
            e.time_ms = runtime::asset_config::system_clock_ms();
            e.subject = who.subject;
            e.tenant = who.tenant;
            if (!who.subject.empty())
              e.role = security::role_name(who.granted);
            e.method = method;
            e.code = no.error_code() == ::grpc::StatusCode::PERMISSION_DENIED ? "PERMISSION_DENIED"
                                                                              : "UNAUTHENTICATED";
            e.message = no.error_message();
            audit(std::move(e));
          });
      credentials->SetAuthMetadataProcessor(processor);
      // Handlers find each call's caller through it; forwarded calls must carry one.
      grpc_api::set_caller_resolver(
          [processor](std::string_view authorization, const ::grpc::AuthContext* context) {
            return processor->caller_for(authorization, context);
          });
      gateway_control_->authenticating = true;
      spdlog::info("event=auth jwks={} hs256={} issuer={} audience={} cert_roles={}",
                   cfg_.auth.jwks_file.empty() ? "-" : cfg_.auth.jwks_file,
                   cfg_.auth.hs256_secret_file.empty() ? "no" : "yes",
                   cfg_.auth.issuer.empty() ? "-" : cfg_.auth.issuer,
                   cfg_.auth.audience.empty() ? "-" : cfg_.auth.audience,
                   cfg_.auth_cert_roles.size());
    }
    spdlog::info("event=grpc_tls cert={} client_auth={} refresh_s={}", tls.cert_file,
                 cfg_.tls_client_auth, tls.refresh_seconds);
  }
  builder.AddListeningPort(cfg_.grpc_address, credentials, &grpc_port_);
  builder.RegisterService(twin_service_.get());
  builder.RegisterService(node_service_.get());
  builder.RegisterService(admin_service_.get());
  builder.RegisterService(aggregate_service_.get());
  builder.RegisterService(alert_service_.get());
  builder.RegisterService(model_service_.get());
  builder.RegisterService(scenario_service_.get());
  builder.RegisterService(scenario_part_service_.get());
  builder.SetMaxReceiveMessageSize(4 << 20);
  server_ = builder.BuildAndStart();
  if (!server_ || grpc_port_ == 0) {
    error = "cannot serve gRPC on " + cfg_.grpc_address + " (address in use or invalid)";
    return false;
  }
  readiness_ = std::make_unique<readiness>(server_->GetHealthCheckService(),
                                           [this] { return not_ready_reason(); });
  return true;
}

std::vector<kafka::topic_spec> node::topic_specs(int partitions) const {
  const int rf = cfg_.replication_factor;
  std::map<std::string, std::string> compacted{
      {"cleanup.policy", "compact"}, {"min.compaction.lag.ms", "0"}, {"segment.ms", "600000"}};
  // The topics the node writes in its transactions take records up to
  // kafka::max_output_record_bytes: within the limits a twin's state (its changelog
  // record) can reach several MiB and a change event more than 1 MiB, the broker's
  // default, and a record the broker refuses fails its transaction on every retry.
  const std::map<std::string, std::string> outputs{
      {"max.message.bytes", std::to_string(kafka::max_output_record_bytes)}};
  auto compacted_output = compacted;
  compacted_output.insert(outputs.begin(), outputs.end());
  std::vector<kafka::topic_spec> specs{
      {topics_.telemetry, partitions, rf, {}, true},
      {topics_.changes, partitions, rf, outputs, false},
      {topics_.redacted_changes, partitions, rf, outputs, false},
      {topics_.dlq, partitions, rf, outputs, false},
      {topics_.alerts, partitions, rf, outputs, false},
      {topics_.audit, partitions, rf, outputs, false},
      {topics_.scenario_results, partitions, rf, outputs, false},
      {topics_.members, 1, rf, compacted, false},
      {topics_.models, 1, rf, compacted, false},
      // Keyed like telemetry and consumed with it: the same partition count.
      {topics_.aggregate_updates, partitions, rf, outputs, true},
      {topics_.relations, partitions, rf, {}, true},
      {topics_.aggregates, partitions, rf, outputs, false},
  };
  if (cfg_.keeps_changelog())
    specs.push_back({topics_.state, partitions, rf, compacted_output, true});
  return specs;
}

bool node::prepare_topics(std::string& error) {
  // An existing telemetry topic decides the partition count of the others.
  auto counts = kafka::partition_counts(bootstrap_, kafka_settings_, {topics_.telemetry},
                                        std::chrono::seconds{30}, error);
  if (!counts) {
    error = "Kafka at " + bootstrap_ + ": " + error;
    return false;
  }
  int partitions = (*counts)[topics_.telemetry];
  if (partitions <= 0)
    partitions = cfg_.partitions;
  const auto specs = topic_specs(partitions);
  if (auto err =
          kafka::ensure_topics(bootstrap_, kafka_settings_, specs, std::chrono::seconds{30})) {
    error = *err;
    return false;
  }
  return true;
}

void node::check_record_limits() {
  // Topics created by hand or by an older node may refuse the node's largest records
  // (node::topic_specs gives them a limit for records up to kafka::max_output_record_bytes).
  auto specs = topic_specs(1);
  std::erase_if(specs,
                [](const kafka::topic_spec& t) { return !t.config.contains("max.message.bytes"); });
  std::string why;
  // Short: a broker that does not answer DescribeConfigs (librdkafka's mock cluster) keeps
  // a stopping node waiting at most this long.
  for (const auto& low :
       kafka::record_limits_below(bootstrap_, kafka_settings_, specs, std::chrono::seconds{2}, why))
    spdlog::warn(
        "event=topic_record_limit_low topic={} max_message_bytes={} needed={} reason=\"a twin's "
        "state or change larger than the topic takes fails its transaction on every retry and "
        "stops its partition; raise it: kafka-configs.sh --bootstrap-server {} --alter "
        "--entity-type topics --entity-name {} --add-config max.message.bytes={}\"",
        low.topic, low.max_message_bytes, low.needed, bootstrap_, low.topic, low.needed);
  if (!why.empty())
    spdlog::info("event=topic_record_limits_unknown reason=\"{}\"", why);
}

node::~node() {
  shutdown();
}

int node::wait() {
  std::unique_lock<std::mutex> lock{stop_mutex_};
  stop_cv_.wait(lock, [this] { return stop_requested_; });
  return exit_code_;
}

void node::request_stop(int exit_code) {
  {
    std::lock_guard<std::mutex> guard{stop_mutex_};
    if (exit_code != 0)
      exit_code_ = exit_code;
    stop_requested_ = true;
  }
  stop_cv_.notify_all();
}

void node::shutdown() {
  if (shut_down_.exchange(true))
    return;
  stopping_ = true;
  if (started_)
    spdlog::info("event=stopping node={}", cfg_.node_id);
  // Not ready first, so that load balancers and probes stop routing here.
  if (readiness_)
    readiness_->shut_down();
  if (record_check_.joinable())
    record_check_.join();
  // Every entry point stops taking work before what it calls goes away:
  // forwarded calls first (they run on the server's in-process channel),
  // then the forwarder and watch relays, then the gRPC server itself.
  if (!gateway_control_->close(std::chrono::seconds{5}))
    spdlog::warn("event=forwarded_calls_still_running action=shutting_down_anyway");
  if (system_) {
    caf::anon_send_exit(gateway_, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(forwarder_, caf::exit_reason::user_shutdown);
    std::lock_guard<std::mutex> guard{relays_mutex_};
    for (auto& [id, relay] : relays_)
      caf::anon_send_exit(relay, caf::exit_reason::user_shutdown);
  }
  // New calls are answered UNAVAILABLE from here on (route_asset); the ones
  // running end within the read wait (2 s). Drained, the server stops: no
  // call is cut off with CANCELLED.
  auto drain_until = std::chrono::steady_clock::now() + std::chrono::seconds{3};
  while (grpc_api::calls_in_flight() > 0 && std::chrono::steady_clock::now() < drain_until)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  if (server_)
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds{5});
  // Runs in progress stop (their streams ended with the server).
  scenarios_.reset();
  // Leaving the group revokes every partition: each finishes, commits, quits.
  if (consumer_)
    consumer_->stop();
  for (auto& follower : followers_)
    if (follower)
      follower->stop();
  aggregate_feed_.reset();
  alert_feed_.reset();
  stop_alert_count();
  // The models topic's thread calls the catalogs: it stops first.
  definitions_.reset();
  kinds_.reset();
  models_.reset();
  {
    std::lock_guard<std::mutex> guard{standbys_mutex_};
    restorer_.reset();
  }
  if (membership_)
    membership_->leave(std::chrono::seconds{2});
  if (producer_ && !producer_->flush(std::chrono::seconds{10}))
    spdlog::warn("event=flush_timeout outputs may be incomplete");
  if (system_) {
    system_->await_all_actors_done();
  }
  pool_.reset();
  if (started_)
    spdlog::info("event=stopped node={}", cfg_.node_id);
}

void node::audit(runtime::audit_entry entry) {
  if (audit_log_)
    audit_log_->record(entry);
}

::grpc::Status node::audit_trail(const std::string& target, int64_t since_ms, size_t limit,
                                 fleettwin::v1::ListAuditEventsResponse& out) {
  if (!audit_log_)
    return {::grpc::StatusCode::FAILED_PRECONDITION, "this node keeps no audit topic"};
  kafka::audit_query q;
  q.target = target;
  q.since_ms = since_ms;
  q.limit = limit;
  kafka::audit_trail trail;
  std::string error;
  bool timed_out = false;
  if (!kafka::read_audit_trail(bootstrap_, topics_.audit, kafka_settings_, q, trail, error,
                               timed_out)) {
    if (timed_out)
      return {::grpc::StatusCode::DEADLINE_EXCEEDED,
              "the audit partition of " + target + " holds more than can be read in " +
                  std::to_string(q.budget.count() / 1000) + " s (" + std::to_string(trail.scanned) +
                  " records read); give a later since_ms"};
    return {::grpc::StatusCode::UNAVAILABLE, "cannot read the audit topic: " + error};
  }
  for (const auto& e : trail.events)
    if (!out.add_events()->ParseFromString(e))
      return {::grpc::StatusCode::INTERNAL, "an unreadable record in the audit topic"};
  out.set_total(trail.total);
  out.set_scanned(trail.scanned);
  return ::grpc::Status::OK;
}

}  // namespace fleettwin::node

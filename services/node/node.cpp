#include "services/node/node.hpp"

#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>
#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include "actors/core/partitioning.hpp"
#include "services/kafka/telemetry_decoder.hpp"
#include "services/kafka/topic_admin.hpp"

namespace fleettwin::node {

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

node::node(node_config cfg) : cfg_(std::move(cfg)) {}

std::unique_ptr<node> node::start(node_config cfg, std::string& error) {
  std::unique_ptr<node> n{new node(std::move(cfg))};
  if (!n->init(error))
    return nullptr;
  return n;
}

bool node::init(std::string& error) {
  started_ms_ = wall_ms();
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
  // Metrics.
  try {
    metrics_ = std::make_unique<metrics::node_metrics>(cfg_.metrics_address);
  } catch (const std::exception& e) {
    error = "cannot serve metrics on " + cfg_.metrics_address + ": " + e.what();
    return false;
  }
  // Actors.
  if (cfg_.actor_threads > 0)
    actor_cfg_.set("scheduler.max-threads", cfg_.actor_threads);
  actor_cfg_.set("logger.verbosity", caf::atom("quiet"));
  actor_cfg_.load<caf::io::middleman>();
  system_ = std::make_unique<caf::actor_system>(actor_cfg_);
  auto acfg = std::make_shared<runtime::asset_config>();
  acfg->history_capacity = static_cast<uint32_t>(cfg_.history);
  acfg->cache = cache_;
  asset_cfg_ = acfg;
  // Kafka clients.
  std::map<std::string, std::string> extra;
  for (const auto& kv : cfg_.kafka_options) {
    auto eq = kv.find('=');
    extra[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  kafka_settings_ = extra;
  if (!embedded_ && cfg_.create_topics && !prepare_topics(error))
    return false;
  kafka::consumer_options co;
  co.settings = extra;
  co.settings.emplace("session.timeout.ms", std::to_string(cfg_.session_timeout_ms));
  co.settings.emplace("heartbeat.interval.ms",
                      std::to_string(std::max<int64_t>(cfg_.session_timeout_ms / 3, 100)));
  co.bootstrap = bootstrap_;
  co.group_id = cfg_.group_id;
  co.topic = topics_.telemetry;
  co.client_id = cfg_.node_id;
  co.max_poll_records = cfg_.max_poll_records;
  co.exactly_once = cfg_.exactly_once();
  consumer_ = kafka::telemetry_consumer::create(co, error);
  if (!consumer_)
    return false;
  kafka::producer_options po;
  po.settings = extra;
  po.bootstrap = bootstrap_;
  po.topics = topics_;
  po.node_id = cfg_.node_id;
  po.publish_changes = cfg_.publish_changes;
  po.changelog = cfg_.keeps_changelog();
  if (cfg_.exactly_once()) {
    // Stable per node: a restarted node fences its previous incarnation and
    // aborts the transaction it left open.
    po.transactional_id = cfg_.group_id + "-" + cfg_.node_id;
    po.commit_interval = std::chrono::milliseconds{cfg_.commit_interval_ms};
    po.transaction_timeout = std::chrono::milliseconds{cfg_.transaction_timeout_ms};
    po.group_metadata = [c = consumer_.get()] { return c->group_metadata(); };
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
  // gRPC.
  hub_ = std::make_shared<grpc_api::watch_hub>(
      cfg_.stale_after_ms, [m = metrics_.get()](size_t n) { m->grpc().on_watchers(n); });
  pool_ = std::make_unique<grpc_api::query_pool>(static_cast<size_t>(cfg_.query_threads), 1024);
  twin_service_ = std::make_unique<grpc_api::twin_service>(*this, *pool_, *hub_, metrics_->grpc(),
                                                           grpc_api::service_limits{});
  node_service_ = std::make_unique<grpc_api::node_service>(*this, metrics_->grpc());
  admin_service_ = std::make_unique<grpc_api::admin_service>(*this, metrics_->grpc());
  ::grpc::EnableDefaultHealthCheckService(true);
  ::grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  ::grpc::ServerBuilder builder;
  builder.AddListeningPort(cfg_.grpc_address, ::grpc::InsecureServerCredentials(), &grpc_port_);
  builder.RegisterService(twin_service_.get());
  builder.RegisterService(node_service_.get());
  builder.RegisterService(admin_service_.get());
  builder.SetMaxReceiveMessageSize(4 << 20);
  server_ = builder.BuildAndStart();
  if (!server_ || grpc_port_ == 0) {
    error = "cannot serve gRPC on " + cfg_.grpc_address + " (address in use or invalid)";
    return false;
  }
  if (!start_remoting(error))
    return false;
  register_scrape_gauges();
  consumer_->start(*this);
  started_ = true;
  spdlog::info(
      "event=started node={} grpc=127.0.0.1:{} metrics={}:{} kafka={} embedded={} data_dir={} "
      "partitions={}",
      cfg_.node_id, grpc_port_, cfg_.metrics_address.substr(0, cfg_.metrics_address.rfind(':')),
      metrics_->port(), bootstrap_, embedded_ != nullptr, cfg_.data_dir,
      consumer_->partition_count());
  return true;
}

bool node::start_remoting(std::string& error) {
  // Calls forwarded by other nodes run through this node's own gRPC
  // services, in process.
  ::grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  gateway_ = system_->spawn(cluster::gateway, server_->InProcessChannel(args), cfg_.node_id, hub_);
  forwarder_ = system_->spawn(cluster::forwarder, std::chrono::milliseconds{5'000});
  auto port = system_->middleman().publish(gateway_, static_cast<uint16_t>(cfg_.cluster_port),
                                           cfg_.advertise_host.c_str(), true);
  if (!port) {
    error = "cannot listen for other nodes on " + cfg_.advertise_host + ":" +
            std::to_string(cfg_.cluster_port) + ": " + system_->render(port.error());
    return false;
  }
  cluster_port_ = *port;
  cluster::membership_options mo;
  mo.bootstrap = bootstrap_;
  mo.topic = topics_.members;
  mo.group_id = cfg_.group_id;
  mo.node_id = cfg_.node_id;
  mo.settings = kafka_settings_;
  mo.on_change = [this] {
    if (cfg_.standby_replicas > 0 && restorer_)
      update_standbys();
    refresh_watch_relays();
  };
  membership_ = cluster::membership::create(
      mo, [this] { return member_record(); }, error);
  return membership_ != nullptr;
}

fleettwin::v1::Member node::member_record() {
  fleettwin::v1::Member m;
  m.set_node_id(cfg_.node_id);
  m.set_grpc_endpoint(cfg_.advertise_host + ":" + std::to_string(grpc_port_));
  m.set_cluster_endpoint(cfg_.advertise_host + ":" + std::to_string(cluster_port_));
  m.set_started_ms(started_ms_);
  m.set_version(FLEETTWIN_VERSION);
  m.set_guarantee(cfg_.guarantee);
  std::map<int32_t, kafka::partition_progress> progress;
  for (const auto& p : consumer_->progress())
    progress[p.partition] = p;
  std::map<int32_t, kafka::restore_progress> reading;
  if (restorer_)
    for (const auto& r : restorer_->progress())
      reading[r.partition] = r;
  auto add = [&](int32_t p, fleettwin::v1::PartitionRole role) {
    auto* ps = m.add_partitions();
    ps->set_partition(p);
    ps->set_role(role);
    ps->set_stored_twins(store_->stored_twins(p));
    if (role == fleettwin::v1::PARTITION_ROLE_ACTIVE) {
      if (auto it = progress.find(p); it != progress.end()) {
        ps->set_lag(it->second.lag());
        ps->set_committed_offset(it->second.committed);
      }
    } else if (auto it = reading.find(p); it != reading.end()) {
      ps->set_lag(it->second.lag());
    }
  };
  std::shared_lock<std::shared_mutex> lock{routes_mutex_};
  for (const auto& [p, a] : partitions_)
    add(p, fleettwin::v1::PARTITION_ROLE_ACTIVE);
  for (const auto& [p, g] : restoring_)
    add(p, fleettwin::v1::PARTITION_ROLE_RESTORING);
  for (const auto& [p, r] : reading)
    if (r.standby && !partitions_.contains(p) && !restoring_.contains(p))
      add(p, fleettwin::v1::PARTITION_ROLE_STANDBY);
  return m;
}

std::vector<std::string> node::peer_endpoints() {
  std::vector<std::string> out;
  if (!membership_)
    return out;
  for (const auto& m : membership_->members())
    if (m.alive && m.record.node_id() != cfg_.node_id && !m.record.cluster_endpoint().empty())
      out.push_back(m.record.cluster_endpoint());
  return out;
}

void node::refresh_watch_relays() {
  auto endpoints = peer_endpoints();
  std::lock_guard<std::mutex> guard{relays_mutex_};
  for (const auto& [id, relay] : relays_)
    caf::anon_send(relay, runtime::endpoints_atom::value, endpoints);
}

void node::watch_cluster(grpc_api::watch_stream* stream, const std::string& asset_id,
                         const std::string& filter) {
  if (!membership_)
    return;
  auto target = std::make_shared<cluster::watch_target>();
  target->stream = stream;
  auto relay = system_->spawn(cluster::watch_relay, target, asset_id, filter, forwarder_);
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> guard{relays_mutex_};
    id = next_relay_++;
    relays_.emplace(id, relay);
  }
  stream->on_done([this, target, relay, id] {
    {
      std::lock_guard<std::mutex> guard{target->mutex};
      target->stream = nullptr;
    }
    // The other nodes see the relay go down and drop their watchers.
    caf::anon_send_exit(relay, caf::exit_reason::user_shutdown);
    std::lock_guard<std::mutex> guard{relays_mutex_};
    relays_.erase(id);
  });
  caf::anon_send(relay, runtime::endpoints_atom::value, peer_endpoints());
}

void node::update_standbys() {
  auto count = consumer_->partition_count();
  if (count <= 0 || !membership_)
    return;
  std::vector<std::string> ring{cfg_.node_id};
  for (const auto& m : membership_->members())
    if (m.alive && m.record.node_id() != cfg_.node_id)
      ring.push_back(m.record.node_id());
  std::sort(ring.begin(), ring.end());
  const auto self = std::find(ring.begin(), ring.end(), cfg_.node_id) - ring.begin();
  const auto n = static_cast<int64_t>(ring.size());
  std::set<int32_t> wanted;
  auto mine = local_partitions();
  for (int32_t p = 0; p < count && n > 1; ++p) {
    if (std::find(mine.begin(), mine.end(), p) != mine.end())
      continue;
    auto owner = membership_->owner_of(p);
    if (!owner)
      continue;
    auto at = std::find(ring.begin(), ring.end(), owner->node_id) - ring.begin();
    if (at == n)
      continue;  // the owner is gone: its successor takes the partition over
    for (int k = 1; k <= cfg_.standby_replicas && k < n; ++k)
      if ((at + k) % n == self)
        wanted.insert(p);
  }
  std::vector<int32_t> follow;
  std::vector<int32_t> unfollow;
  {
    std::unique_lock<std::shared_mutex> lock{routes_mutex_};
    for (auto p : wanted)
      if (!standbys_.contains(p) && !partitions_.contains(p) && !restoring_.contains(p))
        follow.push_back(p);
    for (auto p : standbys_)
      if (!wanted.contains(p))
        unfollow.push_back(p);
    // Commands are queued in order under the lock, so that a restore queued
    // by a new assignment is never followed by a stale stop.
    for (auto p : follow) {
      standbys_.insert(p);
      restorer_->follow(p);
    }
    for (auto p : unfollow) {
      standbys_.erase(p);
      restorer_->stop(p);
    }
  }
  if (!follow.empty() || !unfollow.empty()) {
    spdlog::info("event=standbys_changed follow={} unfollow={}", follow.size(), unfollow.size());
    membership_->publish_soon();
  }
}

std::optional<std::string> node::owner_endpoint(int32_t partition, std::string& why) {
  {
    std::shared_lock<std::shared_mutex> lock{routes_mutex_};
    if (restoring_.contains(partition)) {
      why = "partition " + std::to_string(partition) +
            " is being restored from the changelog on this node; retry shortly";
      return std::nullopt;
    }
  }
  auto owner = membership_ ? membership_->owner_of(partition) : std::nullopt;
  if (!owner) {
    why = "no node serves partition " + std::to_string(partition) +
          " right now (assignment or rebalance in progress); retry shortly";
    return std::nullopt;
  }
  if (owner->restoring) {
    why = "partition " + std::to_string(partition) + " is being restored on node " +
          owner->node_id + "; retry shortly";
    return std::nullopt;
  }
  if (!owner->alive) {
    why = "node " + owner->node_id + ", the last owner of partition " + std::to_string(partition) +
          ", left the group; the partition moves to another node; retry shortly";
    return std::nullopt;
  }
  return owner->cluster_endpoint;
}

std::optional<std::string> node::remote_owner(const std::string& asset_id, std::string& why) {
  auto count = consumer_->partition_count();
  if (count <= 0) {
    why = "the telemetry topic's partitions are not known yet; retry";
    return std::nullopt;
  }
  return owner_endpoint(core::kafka_partition(asset_id, count), why);
}

std::optional<std::map<std::string, std::vector<int32_t>>> node::list_plan(
    std::vector<int32_t>& local, std::string& why) {
  auto count = consumer_->partition_count();
  if (count <= 0) {
    why = "the telemetry topic's partitions are not known yet; retry";
    return std::nullopt;
  }
  auto mine = local_partitions();
  std::map<std::string, std::vector<int32_t>> remote;
  local.clear();
  for (int32_t p = 0; p < count; ++p) {
    if (std::find(mine.begin(), mine.end(), p) != mine.end()) {
      local.push_back(p);
      continue;
    }
    auto endpoint = owner_endpoint(p, why);
    if (!endpoint)
      return std::nullopt;
    remote[*endpoint].push_back(p);
  }
  return remote;
}

void node::forward(const std::string& endpoint, const std::string& method, std::string request,
                   std::string metadata, runtime::forward_completion done) {
  caf::anon_send(forwarder_, runtime::forward_atom::value, endpoint, method, std::move(request),
                 std::move(metadata), std::move(done));
}

void node::cluster_status(std::function<void(fleettwin::v1::ClusterStatus)> done) {
  fleettwin::v1::ClusterStatus cs;
  cs.set_answered_by(cfg_.node_id);
  cs.set_group_id(cfg_.group_id);
  cs.set_guarantee(cfg_.guarantee);
  auto count = consumer_->partition_count();
  cs.set_partitions(count);
  auto now = wall_ms();
  std::set<int32_t> served;
  auto add = [&](fleettwin::v1::Member record, bool alive) {
    auto* n = cs.add_nodes();
    n->set_alive(alive);
    n->set_age_ms(std::max<int64_t>(0, now - record.updated_ms()));
    *n->mutable_member() = std::move(record);
  };
  // This node from its live state; the others from their last records.
  auto self = member_record();
  self.set_updated_ms(now);
  for (const auto& p : self.partitions())
    if (p.role() == fleettwin::v1::PARTITION_ROLE_ACTIVE)
      served.insert(p.partition());
  add(std::move(self), true);
  if (membership_)
    for (auto& m : membership_->members()) {
      if (m.record.node_id() == cfg_.node_id)
        continue;
      add(m.record, m.alive);
    }
  for (int32_t p = 0; p < count; ++p) {
    std::string why;
    if (!served.contains(p) && !owner_endpoint(p, why))
      cs.add_unserved_partitions(p);
  }
  std::sort(
      cs.mutable_nodes()->begin(), cs.mutable_nodes()->end(),
      [](const auto& a, const auto& b) { return a.member().node_id() < b.member().node_id(); });
  done(std::move(cs));
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
  const int rf = cfg_.replication_factor;
  std::map<std::string, std::string> compacted{
      {"cleanup.policy", "compact"}, {"min.compaction.lag.ms", "0"}, {"segment.ms", "600000"}};
  std::vector<kafka::topic_spec> specs{
      {topics_.telemetry, partitions, rf, {}, true}, {topics_.changes, partitions, rf, {}, false},
      {topics_.dlq, partitions, rf, {}, false},      {topics_.alerts, partitions, rf, {}, false},
      {topics_.members, 1, rf, compacted, false},
  };
  if (cfg_.keeps_changelog())
    specs.push_back({topics_.state, partitions, rf, compacted, true});
  if (auto err =
          kafka::ensure_topics(bootstrap_, kafka_settings_, specs, std::chrono::seconds{30})) {
    error = *err;
    return false;
  }
  return true;
}

void node::register_scrape_gauges() {
  auto* consumer = consumer_.get();
  auto* store = store_.get();
  using metrics::gauge_sample;
  auto per_partition = [consumer](auto field) {
    return [consumer, field] {
      std::vector<gauge_sample> out;
      for (const auto& p : consumer->progress())
        out.push_back({{{"partition", std::to_string(p.partition)}}, field(p)});
      return out;
    };
  };
  auto store_value = [store](auto field) {
    return [store, field] { return std::vector<gauge_sample>{{{}, field(store->stats())}}; };
  };
  if (restorer_) {
    auto* restorer = restorer_.get();
    auto* producer = producer_.get();
    metrics_->add_scrape_gauges({
        {"fleettwin_partitions_restoring", "Assigned partitions being restored from the changelog",
         [restorer] {
           double n = 0;
           for (const auto& p : restorer->progress())
             n += p.standby ? 0 : 1;
           return std::vector<gauge_sample>{{{}, n}};
         }},
        {"fleettwin_standby_partitions", "Partitions of other nodes kept warm here",
         [restorer] {
           double n = 0;
           for (const auto& p : restorer->progress())
             n += p.standby ? 1 : 0;
           return std::vector<gauge_sample>{{{}, n}};
         }},
        {"fleettwin_changelog_lag_records",
         "Changelog records not yet read by a restore or standby",
         [restorer] {
           std::vector<gauge_sample> out;
           for (const auto& p : restorer->progress())
             out.push_back({{{"partition", std::to_string(p.partition)},
                             {"mode", p.standby ? "standby" : "restore"}},
                            double(p.lag())});
           return out;
         }},
        {"fleettwin_transactions_committed_total", "Kafka transactions committed",
         [producer] {
           return std::vector<gauge_sample>{{{}, double(producer->commits())}};
         },
         true},
        {"fleettwin_transactions_aborted_total", "Kafka transactions aborted",
         [producer] {
           return std::vector<gauge_sample>{{{}, double(producer->aborts())}};
         },
         true},
    });
  }
  metrics_->add_scrape_gauges({
      {"fleettwin_consumer_lag_records", "Records in the partition not yet committed",
       per_partition([](const kafka::partition_progress& p) { return double(p.lag()); })},
      {"fleettwin_consumer_committed_offset", "Next offset committed with the twin state",
       per_partition([](const kafka::partition_progress& p) { return double(p.committed); })},
      {"fleettwin_partitions_assigned", "Partitions of the telemetry topic served by this node",
       [consumer] {
         return std::vector<gauge_sample>{{{}, double(consumer->progress().size())}};
       }},
      {"fleettwin_twins_stored", "Twins in the local store",
       store_value([](const storage::store_stats& s) { return double(s.stored_twins); })},
      {"fleettwin_rocksdb_sst_bytes", "Size of RocksDB SST files",
       store_value([](const storage::store_stats& s) { return double(s.sst_bytes); })},
      {"fleettwin_rocksdb_memtable_bytes", "Size of RocksDB memtables",
       store_value([](const storage::store_stats& s) { return double(s.memtable_bytes); })},
      {"fleettwin_rocksdb_block_cache_bytes", "RocksDB block cache usage",
       store_value([](const storage::store_stats& s) { return double(s.block_cache_bytes); })},
      {"fleettwin_rocksdb_pending_compaction_bytes", "Bytes RocksDB estimates to compact",
       store_value(
           [](const storage::store_stats& s) { return double(s.pending_compaction_bytes); })},
      {"fleettwin_rocksdb_write_stopped", "1 while RocksDB stops writes",
       store_value([](const storage::store_stats& s) { return s.write_stopped ? 1.0 : 0.0; })},
      {"fleettwin_rocksdb_delayed_write_rate_bytes", "Write rate RocksDB throttles to (0 = none)",
       store_value([](const storage::store_stats& s) { return double(s.delayed_write_rate); })},
      {"fleettwin_rocksdb_write_stall_seconds_total", "Time writes were stalled by RocksDB",
       store_value([](const storage::store_stats& s) { return double(s.stall_micros) / 1e6; }),
       true},
  });
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
  if (started_)
    spdlog::info("event=stopping node={}", cfg_.node_id);
  if (server_)
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds{2});
  // Leaving the group revokes every partition: each finishes, commits, quits.
  if (consumer_)
    consumer_->stop();
  restorer_.reset();
  if (membership_)
    membership_->leave(std::chrono::seconds{2});
  if (system_) {
    caf::anon_send_exit(gateway_, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(forwarder_, caf::exit_reason::user_shutdown);
    std::lock_guard<std::mutex> guard{relays_mutex_};
    for (auto& [id, relay] : relays_)
      caf::anon_send_exit(relay, caf::exit_reason::user_shutdown);
  }
  if (producer_ && !producer_->flush(std::chrono::seconds{10}))
    spdlog::warn("event=flush_timeout outputs may be incomplete");
  if (system_) {
    system_->await_all_actors_done();
  }
  pool_.reset();
  if (started_)
    spdlog::info("event=stopped node={}", cfg_.node_id);
}

std::optional<grpc_api::route> node::route_asset(const std::string& asset_id, std::string& why) {
  auto count = consumer_->partition_count();
  if (count <= 0) {
    why = "the telemetry topic's partitions are not known yet; retry";
    return std::nullopt;
  }
  auto p = core::kafka_partition(asset_id, count);
  std::shared_lock<std::shared_mutex> lock{routes_mutex_};
  auto it = partitions_.find(p);
  if (restoring_.contains(p)) {
    why = "partition " + std::to_string(p) + " of twin \"" + asset_id +
          "\" is being restored from the changelog on this node; retry shortly";
    return std::nullopt;
  }
  if (it == partitions_.end()) {
    why = "partition " + std::to_string(p) + " of twin \"" + asset_id +
          "\" is not served by this node right now (assignment or rebalance in progress); "
          "retry shortly";
    return std::nullopt;
  }
  return grpc_api::route{it->second, p};
}

std::vector<int32_t> node::local_partitions() {
  std::shared_lock<std::shared_mutex> lock{routes_mutex_};
  std::vector<int32_t> out;
  for (const auto& [p, a] : partitions_)
    out.push_back(p);
  return out;
}

kafka::assignment node::on_assigned(int32_t partition) {
  if (!restorer_) {
    // No changelog: the local store is the only copy of the state.
    activate(partition, std::nullopt, std::nullopt);
    return {store_->load_offset(partition), false};
  }
  uint64_t generation = 0;
  {
    std::unique_lock<std::shared_mutex> lock{routes_mutex_};
    generation = next_generation_++;
    restoring_[partition] = generation;
    standbys_.erase(partition);  // the restore continues from the warm copy
  }
  restore(partition, generation);
  if (membership_)
    membership_->publish_soon();
  return {std::nullopt, true};
}

void node::restore(int32_t partition, uint64_t generation) {
  // The group's committed position tells how far the changelog must be read:
  // the state committed with the input offset reaches that changelog offset.
  struct target {
    bool known = false;
    std::optional<kafka::committed_position> committed;
  };
  auto goal = std::make_shared<target>();
  auto* consumer = consumer_.get();
  auto check = [goal, consumer](int32_t p, int64_t position, std::string& why) {
    if (!goal->known) {
      std::string error;
      auto c = consumer->committed(p, std::chrono::seconds{5}, error);
      if (!c) {
        why = error;
        return false;
      }
      goal->committed = c;
      goal->known = true;
    }
    const auto& c = *goal->committed;
    if (!c.changelog || position >= *c.changelog)
      return true;
    why = "the changelog is read up to " + std::to_string(position) +
          " but the committed state reaches " + std::to_string(*c.changelog) +
          " (records behind an open transaction of a failed node)";
    return false;
  };
  auto started = std::chrono::steady_clock::now();
  restorer_->restore(
      partition, check, [this, partition, generation, goal, started](kafka::restore_result r) {
        {
          std::shared_lock<std::shared_mutex> lock{routes_mutex_};
          auto it = restoring_.find(partition);
          if (it == restoring_.end() || it->second != generation)
            return;  // revoked meanwhile
        }
        if (!r.ok) {
          spdlog::critical("event=fatal reason=\"restoring partition {}: {}\"", partition, r.error);
          request_stop(1);
          return;
        }
        metrics_->restore().on_restored(r.records, r.seconds);
        // Exactly-once resumes at the offset committed with the outputs; at
        // least once at the offset of the restored (or local) state.
        std::optional<int64_t> resume = store_->load_offset(partition);
        if (cfg_.exactly_once() && goal->committed && goal->committed->offset)
          resume = goal->committed->offset;
        if (!activate(partition, resume, generation))
          return;  // revoked meanwhile
        consumer_->resume(partition, resume.value_or(RD_KAFKA_OFFSET_BEGINNING));
        spdlog::info(
            "event=partition_ready partition={} restored_records={} seconds={:.3f}", partition,
            r.records,
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      });
}

bool node::activate(int32_t partition, std::optional<int64_t> resume_offset,
                    std::optional<uint64_t> generation, uint64_t epoch) {
  runtime::partition_config pc;
  pc.partition = partition;
  pc.partition_count = consumer_->partition_count();
  pc.assets = asset_cfg_;
  pc.passivate_after = std::chrono::milliseconds{cfg_.passivate_after_ms};
  pc.tick_interval = std::chrono::milliseconds{std::max<int64_t>(cfg_.passivate_after_ms / 4, 50)};
  pc.max_active_twins = cfg_.max_active_twins;
  pc.store = std::shared_ptr<runtime::twin_store>(store_.get(), [](auto*) {});
  if (restorer_)
    pc.initial_offset = resume_offset;
  pc.sink = producer_;
  auto max_bytes = cfg_.max_record_bytes;
  pc.make_decoder = [max_bytes] { return kafka::make_telemetry_decoder(max_bytes); };
  pc.listener = hub_;
  pc.probe = metrics_->ingest();
  auto* consumer = consumer_.get();
  pc.on_committed = [consumer](int32_t p, int64_t next, size_t batches,
                               std::optional<int64_t> changelog) {
    consumer->acknowledge(p, next, batches, changelog);
  };
  pc.epoch = epoch;
  pc.read_committed = cfg_.exactly_once();
  pc.on_fatal = [this, partition](std::string why, bool retryable) {
    if (retryable && cfg_.exactly_once() && !producer_->failed()) {
      revive(partition, why);
      return;
    }
    spdlog::critical("event=fatal reason=\"{}\"", why);
    request_stop(1);
  };
  auto actor = system_->spawn(runtime::partition, std::move(pc));
  {
    std::unique_lock<std::shared_mutex> lock{routes_mutex_};
    auto it = restoring_.find(partition);
    if (!generation || (it != restoring_.end() && it->second == *generation)) {
      if (it != restoring_.end())
        restoring_.erase(it);
      partitions_[partition] = actor;
      if (membership_)
        membership_->publish_soon();
      return true;
    }
  }
  caf::anon_send(actor, runtime::stop_atom::value, std::function<void()>{[] {}});
  return false;
}

void node::revive(int32_t partition, const std::string& why) {
  runtime::partition_actor old;
  uint64_t generation = 0;
  {
    std::unique_lock<std::shared_mutex> lock{routes_mutex_};
    auto it = partitions_.find(partition);
    if (it == partitions_.end())
      return;
    old = it->second;
    partitions_.erase(it);
    // Queries answer UNAVAILABLE meanwhile; a revocation cancels the revival.
    generation = next_generation_++;
    restoring_[partition] = generation;
  }
  spdlog::warn("event=partition_revived partition={} reason=\"{}\"", partition, why);
  caf::anon_send(old, runtime::stop_atom::value, std::function<void()>{[] {}});
  // The store holds exactly what the last committed transaction covered.
  auto offset = store_->load_offset(partition);
  auto epoch = consumer_->rewind(partition, offset.value_or(RD_KAFKA_OFFSET_BEGINNING));
  activate(partition, offset, generation, epoch);
}

void node::on_revoked(int32_t partition) {
  runtime::partition_actor actor;
  {
    std::unique_lock<std::shared_mutex> lock{routes_mutex_};
    if (restoring_.erase(partition) > 0) {
      restorer_->stop(partition);
      if (membership_)
        membership_->publish_soon();
      return;
    }
    auto it = partitions_.find(partition);
    if (it == partitions_.end())
      return;
    actor = it->second;
    partitions_.erase(it);
  }
  if (membership_)
    membership_->publish_soon();
  std::promise<void> stopped;
  auto done = stopped.get_future();
  caf::anon_send(actor, runtime::stop_atom::value,
                 std::function<void()>{[&stopped] { stopped.set_value(); }});
  done.wait();
}

void node::dispatch(runtime::raw_batch_ptr batch) {
  std::shared_lock<std::shared_mutex> lock{routes_mutex_};
  auto it = partitions_.find(batch->partition);
  if (it != partitions_.end())
    caf::anon_send(it->second, runtime::batch_atom::value, std::move(batch));
}

void node::node_status(std::function<void(fleettwin::v1::NodeStatus)> done) {
  fleettwin::v1::NodeStatus st;
  st.set_node_id(cfg_.node_id);
  st.set_version(FLEETTWIN_VERSION);
  st.set_started_ms(started_ms_);
  st.set_kafka_bootstrap(bootstrap_);
  st.set_kafka_embedded(embedded_ != nullptr);
  st.set_telemetry_topic(topics_.telemetry);
  st.set_data_dir(cfg_.data_dir);
  st.set_stored_twins(store_->stored_twins());
  std::map<int32_t, kafka::partition_progress> progress;
  for (const auto& p : consumer_->progress())
    progress[p.partition] = p;
  std::vector<runtime::partition_actor> actors;
  {
    std::shared_lock<std::shared_mutex> lock{routes_mutex_};
    for (const auto& [p, a] : partitions_)
      actors.push_back(a);
  }
  struct gather {
    std::mutex mutex;
    fleettwin::v1::NodeStatus status;
    std::map<int32_t, kafka::partition_progress> progress;
    std::function<void(fleettwin::v1::NodeStatus)> done;
    std::vector<runtime::partition_info> infos;
    ~gather() {
      std::sort(infos.begin(), infos.end(),
                [](const auto& a, const auto& b) { return a.partition < b.partition; });
      uint64_t active = 0;
      uint64_t applied = 0;
      for (const auto& i : infos) {
        auto* ps = status.add_partitions();
        ps->set_partition(i.partition);
        ps->set_committed_offset(i.next_offset);
        ps->set_active_twins(i.active_twins);
        if (auto it = progress.find(i.partition); it != progress.end()) {
          ps->set_high_watermark(it->second.high_watermark);
          ps->set_lag(it->second.lag());
        }
        active += i.active_twins;
        applied += i.records_applied;
      }
      status.set_active_twins(active);
      status.set_records_applied(applied);
      done(std::move(status));
    }
  };
  // The gather answers when the last partition has replied (or dropped).
  auto g = std::make_shared<gather>();
  g->status = std::move(st);
  g->progress = std::move(progress);
  g->done = std::move(done);
  for (auto& a : actors) {
    runtime::partition_info_completion c{[g](runtime::partition_info info) {
                                           if (info.partition < 0)
                                             return;
                                           std::lock_guard<std::mutex> guard{g->mutex};
                                           g->infos.push_back(info);
                                         },
                                         runtime::partition_info{-1}};
    caf::anon_send(a, runtime::status_atom::value, std::move(c));
  }
}

}  // namespace fleettwin::node

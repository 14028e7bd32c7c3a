#include "cluster_harness.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <google/protobuf/util/message_differencer.h>
#include <librdkafka/rdkafka.h>

#include "services/kafka/topic_admin.hpp"

#include "actors/core/partitioning.hpp"
#include "fleettwin/v1/telemetry.pb.h"
#include "support/kafka_io.hpp"

namespace fleettwin::test {

namespace {

#ifdef FLEETTWIN_NODE_BINARY
constexpr const char* node_binary = FLEETTWIN_NODE_BINARY;
#else
constexpr const char* node_binary = nullptr;
#endif

}  // namespace

// --- cluster_node -----------------------------------------------------------

cluster_node::cluster_node(std::string id, std::string data_dir, std::string log_path,
                           std::vector<std::string> args)
    : id_(std::move(id)),
      data_dir_(std::move(data_dir)),
      log_(std::move(log_path)),
      args_(std::move(args)),
      grpc_port_(free_port()),
      metrics_port_(free_port()) {
  connect();
}

void cluster_node::connect() {
  // A new channel per start: gRPC's reconnect backoff of a channel that saw the
  // node down would delay the first calls by seconds. And short backoffs: nodes
  // come and go (kill -9, restart).
  grpc::ChannelArguments channel_args;
  channel_args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  channel_args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  channel_ = grpc::CreateCustomChannel(grpc_address(), credentials_, channel_args);
  twins_ = v1::TwinService::NewStub(channel_);
  nodes_ = v1::NodeService::NewStub(channel_);
  admin_ = v1::AdminService::NewStub(channel_);
}

void cluster_node::start(std::chrono::milliseconds timeout) {
  if (!node_binary)
    throw std::runtime_error("FLEETTWIN_NODE_BINARY is not defined: no fleettwin-node target");
  std::vector<std::string> args{
      node_binary,    "--node-id", id_,
      "--data-dir",   data_dir_,   "--grpc",
      grpc_address(), "--metrics", "127.0.0.1:" + std::to_string(metrics_port_)};
  args.insert(args.end(), args_.begin(), args_.end());
  auto began = std::chrono::steady_clock::now();
  process_.start(std::move(args), log_, max_file_bytes_);
  // The gRPC port accepts connections once the node is ready to serve.
  bool up = eventually([&] { return !process_.running() || port_open(grpc_port_); }, timeout, 20ms);
  if (up && process_.running()) {
    connect();
    up = eventually(
        [&] {
          if (!process_.running())
            return true;
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + 2s);
          ctx.set_wait_for_ready(true);
          v1::PingResponse resp;
          return nodes_->Ping(&ctx, {}, &resp).ok();
        },
        10s, 20ms);
  }
  if (!up || !process_.running())
    // The log's tail goes with the error: the test's dir (and the log) may be
    // gone by the time anyone reads it.
    throw std::runtime_error("fleettwin-node " + id_ + " did not start (" +
                             (process_.running() ? "no answer in time" : process_.ended()) +
                             "); the end of its log " + log_ + ":\n" + file_tail(log_, 30));
  std::cerr << id_ << " answers on " << grpc_address() << " after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - began)
                   .count()
            << " ms\n";
}

void cluster_node::kill9() {
  process_.kill9();
}

void cluster_node::pause() {
  process_.pause();
}

void cluster_node::resume() {
  process_.resume();
}

int cluster_node::stop(std::chrono::milliseconds timeout) {
  return process_.terminate(timeout);
}

bool cluster_node::running() {
  return process_.running();
}

// --- cluster ----------------------------------------------------------------

namespace {

std::unique_ptr<kafka_broker> start_broker(const cluster_options& o) {
  // kafka.sh reads the delay from its environment.
  setenv("FLEETTWIN_KAFKA_GROUP_DELAY_MS", std::to_string(o.group_delay_ms).c_str(), 1);
  auto broker = std::make_unique<kafka_broker>(o.brokers);
  unsetenv("FLEETTWIN_KAFKA_GROUP_DELAY_MS");
  return broker;
}

}  // namespace

cluster::cluster(cluster_options opts)
    : opts_(std::move(opts)),
      dir_(make_temp_dir("cluster")),
      broker_(start_broker(opts_)),
      topics_(kafka::topic_names::with_prefix(opts_.topic_prefix)) {
  // The topics exist before any node starts, so that nodes starting together
  // never race to create them (the nodes find them and leave them as they are).
  const int rf = opts_.brokers >= 3 ? 3 : 1;
  const std::map<std::string, std::string> plain;
  // As the node creates them (node::prepare_topics): its output topics take records up to
  // kafka::max_output_record_bytes.
  const std::map<std::string, std::string> output{
      {"max.message.bytes", std::to_string(kafka::max_output_record_bytes)}};
  const std::map<std::string, std::string> compacted{
      {"cleanup.policy", "compact"}, {"min.compaction.lag.ms", "0"}, {"segment.ms", "600000"}};
  auto compacted_output = compacted;
  compacted_output.insert(output.begin(), output.end());
  struct spec {
    std::string name;
    int partitions;
    const std::map<std::string, std::string>& config;
  };
  const int p = opts_.partitions;
  for (const auto& s : std::vector<spec>{{topics_.telemetry, p, plain},
                                         {topics_.changes, p, output},
                                         {topics_.dlq, p, output},
                                         {topics_.alerts, p, output},
                                         {topics_.members, 1, compacted},
                                         {topics_.state, p, compacted_output}}) {
    std::string error;
    if (!broker_->create_topic(s.name, s.partitions, rf, s.config, error))
      throw std::runtime_error("creating topic " + s.name + ": " + error);
  }
}

cluster::~cluster() {
  for (auto& n : nodes_)
    n->kill9();
  nodes_.clear();
  broker_.reset();
  if (!std::getenv("FLEETTWIN_KEEP_TEST_DIR")) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  } else {
    std::cerr << "kept the cluster's dir " << dir_ << "\n";
  }
}

size_t cluster::add_same_id_as(size_t i) {
  return add_node(node(i).id(), {}, true);
}

size_t cluster::add_node(std::string id, std::vector<std::string> extra_flags, bool same_id) {
  if (id.empty())
    id = "node-" + std::to_string(nodes_.size() + 1);
  for (const auto& n : nodes_)
    if (n->id() == id && !same_id)
      throw std::runtime_error("node id " + id + " is taken");
  const std::string name = same_id ? id + "-again-" + std::to_string(nodes_.size()) : id;
  std::vector<std::string> args{"--kafka", bootstrap(), "--topic-prefix", opts_.topic_prefix,
                                "--partitions", std::to_string(opts_.partitions), "--cluster-port",
                                "0", "--session-timeout-ms", "3000", "--guarantee", "exactly-once",
                                "--commit-interval-ms", "50", "--transaction-timeout-ms", "10000",
                                "--publish-changes",
                                // Twins stay ONLINE for the whole test; actors stay resident.
                                "--stale-after-ms", "3600000", "--rocksdb-cache-mb", "16"};
  args.insert(args.end(), opts_.node_flags.begin(), opts_.node_flags.end());
  args.insert(args.end(), extra_flags.begin(), extra_flags.end());
  // For investigations, e.g. FLEETTWIN_CLUSTER_NODE_FLAGS="--kafka-option debug=consumer".
  if (const char* more = std::getenv("FLEETTWIN_CLUSTER_NODE_FLAGS")) {
    std::istringstream words{more};
    for (std::string w; words >> w;)
      args.push_back(w);
  }
  nodes_.push_back(std::make_unique<cluster_node>(id, dir_ + "/" + name, dir_ + "/" + name + ".log",
                                                  std::move(args)));
  return nodes_.size() - 1;
}

void cluster::start_nodes(size_t n) {
  for (size_t i = 0; i < n; ++i)
    node(add_node()).start();
}

std::vector<size_t> cluster::running() {
  std::vector<size_t> out;
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i]->running())
      out.push_back(i);
  return out;
}

int32_t cluster::partition_of(const std::string& asset_id) const {
  return core::kafka_partition(asset_id, opts_.partitions);
}

std::optional<serving_view> cluster::serving() {
  serving_view view;
  for (auto i : running()) {
    v1::ClusterStatus cs;
    if (!get_cluster(node(i), cs).ok())
      return std::nullopt;
    for (const auto& n : cs.nodes()) {
      if (n.member().node_id() != node(i).id())
        continue;  // only the node's own (live) record
      for (const auto& p : n.member().partitions())
        if (p.role() == v1::PARTITION_ROLE_ACTIVE) {
          view.owner[p.partition()] = node(i).id();
          view.partitions_of[node(i).id()].push_back(p.partition());
        }
    }
  }
  return view;
}

bool cluster::all_partitions_served(std::string* why) {
  auto fail = [&](const std::string& text) {
    if (why)
      *why = text;
    return false;
  };
  auto up = running();
  if (up.empty())
    return fail("no node runs");
  std::map<int32_t, std::vector<std::string>> active;
  for (auto i : up) {
    v1::ClusterStatus cs;
    auto s = get_cluster(node(i), cs);
    if (!s.ok())
      return fail(node(i).id() + ": GetCluster: " + s.error_message());
    if (cs.partitions() != opts_.partitions)
      return fail(node(i).id() + " knows " + std::to_string(cs.partitions()) + " partitions");
    if (cs.unserved_partitions_size() > 0) {
      std::string list;
      for (auto p : cs.unserved_partitions())
        list += " " + std::to_string(p);
      return fail(node(i).id() + " sees unserved partitions:" + list);
    }
    bool self = false;
    for (const auto& n : cs.nodes()) {
      if (n.member().node_id() != node(i).id())
        continue;
      self = true;
      for (const auto& p : n.member().partitions()) {
        if (p.role() == v1::PARTITION_ROLE_ACTIVE)
          active[p.partition()].push_back(node(i).id());
        else if (p.role() == v1::PARTITION_ROLE_RESTORING)
          return fail(node(i).id() + " restores partition " + std::to_string(p.partition()));
      }
    }
    if (!self)
      return fail(node(i).id() + " does not list itself");
  }
  for (int32_t p = 0; p < opts_.partitions; ++p) {
    auto it = active.find(p);
    if (it == active.end())
      return fail("no running node serves partition " + std::to_string(p));
    if (it->second.size() > 1)
      return fail("partition " + std::to_string(p) + " is active on " + it->second[0] + " and " +
                  it->second[1]);
  }
  return true;
}

bool cluster::wait_until_balanced(std::chrono::milliseconds timeout, std::string* why) {
  std::string last;
  bool ok = eventually(
      [&] {
        if (!all_partitions_served(&last))
          return false;
        auto view = serving();
        if (!view)
          return false;
        for (auto i : running())
          if (view->partitions_of[node(i).id()].empty()) {
            last = node(i).id() + " serves no partition yet";
            return false;
          }
        return true;
      },
      timeout, 100ms);
  if (why)
    *why = last;
  return ok;
}

bool cluster::wait_until_all_partitions_served(std::chrono::milliseconds timeout,
                                               std::string* why) {
  std::string last;
  bool ok = eventually([&] { return all_partitions_served(&last); }, timeout, 100ms);
  if (why)
    *why = last;
  return ok;
}

std::optional<size_t> cluster::owner_of(const std::string& asset_id) {
  auto view = serving();
  if (!view)
    return std::nullopt;
  auto it = view->owner.find(partition_of(asset_id));
  if (it == view->owner.end())
    return std::nullopt;
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i]->id() == it->second)
      return i;
  return std::nullopt;
}

void cluster::dump_logs(std::ostream& out, size_t lines) {
  for (auto& n : nodes_) {
    out << "--- " << n->id() << " (" << n->grpc_address() << "): last " << lines << " lines of "
        << n->log_path() << " ---\n"
        << file_tail(n->log_path(), lines) << "--- end of " << n->id() << " ---\n";
  }
}

// --- telemetry_source ---------------------------------------------------------

telemetry_source::telemetry_source(const std::string& bootstrap, std::string topic, size_t assets)
    : topic_(std::move(topic)), next_seq_(assets, 1), acked_(assets, 0) {
  for (size_t i = 0; i < assets; ++i) {
    assets_.push_back(asset_name(i));
    index_[assets_.back()] = i;
  }
  char err[512];
  auto* conf = rd_kafka_conf_new();
  auto set = [&](const char* k, const std::string& v) {
    if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK)
      throw std::runtime_error(std::string{k} + ": " + err);
  };
  set("bootstrap.servers", bootstrap);
  set("enable.idempotence", "true");
  set("acks", "all");
  set("partitioner", "murmur2_random");
  set("linger.ms", "5");
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_dr_msg_cb(
      conf, [](rd_kafka_t* rk, const rd_kafka_message_t* m, void* op) { on_delivery(rk, m, op); });
  rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (!rk_) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string{"producer: "} + err);
  }
}

telemetry_source::~telemetry_source() {
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
  rd_kafka_flush(static_cast<rd_kafka_t*>(rk_), 10'000);
  rd_kafka_destroy(static_cast<rd_kafka_t*>(rk_));
}

std::string telemetry_source::asset_name(size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "veh-%04zu", i);
  return buf;
}

void telemetry_source::on_delivery(void*, const void* msg, void* opaque) {
  auto* self = static_cast<telemetry_source*>(opaque);
  const auto* m = static_cast<const rd_kafka_message_t*>(msg);
  auto index = reinterpret_cast<uintptr_t>(m->_private);
  std::lock_guard<std::mutex> lock{self->mutex_};
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++self->acked_[index];
  } else if (self->failed_++ == 0) {
    self->first_error_ = rd_kafka_err2str(m->err);
  }
}

void telemetry_source::send_locked(const std::string& asset) {
  auto index = index_.at(asset);
  uint64_t seq = next_seq_[index]++;
  const bool numbered =
      unsequenced_every_ == 0 || index % unsequenced_every_ != unsequenced_every_ - 1;
  auto value = telemetry(
      asset, numbered ? seq : 0, base_time_ms + static_cast<int64_t>(seq) * 1000,
      {{"speed", static_cast<double>(seq)}, {"odometer", 10.0 * static_cast<double>(seq)}},
      {{"fleet", index % 2 == 0 ? "north" : "south"}});
  static const std::string content_type = "application/x-protobuf";
  auto* rk = static_cast<rd_kafka_t*>(rk_);
  for (;;) {
    auto* h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "content-type", -1, content_type.data(),
                        static_cast<ssize_t>(content_type.size()));
    auto err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic_.c_str()),
                                 RD_KAFKA_V_KEY(const_cast<char*>(asset.data()), asset.size()),
                                 RD_KAFKA_V_VALUE(value.data(), value.size()),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                 RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(index)), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
      break;
    rd_kafka_headers_destroy(h);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
      throw std::runtime_error(std::string{"produce: "} + rd_kafka_err2str(err));
    // Delivery callbacks take the mutex: poll without holding it.
    mutex_.unlock();
    rd_kafka_poll(rk, 10);
    mutex_.lock();
  }
}

void telemetry_source::send(const std::string& asset) {
  {
    std::lock_guard<std::mutex> lock{mutex_};
    send_locked(asset);
  }
  rd_kafka_poll(static_cast<rd_kafka_t*>(rk_), 0);
}

bool telemetry_source::flush(std::chrono::milliseconds timeout) {
  auto err = rd_kafka_flush(static_cast<rd_kafka_t*>(rk_), static_cast<int>(timeout.count()));
  return err == RD_KAFKA_RESP_ERR_NO_ERROR && failed() == 0;
}

bool telemetry_source::produce(int per_asset, std::chrono::milliseconds timeout) {
  for (int r = 0; r < per_asset; ++r)
    for (const auto& a : assets_)
      send(a);
  return flush(timeout);
}

void telemetry_source::start(double rate, std::vector<std::string> subset) {
  if (thread_.joinable())
    throw std::runtime_error("telemetry_source: already producing");
  if (subset.empty())
    subset = assets_;
  stop_ = false;
  thread_ = std::thread([this, rate, subset = std::move(subset)] {
    auto begin = std::chrono::steady_clock::now();
    uint64_t sent = 0;
    size_t next = 0;
    while (!stop_) {
      double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
      auto due = static_cast<uint64_t>(elapsed * rate);
      while (sent < due && !stop_) {
        send(subset[next]);
        next = (next + 1) % subset.size();
        ++sent;
      }
      std::this_thread::sleep_for(5ms);  // pacing, not synchronisation
      rd_kafka_poll(static_cast<rd_kafka_t*>(rk_), 0);
    }
  });
}

bool telemetry_source::stop(std::chrono::milliseconds timeout) {
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
  return flush(timeout);
}

std::map<std::string, uint64_t> telemetry_source::acked() const {
  std::lock_guard<std::mutex> lock{mutex_};
  std::map<std::string, uint64_t> out;
  for (size_t i = 0; i < assets_.size(); ++i)
    out[assets_[i]] = acked_[i];
  return out;
}

std::map<std::string, uint64_t> telemetry_source::sent() const {
  std::lock_guard<std::mutex> lock{mutex_};
  std::map<std::string, uint64_t> out;
  for (size_t i = 0; i < assets_.size(); ++i)
    out[assets_[i]] = next_seq_[i] - 1;
  return out;
}

uint64_t telemetry_source::acked_total() const {
  std::lock_guard<std::mutex> lock{mutex_};
  uint64_t n = 0;
  for (auto a : acked_)
    n += a;
  return n;
}

uint64_t telemetry_source::failed() const {
  std::lock_guard<std::mutex> lock{mutex_};
  return failed_;
}

std::string telemetry_source::first_error() const {
  std::lock_guard<std::mutex> lock{mutex_};
  return first_error_;
}

// --- twin-changes reader ------------------------------------------------------

std::vector<change_record> read_changes(const std::string& bootstrap, const std::string& topic,
                                        size_t expected, std::chrono::milliseconds timeout,
                                        bool committed_only) {
  char err[512];
  auto* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : std::map<std::string, std::string>{
           {"bootstrap.servers", bootstrap},
           {"group.id", "changes-reader-" + std::to_string(free_port())},
           {"isolation.level", committed_only ? "read_committed" : "read_uncommitted"},
           {"enable.auto.commit", "false"},
           {"enable.partition.eof", "true"},
           {"auto.offset.reset", "earliest"}})
    rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err));
  kafka::kafka_handle rk{rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))};
  if (!rk)
    throw std::runtime_error(std::string{"consumer: "} + err);
  rd_kafka_poll_set_consumer(rk.get());

  // Every partition of the topic, from its beginning (no group rebalance to wait for).
  int partitions = 0;
  {
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr);
    if (rd_kafka_metadata(rk.get(), 0, rkt, &md, 10'000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (md->topic_cnt == 1)
        partitions = md->topics[0].partition_cnt;
      rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
  }
  if (partitions <= 0)
    throw std::runtime_error("no metadata for topic " + topic);
  auto* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p)
    rd_kafka_topic_partition_list_add(list, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk.get(), list);
  rd_kafka_topic_partition_list_destroy(list);

  const bool telemetry_input = topic.ends_with(".telemetry");
  std::vector<change_record> out;
  size_t covered = 0;  // records, or for twin changes the changes their events cover
  std::set<int32_t> at_end;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  // At the end of every partition with fewer records than expected: give
  // outstanding transactions a little time, not the whole timeout.
  constexpr auto patience = 5s;
  auto last_record = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() < deadline) {
    if (static_cast<int>(at_end.size()) == partitions &&
        (covered >= expected || std::chrono::steady_clock::now() - last_record > patience))
      break;
    auto* m = rd_kafka_consumer_poll(rk.get(), 100);
    if (!m)
      continue;
    last_record = std::chrono::steady_clock::now();
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      at_end.insert(m->partition);
    } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      at_end.erase(m->partition);
      v1::TwinChange change;
      change_record r;
      r.partition = m->partition;
      r.offset = m->offset;
      if (telemetry_input) {
        // explain_missing reads the telemetry topic too.
        if (v1::Telemetry t; t.ParseFromArray(m->payload, static_cast<int>(m->len))) {
          r.asset_id = t.asset_id();
          r.sequence = t.sequence();
        }
      } else if (change.ParseFromArray(m->payload, static_cast<int>(m->len))) {
        r.asset_id = change.asset_id();
        r.version = change.version();
        r.first_version = change.first_version() != 0 ? change.first_version() : r.version;
        r.sequence = change.sequence();
        r.type = change.type();
      }
      covered += r.version >= r.first_version && r.first_version > 0
                     ? static_cast<size_t>(r.version - r.first_version + 1)
                     : 1;
      rd_kafka_headers_t* hdrs = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (auto [name, field] : {std::pair{"ce_id", &r.ce_id}, std::pair{"ce_source", &r.source},
                                   std::pair{"ce_time", &r.time}})
          if (rd_kafka_header_get_last(hdrs, name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR)
            field->assign(static_cast<const char*>(value), size);
      }
      out.push_back(std::move(r));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk.get());
  return out;
}

std::string explain_missing(const cluster& c, const std::string& asset_id, uint64_t produced) {
  std::ostringstream out;
  auto committed = read_changes(c.bootstrap(), c.topics().changes, 0, 20s, true);
  auto all = read_changes(c.bootstrap(), c.topics().changes, 0, 20s, false);
  auto input = read_changes(c.bootstrap(), c.topics().telemetry, 0, 20s, true);
  std::map<uint64_t, int> applied, published;
  // A merged event covers the sequences before its own (numbered assets number
  // their records 1..n, so sequence and version go together).
  auto count = [&asset_id](const std::vector<change_record>& events,
                           std::map<uint64_t, int>& into) {
    for (const auto& r : events) {
      if (r.asset_id != asset_id)
        continue;
      const uint64_t span = r.version >= r.first_version ? r.version - r.first_version + 1 : 1;
      for (uint64_t k = 0; k < span && (k == 0 || r.sequence > k); ++k)
        ++into[r.sequence - k];
    }
  };
  count(committed, applied);
  count(all, published);
  out << asset_id << " (partition " << c.partition_of(asset_id) << "):";
  size_t shown = 0;
  for (const auto& r : input) {
    if (r.asset_id != asset_id || applied.contains(r.sequence))
      continue;
    if (shown++ < 20)
      out << " sequence " << r.sequence << " at telemetry offset " << r.offset
          << " has no committed change (" << published[r.sequence] << " uncommitted);";
  }
  for (const auto& [seq, n] : applied)
    if (n > 1 && shown++ < 20)
      out << " sequence " << seq << " has " << n << " committed changes;";
  if (shown == 0)
    out << " every one of " << produced << " sequences has a committed change";
  out << " (the dead-letter topic holds "
      << read_changes(c.bootstrap(), c.topics().dlq, 0, 20s, false).size() << " records)";
  return out.str();
}

// --- gRPC helpers ---------------------------------------------------------------

grpc::Status list_all(v1::TwinService::Stub& stub, const std::string& filter, int page_size,
                      std::vector<v1::Twin>& out, int* pages) {
  out.clear();
  if (pages)
    *pages = 0;
  std::string token;
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 20s);
    v1::ListTwinsRequest req;
    req.set_page_size(page_size);
    req.set_page_token(token);
    req.set_filter(filter);
    v1::ListTwinsResponse resp;
    auto s = stub.ListTwins(&ctx, req, &resp);
    if (!s.ok())
      return s;
    if (pages)
      ++*pages;
    for (auto& t : *resp.mutable_twins())
      out.push_back(std::move(t));
    if (resp.next_page_token().empty())
      return grpc::Status::OK;
    token = resp.next_page_token();
  }
}

grpc::Status get_cluster(cluster_node& n, v1::ClusterStatus& out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  out.Clear();
  return n.admin().GetCluster(&ctx, {}, &out);
}

grpc::Status get_status(cluster_node& n, v1::NodeStatus& out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  out.Clear();
  return n.nodes().GetStatus(&ctx, {}, &out);
}

v1::Twin comparable(v1::Twin t) {
  t.clear_connectivity();
  return t;
}

std::string twin_diff(const v1::Twin& a, const v1::Twin& b) {
  google::protobuf::util::MessageDifferencer diff;
  std::string report;
  diff.ReportDifferencesToString(&report);
  if (diff.Compare(comparable(a), comparable(b)))
    return {};
  return report.empty() ? std::string{"differ"} : report;
}

bool wait_until_applied(cluster_node& via, const std::map<std::string, uint64_t>& expected,
                        std::chrono::milliseconds timeout, std::string* why) {
  std::string last;
  // Stop early when nothing moves any more: a missing record never arrives.
  constexpr auto stall_limit = 20s;
  std::map<std::string, uint64_t> previous;
  auto moved = std::chrono::steady_clock::now();
  bool stalled = false;
  bool matched = false;
  eventually(
      [&] {
        std::vector<v1::Twin> twins;
        auto s = list_all(via.twins(), "", 1000, twins);
        if (!s.ok()) {
          last = "ListTwins via " + via.id() + ": " + std::to_string(s.error_code()) + " " +
                 s.error_message();
          return false;
        }
        std::map<std::string, uint64_t> seen;
        for (const auto& t : twins)
          seen[t.asset_id()] = t.applied_records();
        if (seen == expected) {
          matched = true;
          return true;
        }
        if (seen != previous) {
          previous = seen;
          moved = std::chrono::steady_clock::now();
        } else if (std::chrono::steady_clock::now() - moved > stall_limit) {
          stalled = true;  // gives up below
        }
        std::ostringstream text;
        size_t shown = 0, behind = 0;
        for (const auto& [id, n] : expected) {
          auto it = seen.find(id);
          uint64_t have = it == seen.end() ? 0 : it->second;
          if (have != n) {
            ++behind;
            if (shown++ < 5)
              text << " " << id << "=" << have << "/" << n;
          }
        }
        for (const auto& [id, n] : seen)
          if (!expected.contains(id) && shown++ < 10)
            text << " unexpected " << id;
        last = std::to_string(behind) + " twins differ from the records produced:" + text.str();
        return stalled;
      },
      timeout, 250ms);
  if (why)
    *why = last + (stalled ? " (no progress for 20 s)" : "");
  return matched;
}

std::string check_exactly_once(cluster& c, const telemetry_source& src, cluster_node& via,
                               std::chrono::milliseconds timeout, std::string* summary,
                               const std::map<std::string, uint64_t>& extra) {
  std::ostringstream problems;
  size_t reported = 0;
  auto report = [&](const std::string& text) {
    if (reported++ < 12)
      problems << text << "\n";
  };
  const auto sent = src.sent();
  auto acked = src.acked();
  if (sent != acked)
    report("not every record sent was acknowledged (" + std::to_string(src.failed()) +
           " failed: " + src.first_error() + ")");
  // Twins fed by the test itself (numbered 1..n) are checked the same way.
  acked.insert(extra.begin(), extra.end());
  auto numbered_asset = [&](const std::string& id) {
    return extra.contains(id) || !src.unsequenced(id);
  };
  uint64_t total = 0;
  for (const auto& [id, n] : acked)
    total += n;
  std::string why;
  if (!wait_until_applied(via, acked, timeout, &why))
    report("twins did not reach the records produced: " + why);
  std::vector<v1::Twin> twins;
  auto s = list_all(via.twins(), "", 1000, twins);
  if (!s.ok())
    report("ListTwins: " + s.error_message());
  if (twins.size() != acked.size())
    report(std::to_string(twins.size()) + " twins listed, " + std::to_string(acked.size()) +
           " produced");
  for (const auto& t : twins) {
    auto it = acked.find(t.asset_id());
    if (it == acked.end()) {
      report("an unknown twin " + t.asset_id());
      continue;
    }
    const auto n = it->second;
    const bool numbered = numbered_asset(t.asset_id());
    if (t.applied_records() != n || t.version() != n || t.duplicates() != 0 ||
        t.out_of_order() != 0 || (numbered && t.last_sequence() != n))
      report(t.asset_id() + (numbered ? "" : " (sequence 0)") + ": produced " + std::to_string(n) +
             ", applied " + std::to_string(t.applied_records()) + ", version " +
             std::to_string(t.version()) + ", duplicates " + std::to_string(t.duplicates()) +
             ", out of order " + std::to_string(t.out_of_order()) + ", last sequence " +
             std::to_string(t.last_sequence()) + "\n" + explain_missing(c, t.asset_id(), n));
  }
  // The committed change events: each covers versions first_version..version
  // (one work item's changes of its twin, merged); together, in order, they
  // cover versions 1..n once each; an event's sequence is its last record's
  // (its version where the asset numbers its records 1..n, else 0).
  auto changes = read_changes(c.bootstrap(), c.topics().changes, total, timeout);
  size_t covered = 0;
  for (const auto& ch : changes)
    covered += ch.version >= ch.first_version ? ch.version - ch.first_version + 1 : 0;
  if (covered != total)
    report(std::to_string(changes.size()) + " committed change events covering " +
           std::to_string(covered) + " changes for " + std::to_string(total) + " records");
  std::stable_sort(changes.begin(), changes.end(), [](const auto& a, const auto& b) {
    return a.partition != b.partition ? a.partition < b.partition : a.offset < b.offset;
  });
  std::map<std::string, std::vector<const change_record*>> by_asset;
  for (const auto& ch : changes)
    by_asset[ch.asset_id].push_back(&ch);
  for (const auto& [id, list] : by_asset)
    if (!acked.contains(id))
      report("change events for an unknown asset \"" + id + "\"");
  for (const auto& [id, n] : acked) {
    const auto& list = by_asset[id];
    const bool numbered = numbered_asset(id);
    const uint64_t last = list.empty() ? 0 : list.back()->version;
    if (last != n)
      report(id + ": " + std::to_string(list.size()) + " change events up to version " +
             std::to_string(last) + " for " + std::to_string(n) + " records");
    uint64_t next = 1;  // the version the next event must start at
    for (size_t i = 0; i < list.size(); ++i) {
      const auto& ch = *list[i];
      const uint64_t want_seq = numbered ? ch.version : 0;
      if (ch.first_version != next || ch.version < ch.first_version || ch.sequence != want_seq) {
        // Where both came from: the node and time of this event and of the
        // one before it.
        auto where = [](const change_record& r) {
          return "partition " + std::to_string(r.partition) + " offset " +
                 std::to_string(r.offset) + " by " + r.source + " at " + r.time;
        };
        report(id + ": change event " + std::to_string(i + 1) + " (" + where(ch) +
               ") has versions " + std::to_string(ch.first_version) + ".." +
               std::to_string(ch.version) + " and sequence " + std::to_string(ch.sequence) +
               " (expected versions from " + std::to_string(next) + ", sequence " +
               std::to_string(want_seq) + ")" +
               (i > 0 ? "; the change before: version " + std::to_string(list[i - 1]->version) +
                            " (" + where(*list[i - 1]) + ")"
                      : std::string{}));
        break;
      }
      if (ch.ce_id != id + "/" + std::to_string(ch.version)) {
        report(id + ": ce_id \"" + ch.ce_id + "\" at version " + std::to_string(ch.version));
        break;
      }
      next = ch.version + 1;
    }
  }
  if (summary)
    *summary = "records=" + std::to_string(total) + " twins=" + std::to_string(twins.size()) +
               " change_events=" + std::to_string(changes.size()) + " covering " +
               std::to_string(covered);
  if (reported > 12)
    problems << "... and " << reported - 12 << " more\n";
  return problems.str();
}

long env_or(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v)
    return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  return end && *end == '\0' ? x : fallback;
}

void cluster_fixture::TearDown() {
  if (c_ && HasFailure())
    c_->dump_logs(std::cerr);
  c_.reset();
}

}  // namespace fleettwin::test

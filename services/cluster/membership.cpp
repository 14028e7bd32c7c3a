#include "services/cluster/membership.hpp"

#include <pthread.h>

#include <set>

#include <spdlog/spdlog.h>

namespace fleettwin::cluster {

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

membership::membership(membership_options opts, std::function<fleettwin::v1::Member()> snapshot)
    : opts_(std::move(opts)), snapshot_(std::move(snapshot)), created_ms_(wall_ms()) {}

std::unique_ptr<membership> membership::create(membership_options opts,
                                               std::function<fleettwin::v1::Member()> snapshot,
                                               std::string& error) {
  std::unique_ptr<membership> m{new membership(std::move(opts), std::move(snapshot))};
  auto base = m->opts_.settings;
  base["bootstrap.servers"] = m->opts_.bootstrap;
  auto producer = base;
  producer["client.id"] = m->opts_.node_id + "-membership";
  producer["enable.idempotence"] = "true";
  producer["linger.ms"] = "0";
  m->producer_ = kafka::make_client(RD_KAFKA_PRODUCER, producer, "the membership producer", error);
  if (!m->producer_)
    return nullptr;
  auto consumer = base;
  consumer["client.id"] = m->opts_.node_id + "-membership";
  consumer["group.id"] = m->opts_.node_id + "-membership";  // never joined or committed
  consumer["enable.auto.commit"] = "false";
  consumer["enable.partition.eof"] = "true";
  consumer["fetch.wait.max.ms"] = "200";  // data ends the wait at once; the end waits it out
  m->consumer_ = kafka::make_client(RD_KAFKA_CONSUMER, consumer, "the membership consumer", error);
  if (!m->consumer_)
    return nullptr;
  rd_kafka_poll_set_consumer(m->consumer_.get());
  if (auto err = kafka::assign_partition(m->consumer_.get(), m->opts_.topic, 0,
                                         RD_KAFKA_OFFSET_BEGINNING)) {
    error = *err;
    return nullptr;
  }
  m->thread_ = std::thread{[raw = m.get()] { raw->run(); }};
  return m;
}

membership::~membership() {
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
  if (consumer_)
    rd_kafka_consumer_close(consumer_.get());
  if (producer_)
    rd_kafka_flush(producer_.get(), 2'000);
}

void membership::publish_soon() {
  publish_due_ = true;
}

void membership::leave(std::chrono::milliseconds timeout) {
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
  publish(true);
  rd_kafka_flush(producer_.get(), static_cast<int>(timeout.count()));
}

void membership::publish(bool tombstone) {
  std::string value;
  if (!tombstone) {
    auto record = snapshot_();
    record.set_node_id(opts_.node_id);
    record.set_incarnation(opts_.incarnation);
    record.set_updated_ms(wall_ms());
    record.SerializeToString(&value);
  }
  auto err = rd_kafka_producev(
      producer_.get(), RD_KAFKA_V_TOPIC(opts_.topic.c_str()), RD_KAFKA_V_PARTITION(0),
      RD_KAFKA_V_KEY(opts_.node_id.data(), opts_.node_id.size()),
      RD_KAFKA_V_VALUE(tombstone ? nullptr : value.data(), tombstone ? 0 : value.size()),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    spdlog::warn("event=membership_publish_failed error=\"{}\"", rd_kafka_err2str(err));
}

bool membership::refresh_liveness() {
  std::set<std::string> clients;
  if (auto known = opts_.live_clients ? opts_.live_clients() : std::nullopt) {
    clients = std::move(*known);
  } else {
    const rd_kafka_group_list* groups = nullptr;
    auto err = rd_kafka_list_groups(producer_.get(), opts_.group_id.c_str(), &groups, 2'000);
    // PARTIAL: a broker did not answer, the others did (the coordinator's
    // answer is what counts).
    if ((err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__PARTIAL) || !groups)
      return false;  // unknown: keep what we had
    for (int g = 0; g < groups->group_cnt; ++g)
      for (int i = 0; i < groups->groups[g].member_cnt; ++i)
        clients.insert(groups->groups[g].members[i].client_id);
    rd_kafka_group_list_destroy(groups);
  }
  std::lock_guard<std::mutex> guard{mutex_};
  bool changed = false;
  for (auto& [id, m] : members_) {
    changed |= m.alive != clients.contains(id);
    m.alive = clients.contains(id);
  }
  return changed;
}

bool membership::on_record(const rd_kafka_message_t* m) {
  std::string key{static_cast<const char*>(m->key), m->key_len};
  std::lock_guard<std::mutex> guard{mutex_};
  if (!m->payload || m->len == 0)
    return members_.erase(key) > 0;
  fleettwin::v1::Member record;
  if (!record.ParseFromArray(m->payload, static_cast<int>(m->len))) {
    spdlog::warn("event=membership_record_invalid key={} offset={}", key, m->offset);
    return false;
  }
  if (key == opts_.node_id && record.incarnation() != opts_.incarnation) {
    // Another process with this node's id (or an earlier run of this one).
    foreign_ = record;
  }
  auto& view = members_[key];
  const bool known = view.offset >= 0;
  // Heartbeats rewrite the same partitions: only a change of roles counts.
  bool changed = !known;
  if (known) {
    const auto& a = view.record.partitions();
    const auto& b = record.partitions();
    changed = a.size() != b.size();
    for (int i = 0; !changed && i < a.size(); ++i)
      changed = a[i].partition() != b[i].partition() || a[i].role() != b[i].role();
  }
  view.record = std::move(record);
  view.offset = m->offset;
  if (!known)
    view.alive = true;  // until the next liveness check says otherwise
  return changed;
}

void membership::run() {
  pthread_setname_np(pthread_self(), "ft-membership");  // top -H, perf
  rd_kafka_queue_t* queue = rd_kafka_queue_get_consumer(consumer_.get());
  std::vector<rd_kafka_message_t*> msgs(256);
  auto next_heartbeat = std::chrono::steady_clock::now();
  while (!stop_.load()) {
    auto now = std::chrono::steady_clock::now();
    bool changed = false;
    if (publish_due_.exchange(false) || now >= next_heartbeat) {
      publish(false);
      if (now >= next_heartbeat) {
        changed |= refresh_liveness();
        next_heartbeat = now + opts_.heartbeat;
      }
    }
    rd_kafka_poll(producer_.get(), 0);
    auto n = rd_kafka_consume_batch_queue(queue, 50, msgs.data(), msgs.size());
    for (ssize_t i = 0; i < n; ++i) {
      if (msgs[i]->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        caught_up_ = true;
      else if (!msgs[i]->err)
        changed |= on_record(msgs[i]);
      rd_kafka_message_destroy(msgs[i]);
    }
    if (changed && opts_.on_change)
      opts_.on_change();
  }
  rd_kafka_queue_destroy(queue);
}

std::optional<owner> membership::owner_of(int32_t partition) const {
  std::lock_guard<std::mutex> guard{mutex_};
  // The latest claim wins: a node that took a partition over wrote its
  // record after the one of the node that had it.
  const member_view* best = nullptr;
  bool restoring = false;
  for (const auto& [id, m] : members_) {
    if (id == opts_.node_id)
      continue;
    for (const auto& p : m.record.partitions()) {
      bool claims = p.role() == fleettwin::v1::PARTITION_ROLE_ACTIVE ||
                    p.role() == fleettwin::v1::PARTITION_ROLE_RESTORING;
      if (p.partition() == partition && claims && (!best || m.offset > best->offset)) {
        best = &m;
        restoring = p.role() == fleettwin::v1::PARTITION_ROLE_RESTORING;
      }
    }
  }
  if (!best)
    return std::nullopt;
  return owner{best->record.node_id(), best->record.cluster_endpoint(),
               best->record.grpc_endpoint(), restoring, best->alive};
}

std::optional<std::string> membership::newer_instance() const {
  std::lock_guard<std::mutex> guard{mutex_};
  if (!foreign_)
    return std::nullopt;
  const bool newer =
      foreign_->started_ms() > opts_.started_ms ||
      (foreign_->started_ms() == opts_.started_ms && foreign_->incarnation() > opts_.incarnation);
  if (!newer)
    return std::nullopt;
  const auto age = wall_ms() - foreign_->updated_ms();
  // Written before this process started, or long ago: an earlier run of this
  // node that is gone now.
  if (foreign_->updated_ms() < created_ms_ || age > 3 * opts_.heartbeat.count())
    return std::nullopt;
  return "a process with node id " + opts_.node_id + " (incarnation " +
         std::to_string(foreign_->incarnation()) + ", gRPC " + foreign_->grpc_endpoint() +
         ", started at " + std::to_string(foreign_->started_ms()) + " ms) wrote its record " +
         std::to_string(age) + " ms ago";
}

std::vector<member_view> membership::members() const {
  std::lock_guard<std::mutex> guard{mutex_};
  std::vector<member_view> out;
  for (const auto& [id, m] : members_)
    out.push_back(m);
  return out;
}

}  // namespace fleettwin::cluster

#include "services/kafka/audit_log.hpp"

#include <functional>
#include <queue>
#include <tuple>

#include <spdlog/spdlog.h>

#include "actors/core/partitioning.hpp"
#include "fleettwin/v1/twin.pb.h"

namespace fleettwin::kafka {

std::string audit_key(const runtime::audit_entry& e) {
  constexpr std::string_view twins = "twins/";
  if (std::string_view{e.target}.starts_with(twins)) {
    // "twins/{id}" and what lies below it ("twins/{id}/alerts/..."): the asset id.
    auto id = std::string_view{e.target}.substr(twins.size());
    return std::string{id.substr(0, id.find('/'))};
  }
  // A refusal before the request was read names no target: keyed by the method.
  return e.target.empty() ? e.method : e.target;
}

void encode_audit(const runtime::audit_entry& e, const std::string& node, std::string& out) {
  fleettwin::v1::AuditEvent a;
  a.set_time_ms(e.time_ms);
  a.set_subject(e.subject);
  a.set_tenant(e.tenant);
  a.set_role(e.role);
  a.set_method(e.method);
  a.set_target(e.target);
  a.set_code(e.code);
  a.set_message(e.message);
  a.set_node(node);
  a.SerializeToString(&out);
}

std::unique_ptr<audit_log> audit_log::start(const std::string& bootstrap, std::string topic,
                                            std::string node_id,
                                            const std::map<std::string, std::string>& settings,
                                            std::string& error) {
  std::unique_ptr<audit_log> log{new audit_log};
  log->topic_ = std::move(topic);
  log->node_id_ = std::move(node_id);
  std::map<std::string, std::string> conf{
      {"bootstrap.servers", bootstrap},
      {"client.id", log->node_id_ + "-audit"},
      // Not idempotent: on a real broker, each node's extra idempotent producer (its
      // InitProducerId right after start) stalled the group coordinator for seconds in
      // the cluster tests. acks=all and one request in flight keep entries durable and in
      // order; a retried send may duplicate an entry (each carries its time), never lose
      // one silently.
      {"acks", "all"},
      {"max.in.flight.requests.per.connection", "1"},
      {"linger.ms", "5"},
      {"partitioner", "murmur2_random"},
  };
  for (const auto& [k, v] : settings)
    conf[k] = v;
  auto* c = make_conf(conf, error);
  if (!c)
    return nullptr;
  rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
  rd_kafka_conf_set_opaque(c, log.get());
  char errstr[512];
  log->producer_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr)));
  if (!log->producer_) {
    rd_kafka_conf_destroy(c);
    error = std::string{"cannot create the audit producer: "} + errstr;
    return nullptr;
  }
  return log;
}

audit_log::~audit_log() {
  if (!producer_)
    return;
  if (rd_kafka_flush(producer_.get(), 5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    lost_ += static_cast<uint64_t>(rd_kafka_outq_len(producer_.get()));
    spdlog::warn("event=audit_unflushed records={}", rd_kafka_outq_len(producer_.get()));
  }
}

void audit_log::on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
    return;
  auto* self = static_cast<audit_log*>(opaque);
  self->lost_++;
  spdlog::warn("event=audit_lost reason=\"{}\"", rd_kafka_err2str(m->err));
}

void audit_log::record(const runtime::audit_entry& e) {
  std::string value;
  encode_audit(e, node_id_, value);
  auto key = audit_key(e);
  static constexpr char content_type[] = "application/x-protobuf";
  auto err = rd_kafka_producev(
      producer_.get(), RD_KAFKA_V_TOPIC(topic_.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
      RD_KAFKA_V_VALUE(value.data(), value.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_HEADER("content-type", content_type, sizeof(content_type) - 1), RD_KAFKA_V_END);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    lost_++;
    spdlog::warn("event=audit_lost reason=\"{}\"", rd_kafka_err2str(err));
  }
  rd_kafka_poll(producer_.get(), 0);  // serves delivery reports
}

namespace {

/// Whether `target` is `trail` or lies below it (a twin's alerts are in its trail).
bool below(std::string_view target, std::string_view trail) {
  return target.starts_with(trail) &&
         (target.size() == trail.size() || target[trail.size()] == '/');
}

}  // namespace

bool read_audit_trail(const std::string& bootstrap, const std::string& topic,
                      const std::map<std::string, std::string>& settings, const audit_query& q,
                      audit_trail& out, std::string& error, bool& timed_out) {
  timed_out = false;
  runtime::audit_entry probe;
  probe.target = q.target;
  const auto key = audit_key(probe);
  std::map<std::string, std::string> conf{
      {"bootstrap.servers", bootstrap},
      {"client.id", "fleettwin-audit-reader"},
      // Never joined or committed: the partition is assigned, read and closed.
      {"group.id", "fleettwin-audit-reader"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "true"},
      // Writes audited in their change's transaction show once it committed.
      {"isolation.level", "read_committed"},
      {"fetch.wait.max.ms", "100"},
  };
  for (const auto& [k, v] : settings)
    conf[k] = v;
  auto rk = make_client(RD_KAFKA_CONSUMER, conf, "the audit reader", error);
  if (!rk)
    return false;
  rd_kafka_poll_set_consumer(rk.get());
  constexpr int timeout_ms = 5000;
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  auto err = rd_kafka_metadata(rk.get(), 0, t, &md, timeout_ms);
  rd_kafka_topic_destroy(t);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err ||
      md->topics[0].partition_cnt <= 0) {
    error = "the audit topic " + topic + " cannot be described: " +
            rd_kafka_err2str(err != RD_KAFKA_RESP_ERR_NO_ERROR ? err
                             : md->topic_cnt == 1              ? md->topics[0].err
                                                               : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC);
    if (md)
      rd_kafka_metadata_destroy(md);
    return false;
  }
  const int32_t partition = core::kafka_partition(key, md->topics[0].partition_cnt);
  rd_kafka_metadata_destroy(md);
  auto* list = rd_kafka_topic_partition_list_new(1);
  auto* tp = rd_kafka_topic_partition_list_add(list, topic.c_str(), partition);
  tp->offset = RD_KAFKA_OFFSET_BEGINNING;
  if (q.since_ms > 0) {
    // The first record written at or after since_ms (none: nothing to read).
    tp->offset = q.since_ms;
    err = rd_kafka_offsets_for_times(rk.get(), list, timeout_ms);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
      err = tp->err;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      error = std::string{"finding the audit records since "} + std::to_string(q.since_ms) + ": " +
              rd_kafka_err2str(err);
      rd_kafka_topic_partition_list_destroy(list);
      return false;
    }
    if (tp->offset < 0) {
      rd_kafka_topic_partition_list_destroy(list);
      return true;
    }
  }
  err = rd_kafka_assign(rk.get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = std::string{"reading the audit topic: "} + rd_kafka_err2str(err);
    return false;
  }
  const auto deadline = std::chrono::steady_clock::now() + q.budget;
  // The newest `limit` by time (entries of one target come from two producers, the
  // transaction's and the audit log's, so the log's order is not quite the time order):
  // a min-heap on (time, offset).
  struct found {
    int64_t time_ms;
    int64_t offset;
    std::string event;
    bool operator>(const found& o) const {
      return std::tie(time_ms, offset) > std::tie(o.time_ms, o.offset);
    }
  };
  std::priority_queue<found, std::vector<found>, std::greater<>> newest;
  fleettwin::v1::AuditEvent event;
  bool done = false;
  while (!done) {
    if (std::chrono::steady_clock::now() >= deadline) {
      timed_out = true;
      break;
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 100);
    if (!m)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      done = true;  // the last stable offset: every committed record is read
    } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++out.scanned;
      std::string_view k{m->key ? static_cast<const char*>(m->key) : "", m->key_len};
      if (k == key && m->payload && event.ParseFromArray(m->payload, static_cast<int>(m->len)) &&
          below(event.target(), q.target) && event.time_ms() >= q.since_ms) {
        ++out.total;
        newest.push(found{event.time_ms(), m->offset,
                          std::string{static_cast<const char*>(m->payload), m->len}});
        if (newest.size() > q.limit)
          newest.pop();
      }
    } else {
      spdlog::debug("event=audit_read_error error=\"{}\"", rd_kafka_message_errstr(m));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk.get());
  if (timed_out)
    return false;
  out.events.resize(newest.size());
  for (size_t i = newest.size(); i-- > 0; newest.pop())
    out.events[out.events.size() - 1 - i] = std::move(const_cast<found&>(newest.top()).event);
  return true;
}

}  // namespace fleettwin::kafka

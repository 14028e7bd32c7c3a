#include "services/kafka/audit_log.hpp"

#include <spdlog/spdlog.h>

#include "fleettwin/v1/twin.pb.h"

namespace fleettwin::kafka {

std::string audit_key(const runtime::audit_entry& e) {
  constexpr std::string_view twins = "twins/";
  if (std::string_view{e.target}.starts_with(twins))
    return e.target.substr(twins.size());
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

}  // namespace fleettwin::kafka

#include "services/kafka/record_export.hpp"

#include <atomic>

#include "services/kafka/kafka_config.hpp"

namespace fleettwin::kafka {

namespace {

struct delivery_state {
  std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> failed{0};
  std::string first_error;  // set once, by the delivery thread (rd_kafka_poll/flush)
};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  auto* st = static_cast<delivery_state*>(opaque);
  if (m->err) {
    if (st->failed.fetch_add(1) == 0)
      st->first_error = rd_kafka_err2str(m->err);
  } else {
    st->delivered.fetch_add(1);
  }
}

}  // namespace

bool export_records(const export_target& to, const std::vector<export_record>& records,
                    int64_t time_ms, std::chrono::milliseconds timeout, std::string& error) {
  delivery_state st;
  std::map<std::string, std::string> conf{
      {"bootstrap.servers", to.bootstrap},
      {"client.id", to.source + "-export"},
      // Not idempotent (no producer id to fetch for a one-off batch); acks=all and one
      // request in flight keep the records durable and in order.
      {"acks", "all"},
      {"max.in.flight.requests.per.connection", "1"},
      {"linger.ms", "20"},
      {"partitioner", "murmur2_random"},
      {"message.timeout.ms", std::to_string(timeout.count())},
  };
  for (const auto& [k, v] : to.settings)
    conf[k] = v;
  auto* c = make_conf(conf, error);
  if (!c)
    return false;
  rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
  rd_kafka_conf_set_opaque(c, &st);
  char errstr[512];
  kafka_handle producer{rd_kafka_new(RD_KAFKA_PRODUCER, c, errstr, sizeof(errstr))};
  if (!producer) {
    rd_kafka_conf_destroy(c);
    error = std::string{"cannot create the export producer: "} + errstr;
    return false;
  }
  const auto time_text = rfc3339(time_ms);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const auto& r : records) {
    for (;;) {
      auto* h = rd_kafka_headers_new(6);
      add_header(h, "content-type", "application/json");
      add_header(h, "ce_specversion", "1.0");
      add_header(h, "ce_id", r.id);
      add_header(h, "ce_type", r.type);
      add_header(h, "ce_source", to.source);
      add_header(h, "ce_time", time_text);
      const auto err = rd_kafka_producev(
          producer.get(), RD_KAFKA_V_TOPIC(to.topic.c_str()),
          RD_KAFKA_V_KEY(const_cast<char*>(r.key.data()), r.key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        break;
      rd_kafka_headers_destroy(h);
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || std::chrono::steady_clock::now() > deadline) {
        error = std::string{"cannot write to "} + to.topic + ": " + rd_kafka_err2str(err);
        rd_kafka_flush(producer.get(), 5000);
        return false;
      }
      rd_kafka_poll(producer.get(), 50);
    }
    rd_kafka_poll(producer.get(), 0);
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  rd_kafka_flush(producer.get(), static_cast<int>(std::max<int64_t>(1000, left.count())));
  if (st.failed.load() > 0 || st.delivered.load() < records.size()) {
    error = std::to_string(records.size() - st.delivered.load()) + " of " +
            std::to_string(records.size()) + " records to " + to.topic + " were not written" +
            (st.first_error.empty() ? "" : ": " + st.first_error);
    return false;
  }
  return true;
}

}  // namespace fleettwin::kafka

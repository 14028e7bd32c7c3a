#include "kafka_io.hpp"

#include <librdkafka/rdkafka.h>

#include "fleettwin/v1/telemetry.pb.h"
#include "process.hpp"

namespace fleettwin::test {

producer::producer(const std::string& bootstrap) {
  char err[512];
  auto* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "partitioner", "murmur2_random", err, sizeof(err));
  rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err));
  rd_kafka_conf_set(conf, "message.max.bytes", "4000000", err, sizeof(err));
  rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
}

producer::~producer() {
  flush();
  rd_kafka_destroy(static_cast<rd_kafka_t*>(rk_));
}

void producer::send(const std::string& topic, const std::string& key, const std::string& value,
                    const std::string& content_type) {
  auto* h = rd_kafka_headers_new(1);
  if (!content_type.empty())
    rd_kafka_header_add(h, "content-type", -1, content_type.data(),
                        static_cast<ssize_t>(content_type.size()));
  for (;;) {
    auto err = rd_kafka_producev(static_cast<rd_kafka_t*>(rk_), RD_KAFKA_V_TOPIC(topic.c_str()),
                                 RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
                                 RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                 RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
      break;
    rd_kafka_poll(static_cast<rd_kafka_t*>(rk_), 10);
  }
  rd_kafka_poll(static_cast<rd_kafka_t*>(rk_), 0);
}

int producer::flush() {
  return rd_kafka_flush(static_cast<rd_kafka_t*>(rk_), 30'000) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0
                                                                                             : 1;
}

std::vector<consumed_record> read_topic(const std::string& bootstrap, const std::string& topic,
                                        size_t expected, std::chrono::milliseconds timeout) {
  return read_topic(
      bootstrap, topic,
      [expected](const std::vector<consumed_record>& read) { return read.size() >= expected; },
      timeout);
}

std::vector<consumed_record> read_topic(
    const std::string& bootstrap, const std::string& topic,
    const std::function<bool(const std::vector<consumed_record>&)>& enough,
    std::chrono::milliseconds timeout) {
  char err[512];
  auto* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "group.id", ("reader-" + std::to_string(free_port())).c_str(), err,
                    sizeof(err));
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err));
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
  auto* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  rd_kafka_poll_set_consumer(rk);
  auto* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  std::vector<consumed_record> out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!enough(out) && std::chrono::steady_clock::now() < deadline) {
    auto* m = rd_kafka_consumer_poll(rk, 100);
    if (!m)
      continue;
    if (!m->err) {
      consumed_record r;
      r.key.assign(static_cast<const char*>(m->key), m->key_len);
      r.value.assign(static_cast<const char*>(m->payload), m->len);
      rd_kafka_headers_t* hdrs = nullptr;
      if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name;
        const void* value;
        size_t size;
        for (size_t i = 0;
             rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
             ++i)
          r.headers[name] = std::string(static_cast<const char*>(value), size);
      }
      out.push_back(std::move(r));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return out;
}

std::optional<int64_t> end_offsets(const std::string& bootstrap, const std::string& topic) {
  char err[512];
  auto* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  auto* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  if (!rk)
    return std::nullopt;
  std::optional<int64_t> total;
  auto* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk, 0, t, &md, 10'000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
      md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    total = 0;
    for (int i = 0; i < md->topics[0].partition_cnt && total; ++i) {
      int64_t low = 0, high = 0;
      if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), md->topics[0].partitions[i].id, &low,
                                           &high, 10'000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        total.reset();
      else
        *total += high;
    }
  }
  if (md)
    rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(t);
  rd_kafka_destroy(rk);
  return total;
}

std::string telemetry(const std::string& asset, uint64_t seq, int64_t ts,
                      const std::map<std::string, double>& metrics,
                      const std::map<std::string, std::string>& attributes, const std::string& kind,
                      const std::map<std::string, bool>& states) {
  fleettwin::v1::Telemetry t;
  t.set_asset_id(asset);
  t.set_kind(kind);
  t.set_tenant("test");
  t.set_sequence(seq);
  t.set_source_time_ms(ts);
  for (const auto& [k, v] : metrics)
    (*t.mutable_metrics())[k].set_double_value(v);
  for (const auto& [k, v] : states)
    (*t.mutable_metrics())[k].set_bool_value(v);
  for (const auto& [k, v] : attributes)
    (*t.mutable_attributes())[k] = v;
  return t.SerializeAsString();
}

}  // namespace fleettwin::test

#include "services/kafka/event_producer.hpp"

#include <ctime>
#include <mutex>

#include "fleettwin/v1/twin.pb.h"
#include "services/grpc/convert.hpp"

namespace fleettwin::kafka {

namespace {

/// Counts the outstanding records of one publish call; deletes itself after
/// the last delivery report.
struct delivery_tracker {
  std::atomic<size_t> remaining{1};  // +1 held by publish() until all are queued
  std::mutex mutex;
  std::string error;
  std::function<void(bool, std::string)> done;

  void settle(rd_kafka_resp_err_t err) {
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::lock_guard<std::mutex> guard{mutex};
      if (error.empty())
        error = rd_kafka_err2str(err);
    }
    if (remaining.fetch_sub(1) == 1) {
      done(error.empty(), error);
      delete this;
    }
  }
};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void*) {
  if (msg->_private)
    static_cast<delivery_tracker*>(msg->_private)->settle(msg->err);
}

std::string rfc3339(int64_t ms) {
  std::time_t secs = ms / 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

void add_header(rd_kafka_headers_t* h, const char* name, std::string_view value) {
  rd_kafka_header_add(h, name, -1, value.data(), static_cast<ssize_t>(value.size()));
}

}  // namespace

event_producer::event_producer(producer_options opts) : opts_(std::move(opts)) {}

std::unique_ptr<event_producer> event_producer::create(producer_options opts, std::string& error) {
  std::map<std::string, std::string> settings{
      {"bootstrap.servers", opts.bootstrap},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"linger.ms", "5"},
      {"batch.num.messages", "10000"},
      {"queue.buffering.max.messages", "1000000"},
      {"queue.buffering.max.kbytes", "1048576"},
      {"message.max.bytes", "2000000"},
      {"compression.type", "lz4"},
      {"partitioner", "murmur2_random"},
  };
  for (const auto& [k, v] : opts.settings)
    settings[k] = v;
  auto* conf = make_conf(settings, error);
  if (!conf)
    return nullptr;
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  char errstr[512];
  std::unique_ptr<event_producer> p{new event_producer(std::move(opts))};
  p->rk_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));
  if (!p->rk_) {
    rd_kafka_conf_destroy(conf);
    error = std::string{"cannot create Kafka producer: "} + errstr;
    return nullptr;
  }
  p->poller_ = std::thread{[raw = p.get()] {
    while (!raw->stop_.load(std::memory_order_relaxed))
      rd_kafka_poll(raw->rk_.get(), 50);
  }};
  return p;
}

event_producer::~event_producer() {
  if (rk_)
    rd_kafka_flush(rk_.get(), 10'000);
  stop_ = true;
  if (poller_.joinable())
    poller_.join();
  if (rk_)
    rd_kafka_poll(rk_.get(), 0);
}

bool event_producer::flush(std::chrono::milliseconds timeout) {
  return rd_kafka_flush(rk_.get(), static_cast<int>(timeout.count())) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

void event_producer::produce(const std::string& topic, std::string_view key, std::string_view value,
                             rd_kafka_headers_t* headers, void* opaque) {
  for (;;) {
    auto err =
        rd_kafka_producev(rk_.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                          RD_KAFKA_V_KEY(const_cast<char*>(key.data()), key.size()),
                          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers),
                          RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
      return;
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      // Backpressure from librdkafka: the poller thread drains deliveries.
      std::this_thread::sleep_for(std::chrono::milliseconds{1});
      continue;
    }
    rd_kafka_headers_destroy(headers);
    if (opaque)
      static_cast<delivery_tracker*>(opaque)->settle(err);
    return;
  }
}

void event_producer::publish(int32_t partition, const std::vector<core::twin_change>& changes,
                             const std::vector<runtime::rejected_record>& rejects,
                             std::function<void(bool ok, std::string error)> delivered) {
  auto* tracker = new delivery_tracker;
  tracker->done = std::move(delivered);
  const size_t change_count = opts_.publish_changes ? changes.size() : 0;
  tracker->remaining += change_count + rejects.size();
  const std::string source = "fleettwin/" + opts_.node_id;
  fleettwin::v1::TwinChange msg;
  std::string payload;
  int64_t time_ms = -1;
  std::string time_text;
  for (size_t i = 0; i < change_count; ++i) {
    const auto& c = changes[i];
    grpc_api::to_proto(c, msg);
    msg.SerializeToString(&payload);
    auto* h = rd_kafka_headers_new(8);
    add_header(h, "content-type", "application/x-protobuf");
    add_header(h, "ce_specversion", "1.0");
    add_header(h, "ce_id", c.asset_id + "/" + std::to_string(c.version));
    add_header(h, "ce_type",
               c.type == core::change_type::reported ? "fleettwin.twin.reported.v1"
                                                     : "fleettwin.twin.desired.v1");
    add_header(h, "ce_source", source);
    add_header(h, "ce_subject", "twins/" + c.asset_id);
    if (c.time_ms != time_ms) {  // a batch's changes share their time: format once
      time_ms = c.time_ms;
      time_text = rfc3339(time_ms);
    }
    add_header(h, "ce_time", time_text);
    produce(opts_.topics.changes, c.asset_id, payload, h, tracker);
  }
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  for (const auto& r : rejects) {
    auto* h = rd_kafka_headers_new(10);
    std::string_view value = r.record.payload;
    if (value.size() > opts_.dlq_max_payload) {
      add_header(h, "fleettwin-dlq-truncated-from", std::to_string(value.size()));
      value = value.substr(0, opts_.dlq_max_payload);
    }
    if (!r.record.content_type.empty())
      add_header(h, "content-type", r.record.content_type);
    add_header(h, "fleettwin-dlq-reason", r.reason);
    add_header(h, "fleettwin-dlq-code", r.code);
    add_header(h, "fleettwin-dlq-topic", opts_.topics.telemetry);
    add_header(h, "fleettwin-dlq-partition", std::to_string(partition));
    add_header(h, "fleettwin-dlq-offset", std::to_string(r.record.offset));
    add_header(h, "fleettwin-dlq-time", rfc3339(now_ms));
    produce(opts_.topics.dlq, r.record.key, value, h, tracker);
  }
  tracker->settle(RD_KAFKA_RESP_ERR_NO_ERROR);  // releases publish()'s own hold
}

}  // namespace fleettwin::kafka

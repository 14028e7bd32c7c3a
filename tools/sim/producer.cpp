#include "tools/sim/producer.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

namespace fleettwin::sim {

namespace {

// Per-message opaque: 0 for a malformed record, one of the tags below for
// aggregate and relation records, asset index + 1 otherwise.
constexpr uintptr_t aggregate_tag = UINTPTR_MAX;
constexpr uintptr_t relation_tag = UINTPTR_MAX - 1;

void* opaque_for(const record& r) {
  if (r.malformed) {
    return nullptr;
  }
  switch (r.type) {
    case record_type::aggregate:
      return reinterpret_cast<void*>(aggregate_tag);
    case record_type::relation:
      return reinterpret_cast<void*>(relation_tag);
    default:
      return reinterpret_cast<void*>(uintptr_t{r.asset_index} + 1);
  }
}

constexpr uint64_t max_logged_errors = 20;

}  // namespace

struct producer_callbacks {
  static void delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
    auto& self = *static_cast<kafka_producer*>(opaque);
    auto tag = reinterpret_cast<uintptr_t>(msg->_private);
    auto& c = self.counts_;
    ++self.reports_;
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++c.failed;
      if (self.first_delivery_error_.empty()) {
        self.first_delivery_error_ = rd_kafka_err2str(msg->err);
      }
      return;
    }
    ++c.delivered;
    if (tag == 0) {
      ++c.malformed_delivered;
    } else if (tag == aggregate_tag) {
      ++c.aggregates_delivered;
    } else if (tag == relation_tag) {
      ++c.relations_delivered;
    } else if (tag - 1 < c.per_asset.size()) {
      ++c.per_asset[tag - 1];
    }
  }

  static void error(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
    auto& self = *static_cast<kafka_producer*>(opaque);
    auto code = static_cast<rd_kafka_resp_err_t>(err);
    std::string text = reason;
    if (code == RD_KAFKA_RESP_ERR__FATAL) {
      char buf[512];
      rd_kafka_fatal_error(rk, buf, sizeof buf);
      text = fmt::format("fatal: {}", buf);
      self.fatal_ = true;
    }
    if (self.first_error_.empty()) {
      self.first_error_ = text;
    }
    // librdkafka logs connection errors itself; report what it does not.
    bool logged_by_librdkafka =
        code == RD_KAFKA_RESP_ERR__TRANSPORT || code == RD_KAFKA_RESP_ERR__RESOLVE;
    if (!logged_by_librdkafka && self.errors_logged_++ < max_logged_errors) {
      fmt::print(stderr, "fleettwin-sim: kafka: {} ({})\n", text, rd_kafka_err2name(code));
    }
  }
};

std::unique_ptr<kafka_producer> kafka_producer::make(const producer_options& opts, size_t assets,
                                                     std::string& error) {
  std::unique_ptr<kafka_producer> p(new kafka_producer());
  p->counts_.per_asset.assign(assets, 0);
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char errstr[512];
  auto set = [&](const std::string& key, const std::string& value) {
    if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK) {
      error = fmt::format("kafka property {}={}: {}", key, value, errstr);
      return false;
    }
    return true;
  };
  // The node routes queries by murmur2(key) like the Java client; batches stay
  // under the broker's default max.message.bytes (1 MiB), while single records
  // may be larger (oversized malformed records must reach the broker).
  std::vector<std::pair<std::string, std::string>> props = {
      {"bootstrap.servers", opts.bootstrap},
      {"client.id", "fleettwin-sim"},
      {"partitioner", "murmur2_random"},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"linger.ms", "5"},
      // Telemetry compresses well; the embedded Kafka keeps 5 MiB of batches
      // per partition, so compressed batches hold minutes instead of seconds.
      {"compression.type", "lz4"},
      {"batch.num.messages", "10000"},
      {"batch.size", "1000000"},
      {"queue.buffering.max.messages", "1000000"},
      {"queue.buffering.max.kbytes", "1048576"},
      {"message.timeout.ms", "60000"},
      {"message.max.bytes",
       std::to_string(std::max<size_t>(1'000'000, opts.max_message_bytes + 64 * 1024))},
  };
  props.insert(props.end(), opts.properties.begin(), opts.properties.end());
  for (const auto& [key, value] : props) {
    if (!set(key, value)) {
      rd_kafka_conf_destroy(conf);
      return nullptr;
    }
  }
  rd_kafka_conf_set_opaque(conf, p.get());
  rd_kafka_conf_set_dr_msg_cb(conf, &producer_callbacks::delivery);
  rd_kafka_conf_set_error_cb(conf, &producer_callbacks::error);
  p->rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (p->rk_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    error = fmt::format("creating the kafka producer: {}", errstr);
    return nullptr;
  }
  p->rkt_ = rd_kafka_topic_new(p->rk_, opts.topic.c_str(), nullptr);
  if (p->rkt_ == nullptr) {
    error = fmt::format("topic '{}': {}", opts.topic, rd_kafka_err2str(rd_kafka_last_error()));
    return nullptr;
  }
  p->relations_topic_ = opts.relations_topic;
  return p;
}

kafka_producer::~kafka_producer() {
  if (rkt_ != nullptr) {
    rd_kafka_topic_destroy(rkt_);
  }
  if (relations_rkt_ != nullptr) {
    rd_kafka_topic_destroy(relations_rkt_);
  }
  if (rk_ != nullptr) {
    rd_kafka_destroy(rk_);
  }
}

bool kafka_producer::produce(const record& r, const std::atomic<bool>& stop, std::string& error) {
  auto* key = const_cast<char*>(r.key.empty() ? "" : r.key.data());
  auto* value = const_cast<char*>(r.value.data());
  rd_kafka_topic_s* rkt = rkt_;
  if (r.type == record_type::relation) {
    // Only a run that changes relations touches (and maybe auto-creates) the topic.
    if (relations_rkt_ == nullptr) {
      relations_rkt_ = rd_kafka_topic_new(rk_, relations_topic_.c_str(), nullptr);
      if (relations_rkt_ == nullptr) {
        ++counts_.failed;
        error = fmt::format("topic '{}': {}", relations_topic_,
                            rd_kafka_err2str(rd_kafka_last_error()));
        return false;
      }
    }
    rkt = relations_rkt_;
  }
  for (;;) {
    rd_kafka_resp_err_t err;
    if (r.malformed) {
      auto kind = to_string(*r.malformed);
      err = rd_kafka_producev(rk_, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_KEY(key, r.key.size()),
                              RD_KAFKA_V_VALUE(value, r.value.size()),
                              RD_KAFKA_V_HEADER("content-type", r.content_type.data(),
                                                static_cast<ssize_t>(r.content_type.size())),
                              RD_KAFKA_V_HEADER("fleettwin-sim-malformed", kind.data(),
                                                static_cast<ssize_t>(kind.size())),
                              RD_KAFKA_V_OPAQUE(opaque_for(r)), RD_KAFKA_V_END);
    } else {
      err = rd_kafka_producev(rk_, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_KEY(key, r.key.size()),
                              RD_KAFKA_V_VALUE(value, r.value.size()),
                              RD_KAFKA_V_HEADER("content-type", r.content_type.data(),
                                                static_cast<ssize_t>(r.content_type.size())),
                              RD_KAFKA_V_OPAQUE(opaque_for(r)), RD_KAFKA_V_END);
    }
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++counts_.sent;
      if (r.malformed) {
        ++counts_.malformed_sent;
      } else if (r.type == record_type::aggregate) {
        ++counts_.aggregates_sent;
      } else if (r.type == record_type::relation) {
        ++counts_.relations_sent;
      }
      return true;
    }
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !stop.load(std::memory_order_relaxed) && !fatal_) {
      rd_kafka_poll(rk_, 10);
      continue;
    }
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      error = "stopped while the producer queue was full";
      return false;
    }
    ++counts_.failed;
    error = fmt::format("produce failed: {}", rd_kafka_err2str(err));
    if (first_delivery_error_.empty()) {
      first_delivery_error_ = rd_kafka_err2str(err);
    }
    return false;
  }
}

void kafka_producer::poll(int timeout_ms) {
  rd_kafka_poll(rk_, timeout_ms);
}

void kafka_producer::flush(std::chrono::milliseconds timeout) {
  if (rd_kafka_flush(rk_, static_cast<int>(timeout.count())) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    // Whatever is still queued or in flight fails with a purge error.
    rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(rk_, 5000);
  }
  // Should anything be left unanswered, it was not delivered.
  if (counts_.sent > reports_) {
    counts_.failed += counts_.sent - reports_;
    reports_ = counts_.sent;
  }
}

}  // namespace fleettwin::sim

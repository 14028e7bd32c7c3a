#pragma once

// A thin librdkafka producer for generated records: the platform's record
// conventions (key, content-type header, murmur2 partitioning), idempotent
// delivery, and delivery-report accounting into `run_counts`. Relation records
// go to the relations topic, everything else to the telemetry topic.

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tools/sim/generator.hpp"
#include "tools/sim/report.hpp"

struct rd_kafka_s;
struct rd_kafka_topic_s;

namespace fleettwin::sim {

struct producer_options {
  std::string bootstrap = "127.0.0.1:9092";
  std::string topic = "fleettwin.telemetry";
  std::string relations_topic = "fleettwin.relations";
  /// The largest record the producer must accept (oversized malformed ones).
  size_t max_message_bytes = 1'000'000;
  /// Extra librdkafka properties, applied last (they override the defaults).
  std::vector<std::pair<std::string, std::string>> properties;
};

class kafka_producer {
public:
  /// Creates the producer; nullptr and `error` on a configuration error.
  static std::unique_ptr<kafka_producer> make(const producer_options& opts, size_t assets,
                                              std::string& error);
  ~kafka_producer();
  kafka_producer(const kafka_producer&) = delete;
  kafka_producer& operator=(const kafka_producer&) = delete;

  /// Hands a copy of `r` to librdkafka. While the local queue is full it
  /// serves delivery reports and retries, unless `stop` is set. A record that
  /// cannot be produced counts as failed; `error` then says why.
  bool produce(const record& r, const std::atomic<bool>& stop, std::string& error);

  /// Serves delivery reports, waiting up to `timeout_ms`.
  void poll(int timeout_ms = 0);

  /// Waits up to `timeout` for outstanding deliveries, then purges what is
  /// left; purged and unreported records count as failed.
  void flush(std::chrono::milliseconds timeout);

  /// Set once librdkafka raised a fatal error (the producer is unusable).
  bool fatal() const {
    return fatal_;
  }
  /// Why the first failed record failed, else the first client error; empty if none.
  const std::string& first_error() const {
    return first_delivery_error_.empty() ? first_error_ : first_delivery_error_;
  }
  const run_counts& counts() const {
    return counts_;
  }

private:
  kafka_producer() = default;
  friend struct producer_callbacks;

  rd_kafka_s* rk_ = nullptr;
  rd_kafka_topic_s* rkt_ = nullptr;
  rd_kafka_topic_s* relations_rkt_ = nullptr;  // created on the first relation record
  std::string relations_topic_;
  run_counts counts_;
  std::string first_error_;
  std::string first_delivery_error_;
  uint64_t reports_ = 0;  // delivery reports received
  uint64_t errors_logged_ = 0;
  bool fatal_ = false;
};

}  // namespace fleettwin::sim

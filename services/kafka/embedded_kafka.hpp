#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "services/kafka/kafka_config.hpp"

struct rd_kafka_mock_cluster_s;

namespace fleettwin::kafka {

/// A Kafka cluster inside this process (librdkafka's mock cluster) on
/// loopback, for `make run` and fast tests. Memory only; transactions and
/// compaction are not real.
class embedded_kafka {
public:
  static std::unique_ptr<embedded_kafka> start(int brokers, int partitions,
                                               const topic_names& topics, std::string& error);
  ~embedded_kafka();

  /// host:port list other processes (simulator, kcat) can produce to.
  const std::string& bootstrap() const {
    return bootstrap_;
  }

  /// Creates a further topic.
  bool create_topic(const std::string& name, int partitions, std::string& error);

  /// The next `count` requests of Kafka API `api_key` fail with `error`
  /// (fault injection for tests, e.g. a group that cannot form yet).
  void fail_requests(int16_t api_key, size_t count, rd_kafka_resp_err_t error);
  /// The next request of Kafka API `api_key` is answered after `delay`.
  void delay_request(int16_t api_key, std::chrono::milliseconds delay);

private:
  embedded_kafka() = default;
  kafka_handle rk_;
  rd_kafka_mock_cluster_s* cluster_ = nullptr;
  std::string bootstrap_;
};

}  // namespace fleettwin::kafka

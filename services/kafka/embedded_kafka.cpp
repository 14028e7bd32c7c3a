#include "services/kafka/embedded_kafka.hpp"

#include <librdkafka/rdkafka_mock.h>

#include <vector>

namespace fleettwin::kafka {

std::unique_ptr<embedded_kafka> embedded_kafka::start(int brokers, int partitions,
                                                      const topic_names& topics,
                                                      std::string& error) {
  std::unique_ptr<embedded_kafka> k{new embedded_kafka};
  auto* conf = make_conf({{"client.id", "fleettwin-embedded-kafka"}, {"log_level", "3"}}, error);
  if (!conf)
    return nullptr;
  char errstr[512];
  k->rk_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));
  if (!k->rk_) {
    rd_kafka_conf_destroy(conf);
    error = std::string{"cannot start embedded Kafka: "} + errstr;
    return nullptr;
  }
  k->cluster_ = rd_kafka_mock_cluster_new(k->rk_.get(), brokers);
  if (!k->cluster_) {
    error = "cannot start embedded Kafka: mock cluster creation failed";
    return nullptr;
  }
  k->bootstrap_ = rd_kafka_mock_cluster_bootstraps(k->cluster_);
  for (const auto* name :
       {&topics.telemetry, &topics.changes, &topics.redacted_changes, &topics.state, &topics.alerts,
        &topics.dlq, &topics.aggregate_updates, &topics.aggregates, &topics.relations})
    if (!k->create_topic(*name, partitions, error))
      return nullptr;
  for (const auto* name : {&topics.members, &topics.models})
    if (!k->create_topic(*name, 1, error))
      return nullptr;
  return k;
}

bool embedded_kafka::create_topic(const std::string& name, int partitions, std::string& error) {
  auto err = rd_kafka_mock_topic_create(cluster_, name.c_str(), partitions, 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = "cannot create topic " + name + ": " + rd_kafka_err2str(err);
    return false;
  }
  return true;
}

void embedded_kafka::fail_requests(int16_t api_key, size_t count, rd_kafka_resp_err_t error) {
  std::vector<rd_kafka_resp_err_t> errors(count, error);
  rd_kafka_mock_push_request_errors_array(cluster_, api_key, count, errors.data());
}

void embedded_kafka::delay_request(int16_t api_key, std::chrono::milliseconds delay) {
  rd_kafka_mock_broker_push_request_error_rtts(cluster_, 1, api_key, 1, RD_KAFKA_RESP_ERR_NO_ERROR,
                                               static_cast<int>(delay.count()));
}

embedded_kafka::~embedded_kafka() {
  if (cluster_)
    rd_kafka_mock_cluster_destroy(cluster_);
}

}  // namespace fleettwin::kafka

#include "services/kafka/embedded_kafka.hpp"

#include <librdkafka/rdkafka_mock.h>

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
       {&topics.telemetry, &topics.changes, &topics.state, &topics.alerts, &topics.dlq})
    if (!k->create_topic(*name, partitions, error))
      return nullptr;
  if (!k->create_topic(topics.members, 1, error))
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

embedded_kafka::~embedded_kafka() {
  if (cluster_)
    rd_kafka_mock_cluster_destroy(cluster_);
}

}  // namespace fleettwin::kafka

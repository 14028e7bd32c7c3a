#include "services/kafka/kafka_config.hpp"

namespace fleettwin::kafka {

topic_names topic_names::with_prefix(const std::string& prefix) {
  topic_names t;
  t.telemetry = prefix + ".telemetry";
  t.changes = prefix + ".twin-changes";
  t.state = prefix + ".twin-state";
  t.alerts = prefix + ".alerts";
  t.dlq = prefix + ".telemetry.dlq";
  return t;
}

rd_kafka_conf_t* make_conf(const std::map<std::string, std::string>& settings, std::string& error) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char errstr[512];
  for (const auto& [k, v] : settings) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      error = "kafka setting " + k + "=" + v + ": " + errstr;
      rd_kafka_conf_destroy(conf);
      return nullptr;
    }
  }
  return conf;
}

}  // namespace fleettwin::kafka

#pragma once

#include <map>
#include <memory>
#include <string>

#include <librdkafka/rdkafka.h>

namespace fleettwin::kafka {

/// Names of the topics a node uses (prefix configurable).
struct topic_names {
  std::string telemetry = "fleettwin.telemetry";
  std::string changes = "fleettwin.twin-changes";
  std::string state = "fleettwin.twin-state";
  std::string alerts = "fleettwin.alerts";
  std::string dlq = "fleettwin.telemetry.dlq";

  static topic_names with_prefix(const std::string& prefix);
};

/// Builds an rd_kafka_conf_t from key/value pairs; returns nullptr and sets
/// `error` when librdkafka rejects a setting.
rd_kafka_conf_t* make_conf(const std::map<std::string, std::string>& settings, std::string& error);

struct rd_kafka_deleter {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_destroy(rk);
  }
};
using kafka_handle = std::unique_ptr<rd_kafka_t, rd_kafka_deleter>;

}  // namespace fleettwin::kafka

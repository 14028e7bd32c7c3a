#include "services/kafka/kafka_config.hpp"

#include <cstdio>
#include <ctime>

namespace fleettwin::kafka {

topic_names topic_names::with_prefix(const std::string& prefix) {
  topic_names t;
  t.telemetry = prefix + ".telemetry";
  t.changes = prefix + ".twin-changes";
  t.redacted_changes = prefix + ".twin-changes.redacted";
  t.state = prefix + ".twin-state";
  t.alerts = prefix + ".alerts";
  t.audit = prefix + ".audit";
  t.scenario_results = prefix + ".scenario-results";
  t.dlq = prefix + ".telemetry.dlq";
  t.members = prefix + ".members";
  t.aggregate_updates = prefix + ".aggregate-updates";
  t.aggregates = prefix + ".aggregates";
  t.relations = prefix + ".relations";
  t.models = prefix + ".models";
  return t;
}

namespace {
constexpr std::string_view changelog_prefix = "fleettwin:changelog=";
}

std::string changelog_metadata(int64_t changelog_offset) {
  return std::string{changelog_prefix} + std::to_string(changelog_offset);
}

std::optional<int64_t> parse_changelog_metadata(std::string_view metadata) {
  if (metadata.substr(0, changelog_prefix.size()) != changelog_prefix)
    return std::nullopt;
  auto digits = metadata.substr(changelog_prefix.size());
  if (digits.empty() || digits.size() > 18)
    return std::nullopt;
  int64_t x = 0;
  for (char c : digits) {
    if (c < '0' || c > '9')
      return std::nullopt;
    x = x * 10 + (c - '0');
  }
  return x;
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

kafka_handle make_client(rd_kafka_type_t type, const std::map<std::string, std::string>& settings,
                         const std::string& what, std::string& error) {
  auto* conf = make_conf(settings, error);
  if (!conf)
    return nullptr;
  char errstr[512];
  kafka_handle rk{rd_kafka_new(type, conf, errstr, sizeof(errstr))};
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    error = "cannot create " + what + ": " + errstr;
  }
  return rk;
}

std::optional<std::string> assign_partition(rd_kafka_t* consumer, const std::string& topic,
                                            int32_t partition, int64_t offset) {
  auto* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = offset;
  auto err = rd_kafka_assign(consumer, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    return "cannot read " + topic + ": " + rd_kafka_err2str(err);
  return std::nullopt;
}

std::optional<std::string> seek_without_waiting(rd_kafka_t* consumer, const std::string& topic,
                                                int32_t partition, int64_t offset) {
  auto* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = offset;
  std::optional<std::string> error;
  if (auto* e = rd_kafka_seek_partitions(consumer, list, 0)) {  // 0: not waited for
    error = rd_kafka_error_string(e);
    rd_kafka_error_destroy(e);
  }
  rd_kafka_topic_partition_list_destroy(list);
  return error;
}

std::string rfc3339(int64_t ms) {
  std::time_t secs = ms / 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[80];  // room for any int the format may meet
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

void add_header(rd_kafka_headers_t* h, const char* name, std::string_view value) {
  rd_kafka_header_add(h, name, -1, value.data(), static_cast<ssize_t>(value.size()));
}

}  // namespace fleettwin::kafka

#include "services/kafka/topic_admin.hpp"

#include <memory>

#include <spdlog/spdlog.h>

#include "services/kafka/kafka_config.hpp"

namespace fleettwin::kafka {

namespace {

kafka_handle admin_client(const std::string& bootstrap,
                          const std::map<std::string, std::string>& settings, std::string& error) {
  auto all = settings;
  all["bootstrap.servers"] = bootstrap;
  all["client.id"] = "fleettwin-admin";
  auto* conf = make_conf(all, error);
  if (!conf)
    return nullptr;
  char errstr[512];
  kafka_handle rk{rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))};
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    error = std::string{"cannot create a Kafka admin client: "} + errstr;
  }
  return rk;
}

std::optional<std::map<std::string, int>> counts_with(rd_kafka_t* rk,
                                                      const std::vector<std::string>& topics,
                                                      std::chrono::milliseconds timeout,
                                                      std::string& error) {
  const rd_kafka_metadata_t* md = nullptr;
  auto err = rd_kafka_metadata(rk, 1, nullptr, &md, static_cast<int>(timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = std::string{"cannot read the cluster's metadata: "} + rd_kafka_err2str(err);
    return std::nullopt;
  }
  std::map<std::string, int> out;
  for (const auto& t : topics)
    out[t] = 0;
  for (int i = 0; i < md->topic_cnt; ++i) {
    auto it = out.find(md->topics[i].topic);
    if (it != out.end() && md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
      it->second = md->topics[i].partition_cnt;
  }
  rd_kafka_metadata_destroy(md);
  return out;
}

}  // namespace

std::optional<std::map<std::string, int>> partition_counts(
    const std::string& bootstrap, const std::map<std::string, std::string>& settings,
    const std::vector<std::string>& topics, std::chrono::milliseconds timeout, std::string& error) {
  auto rk = admin_client(bootstrap, settings, error);
  if (!rk)
    return std::nullopt;
  return counts_with(rk.get(), topics, timeout, error);
}

std::optional<std::string> ensure_topics(const std::string& bootstrap,
                                         const std::map<std::string, std::string>& settings,
                                         const std::vector<topic_spec>& specs,
                                         std::chrono::milliseconds timeout) {
  std::string error;
  auto rk = admin_client(bootstrap, settings, error);
  if (!rk)
    return error;
  std::vector<std::string> names;
  for (const auto& s : specs)
    names.push_back(s.name);
  auto counts = counts_with(rk.get(), names, timeout, error);
  if (!counts)
    return "Kafka at " + bootstrap + ": " + error;

  std::vector<rd_kafka_NewTopic_t*> create;
  for (const auto& s : specs) {
    if ((*counts)[s.name] > 0)
      continue;
    char errstr[512];
    auto* nt = rd_kafka_NewTopic_new(s.name.c_str(), s.partitions, s.replication_factor, errstr,
                                     sizeof(errstr));
    if (!nt) {
      error = "topic " + s.name + ": " + errstr;
      break;
    }
    for (const auto& [k, v] : s.config)
      rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
    create.push_back(nt);
  }
  if (error.empty() && !create.empty()) {
    auto* queue = rd_kafka_queue_new(rk.get());
    auto* options = rd_kafka_AdminOptions_new(rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS);
    char errstr[512];
    rd_kafka_AdminOptions_set_operation_timeout(options, static_cast<int>(timeout.count()), errstr,
                                                sizeof(errstr));
    rd_kafka_CreateTopics(rk.get(), create.data(), create.size(), options, queue);
    auto* ev = rd_kafka_queue_poll(queue, static_cast<int>(timeout.count()) + 5'000);
    if (!ev) {
      error = "creating topics timed out";
    } else if (rd_kafka_event_error(ev)) {
      error = std::string{"creating topics: "} + rd_kafka_event_error_string(ev);
    } else if (auto* res = rd_kafka_event_CreateTopics_result(ev)) {
      size_t n = 0;
      const auto** results = rd_kafka_CreateTopics_result_topics(res, &n);
      for (size_t i = 0; i < n; ++i) {
        auto err = rd_kafka_topic_result_error(results[i]);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          spdlog::info("event=topic_created topic={}", rd_kafka_topic_result_name(results[i]));
        } else if (err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS && error.empty()) {
          const char* why = rd_kafka_topic_result_error_string(results[i]);
          error = std::string{"creating topic "} + rd_kafka_topic_result_name(results[i]) + ": " +
                  (why ? why : rd_kafka_err2str(err));
        }
      }
    }
    if (ev)
      rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_queue_destroy(queue);
  }
  for (auto* nt : create)
    rd_kafka_NewTopic_destroy(nt);
  if (!error.empty())
    return error;

  // Created topics can take a moment to show in the metadata.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    counts = counts_with(rk.get(), names, timeout, error);
    if (!counts)
      return "Kafka at " + bootstrap + ": " + error;
    std::string mismatch;
    bool missing = false;
    for (const auto& s : specs) {
      int have = (*counts)[s.name];
      if (have == 0)
        missing = true;
      else if (s.exact && have != s.partitions && mismatch.empty())
        mismatch = "topic " + s.name + " has " + std::to_string(have) + " partitions but " +
                   std::to_string(s.partitions) + " are needed (it must match the telemetry topic)";
    }
    if (!mismatch.empty())
      return mismatch;
    if (!missing)
      return std::nullopt;
    if (std::chrono::steady_clock::now() > deadline)
      return "topics were created but do not show in the cluster's metadata";
    // Metadata refresh is a broker round trip: this is a poll with a deadline.
    rd_kafka_poll(rk.get(), 100);
  }
}

}  // namespace fleettwin::kafka

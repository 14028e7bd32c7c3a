#include "services/kafka/topic_admin.hpp"

#include <algorithm>
#include <memory>
#include <mutex>

#include <spdlog/spdlog.h>

#include "services/kafka/kafka_config.hpp"

namespace fleettwin::kafka {

namespace {

/// The last error librdkafka reported for the admin client's connections: what the
/// operator needs to hear when the cluster does not answer (refused credentials, a
/// certificate not trusted, a broker not reachable).
struct client_errors {
  std::mutex mutex;
  std::string last;
  /// Authentication (SASL) or TLS failed: retrying will not help.
  bool refused = false;
};

/// An admin client and its errors (they outlive it).
struct admin {
  std::unique_ptr<client_errors> errors = std::make_unique<client_errors>();
  kafka_handle rk;

  rd_kafka_t* get() const {
    return rk.get();
  }
  explicit operator bool() const {
    return rk != nullptr;
  }
};

admin admin_client(const std::string& bootstrap, const std::map<std::string, std::string>& settings,
                   std::string& error) {
  admin a;
  auto all = settings;
  all["bootstrap.servers"] = bootstrap;
  all["client.id"] = "fleettwin-admin";
  auto* conf = make_conf(all, error);
  if (!conf)
    return a;
  rd_kafka_conf_set_opaque(conf, a.errors.get());
  rd_kafka_conf_set_error_cb(conf, [](rd_kafka_t*, int err, const char* reason, void* opaque) {
    auto* e = static_cast<client_errors*>(opaque);
    std::lock_guard<std::mutex> guard{e->mutex};
    e->last = reason ? reason : rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(err));
    e->refused |= err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL;
  });
  char errstr[512];
  a.rk.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));
  if (!a.rk) {
    rd_kafka_conf_destroy(conf);
    error = std::string{"cannot create a Kafka admin client: "} + errstr;
  }
  return a;
}

std::optional<std::map<std::string, int>> counts_with(const admin& a,
                                                      const std::vector<std::string>& topics,
                                                      std::chrono::milliseconds timeout,
                                                      std::string& error) {
  rd_kafka_t* rk = a.get();
  const rd_kafka_metadata_t* md = nullptr;
  // In short attempts, so that refused credentials or an untrusted certificate stop the
  // wait at once, with the broker's reason.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    const auto attempt = std::clamp<int64_t>(left.count(), 1, 1000);
    auto err = rd_kafka_metadata(rk, 1, nullptr, &md, static_cast<int>(attempt));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
      break;
    rd_kafka_poll(rk, 0);  // serves the error callback
    std::lock_guard<std::mutex> guard{a.errors->mutex};
    if (a.errors->refused || left.count() <= attempt) {
      error = std::string{"cannot read the cluster's metadata: "} + rd_kafka_err2str(err);
      if (!a.errors->last.empty())
        error += " (" + a.errors->last + ")";
      return std::nullopt;
    }
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

struct creation_outcome {
  std::optional<std::string> error;
  bool retriable = false;
};

// One admin request: `send` sets its options and issues it on the queue, `read` gets its
// result event (nullptr when none came within `wait`); then everything is released.
template <class Send, class Read>
void admin_request(rd_kafka_t* rk, rd_kafka_admin_op_t op, std::chrono::milliseconds wait,
                   Send send, Read read) {
  auto* queue = rd_kafka_queue_new(rk);
  auto* options = rd_kafka_AdminOptions_new(rk, op);
  send(options, queue);
  auto* ev = rd_kafka_queue_poll(queue, static_cast<int>(wait.count()));
  read(ev);
  if (ev)
    rd_kafka_event_destroy(ev);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_queue_destroy(queue);
}

// Creates the topics of `specs` that `counts` says are missing.
creation_outcome create_missing(rd_kafka_t* rk, const std::vector<topic_spec>& specs,
                                const std::map<std::string, int>& counts,
                                std::chrono::milliseconds timeout) {
  std::vector<rd_kafka_NewTopic_t*> create;
  creation_outcome out;
  for (const auto& s : specs) {
    if (counts.at(s.name) > 0)
      continue;
    char errstr[512];
    auto* nt = rd_kafka_NewTopic_new(s.name.c_str(), s.partitions, s.replication_factor, errstr,
                                     sizeof(errstr));
    if (!nt) {
      out.error = "topic " + s.name + ": " + errstr;
      break;
    }
    for (const auto& [k, v] : s.config)
      rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
    create.push_back(nt);
  }
  if (!out.error && !create.empty()) {
    auto send = [&](rd_kafka_AdminOptions_t* options, rd_kafka_queue_t* queue) {
      char errstr[512];
      rd_kafka_AdminOptions_set_operation_timeout(options, static_cast<int>(timeout.count()),
                                                  errstr, sizeof(errstr));
      rd_kafka_CreateTopics(rk, create.data(), create.size(), options, queue);
    };
    auto read = [&](rd_kafka_event_t* ev) {
      if (!ev) {
        out.error = "creating topics timed out";
        out.retriable = true;
      } else if (auto err = rd_kafka_event_error(ev)) {
        out.error = std::string{"creating topics: "} + rd_kafka_event_error_string(ev);
        out.retriable = creation_may_succeed_later(err, rd_kafka_event_error_string(ev));
      } else if (auto* res = rd_kafka_event_CreateTopics_result(ev)) {
        size_t n = 0;
        const auto** results = rd_kafka_CreateTopics_result_topics(res, &n);
        out.retriable = true;
        for (size_t i = 0; i < n; ++i) {
          auto err = rd_kafka_topic_result_error(results[i]);
          if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            spdlog::info("event=topic_created topic={}", rd_kafka_topic_result_name(results[i]));
          } else if (err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            const char* why = rd_kafka_topic_result_error_string(results[i]);
            if (!out.error)
              out.error = std::string{"creating topic "} + rd_kafka_topic_result_name(results[i]) +
                          ": " + (why ? why : rd_kafka_err2str(err));
            out.retriable = out.retriable && creation_may_succeed_later(err, why ? why : "");
          }
        }
      }
    };
    admin_request(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout + std::chrono::seconds{5}, send,
                  read);
  }
  for (auto* nt : create)
    rd_kafka_NewTopic_destroy(nt);
  return out;
}

}  // namespace

bool creation_may_succeed_later(rd_kafka_resp_err_t err, std::string_view message) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_CONTROLLER:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
      return true;
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
      // Registered but fenced brokers (starting, or late with heartbeats)
      // count for nothing yet; too few brokers at all is a configuration error.
      return message.find("fenced") != std::string_view::npos;
    default:
      return false;
  }
}

std::vector<record_limit> record_limits_below(const std::string& bootstrap,
                                              const std::map<std::string, std::string>& settings,
                                              const std::vector<topic_spec>& specs,
                                              std::chrono::milliseconds timeout,
                                              std::string& error) {
  std::vector<record_limit> out;
  std::map<std::string, int64_t> needed;
  for (const auto& s : specs)
    if (auto it = s.config.find("max.message.bytes"); it != s.config.end())
      needed[s.name] = std::stoll(it->second);
  if (needed.empty())
    return out;
  auto rk = admin_client(bootstrap, settings, error);
  if (!rk)
    return out;
  std::vector<rd_kafka_ConfigResource_t*> resources;
  for (const auto& [name, bytes] : needed)
    resources.push_back(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, name.c_str()));
  auto send = [&](rd_kafka_AdminOptions_t* options, rd_kafka_queue_t* queue) {
    char errstr[512];
    rd_kafka_AdminOptions_set_request_timeout(options, static_cast<int>(timeout.count()), errstr,
                                              sizeof(errstr));
    rd_kafka_DescribeConfigs(rk.get(), resources.data(), resources.size(), options, queue);
  };
  auto read = [&](rd_kafka_event_t* ev) {
    if (!ev) {
      error = "describing the topics' configuration timed out";
      return;
    }
    if (rd_kafka_event_error(ev)) {
      error =
          std::string{"describing the topics' configuration: "} + rd_kafka_event_error_string(ev);
      return;
    }
    const auto* res = rd_kafka_event_DescribeConfigs_result(ev);
    if (!res)
      return;
    size_t n = 0;
    const auto** described = rd_kafka_DescribeConfigs_result_resources(res, &n);
    for (size_t i = 0; i < n; ++i) {
      if (rd_kafka_ConfigResource_error(described[i]))
        continue;
      const std::string name = rd_kafka_ConfigResource_name(described[i]);
      size_t entries = 0;
      const auto** configs = rd_kafka_ConfigResource_configs(described[i], &entries);
      for (size_t e = 0; e < entries; ++e) {
        const char* key = rd_kafka_ConfigEntry_name(configs[e]);
        const char* value = rd_kafka_ConfigEntry_value(configs[e]);
        if (!key || !value || std::string_view{key} != "max.message.bytes")
          continue;
        const int64_t have = std::strtoll(value, nullptr, 10);
        if (auto it = needed.find(name); it != needed.end() && have < it->second)
          out.push_back(record_limit{name, have, it->second});
      }
    }
  };
  admin_request(rk.get(), RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, timeout + std::chrono::seconds{1},
                send, read);
  for (auto* r : resources)
    rd_kafka_ConfigResource_destroy(r);
  return out;
}

std::optional<std::map<std::string, int>> partition_counts(
    const std::string& bootstrap, const std::map<std::string, std::string>& settings,
    const std::vector<std::string>& topics, std::chrono::milliseconds timeout, std::string& error) {
  auto rk = admin_client(bootstrap, settings, error);
  if (!rk)
    return std::nullopt;
  return counts_with(rk, topics, timeout, error);
}

std::optional<size_t> delete_topics_with_prefix(const std::string& bootstrap,
                                                const std::map<std::string, std::string>& settings,
                                                const std::string& prefix,
                                                std::chrono::milliseconds timeout,
                                                std::string& error) {
  if (prefix.empty()) {
    error = "no topic prefix given: refusing to delete every topic";
    return std::nullopt;
  }
  auto a = admin_client(bootstrap, settings, error);
  if (!a)
    return std::nullopt;
  const rd_kafka_metadata_t* md = nullptr;
  if (auto err = rd_kafka_metadata(a.get(), 1, nullptr, &md, static_cast<int>(timeout.count()))) {
    error = std::string{"cannot read the cluster's metadata: "} + rd_kafka_err2str(err);
    return std::nullopt;
  }
  std::vector<rd_kafka_DeleteTopic_t*> doomed;
  for (int i = 0; i < md->topic_cnt; ++i)
    if (std::string_view{md->topics[i].topic}.starts_with(prefix))
      doomed.push_back(rd_kafka_DeleteTopic_new(md->topics[i].topic));
  rd_kafka_metadata_destroy(md);
  size_t deleted = 0;
  if (!doomed.empty()) {
    auto send = [&](rd_kafka_AdminOptions_t* options, rd_kafka_queue_t* queue) {
      char errstr[512];
      rd_kafka_AdminOptions_set_operation_timeout(options, static_cast<int>(timeout.count()),
                                                  errstr, sizeof(errstr));
      rd_kafka_DeleteTopics(a.get(), doomed.data(), doomed.size(), options, queue);
    };
    auto read = [&](rd_kafka_event_t* ev) {
      if (!ev) {
        error = "deleting topics timed out";
      } else if (rd_kafka_event_error(ev)) {
        error = std::string{"deleting topics: "} + rd_kafka_event_error_string(ev);
      } else if (auto* res = rd_kafka_event_DeleteTopics_result(ev)) {
        size_t n = 0;
        const auto** results = rd_kafka_DeleteTopics_result_topics(res, &n);
        for (size_t i = 0; i < n; ++i) {
          if (rd_kafka_topic_result_error(results[i]) == RD_KAFKA_RESP_ERR_NO_ERROR)
            ++deleted;
          else if (error.empty())
            error = std::string{"deleting topic "} + rd_kafka_topic_result_name(results[i]) + ": " +
                    rd_kafka_err2str(rd_kafka_topic_result_error(results[i]));
        }
      }
    };
    admin_request(a.get(), RD_KAFKA_ADMIN_OP_DELETETOPICS, timeout + std::chrono::seconds{5}, send,
                  read);
  }
  for (auto* t : doomed)
    rd_kafka_DeleteTopic_destroy(t);
  if (!error.empty())
    return std::nullopt;
  return deleted;
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
  auto counts = counts_with(rk, names, timeout, error);
  if (!counts)
    return "Kafka at " + bootstrap + ": " + error;

  // A cluster that is starting or electing a controller refuses creation for
  // a moment (KRaft brokers are fenced until their first heartbeats): such
  // refusals are retried until the deadline; any other is the operator's.
  const auto create_deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto outcome = create_missing(rk.get(), specs, *counts, timeout);
    if (!outcome.error)
      break;
    if (!outcome.retriable || std::chrono::steady_clock::now() > create_deadline)
      return outcome.error;
    spdlog::warn("event=topic_creation_retried reason=\"{}\"", *outcome.error);
    rd_kafka_poll(rk.get(), 500);
    counts = counts_with(rk, names, timeout, error);
    if (!counts)
      return "Kafka at " + bootstrap + ": " + error;
  }

  // Created topics can take a moment to show in the metadata.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    counts = counts_with(rk, names, timeout, error);
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

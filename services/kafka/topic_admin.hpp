#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <librdkafka/rdkafka.h>

namespace fleettwin::kafka {

/// A topic the node needs.
/// The largest record the node writes to its output topics (they are created with
/// max.message.bytes at this; the producers send requests this large and more).
/// Within core::limits a twin's encoded state stays below it.
inline constexpr int64_t max_output_record_bytes = 16 << 20;

struct topic_spec {
  std::string name;
  int partitions = 1;
  int replication_factor = -1;  // -1: the broker's default
  std::map<std::string, std::string> config;
  /// An existing topic must have exactly `partitions` (routing depends on it).
  bool exact = false;
};

/// Creates the topics of `specs` that do not exist yet, then checks that each
/// exists; one marked `exact` must have the partitions it asks for (twins are
/// routed by partition). Returns an error message
/// for an operator, or nullopt.
std::optional<std::string> ensure_topics(const std::string& bootstrap,
                                         const std::map<std::string, std::string>& settings,
                                         const std::vector<topic_spec>& specs,
                                         std::chrono::milliseconds timeout);

/// A topic whose records may not be as large as its spec asks (max.message.bytes).
struct record_limit {
  std::string topic;
  int64_t max_message_bytes = 0;  ///< what the topic has
  int64_t needed = 0;             ///< what its spec asks for
};

/// The topics of `specs` asking for a max.message.bytes that the existing topic does not
/// have (created by hand, or by an older node): records of that size fail their
/// transaction there. Topics whose configuration cannot be read are left out.
std::vector<record_limit> record_limits_below(const std::string& bootstrap,
                                              const std::map<std::string, std::string>& settings,
                                              const std::vector<topic_spec>& specs,
                                              std::chrono::milliseconds timeout,
                                              std::string& error);

/// Whether a CreateTopics refusal is one a starting or recovering cluster
/// gives for a moment (fenced brokers, a moving controller, timeouts), so that
/// asking again may succeed.
bool creation_may_succeed_later(rd_kafka_resp_err_t err, std::string_view message);

/// The partition counts of `topics` (0 for a missing topic); nullopt with
/// `error` set when the cluster cannot be asked.
std::optional<std::map<std::string, int>> partition_counts(
    const std::string& bootstrap, const std::map<std::string, std::string>& settings,
    const std::vector<std::string>& topics, std::chrono::milliseconds timeout, std::string& error);

/// Deletes every topic whose name starts with `prefix` (a benchmark run's own topics, so
/// that later runs on the same broker do not pay for them). Returns how many topics it
/// deleted, or nullopt with `error` set.
std::optional<size_t> delete_topics_with_prefix(const std::string& bootstrap,
                                                const std::map<std::string, std::string>& settings,
                                                const std::string& prefix,
                                                std::chrono::milliseconds timeout,
                                                std::string& error);

}  // namespace fleettwin::kafka

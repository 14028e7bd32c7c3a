#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <librdkafka/rdkafka.h>

namespace fleettwin::kafka {

/// Names of the topics a node uses (prefix configurable).
struct topic_names {
  std::string telemetry = "fleettwin.telemetry";
  std::string changes = "fleettwin.twin-changes";
  /// The same changes with the values of sensitive properties left out (for
  /// consumers that must not see personal data).
  std::string redacted_changes = "fleettwin.twin-changes.redacted";
  std::string state = "fleettwin.twin-state";
  std::string alerts = "fleettwin.alerts";
  std::string dlq = "fleettwin.telemetry.dlq";
  /// Compacted, one partition: each node's endpoints and partitions.
  std::string members = "fleettwin.members";
  /// Member contributions to aggregates (key = aggregate id, partitioned
  /// like telemetry): the second input of every partition.
  std::string aggregate_updates = "fleettwin.aggregate-updates";
  /// One CloudEvents record per aggregate change (key = aggregate id).
  std::string aggregates = "fleettwin.aggregates";
  /// Relations written by data teams and the simulator (key = child id).
  std::string relations = "fleettwin.relations";
  /// Compacted, one partition: definitions every node shares (aggregate
  /// kinds set through the API; key "aggregate-kind/<name>").
  std::string models = "fleettwin.models";
  /// One record per audited call (key = the target twin's asset id).
  std::string audit = "fleettwin.audit";
  /// Scenario results exported for data teams (key = scenario id).
  std::string scenario_results = "fleettwin.scenario-results";

  static topic_names with_prefix(const std::string& prefix);
};

/// Metadata committed with a group's input offset: the changelog position
/// the committed state reaches, so a restore knows when it is complete.
std::string changelog_metadata(int64_t changelog_offset);
std::optional<int64_t> parse_changelog_metadata(std::string_view metadata);

/// A time (Unix ms) as RFC 3339 in UTC with milliseconds (the ce_time header).
std::string rfc3339(int64_t ms);

/// Adds a header `name` = `value` to `h`.
void add_header(rd_kafka_headers_t* h, const char* name, std::string_view value);

/// Builds an rd_kafka_conf_t from key/value pairs; returns nullptr and sets
/// `error` when librdkafka rejects a setting.
rd_kafka_conf_t* make_conf(const std::map<std::string, std::string>& settings, std::string& error);

struct rd_kafka_deleter {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_destroy(rk);
  }
};
using kafka_handle = std::unique_ptr<rd_kafka_t, rd_kafka_deleter>;

/// A producer or consumer from key/value settings; null with `error` (naming
/// `what`, e.g. "the membership consumer") when it cannot be created.
kafka_handle make_client(rd_kafka_type_t type, const std::map<std::string, std::string>& settings,
                         const std::string& what, std::string& error);

/// Assigns one partition of `topic` to `consumer` from `offset` (no group);
/// the error when librdkafka refuses.
std::optional<std::string> assign_partition(rd_kafka_t* consumer, const std::string& topic,
                                            int32_t partition, int64_t offset);

/// Positions the fetcher of one assigned partition at `offset` without waiting
/// for the fetcher to take the seek: the call raises the partition's version
/// barrier at once, so records fetched before it are dropped by librdkafka
/// whenever they come, and the calling thread never waits on a partition whose
/// fetcher is slow to answer (a seek that waited 2 s held every other
/// partition's input as long). The error when librdkafka refuses (a misuse).
std::optional<std::string> seek_without_waiting(rd_kafka_t* consumer, const std::string& topic,
                                                int32_t partition, int64_t offset);

}  // namespace fleettwin::kafka

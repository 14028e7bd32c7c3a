#pragma once

// Writes a batch of JSON records to an output topic outside any transaction, for
// exports a client asks for (a scenario's result): a producer made for the batch
// (acks=all, one request in flight), CloudEvents binary-mode headers, and an answer
// once Kafka acknowledged every record. Blocking: call it on a query thread.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace fleettwin::kafka {

struct export_record {
  std::string key;
  /// JSON.
  std::string value;
  /// ce_type and ce_id.
  std::string type;
  std::string id;
};

struct export_target {
  std::string bootstrap;
  std::map<std::string, std::string> settings;
  std::string topic;
  /// ce_source (the node).
  std::string source;
};

/// Writes `records` in order; false with `error` when a record could not be written
/// within `timeout` (what was written stays written).
bool export_records(const export_target& to, const std::vector<export_record>& records,
                    int64_t time_ms, std::chrono::milliseconds timeout, std::string& error);

}  // namespace fleettwin::kafka

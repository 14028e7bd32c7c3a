#pragma once

// The audit topic (fleettwin.audit): one fleettwin.v1.AuditEvent per audited call, keyed by
// the asset id of the twin it targets (so that a twin's trail is on one partition, in
// order). Writes that succeed are published by the event producer in the transaction of
// their change; everything else (refused or failed writes, admin calls, reads of sensitive
// properties) through audit_log's own producer (acknowledged by every in-sync replica, one
// request in flight; not idempotent, so a retry may write an entry twice).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "actors/runtime/ports.hpp"
#include "services/kafka/kafka_config.hpp"

namespace fleettwin::kafka {

/// The record key of an audit entry: the asset id of a "twins/{id}" target (or one below it,
/// such as an alert "twins/{id}/alerts/..."), else the target
/// (else the method: a call refused before its request was read names no target).
std::string audit_key(const runtime::audit_entry& e);

/// Serializes an entry as a fleettwin.v1.AuditEvent of node `node`.
void encode_audit(const runtime::audit_entry& e, const std::string& node, std::string& out);

/// What read_audit_trail looks for: the events of `target` ("twins/{id}", with what lies
/// below it, or another audited target) at or after `since_ms`, the newest `limit` of them.
struct audit_query {
  std::string target;
  int64_t since_ms = 0;
  size_t limit = 100;
  /// How long the partition may be read before the answer is given up.
  std::chrono::milliseconds budget{20'000};
};

struct audit_trail {
  /// Oldest first (fleettwin.v1.AuditEvent, serialized).
  std::vector<std::string> events;
  /// Events of the target since since_ms (more than `events` holds when the limit cut).
  int64_t total = 0;
  /// Records of the partition read to find them.
  int64_t scanned = 0;
};

/// Reads the committed audit trail of a target from the partition its key goes to (blocking:
/// call it on a query thread). False with `error` when the topic cannot be read, or
/// `timed_out` when the partition held more than the budget allowed to read.
bool read_audit_trail(const std::string& bootstrap, const std::string& topic,
                      const std::map<std::string, std::string>& settings, const audit_query& q,
                      audit_trail& out, std::string& error, bool& timed_out);

class audit_log {
public:
  /// nullptr with `error` when the producer cannot be made.
  static std::unique_ptr<audit_log> start(const std::string& bootstrap, std::string topic,
                                          std::string node_id,
                                          const std::map<std::string, std::string>& settings,
                                          std::string& error);
  /// Waits (at most 5 s) for what was written to be acknowledged.
  ~audit_log();

  /// Writes an entry (never blocks; a full queue or a failed delivery is counted and
  /// logged).
  void record(const runtime::audit_entry& e);

  /// Entries that could not be written.
  uint64_t lost() const {
    return lost_.load();
  }

private:
  audit_log() = default;
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque);

  std::string topic_;
  std::string node_id_;
  kafka_handle producer_;
  std::atomic<uint64_t> lost_{0};
};

}  // namespace fleettwin::kafka

#pragma once

// Read fencing: a node answers for a partition only while it knows it is
// still the member of the consumer group that owns it. A node that was
// paused (SIGSTOP, a long GC or VM freeze) or cut off from the group
// coordinator longer than the session timeout has been expelled, and its
// partitions may be served elsewhere already, but it cannot tell before its
// next heartbeat fails. So ownership is a lease: the node asks the
// coordinator (DescribeGroups) every `interval` whether its member id is
// still in the group, and a confirmation counts for `duration` from the
// moment the question was sent. `duration` is shorter than the session
// timeout: heartbeats go out every third of it, so the coordinator received
// one at most a third of a session before a confirmation, and cannot expel
// the member before two thirds of a session after it.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "services/kafka/kafka_config.hpp"

namespace fleettwin::cluster {

struct lease_options {
  std::string bootstrap;
  std::string group_id = "fleettwin";
  /// The telemetry topic (the assignment's partitions are of it).
  std::string topic = "fleettwin.telemetry";
  std::string client_id = "fleettwin-lease";
  /// How long a confirmation lets the node serve; 0 disables fencing (the
  /// lease is always held), e.g. with the embedded Kafka, which has one node
  /// and no DescribeGroups.
  std::chrono::milliseconds duration{3'000};
  /// How often the coordinator is asked.
  std::chrono::milliseconds interval{750};
  /// This node's current member id in the group ("" while not joined).
  std::function<std::string()> member_id;
  std::map<std::string, std::string> settings;  // extra librdkafka settings
};

/// What the last answer of the coordinator said about this member.
struct lease_view {
  bool held = false;
  /// Milliseconds since the last confirmation was asked for (-1: never).
  int64_t age_ms = -1;
  /// The group was stable and listed these partitions for this member.
  bool assignment_known = false;
  std::set<int32_t> assignment;
  /// Why the lease is not held (for UNAVAILABLE messages and health).
  std::string why;
};

class group_lease {
public:
  static std::unique_ptr<group_lease> create(lease_options opts, std::string& error);
  ~group_lease();

  /// True while a confirmation younger than the lease's duration exists
  /// (cheap: one atomic load; called on every read).
  bool held() const;
  /// The state of the lease with what the coordinator last reported.
  lease_view view() const;
  /// Client ids of the group's members at the last answer (liveness);
  /// nullopt when the last question got no answer (or fencing is off).
  std::optional<std::set<std::string>> live_clients() const;
  /// Forget the current confirmation (the node knows it lost its place, e.g.
  /// its partitions were revoked as lost); the next answer renews it.
  void invalidate();

  /// Fencing is on: a duration was set and the cluster answers DescribeGroups.
  bool enabled() const {
    return opts_.duration.count() > 0 && !unsupported_.load();
  }

private:
  explicit group_lease(lease_options opts);
  void run();
  /// One DescribeGroups round trip; true when this member is listed.
  bool confirm(std::chrono::steady_clock::time_point asked);

  lease_options opts_;
  kafka::kafka_handle rk_;
  std::thread thread_;
  std::mutex wake_mutex_;
  std::condition_variable wake_;
  bool stop_ = false;

  /// steady_clock nanoseconds of the last confirmed question (0: none).
  std::atomic<int64_t> confirmed_at_{0};
  std::atomic<bool> unsupported_{false};
  mutable std::mutex mutex_;  // guards the fields below
  bool clients_known_ = false;
  bool assignment_known_ = false;
  std::set<int32_t> assignment_;
  std::set<std::string> clients_;
  std::string last_error_;
};

}  // namespace fleettwin::cluster

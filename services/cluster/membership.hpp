#pragma once

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

#include "fleettwin/v1/cluster.pb.h"
#include "services/kafka/kafka_config.hpp"

namespace fleettwin::cluster {

struct membership_options {
  std::string bootstrap;
  /// The compacted members topic (one partition).
  std::string topic = "fleettwin.members";
  std::string group_id = "fleettwin";
  std::string node_id;
  /// This process's incarnation (random per start) and start time, written
  /// in its record.
  uint64_t incarnation = 0;
  int64_t started_ms = 0;
  /// How often a node rewrites its record (and checks the group's members).
  std::chrono::milliseconds heartbeat{2'000};
  std::map<std::string, std::string> settings;  // extra librdkafka settings
  /// Called from the membership thread after records or liveness changed.
  std::function<void()> on_change;
  /// Client ids of the consumer group's members, when a fresh answer is
  /// known (the read lease asks the coordinator often); nullopt: the
  /// membership asks the cluster itself.
  std::function<std::optional<std::set<std::string>>()> live_clients;
};

/// Where to reach the node that serves a partition.
struct owner {
  std::string node_id;
  std::string cluster_endpoint;
  std::string grpc_endpoint;
  /// The owner is still restoring the partition.
  bool restoring = false;
  /// The owner is in the consumer group.
  bool alive = true;
};

/// One member as last read from the topic.
struct member_view {
  fleettwin::v1::Member record;
  /// Position of the record in the topic: later records win ownership.
  int64_t offset = -1;
  /// The node is in the consumer group (as of the last check).
  bool alive = false;
};

/// The routing table of the cluster, kept in Kafka (DESIGN.md, principle 1):
/// each node publishes its endpoints and partitions to a compacted topic and
/// reads everybody's records back. Ownership itself comes from the consumer
/// group; when two records claim a partition (the old owner died before it
/// could update its record), the one written later wins.
class membership {
public:
  /// `snapshot` builds this node's record; it is called from the
  /// membership thread whenever the record is due.
  static std::unique_ptr<membership> create(membership_options opts,
                                            std::function<fleettwin::v1::Member()> snapshot,
                                            std::string& error);
  ~membership();

  /// Writes this node's record soon (after a change of its partitions).
  void publish_soon();
  /// Writes a tombstone for this node and stops (graceful leave).
  void leave(std::chrono::milliseconds timeout);

  /// The node that last claimed `partition` as active, other than this one.
  std::optional<owner> owner_of(int32_t partition) const;
  /// Every member with a live record.
  std::vector<member_view> members() const;
  /// True once this node has read the topic up to its end once.
  bool caught_up() const {
    return caught_up_.load();
  }
  /// A newer process writes records under this node's id (another
  /// incarnation that started after this one, updated within the last three
  /// heartbeats): describes it. The newest process with an id wins, as in
  /// Kafka's own fencing: an older one (a zombie) stops.
  std::optional<std::string> newer_instance() const;

private:
  membership(membership_options opts, std::function<fleettwin::v1::Member()> snapshot);
  void run();
  void publish(bool tombstone);
  /// True when some member's liveness changed.
  bool refresh_liveness();
  /// True when the record changed a member's partitions or roles.
  bool on_record(const rd_kafka_message_t* m);

  membership_options opts_;
  std::function<fleettwin::v1::Member()> snapshot_;
  kafka::kafka_handle producer_;
  kafka::kafka_handle consumer_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> publish_due_{true};
  std::atomic<bool> caught_up_{false};

  mutable std::mutex mutex_;  // guards members_ and foreign_
  std::map<std::string, member_view> members_;
  /// The last record of this node id written by another incarnation.
  std::optional<fleettwin::v1::Member> foreign_;
  int64_t created_ms_ = 0;
};

}  // namespace fleettwin::cluster

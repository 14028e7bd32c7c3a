#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "actors/runtime/ports.hpp"
#include "services/kafka/kafka_config.hpp"

namespace fleettwin::kafka {

/// The changelog key of a partition's input checkpoint: written with every
/// item that consumed input, so a restore knows which input offset the
/// restored state covers. No asset key starts with '\0'.
inline const std::string changelog_checkpoint_key{"\0input-offset", 13};

struct producer_options {
  std::string bootstrap;
  topic_names topics;
  /// CloudEvents `ce_source` is "fleettwin/<node_id>".
  std::string node_id = "node-1";
  /// When false, twin changes are not published (dead letters still are).
  bool publish_changes = true;
  /// Also write every changed twin, history segment and the input checkpoint
  /// to the compacted changelog topic (same partition as the input).
  bool changelog = false;
  /// Non-empty: exactly-once. Outputs and the consumed input offsets of every
  /// item commit in one Kafka transaction under this id (EOS v2: one
  /// producer per node, fenced through the consumer group's generation).
  std::string transactional_id;
  /// How long a transaction collects items before it commits.
  std::chrono::milliseconds commit_interval{50};
  /// Upper bound of a transaction's life; the broker aborts older ones.
  std::chrono::milliseconds transaction_timeout{30'000};
  /// The consumer group's metadata for send_offsets_to_transaction; the
  /// producer destroys what it returns.
  std::function<rd_kafka_consumer_group_metadata_t*()> group_metadata;
  /// Called once when the producer can no longer publish (fenced, fatal
  /// error); items in flight fail too.
  std::function<void(std::string)> on_fatal;
  /// Dead-letter payloads above this are truncated (header says so) so that a
  /// broker's message size limit cannot block the partition.
  size_t dlq_max_payload = 900 * 1024;
  std::map<std::string, std::string> settings;  // extra librdkafka settings
};

/// Publishes twin changes (CloudEvents binary mode), dead letters and the
/// changelog. Callers encode their records on their own thread; one output
/// thread produces them and, in exactly-once mode, commits a transaction
/// with the input offsets every commit interval, then reports each item.
class event_producer final : public runtime::event_sink {
public:
  static std::unique_ptr<event_producer> create(producer_options opts, std::string& error);
  ~event_producer() override;

  void publish(const runtime::item_outputs& out,
               std::function<void(runtime::publish_result)> done) override;

  /// Waits until every queued item is reported or `timeout` passes.
  bool flush(std::chrono::milliseconds timeout);

  bool transactional() const {
    return !opts_.transactional_id.empty();
  }

  /// The producer can no longer publish (fenced or another fatal error).
  bool failed() const {
    return failed_.load();
  }

  /// Transactions committed and aborted since start.
  uint64_t commits() const {
    return commits_.load();
  }
  uint64_t aborts() const {
    return aborts_.load();
  }

  struct item;

private:
  explicit event_producer(producer_options opts);
  bool init_transactions(std::string& error);
  void run();
  void produce_item(item& it);
  void commit_transaction();
  void finish(std::vector<std::unique_ptr<item>>& items, bool ok, const std::string& error);
  void become_fatal(const std::string& why);
  /// One delivery report (or the producing hold) of an at-least-once item is
  /// in; the last one completes and deletes the item.
  void settle(item* it);
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void*);

  producer_options opts_;
  kafka_handle rk_;
  std::thread poller_;
  std::thread output_;

  std::mutex mutex_;  // guards queue_, stop_, pending_
  std::condition_variable wake_;
  std::condition_variable drained_;
  std::deque<std::unique_ptr<item>> queue_;
  size_t pending_ = 0;  // items queued or in flight, not yet reported
  bool stop_ = false;
  std::atomic<bool> poll_stop_{false};

  // Output thread only.
  std::vector<std::unique_ptr<item>> in_transaction_;
  std::chrono::steady_clock::time_point transaction_started_;
  size_t transaction_messages_ = 0;
  bool fatal_ = false;
  std::string fatal_error_;

  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> aborts_{0};
};

}  // namespace fleettwin::kafka

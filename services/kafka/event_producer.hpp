#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "actors/runtime/asset_actor.hpp"
#include "actors/runtime/ports.hpp"
#include "services/kafka/kafka_config.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::kafka {

/// The changelog key of a partition's input checkpoint (see the store).
using storage::changelog_checkpoint_key;

struct producer_options {
  std::string bootstrap;
  topic_names topics;
  /// CloudEvents `ce_source` is "fleettwin/<node_id>".
  std::string node_id = "node-1";
  /// When false, twin changes are not published (dead letters still are).
  bool publish_changes = true;
  /// Set: while these models mark a property of a kind sensitive, every
  /// published change is also written to the redacted changes topic with
  /// the values of sensitive properties left out (listed in `redacted`).
  std::shared_ptr<const runtime::models_holder> models;
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
  /// Called once when the producer can no longer publish (another process
  /// took this node's transactional id); items in flight fail too.
  std::function<void(std::string)> on_fatal;
  /// Called when the producer was fenced or hit a fatal error: true when
  /// another live process uses this node's id (then the producer stops for
  /// good); false when the broker fenced it (e.g. it aborted a transaction
  /// that outlived transaction.timeout.ms during an outage), and a new
  /// producer with the same transactional id takes over. Unset: replace.
  std::function<bool(const std::string& why)> another_instance;
  /// Pause between attempts to initialise a replacement producer.
  std::chrono::milliseconds retry_backoff{1'000};
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

  void abandon(int32_t partition, uint64_t incarnation) override;

  /// Waits until every queued item is reported or `timeout` passes.
  bool flush(std::chrono::milliseconds timeout);

  bool transactional() const {
    return !opts_.transactional_id.empty();
  }

  /// The producer can no longer publish (another process has its id).
  bool failed() const {
    return failed_.load();
  }

  /// Between a fatal error and a working replacement: items wait.
  bool replacing() const {
    return replacing_.load();
  }

  /// Producers replaced after being fenced or failing fatally.
  uint64_t replacements() const {
    return replacements_.load();
  }

  /// The furthest input offset of `partition` this producer committed
  /// (thread-safe): a floor for what the group must report as committed.
  std::optional<int64_t> committed_floor(int32_t partition) const {
    std::lock_guard<std::mutex> guard{committed_mutex_};
    auto it = committed_offsets_.find(partition);
    return it == committed_offsets_.end() ? std::nullopt : std::optional<int64_t>{it->second};
  }

  /// The input log of `partition` was reset (a new log): offsets committed
  /// before no longer bound the next ones (thread-safe).
  void forget_offsets(int32_t partition) {
    std::lock_guard<std::mutex> guard{mutex_};
    forgotten_.push_back(partition);
  }

  /// Input offsets refused because they were below offsets this producer
  /// committed before for the partition (never expected; a safety net).
  uint64_t offset_regressions() const {
    return offset_regressions_.load();
  }

  /// Transactions committed and aborted since start.
  uint64_t commits() const {
    return commits_.load();
  }
  uint64_t aborts() const {
    return aborts_.load();
  }
  /// Time spent committing the transactions that committed (flush, input
  /// offsets, end of transaction), in microseconds.
  uint64_t commit_micros() const {
    return commit_micros_.load();
  }

  /// What the output thread is doing and for how long (a slow stop is
  /// reported with it), e.g. "flushing the transaction for 1200 ms".
  std::string activity() const;

  struct item;

private:
  /// The output thread's step (a static string) since `step_since_ms_`.
  void step(const char* what);
  std::atomic<const char*> step_{"waiting for outputs"};
  std::atomic<int64_t> step_since_ms_{0};

  /// The topic an input is read from.
  const std::string& input_topic(runtime::input in) const {
    switch (in) {
      case runtime::input::contributions:
        return opts_.topics.aggregate_updates;
      case runtime::input::relations:
        return opts_.topics.relations;
      default:
        return opts_.topics.telemetry;
    }
  }

  explicit event_producer(producer_options opts);
  /// A new librdkafka producer (and its poller thread) in rk_.
  bool open_handle(std::string& error);
  /// Stops the poller and destroys rk_; reports of its messages are void.
  void close_handle();
  bool init_transactions(std::string& error);
  /// Replaces a fenced or fatally failed producer by a new one with the same
  /// transactional id, retrying until it works, the node stops, or another
  /// process turns out to own the id.
  void replace_producer(const std::string& why);
  void run();
  void produce_item(item& it);
  /// Adds the item's contributions (one record per parent aggregate) and
  /// aggregate change events to its messages.
  void publish_aggregates(const runtime::item_outputs& out, const std::string& source, item& it);
  /// Adds one alerts-topic record per alert event to the item's messages.
  void publish_audit(const std::vector<runtime::audit_entry>& audit, item& it);
  void publish_alerts(const std::vector<runtime::alert_record>& alerts, const std::string& source,
                      item& it);
  void commit_transaction();
  /// Aborts the open transaction (retrying while the broker is away); false
  /// when the producer is beyond an abort (fatal, fenced).
  bool abort_transaction(std::string& failure);
  void finish(std::vector<std::unique_ptr<item>>& items, bool ok, const std::string& error);
  /// Reports failure to items whose messages may still be in librdkafka:
  /// they are kept until their last delivery report (or the handle's end).
  void fail_now(std::vector<std::unique_ptr<item>>& items, const std::string& error);
  void bury_settled();
  /// The items are reported: off the books (flush() waits for none left).
  void release(const std::vector<std::unique_ptr<item>>& reported);
  /// Why the open transaction must abort because an actor abandoned an item
  /// in it after it was taken in (empty: none did).
  std::string abandoned_in_transaction();
  void become_fatal(const std::string& why);
  /// One delivery report (or the producing hold) of an at-least-once item is
  /// in; the last one completes and deletes the item.
  void settle(item* it);
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void*);

  producer_options opts_;
  std::map<std::string, std::string> settings_;  // the librdkafka configuration
  kafka_handle rk_;  // replaced only by the output thread, under handle_mutex_
  std::shared_mutex handle_mutex_;
  std::thread poller_;
  std::thread output_;

  mutable std::mutex mutex_;  // guards queue_, stop_, pending_
  std::condition_variable wake_;
  std::condition_variable drained_;
  std::deque<std::unique_ptr<item>> queue_;
  std::vector<int32_t> forgotten_;  // partitions whose committed offsets reset
  /// Per partition, the partition actor (incarnation) whose item failed in
  /// a transaction: its later items are refused, never produced (output
  /// thread only).
  std::map<int32_t, uint64_t> failed_incarnations_;
  /// Abandoned incarnations not taken in by the output thread yet (mutex_).
  std::vector<std::pair<int32_t, uint64_t>> abandoned_;
  /// Why the open transaction must abort (an abandoned actor's item is in
  /// it); empty: it may commit (output thread only).
  std::string abort_open_;
  size_t pending_ = 0;  // items queued or in flight, not yet reported
  bool stop_ = false;
  std::atomic<bool> poll_stop_{false};

  // Output thread only.
  /// rk_'s handle of each output topic (keyed by its name in opts_.topics), made on first
  /// use: producing by handle skips librdkafka's lookup of the topic under its write lock
  /// on every record. Destroyed before rk_.
  std::vector<std::pair<const std::string*, rd_kafka_topic_t*>> topic_handles_;
  rd_kafka_topic_t* topic_handle(const std::string* topic);
  void drop_topic_handles();
  std::vector<std::unique_ptr<item>> in_transaction_;
  /// Items already reported whose delivery reports are still due.
  std::vector<std::unique_ptr<item>> graveyard_;
  /// The furthest input offset committed per partition by this node.
  /// Written by the producer thread only, under `committed_mutex_`; other
  /// threads read it under the mutex (committed_floor).
  std::map<int32_t, int64_t> committed_offsets_;
  mutable std::mutex committed_mutex_;
  std::chrono::steady_clock::time_point transaction_started_;
  size_t transaction_messages_ = 0;
  bool fatal_ = false;
  std::string fatal_error_;

  std::atomic<bool> failed_{false};
  std::atomic<bool> replacing_{false};
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> aborts_{0};
  std::atomic<uint64_t> commit_micros_{0};
  std::atomic<uint64_t> replacements_{0};
  std::atomic<uint64_t> offset_regressions_{0};
};

}  // namespace fleettwin::kafka

#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "actors/runtime/asset_actor.hpp"
#include "actors/runtime/interfaces.hpp"
#include "actors/runtime/ports.hpp"

namespace fleettwin::runtime {

/// How a partition actor is wired to its node.
struct partition_config {
  int32_t partition = 0;
  /// Partitions of the telemetry topic; records whose key hashes elsewhere
  /// are rejected (0 disables the check).
  int32_t partition_count = 0;
  std::shared_ptr<const asset_config> assets = std::make_shared<asset_config>();
  std::chrono::milliseconds passivate_after{std::chrono::seconds{60}};
  std::chrono::milliseconds tick_interval{std::chrono::seconds{5}};
  /// How often every resident aggregate compares its incremental measures
  /// with a full recompute from its members (0: never).
  std::chrono::milliseconds aggregate_check_interval{std::chrono::minutes{1}};
  /// Upper bound of resident twins; the least recently used are passivated.
  size_t max_active_twins = 1'000'000;
  std::shared_ptr<twin_store> store;
  /// Where consumption resumes when Kafka, not the store, holds the offsets
  /// (exactly-once); unset: the offset committed in the store.
  std::optional<int64_t> initial_offset;
  /// Run the committer on its own thread (false in deterministic tests).
  bool detached_committer = true;
  std::shared_ptr<event_sink> sink;  // may be null: no outputs
  std::function<std::unique_ptr<telemetry_decoder>()> make_decoder;
  std::shared_ptr<change_listener> listener;  // may be null
  std::shared_ptr<ingest_probe> probe = std::make_shared<ingest_probe>();
  /// Where consumption of each follower input resumes when Kafka holds the
  /// offsets; unset: the offset committed in the store.
  follower_offsets initial_input_offsets;
  /// Called after each commit, per input it consumed, with the batches of
  /// that input it covered and the changelog position reached, if any (from
  /// the actor's thread).
  std::function<void(int32_t partition, input source, int64_t next_offset, size_t batches,
                     std::optional<int64_t> changelog)>
      on_committed;
  /// Queued batches are coalesced into one work item up to this many records,
  /// so that a commit's fixed latency is paid once for all of them.
  size_t max_item_records = 50'000;
  /// Desired updates of distinct twins queued one behind the other are applied as one
  /// work item (one transaction) up to this many (bulk updates, many operators).
  size_t max_item_writes = 1'000;
  /// Work items in flight at once: one applying, the others handed to Kafka
  /// and waiting for their transaction, then for their RocksDB commit (both
  /// in item order). 1: each item waits for the one before to commit (the
  /// default: with more, the cluster fault tests still saw a change event
  /// committed twice after partitions moved).
  size_t max_items_in_flight = 1;
  /// While items are in flight, the next starts once its oldest batch has
  /// waited this long or min_item_records are queued: every item pays fixed
  /// costs (a publish, a history segment per twin), so a stream of small
  /// batches is gathered a little instead of becoming one item each. An idle
  /// partition starts at once.
  std::chrono::milliseconds item_linger{5};
  size_t min_item_records = 1'000;
  /// Behind items in flight, this many queued records mean the partition is
  /// falling behind: the next item waits for the pipeline to empty and takes
  /// them all, as with one item in flight (each item writes every twin it
  /// changed, so small items at a high rate multiply the writes). 0: never.
  size_t behind_records = 2'000;
  /// Called when the partition cannot continue: `retryable` when only the
  /// outputs of uncommitted work were lost (an aborted Kafka transaction), so
  /// that a fresh actor over the committed state can take over; otherwise
  /// the store failed.
  std::function<void(std::string, bool retryable)> on_fatal;
  /// Reads never see state that is not committed yet: a lookup of a twin
  /// the work item in flight changed waits for its commit (exactly-once,
  /// where an aborted transaction rolls the twin back).
  bool read_committed = false;
  /// Only batches of this consumer epoch are processed (older ones were
  /// fetched before the consumer was rewound to the committed offset).
  uint64_t epoch = 0;
  /// The same for batches of each follower input.
  std::array<uint64_t, follower_input_count> input_epochs{};
  /// With assets->checkpoint_members: how long aggregates may hold member
  /// records not written yet before the partition flushes them all (a
  /// checkpoint). A restore replays the contributions since the last one.
  std::chrono::milliseconds member_checkpoint_interval{std::chrono::seconds{10}};
  /// The next contribution not applied yet, when the stored members lag it
  /// (a restore replays up to here); unset: what the store says. The node
  /// sets it to the stored contributions offset (no replay) when the log no
  /// longer holds those records.
  std::optional<int64_t> contributions_applied;
  /// How long a lookup waits for the work item in flight to commit (and a
  /// desired update waits in the queue) before it is answered UNAVAILABLE:
  /// a broker that is slow or unreachable never makes a call hang.
  std::chrono::milliseconds max_read_wait{std::chrono::seconds{2}};
  /// Where the actor publishes its figures for status queries (may be null).
  std::shared_ptr<partition_gauges> gauges;
};

struct desired_work {
  std::string asset_id;
  core::desired_update update;
  twin_completion done;
  /// Set for a change of the entity's explicit relations (SetRelations,
  /// DeleteRelations) instead of a desired update.
  std::optional<core::relation_update> relations;
  /// When it was queued, by the assets' clock (ms): queued updates expire
  /// after max_read_wait.
  int64_t queued_ms = 0;
  /// Set for the acknowledgement of an alert (property, number) instead.
  std::optional<std::pair<std::string, uint32_t>> acknowledge;
  /// Set for the erasure of the twin (DeleteTwin) instead, at update.expected_version.
  bool erase = false;
};

/// The answer to a lookup (exactly-once) of an entity whose last change
/// has not committed yet: asked of the entity's actor at once (so that it
/// shows that change and nothing later), handed to the caller when the
/// work item that made the change commits.
class held_read {
public:
  virtual ~held_read() = default;
  /// The item whose commit releases the answer.
  uint64_t after = 0;
  std::string id;
  bool aggregate = false;
  /// Hands the answer over (now, or when it arrives).
  virtual void release() = 0;
  /// Answers UNAVAILABLE with `why` instead.
  virtual void expire(std::string why) = 0;
  /// How an answer names the entity: twin "x" or aggregate "x".
  std::string subject() const {
    return (aggregate ? "aggregate \"" : "twin \"") + id + "\"";
  }
};

/// Moves the clock of every timed aggregate (self-scheduled on ticks), or
/// of every resident aggregate (`all`: their kinds changed).
struct advance_work {
  bool all = false;
};

/// Writes every member record aggregates hold unwritten (a checkpoint).
struct flush_work {};

using work_item = std::variant<raw_batch_ptr, desired_work, advance_work, flush_work>;

struct partition_state {
  struct entry {
    asset_actor handle;
    int64_t last_used_ms = 0;
    /// The work item that last used the twin; it stays resident while in flight.
    uint64_t last_item = 0;
    /// An aggregate that changes with time: not passivated when idle, and
    /// advanced on every tick.
    bool timed = false;
    /// The entity is an aggregate (checked against a recompute now and then).
    bool aggregate = false;
  };

  /// A work item in flight: replies awaited (applying), then outputs
  /// (publishing), then its commit.
  struct inflight {
    uint64_t id = 0;
    size_t pending = 0;
    /// Consumed batches coalesced into this item (all queued when it started).
    std::vector<raw_batch_ptr> raws;
    /// The writes of the API this item applies: one, or several desired updates of
    /// distinct twins queued one behind the other (one transaction for all of them).
    /// A write is answered at once when it changes nothing, else with `answer` once the
    /// item commits.
    struct write {
      desired_work work;
      std::shared_ptr<twin_reply> answer;
    };
    std::vector<write> writes;
    commit_batch commit;
    std::vector<core::twin_change> changes;
    std::vector<std::shared_ptr<const core::twin>> snapshots;
    std::vector<rejected_record> rejects;
    /// What the item's twins and aggregates send their parents.
    std::vector<core::contribution> contributions;
    std::vector<alert_record> alerts;
    /// The item's writes, audited in its transaction.
    std::vector<audit_entry> audit;
    std::vector<core::aggregate_header> aggregate_changes;
    /// Per aggregate change: origin (ms) and hops (see asset_update).
    std::vector<std::pair<int64_t, uint32_t>> aggregate_origins;
    /// The relation records the item decoded (relation_slice indexes them).
    std::vector<const raw_record*> relation_records;
    /// The next contribution offset once this item commits (what it
    /// consumed; the committed offset may stay behind, see unwritten).
    std::optional<int64_t> contributions_next;
    /// The first contribution offset the item consumed (-1: none).
    int64_t contributions_first = -1;
    size_t applied = 0;
    std::chrono::steady_clock::time_point started;
    /// When the outputs went to Kafka (the apply phase ended).
    std::chrono::steady_clock::time_point published;
    /// Kafka made the outputs durable (or there were none): the item may
    /// commit once every item before it did.
    bool delivered = false;
  };

  partition_config cfg;
  committer_actor committer;
  std::unique_ptr<telemetry_decoder> decoder;
  std::unordered_map<std::string, entry> assets;
  std::deque<work_item> queue;
  /// When the oldest queued work was queued (item_linger).
  std::chrono::steady_clock::time_point queued_since;
  /// A linger_atom is on its way.
  bool linger_armed = false;
  /// It arrived: the queued batches lingered long enough.
  bool lingered = false;
  /// The last item took behind_records or more: until an item takes less
  /// than a quarter of that, items wait for the pipeline to empty.
  bool catching_up = false;
  /// The item being applied (at most one).
  std::optional<inflight> applying;
  /// Items applied and handed to Kafka, oldest first; they commit in order.
  std::deque<inflight> pipeline;
  /// A RocksDB commit of the items at the front of the pipeline is running.
  bool committing = false;
  /// Every item up to this id has committed (or ended without a commit).
  uint64_t completed_through = 0;
  /// Every item up to this id is durable in Kafka (its transaction
  /// committed, or its outputs acknowledged), its local commit maybe still
  /// to come: reads may show it (a restore from the changelog would too).
  uint64_t durable_through = 0;
  uint64_t next_item_id = 1;
  /// Committed input positions: the next offset to consume once the items
  /// in flight are dropped (what the store and Kafka hold).
  int64_t next_offset = -1;
  std::array<int64_t, follower_input_count> next_input_offsets{-1, -1};
  /// The same positions after every item started so far (items in flight
  /// included): where the next item continues.
  int64_t applied_offset = -1;
  std::array<int64_t, follower_input_count> applied_input_offsets{-1, -1};
  uint64_t records_applied = 0;
  bool failed = false;
  std::vector<std::function<void()>> stop_waiters;
  /// Answers waiting for the items in flight to commit (read_committed).
  std::vector<std::shared_ptr<held_read>> held;
  /// The work item an expiry check is scheduled for (0: none).
  uint64_t expiry_armed_for = 0;
  /// An advance of the timed aggregates is queued or in flight.
  bool advance_queued = false;
  /// Resident aggregates (entries with `aggregate`).
  size_t active_aggregates = 0;
  /// Aggregates holding member records not written yet: resident until the
  /// next flush, which the committed contributions offset waits for.
  std::unordered_set<std::string> unwritten;
  /// The contributions offset the stored member records cover.
  int64_t members_cover = -1;
  /// When `unwritten` last became non-empty (ms).
  int64_t unwritten_since_ms = 0;
  bool flush_queued = false;
  /// Contributions below this offset were applied before a restart: they
  /// are replayed into the members only, and nothing else runs until they
  /// are (-1: no replay).
  int64_t replay_until = -1;
  /// When resident aggregates were last checked against a recompute.
  int64_t last_check_ms = 0;
  /// The decoded records of the last item, reused when nobody holds them.
  std::shared_ptr<decoded_batch> spare;
  /// The raw record of each decoded record of the item applying (scratch, kept to avoid
  /// reallocation): a twin that refuses a record names its decoded index.
  std::vector<const raw_record*> decoded_from;
  /// Scratch for grouping a batch by asset (kept to avoid reallocation).
  std::unordered_map<std::string_view, std::vector<uint32_t>> groups;
  /// Entities the committer read for the continuation running now (see preload):
  /// resident() takes their state from here instead of reading the store. Empty
  /// between messages.
  std::unordered_map<std::string_view, loaded_entity*> preloaded;
  /// Entities read from the store on this actor's thread (partition_info).
  uint64_t synchronous_loads = 0;

  static inline const char* name = "partition";
};

/// Spawned by the partition actor for its store.
committer_actor::behavior_type committer(committer_actor::pointer self,
                                         std::shared_ptr<twin_store> store);

partition_actor::behavior_type partition(partition_actor::stateful_pointer<partition_state> self,
                                         partition_config cfg);

}  // namespace fleettwin::runtime

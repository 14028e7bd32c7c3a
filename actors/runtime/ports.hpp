#pragma once

// The edges of the actor layer: what partition and asset actors need from the
// outside world, as interfaces. Adapters in services/ implement them over
// RocksDB, librdkafka, gRPC and prometheus-cpp; actor tests use fakes.

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/core/aggregate_codec.hpp"
#include "actors/core/change.hpp"
#include "actors/core/codec.hpp"
#include "actors/core/twin.hpp"
#include "actors/core/twin_analytics.hpp"

namespace fleettwin::runtime {

/// One consumed record, undecoded. Views into memory kept alive by its batch.
struct raw_record {
  std::string_view key;
  std::string_view payload;
  std::string_view content_type;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
};

/// What a partition consumes: telemetry (its consumer group's input), and
/// the follower inputs read alongside it, each with its own offset committed
/// with the state: contributions to aggregates, and relations.
enum class input : uint8_t { telemetry = 0, contributions = 1, relations = 2 };

inline constexpr size_t follower_input_count = 2;
inline constexpr std::array<input, follower_input_count> follower_inputs{input::contributions,
                                                                         input::relations};
/// The slot of a follower input in per-input arrays.
constexpr size_t follower_slot(input i) {
  return static_cast<size_t>(i) - 1;
}
/// Next offsets of the follower inputs (nullopt: not consumed / unknown).
using follower_offsets = std::array<std::optional<int64_t>, follower_input_count>;

inline bool any_offset(const follower_offsets& o) {
  for (const auto& x : o)
    if (x)
      return true;
  return false;
}

struct raw_batch {
  int32_t partition = 0;
  input source = input::telemetry;
  std::vector<raw_record> records;
  /// Offset to resume from once this batch is committed (last offset + 1).
  int64_t next_offset = 0;
  /// The consumer's position epoch of the partition: it changes when the
  /// consumer is rewound, so that batches fetched before are told apart.
  uint64_t epoch = 0;
  size_t bytes = 0;
  /// Owns the memory the views point into (e.g. librdkafka messages).
  std::shared_ptr<void> owner;
};

using raw_batch_ptr = std::shared_ptr<const raw_batch>;

/// A record the node rejected: it goes to the dead-letter topic.
struct rejected_record {
  raw_record record;
  std::string reason;
  /// Short machine-readable reason (metric label, DLQ header).
  std::string code;
  /// The input the record came from (named in the DLQ headers).
  input source = input::telemetry;
};

/// Turns payload bytes into telemetry. Implemented by the protobuf/JSON codec.
class telemetry_decoder {
public:
  virtual ~telemetry_decoder() = default;
  /// Decodes `r` into `out` (reused); on failure returns {code, reason}.
  virtual std::optional<std::pair<std::string, std::string>> decode(const raw_record& r,
                                                                    core::telemetry& out) = 0;
  /// Decodes a record of the relations topic: the child's id and the update
  /// of its relations; on failure returns {code, reason}.
  virtual std::optional<std::pair<std::string, std::string>> decode_relations(
      const raw_record& r, std::string& child, core::relation_update& out) {
    return std::pair<std::string, std::string>{"unsupported", "this decoder reads no relations"};
  }
};

/// One write of a twin's history ring slot: a segment with every sample one
/// batch applied to the twin.
struct history_write {
  std::string asset_id;
  uint32_t slot = 0;
  std::string segment;  // begin_history_segment + append_history_sample; empty: delete
};

/// One member record of an aggregate to write, or to delete (empty entry).
struct member_write {
  std::string aggregate_id;
  std::string member_id;
  std::string entry;  // encode_member_entry; empty: delete
};

/// Everything one partition commits atomically.
struct commit_batch {
  int32_t partition = 0;
  std::vector<std::pair<std::string, std::string>> twins;  // asset id, encode_twin
  std::vector<history_write> history;
  /// Next offset to consume; nullopt when the commit carries no records.
  std::optional<int64_t> next_offset;
  /// Next offset of the changelog partition once these changes are in it;
  /// nullopt when no changelog is kept (or nothing was written to it).
  std::optional<int64_t> changelog_offset;
  /// Twins that exist since this commit (the store keeps an exact count).
  uint32_t created_twins = 0;
  /// Aggregate id, encode_aggregate_header.
  std::vector<std::pair<std::string, std::string>> aggregates;
  std::vector<member_write> members;
  /// Next offsets of the follower inputs consumed (the others nullopt).
  /// For contributions: where the stored member records stand, which may lag
  /// what was applied (members are checkpointed, see contributions_applied).
  follower_offsets input_offsets;
  /// With the contributions offset: the next contribution not applied yet.
  /// Above input_offsets[contributions] when aggregates hold member changes
  /// not written yet: a restore replays the contributions in between into the
  /// members without publishing anything (the outputs of those records are
  /// committed). Unset: equal to it.
  std::optional<int64_t> contributions_applied;
};

/// An aggregate as stored: its header and every member.
struct stored_aggregate {
  core::aggregate_header header;
  std::vector<std::pair<std::string, core::member_entry>> members;
};

enum class load_status : uint8_t { found, missing, failed };

/// One entity a partition reads before it becomes resident (twin_store::load_many).
struct loaded_entity {
  std::string id;
  /// Asked by the partition: the entity is an aggregate (its header and members are
  /// read too).
  bool aggregate = false;
  load_status twin_status = load_status::missing;
  core::twin twin;
  load_status aggregate_status = load_status::missing;
  stored_aggregate stored;
  /// Why a read failed (either status failed).
  std::string error;
};

/// The entities a partition reads in one go, off its actor's thread.
struct load_request {
  int32_t partition = 0;
  std::vector<loaded_entity> entities;
};

/// The node's local store of twins, history and consumed offsets.
class twin_store {
public:
  virtual ~twin_store() = default;
  virtual load_status load_twin(int32_t partition, std::string_view asset_id, core::twin& out,
                                std::string& error) = 0;
  /// Reads every entity of `r` (their ids and aggregate flags set), many at once where
  /// the store can. Runs on the committer's thread, in order with its commits.
  virtual void load_many(load_request& r) {
    for (auto& e : r.entities) {
      e.twin_status = load_twin(r.partition, e.id, e.twin, e.error);
      if (e.aggregate && e.twin_status != load_status::failed)
        e.aggregate_status = load_aggregate(r.partition, e.id, e.stored, e.error);
    }
  }
  /// Atomically applies `b`; returns an error description on failure.
  virtual std::optional<std::string> commit(const commit_batch& b) = 0;
  virtual std::optional<int64_t> load_offset(int32_t partition) = 0;
  /// Loads an aggregate's header and members (stores without aggregates:
  /// missing).
  virtual load_status load_aggregate(int32_t partition, std::string_view id, stored_aggregate& out,
                                     std::string& error) {
    return load_status::missing;
  }
  /// The committed next offset of a follower input.
  virtual std::optional<int64_t> load_input_offset(int32_t partition, input in) {
    return std::nullopt;
  }
  /// The next contribution not applied yet (commit_batch::contributions_applied);
  /// nullopt when the members stored cover every contribution applied.
  virtual std::optional<int64_t> load_contributions_applied(int32_t partition) {
    return std::nullopt;
  }
};

/// One audited call (fleettwin.audit): who called what on which resource, and how it
/// ended. Writes carry theirs to the partition, which publishes it in the transaction of
/// the change once the write succeeded.
struct audit_entry {
  int64_t time_ms = 0;
  std::string subject;
  std::string tenant;
  std::string role;
  std::string method;
  /// "twins/{asset_id}", "models/{kind}" ...
  std::string target;
  /// "OK" or the gRPC status code's name.
  std::string code = "OK";
  std::string message;
};

/// An alert of a twin that changed (raised, updated, cleared, acknowledged).
struct alert_record {
  std::string asset_id;
  std::string twin_kind;
  std::string tenant;
  core::alert_change change;
};

/// What one work item of a partition hands to Kafka.
struct item_outputs {
  int32_t partition = 0;
  const std::vector<core::twin_change>& changes;
  const std::vector<rejected_record>& rejects;
  /// The twin states and history segments the item changed (for the
  /// changelog) and the input offset it consumed up to.
  const commit_batch& state;
  /// What the item's twins and aggregates send their parent aggregates, at
  /// most one contribution per (child, parent).
  const std::vector<core::contribution>& contributions;
  /// The aggregates the item changed, as they are now.
  const std::vector<core::aggregate_header>& aggregate_changes;
  /// Per aggregate change: the ingest time (ms) of the oldest twin change it
  /// folds in and the levels it travelled (0: unknown); may be null.
  const std::vector<std::pair<int64_t, uint32_t>>* aggregate_origins = nullptr;
  /// Alerts the item changed (for the alerts topic); may be null.
  const std::vector<alert_record>* alerts = nullptr;
  /// The writes the item committed, for the audit topic; may be null.
  const std::vector<audit_entry>* audit = nullptr;
  /// The partition actor that made the item (0: unknown). Its items build on
  /// each other: once one of them fails, a sink refuses its later ones, so
  /// that none commits what a failed item's changes led to.
  uint64_t incarnation = 0;
};

/// How publishing one item's outputs ended.
struct publish_result {
  bool ok = true;
  std::string error;
  /// Next offset of the item's changelog partition after its records.
  std::optional<int64_t> changelog_offset;
};

/// Publishes change events, dead letters and the changelog. `done` is called
/// once, when the outputs are durable in Kafka: acknowledged (at-least-once)
/// or committed in a transaction together with the input offset
/// (exactly-once), or when that failed.
class event_sink {
public:
  virtual ~event_sink() = default;
  virtual void publish(const item_outputs& out, std::function<void(publish_result)> done) = 0;
  /// The partition actor `incarnation` of `partition` was dropped or failed
  /// with items still unreported: none of them may commit any more (refused,
  /// or their transaction aborted, which reports them failed).
  virtual void abandon(int32_t partition, uint64_t incarnation) {}
};

/// Receives committed changes for WatchTwins streams. Called from partition
/// actors after each commit; must not block.
class change_listener {
public:
  virtual ~change_listener() = default;
  /// True when some watcher needs twin snapshots to evaluate a filter.
  virtual bool wants_snapshots() const = 0;
  virtual void on_changes(const std::vector<core::twin_change>& changes,
                          const std::vector<std::shared_ptr<const core::twin>>& snapshots) = 0;
};

/// Ingest measurements of one partition (Redpanda-style probe).
class ingest_probe {
public:
  virtual ~ingest_probe() = default;
  virtual void on_batch(size_t records, size_t bytes) {}
  virtual void on_applied(size_t records) {}
  virtual void on_duplicates(size_t n) {}
  virtual void on_out_of_order(size_t records, size_t samples) {}
  /// Fresh records that changed nothing (no samples, attributes as stored).
  virtual void on_unchanged(size_t records) {}
  /// What the twins' analytics found in a batch: anomalous samples by
  /// detector, alerts raised, updated and cleared.
  virtual void on_analysis(const core::analysis_output& found) {}
  virtual void on_sequence_restarts(size_t records) {}
  virtual void on_rejected(std::string_view code) {}
  virtual void on_commit(double seconds, size_t twins, size_t history) {}
  virtual void on_commit_failed() {}
  /// One work item's phases: applying it (from its start to handing the
  /// outputs to Kafka) and publishing it (until Kafka acknowledged them or
  /// committed their transaction).
  virtual void on_item_phases(double apply_seconds, double publish_seconds) {}
  virtual void on_active_twins(int32_t partition, size_t n) {}
  /// Member deltas folded into aggregates; deltas sent to ids of no kind;
  /// cycles, too-deep paths, late versions and expired holds seen.
  virtual void on_contributions(size_t deltas, size_t misdirected,
                                const core::apply_counts& counts) {}
  /// A commit published `contributions` (child, parent) contributions and
  /// changed `aggregates` aggregates.
  virtual void on_aggregate_outputs(size_t contributions, size_t aggregates) {}
  /// An aggregate change committed `seconds` after the ingest of the oldest
  /// twin change it folds in, `hops` levels below it.
  virtual void on_aggregate_latency(uint32_t hops, double seconds) {}
  virtual void on_passivated(size_t n) {}
  virtual void on_active_aggregates(int32_t partition, size_t n) {}
  /// One aggregate compared its measures with a full recompute: the first
  /// difference, empty when they agree.
  virtual void on_aggregate_check(const std::string& mismatch) {}
};

}  // namespace fleettwin::runtime

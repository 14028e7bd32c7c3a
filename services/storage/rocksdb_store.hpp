#pragma once

// The node's local store over RocksDB: twin state, history segment rings and
// consumed offsets, written together in one WriteBatch per partition commit
// (DESIGN.md, "Principles" 3: state and offset commit together).
//
// Column families and key layout. `be32(x)` is x as 4 bytes, big-endian, so
// that keys of one partition are contiguous and sort by the bytes after it.
//
//   "twins"    be32(partition) asset_id                          -> encode_twin
//   "history"  be32(partition) asset_id '\0' be32(slot)  -> a history segment
//              (every sample one batch applied to the twin; a ring of segments)
//   "aggregates" be32(partition) aggregate_id                    -> encode_aggregate_header
//   "members"  be32(partition) aggregate_id '\0' member_id       -> encode_member_entry
//   "default"  "offset/" be32(partition)                         -> next offset to consume,
//                                                                   int64 as 8 bytes big-endian
//              "offset-contrib/" be32(partition)                 -> next offset of the
//                                                                   contributions input the
//                                                                   stored members cover
//              "applied-contrib/" be32(partition)                -> next contribution applied
//                                                                   (beyond it: replayed into
//                                                                   the members on restore)
//              "offset-relation/" be32(partition)                -> next offset of the
//                                                                   relations input
//              "count/" be32(partition)                          -> twins stored (same encoding)
//              "changelog/" be32(partition)                      -> next changelog offset the
//                                                                   local state covers
//
// The changelog topic (fleettwin.twin-state) carries the same records without
// the partition prefix: key asset_id -> twin, key asset_id '\0' be32(slot) ->
// history segment, so restoring copies them verbatim.
//
// Asset ids and property names never contain '\0' (validated upstream), so the
// history prefix of one (partition, asset) is unambiguous. Within a
// partition, twins sort by asset id bytewise (unsigned), the same order as
// std::string comparison, which list_twins uses to merge partitions.
//
// Thread-safety: every member may be called concurrently from any thread.
// commit/load_* (actors) take no locks of ours; list_twins, read_history and
// stats are meant for the query thread pool, never for actors.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/core/aggregate_codec.hpp"
#include "actors/core/codec.hpp"
#include "actors/core/twin.hpp"
#include "actors/runtime/ports.hpp"

namespace rocksdb {
class Cache;
class Snapshot;
class ColumnFamilyHandle;
class DB;
class Statistics;
}  // namespace rocksdb

namespace fleettwin::storage {

struct store_options {
  /// The RocksDB directory (created, with its parents, if missing).
  std::string path;
  /// false: commit returns once the batch is in the WAL in the OS page cache,
  /// which survives a crash (kill -9) of the process but not a power loss or
  /// kernel crash. true: the WAL is fsync'ed before commit returns, which also
  /// survives power loss, at the price of one fsync per commit.
  bool sync_commits = false;
  /// Shared LRU block cache of all column families.
  size_t block_cache_bytes = size_t{256} << 20;
  /// Memtable size of the twins and history column families.
  size_t write_buffer_bytes = size_t{64} << 20;
};

/// The changelog key of a partition's input checkpoint (value: the next input
/// offset, 8 bytes big-endian): written with every item that consumed input,
/// so a restore knows which input offset the restored state covers. No asset
/// key starts with '\0'.
inline constexpr std::string_view changelog_checkpoint_key{"\0input-offset", 13};

/// The changelog keys of a partition's follower-input checkpoints (same
/// encoding as the input checkpoint), by follower slot.
inline constexpr std::array<std::string_view, runtime::follower_input_count> changelog_input_keys{
    std::string_view{"\0contrib-offset", 15}, std::string_view{"\0relation-offset", 16}};

/// The changelog key of the next contribution applied, beside the
/// contributions checkpoint (commit_batch::contributions_applied).
inline constexpr std::string_view changelog_applied_key{"\0contrib-applied", 16};

/// Changelog keys of aggregates: marker, then the store's key without the
/// partition (aggregate id; aggregate id '\0' member id). Asset ids never
/// start with these bytes.
inline constexpr char changelog_aggregate_marker = '\1';
inline constexpr char changelog_member_marker = '\2';

/// One record of the changelog topic, as restored into the store. An empty
/// value deletes the key (a compaction tombstone).
struct changelog_entry {
  std::string_view key;
  std::string_view value;
};

/// One page of list_twins.
struct list_page {
  std::vector<core::twin> twins;
  /// Raw asset id to pass as `start_after` for the next page; empty when the
  /// scan reached the end.
  std::string next_page_token;
};

/// One page of list_aggregates.
struct aggregate_page {
  std::vector<core::aggregate_header> aggregates;
  std::string next_page_token;
};

/// A point-in-time view of the store (a RocksDB snapshot): what a scenario forks its
/// twins from. Held, it costs no memory but keeps the versions it sees from being
/// compacted away (disk grows with what changes after it); released with its last
/// owner. The store must outlive it.
struct store_snapshot {
  const rocksdb::Snapshot* snapshot = nullptr;
  /// When it was taken (ms since the epoch).
  int64_t taken_ms = 0;
};

/// Gauges of the store, from RocksDB properties and statistics.
struct store_stats {
  uint64_t sst_bytes = 0;
  uint64_t memtable_bytes = 0;
  uint64_t block_cache_bytes = 0;
  /// Exact: maintained by the commits that create twins.
  uint64_t stored_twins = 0;
  uint64_t pending_compaction_bytes = 0;
  bool write_stopped = false;
  /// Bytes per second writes are throttled to while delayed; 0 when not delayed.
  uint64_t delayed_write_rate = 0;
  /// Total time writes were stalled or delayed since open.
  uint64_t stall_micros = 0;
};

class rocksdb_store final : public runtime::twin_store {
public:
  /// Opens (creating if missing) the store at `opts.path`; on failure returns
  /// null and sets `error` to a message fit for an operator.
  static std::unique_ptr<rocksdb_store> open(const store_options& opts, std::string& error);

  /// Closes the database. Unflushed memtables are recovered from the WAL on
  /// the next open, so no flush happens here.
  ~rocksdb_store() override;

  rocksdb_store(const rocksdb_store&) = delete;
  rocksdb_store& operator=(const rocksdb_store&) = delete;

  // --- runtime::twin_store (actors) -----------------------------------------

  /// One MultiGet for the twins of `r`; aggregates' headers and members as load_aggregate.
  void load_many(runtime::load_request& r) override;
  runtime::load_status load_twin(int32_t partition, std::string_view asset_id, core::twin& out,
                                 std::string& error) override;
  /// One WriteBatch with every twin, every history slot and the offset.
  std::optional<std::string> commit(const runtime::commit_batch& b) override;
  /// The committed next offset; nullopt when none was committed (or it cannot
  /// be read, which is logged).
  std::optional<int64_t> load_offset(int32_t partition) override;
  runtime::load_status load_aggregate(int32_t partition, std::string_view id,
                                      runtime::stored_aggregate& out, std::string& error) override;
  std::optional<int64_t> load_input_offset(int32_t partition, runtime::input in) override;
  std::optional<int64_t> load_contributions_applied(int32_t partition) override;

  /// The changelog position the local state of `partition` covers; nullopt
  /// when it was never restored or committed with a changelog.
  std::optional<int64_t> load_changelog_offset(int32_t partition);

  // --- changelog restore (restorer thread) -----------------------------------

  /// Writes changelog records of `partition` and the position after them in
  /// one batch. Returns an error description on failure.
  std::optional<std::string> apply_changelog(int32_t partition,
                                             const std::vector<changelog_entry>& entries,
                                             int64_t next_offset);

  /// Counts the twins of `partition` again (after a restore, which cannot
  /// tell a new twin from an overwrite cheaply).
  std::optional<std::string> recount_partition(int32_t partition);

  /// Pauses the automatic compactions of the state column families while
  /// held (counted: each hold ends with one release). A restore or a standby
  /// far behind writes a changelog in bulk, and the compactions its flushes
  /// set off took a fifth of the node's CPU from the restore (perf of a
  /// failover); held, the flushes pile up in level 0 and are compacted when
  /// the last hold ends (RocksDB's advice for bulk loads). Callers hold only
  /// while level0_files() stays below a bound.
  void hold_compactions();
  void release_compactions();
  /// Files in level 0 of the busiest state column family.
  int level0_files();

  // --- queries (query thread pool) ------------------------------------------

  /// Twins of `partitions` with asset_id > `start_after` that satisfy
  /// `predicate` (empty: all), in global asset-id order, read from one
  /// consistent snapshot. Returns at most `page_size` twins and stops after
  /// scanning `max_scanned` twins (0: no limit for either); a page cut short by
  /// either limit carries a continuation token unless the scan reached the
  /// end. On failure sets `error` and returns an empty page.
  list_page list_twins(const std::vector<int32_t>& partitions, std::string_view start_after,
                       const std::function<bool(const core::twin&)>& predicate, size_t page_size,
                       size_t max_scanned, std::string& error, const store_snapshot* at = nullptr);

  /// Aggregate headers of `partitions` after `start_after`, like list_twins.
  aggregate_page list_aggregates(
      const std::vector<int32_t>& partitions, std::string_view start_after,
      const std::function<bool(const core::aggregate_header&)>& predicate, size_t page_size,
      size_t max_scanned, std::string& error, const store_snapshot* at = nullptr);
  /// Records of the node apart from the partitions' state (its scenarios), each
  /// whole under a key, synced when written. Blocking: not for actors.
  bool put_record(std::string_view key, std::string_view value, std::string& error);
  bool delete_record(std::string_view key, std::string& error);
  /// Every record whose key starts with `prefix`, in key order.
  bool scan_records(std::string_view prefix,
                    const std::function<void(std::string_view key, std::string_view value)>& each,
                    std::string& error);
  /// Takes a snapshot of the whole store (see store_snapshot).
  std::shared_ptr<const store_snapshot> pin();
  /// A twin (load_twin) and an aggregate (load_aggregate) as `at` saw them.
  runtime::load_status read_twin(const store_snapshot& at, int32_t partition,
                                 std::string_view asset_id, core::twin& out, std::string& error);
  runtime::load_status read_aggregate(const store_snapshot& at, int32_t partition,
                                      std::string_view id, runtime::stored_aggregate& out,
                                      std::string& error);
  /// Every retained sample of `tw` (as `at` saw it: its closed segments, then
  /// `tw.open_history`) with a source time before `end_ms`, of every property,
  /// ascending by (source time, sequence). False with `error` on failure.
  bool read_samples(const store_snapshot& at, int32_t partition, const core::twin& tw,
                    int64_t end_ms, std::vector<std::pair<std::string, core::history_point>>& out,
                    std::string& error);

  /// The recorded points of one property with start_ms <= source time <
  /// end_ms (0: unbounded), ascending by (source_time_ms, sequence); with
  /// `limit` > 0 only the newest `limit` of them. On failure sets `error` and
  /// returns nothing. `accept` (if set) sees the twin's state first, as of the same moment
  /// (nullptr: no twin stored); when it returns false nothing more is read.
  std::vector<core::history_point> read_history(
      int32_t partition, std::string_view asset_id, std::string_view property, int64_t start_ms,
      int64_t end_ms, size_t limit, std::string& error,
      const std::function<bool(const core::twin*)>& accept = {});

  /// One version of an aggregate as its measure history recorded it.
  struct aggregate_point {
    int64_t time_ms = 0;
    uint64_t version = 0;
    /// Measures that had a value (and member_twins, members), by name.
    std::vector<std::pair<std::string, double>> measures;
  };

  /// The recorded versions of an aggregate after `after_version` with
  /// start_ms <= time < end_ms (0: unbounded), ascending by version, at most
  /// `limit` (> 0) of them; `more` tells whether others follow. `measures`
  /// selects measures (empty: all). On failure sets `error`.
  std::vector<aggregate_point> read_aggregate_history(int32_t partition,
                                                      std::string_view aggregate_id,
                                                      const std::vector<std::string>& measures,
                                                      int64_t start_ms, int64_t end_ms,
                                                      uint64_t after_version, size_t limit,
                                                      bool& more, std::string& error);

  /// RocksDB's estimate of the number of stored twins (counts overwrites still
  /// in memtables; see stored_twins for the exact figure).
  uint64_t estimate_twins();

  /// The exact number of stored twins (all partitions, or one).
  uint64_t stored_twins(std::optional<int32_t> partition = std::nullopt);

  store_stats stats();

  /// The number of stored aggregates (a scan of their headers).
  uint64_t stored_aggregates();

  // --- positions in Kafka (node start) --------------------------------------

  /// Every partition's committed input offset.
  std::map<int32_t, int64_t> stored_offsets();
  /// Forgets every stored input offset and changelog position (twins and
  /// history stay): they refer to a Kafka log that no longer exists (a new
  /// embedded broker, another cluster). Returns an error description on failure.
  std::optional<std::string> forget_positions();
  /// A small named value of the node (e.g. the Kafka cluster id); nullopt
  /// when never saved.
  std::optional<std::string> load_setting(std::string_view name);
  std::optional<std::string> save_setting(std::string_view name, std::string_view value);

  /// Deletes every twin, history point and the offset of `partition` (range
  /// tombstones, one batch). Returns an error description on failure.
  std::optional<std::string> drop_partition(int32_t partition);

  const std::string& path() const {
    return opts_.path;
  }

private:
  rocksdb_store() = default;
  /// Called per record of a merged scan with its partition, id and value;
  /// sets `took` when the record counts for the page; returns an error.
  using scan_visitor = std::function<std::optional<std::string>(
      int32_t partition, std::string_view id, std::string_view value, bool& took)>;
  /// Visits the records of `cf` in `partitions` after `start_after` in id
  /// order across partitions (one snapshot), until `page_size` were taken or
  /// `max_scanned` visited (0: no limit); returns the continuation id when
  /// cut short, empty at the end or on error (then `error` says why).
  std::string merged_scan(rocksdb::ColumnFamilyHandle* cf, const std::vector<int32_t>& partitions,
                          std::string_view start_after, size_t page_size, size_t max_scanned,
                          const scan_visitor& visit, std::string& error,
                          const rocksdb::Snapshot* at = nullptr);
  runtime::load_status get_twin(const rocksdb::Snapshot* at, int32_t partition,
                                std::string_view asset_id, core::twin& out, std::string& error);
  runtime::load_status get_aggregate(const rocksdb::Snapshot* at, int32_t partition,
                                     std::string_view id, runtime::stored_aggregate& out,
                                     std::string& error);
  std::optional<int64_t> read_meta_offset(const std::string& key, int32_t partition);

  store_options opts_;
  std::shared_ptr<rocksdb::Cache> cache_;
  std::shared_ptr<rocksdb::Statistics> statistics_;
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* twins_ = nullptr;
  rocksdb::ColumnFamilyHandle* history_ = nullptr;
  rocksdb::ColumnFamilyHandle* aggregates_ = nullptr;
  rocksdb::ColumnFamilyHandle* members_ = nullptr;
  /// The column families of twin and aggregate state, in the order of the
  /// changelog's key kinds (twin, history, aggregate, member).
  std::array<rocksdb::ColumnFamilyHandle*, 4> state_families() const {
    return {twins_, history_, aggregates_, members_};
  }
  /// Twins per partition, mirrored from the "count/" meta keys. Only a
  /// partition's committer changes its entry.
  std::mutex counts_mutex_;
  std::mutex holds_mutex_;
  int compaction_holds_ = 0;
  std::map<int32_t, uint64_t> counts_;
};

}  // namespace fleettwin::storage

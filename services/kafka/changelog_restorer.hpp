#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "services/kafka/kafka_config.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::kafka {

struct restorer_options {
  std::string bootstrap;
  /// The changelog topic (fleettwin.twin-state).
  std::string topic;
  std::string client_id = "fleettwin-restorer";
  /// Changelog records written to the store per batch at most.
  size_t batch_records = 20'000;
  /// Readers (each a consumer and a thread); partition p goes to p % readers.
  int readers = 2;
  std::map<std::string, std::string> settings;  // extra librdkafka settings
};

/// How a restore ended.
struct restore_result {
  bool ok = true;
  std::string error;
  uint64_t records = 0;
  double seconds = 0;
};

/// What the restorer reports of one partition it reads.
struct restore_progress {
  int32_t partition = 0;
  bool standby = false;
  /// Next changelog offset to read (the local state covers what precedes it).
  int64_t position = -1;
  /// The changelog's end when last seen (-1 unknown).
  int64_t end = -1;
  uint64_t records = 0;
  int64_t lag() const {
    return end < 0 || position < 0 ? 0 : std::max<int64_t>(0, end - position);
  }
};

/// Copies changelog partitions into the local store with its own consumer
/// (no group, read_committed), on its own thread:
///  - restore: read a partition from the local checkpoint to the end, then
///    report (the node serves the partition only after that);
///  - standby: keep following a partition this node may inherit, so that a
///    later restore only reads the tail.
class changelog_reader {
public:
  /// Decides, at the end of the changelog, whether the state restored up to
  /// `position` is complete (e.g. covers the changelog position committed
  /// with the group's input offset); false keeps reading, because committed
  /// records can still be hidden behind a dead producer's open transaction.
  using completeness_check =
      std::function<bool(int32_t partition, int64_t position, std::string& why)>;

  static std::unique_ptr<changelog_reader> create(restorer_options opts,
                                                  storage::rocksdb_store& store,
                                                  std::string& error);
  ~changelog_reader();

  /// Restores `partition` (a standby of it turns into the restore) and calls
  /// `done` from the restorer thread once the check passes at the end of the
  /// changelog, or on failure.
  void restore(int32_t partition, completeness_check check,
               std::function<void(restore_result)> done);
  /// Keeps `partition` warm until unfollowed or restored.
  void follow(int32_t partition);
  /// Stops reading `partition` (a standby, or a restore no longer wanted:
  /// its callback is not called).
  void stop(int32_t partition);

  std::vector<restore_progress> progress() const;

  /// See changelog_restorer::log_end (thread-safe).
  int64_t log_end(int32_t partition);

  /// Called on the reader's thread when it no longer reads `partition` (its
  /// restore ended or it was stopped) and holds no command for it: the
  /// restorer may then give the partition to another reader.
  void on_released(std::function<void(int32_t partition)> f) {
    released_ = std::move(f);
  }
  /// Whether a command for `partition` waits to be taken by the reader's thread
  /// (thread-safe: takes the reader's mutex_).
  bool command_pending(int32_t partition) const;

private:
  struct task {
    int32_t partition = 0;
    bool standby = true;
    bool at_end = false;
    int64_t position = -1;
    uint64_t records = 0;
    uint64_t restored = 0;  // records since the restore began
    completeness_check check;
    std::function<void(restore_result)> done;
    std::chrono::steady_clock::time_point started;
    std::chrono::steady_clock::time_point last_check;
    /// The last record or end-of-partition read (or the (re)assignment).
    std::chrono::steady_clock::time_point last_progress;
    uint32_t reassignments = 0;
    std::string waiting_for;
  };
  struct command {
    enum kind_t { restore, follow, stop } kind;
    int32_t partition;
    completeness_check check;
    std::function<void(restore_result)> done;
  };

  changelog_reader(restorer_options opts, storage::rocksdb_store& store);
  void run();
  void apply_commands();
  void start_reading(task& t);
  void stop_reading(int32_t partition);
  void flush(task& t, std::vector<rd_kafka_message_t*>& msgs);
  void finish_ready();
  void reassign_stalled();
  void publish_progress();
  /// Holds the store's compactions while a partition read here is far
  /// behind its changelog's end (see rocksdb_store::hold_compactions).
  void hold_compactions_while_behind();
  bool holding_compactions_ = false;

  restorer_options opts_;
  storage::rocksdb_store& store_;
  kafka_handle rk_;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  std::function<void(int32_t)> released_;
  mutable std::mutex mutex_;  // guards commands_
  std::condition_variable wake_;
  std::vector<command> commands_;

  mutable std::mutex progress_mutex_;
  std::vector<restore_progress> progress_;

  // Restorer thread only.
  std::map<int32_t, task> tasks_;
};

/// The node's changelog readers: partitions are spread over several
/// readers, so that restoring many partitions (a failover) uses more than
/// one core. Same interface as one reader.
class changelog_restorer {
public:
  using completeness_check = changelog_reader::completeness_check;

  static std::unique_ptr<changelog_restorer> create(restorer_options opts,
                                                    storage::rocksdb_store& store,
                                                    std::string& error);

  void restore(int32_t partition, completeness_check check,
               std::function<void(restore_result)> done);
  void follow(int32_t partition);
  void stop(int32_t partition);
  std::vector<restore_progress> progress() const;

  /// The changelog partition's end as the broker last said (the high
  /// watermark of the last fetch of it, so records of open transactions
  /// included; no round trip); -1 when unknown.
  int64_t log_end(int32_t partition) {
    return reader(partition).log_end(partition);
  }

private:
  /// The reader of `partition`: the one reading it already (or holding a
  /// command for it), else the one reading the fewest partitions (not
  /// partition % readers: a failover taking over only odd partitions left
  /// one of two readers idle and took 5.8 s instead of 3.8). With
  /// readers_mutex_ held, and held until the command is queued.
  changelog_reader& reader(int32_t partition);
  /// Forgets which reader reads `partition` when `from` neither reads it
  /// nor holds a command for it (called on that reader's thread).
  void release(int32_t partition, const changelog_reader* from);
  // Before readers_: the readers' threads may release partitions until they end.
  std::mutex readers_mutex_;
  std::map<int32_t, size_t> reader_of_;
  std::vector<std::unique_ptr<changelog_reader>> readers_;
};

}  // namespace fleettwin::kafka

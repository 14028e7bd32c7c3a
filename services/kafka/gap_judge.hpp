#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "services/kafka/kafka_config.hpp"

namespace fleettwin::kafka {

/// Tells whether offsets a consumer jumped over held records a
/// `read_committed` reader may see, through a second reader of its own (no
/// group, nothing committed). Gaps are normal with transactional producers
/// upstream (a commit or abort marker after every transaction, aborted
/// records), but a consumer can also skip real records (librdkafka before
/// 2.1 around pause and resume): only an independent look separates the two.
///
/// The judge follows a partition from its first gap on: its reader keeps
/// fetching that partition in the background and remembers which offsets
/// are visible, so that at the head of a transactional topic judging a gap
/// costs no round trip, and a backlog is judged from what was read ahead.
/// A partition without a gap for `idle` is no longer followed.
///
/// Not thread-safe: the consumer thread owns it.
class gap_judge {
public:
  struct options {
    std::string bootstrap;
    std::string topic;
    std::string client_id = "fleettwin-node";
    /// Site settings (security, ...), applied first.
    std::map<std::string, std::string> settings;
    /// Visible offsets remembered per partition before its reader pauses.
    size_t max_remembered = 200'000;
    std::chrono::milliseconds idle{60'000};
  };

  explicit gap_judge(options opts);
  ~gap_judge();
  gap_judge(const gap_judge&) = delete;
  gap_judge& operator=(const gap_judge&) = delete;

  /// Whether no record of `partition` in [from, to) is visible to a
  /// read_committed reader: true (a real gap), false (records were skipped),
  /// nullopt when that cannot be told within `wait` (the broker is away).
  std::optional<bool> empty(int32_t partition, int64_t from, int64_t to,
                            std::chrono::milliseconds wait);

  /// The consumer has taken every record of `partition` before `offset`:
  /// what the reader saw before it is forgotten. Cheap when the partition
  /// is not followed.
  void passed(int32_t partition, int64_t offset);

  /// The partition is no longer consumed here (revoked, held, sought).
  void forget(int32_t partition);

  /// Takes in what the reader fetched meanwhile and drops idle partitions;
  /// does not block. Call from the consumer's loop.
  void poll();

  /// Partitions followed now.
  size_t following() const {
    return windows_.size();
  }

private:
  /// What the reader saw of a partition: every visible offset in
  /// [from, until) is in `offsets` (ascending).
  struct window {
    int64_t from = 0;
    int64_t until = 0;
    std::deque<int64_t> offsets;
    bool paused = false;
    std::chrono::steady_clock::time_point used;
  };

  bool open();
  void follow(int32_t partition, int64_t from);
  void unfollow(int32_t partition);
  void pause(int32_t partition, bool paused);
  /// Takes in up to one batch, waiting up to `wait_ms` for it; the number
  /// of events taken.
  ssize_t take(int wait_ms);
  /// The verdict on [from, to) from what `w` holds, nullopt when it does
  /// not reach far enough yet.
  static std::optional<bool> verdict(const window& w, int64_t from, int64_t to);

  options opts_;
  kafka_handle rk_;
  rd_kafka_queue_t* queue_ = nullptr;
  std::map<int32_t, window> windows_;
  /// When partitions were last taken out of the reader's assignment.
  std::map<int32_t, std::chrono::steady_clock::time_point> unassigned_;
  std::vector<rd_kafka_message_t*> msgs_;
  std::chrono::steady_clock::time_point last_idle_check_;
};

}  // namespace fleettwin::kafka

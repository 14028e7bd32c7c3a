#pragma once

#include <atomic>

// Per-principal limits of the node's gRPC API: a request rate (a token bucket per
// principal) and a number of open watch streams. A principal is the authenticated
// caller's subject, or the client's address when the node does not authenticate.
// Calls another node forwards were admitted by that node and are not counted again.
// Refusals are RESOURCE_EXHAUSTED with the time to wait (trailing metadata
// `retry-after-ms`), so that one client cannot take the node's capacity from the others.

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace fleettwin::grpc_api {

struct admission_limits {
  /// Requests per second each principal may make (0: no limit).
  double requests_per_second = 0;
  /// Requests a principal may make at once after being idle (0: one second's worth).
  double burst = 0;
  /// Watch streams (twins, aggregates and alerts together) each principal may hold open
  /// (0: no limit).
  size_t watch_streams = 64;
  /// Bulk calls (those that may answer up to 1,000 entries: batches, listings, histories,
  /// members, traversals, the audit trail) in progress on the node at once, whoever calls
  /// (0: no limit): what bounds the memory answers in progress hold.
  size_t bulk_calls = 64;
  /// Principals whose rate is tracked at once; beyond, idle ones are forgotten, and new
  /// ones wait while none is idle (memory stays bounded whoever calls).
  size_t max_principals = 100'000;
};

class admission {
public:
  using clock = std::chrono::steady_clock;
  /// `refused` (may be empty) counts refusals by reason ("rate", "watch_streams").
  explicit admission(admission_limits limits, std::function<void(const char* reason)> refused = {});

  const admission_limits& limits() const {
    return limits_;
  }
  /// Whether requests are rate-limited at all (else admit() always admits).
  bool limits_rate() const {
    return limits_.requests_per_second > 0;
  }

  /// One request of `principal` at `now`: nullopt when admitted, else how long it must
  /// wait before its next request is.
  std::optional<std::chrono::milliseconds> admit(std::string_view principal, clock::time_point now);

  /// A watch stream slot of `principal`, held until the returned handle is destroyed;
  /// nullptr when the principal holds `watch_streams` already.
  std::shared_ptr<void> open_stream(const std::string& principal);

  /// A slot of a bulk call, held until the returned handle is destroyed; nullptr when
  /// `bulk_calls` are in progress already.
  std::shared_ptr<void> begin_bulk();
  size_t bulk_in_progress() const {
    return bulk_.load();
  }

  /// Watch streams `principal` holds open.
  size_t open_streams(const std::string& principal);
  /// Principals whose rate is tracked now.
  size_t tracked_principals();

private:
  struct bucket {
    double tokens = 0;
    clock::time_point last;
  };
  struct text_hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const {
      return std::hash<std::string_view>{}(s);
    }
  };
  struct shard {
    std::mutex mutex;
    std::unordered_map<std::string, bucket, text_hash, std::equal_to<>> buckets;
  };
  static constexpr size_t shard_count = 16;

  void close_stream(const std::string& principal);
  /// Forgets the principals of `s` whose bucket is full again (they are idle).
  void forget_idle(shard& s, clock::time_point now);

  admission_limits limits_;
  double burst_ = 0;
  std::function<void(const char*)> refused_;
  std::array<shard, shard_count> shards_;
  std::atomic<size_t> bulk_{0};
  std::mutex streams_mutex_;
  std::unordered_map<std::string, size_t> streams_;
};

/// The principal a call is counted for: `subject` when the call is authenticated, else
/// the client's address without its port (from gRPC's peer string, e.g.
/// "ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7").
std::string principal_for(std::string_view subject, std::string_view peer);

}  // namespace fleettwin::grpc_api

#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "actors/core/filter.hpp"
#include "actors/runtime/ports.hpp"
#include "fleettwin/v1/twin.pb.h"
#include "services/grpc/privacy.hpp"
#include "services/grpc/queued_writer.hpp"

namespace fleettwin::grpc_api {

/// Something that receives committed changes from the hub: a local stream,
/// or another node's watch.
class watcher {
public:
  virtual ~watcher() = default;
  virtual bool wants(const core::twin_change& c, const core::twin* snapshot, int64_t now_ms,
                     int64_t stale_after_ms) const = 0;
  virtual bool needs_snapshots() const = 0;
  /// Takes one change (from a partition's thread; must not block).
  virtual void push(const fleettwin::v1::TwinChange& change) = 0;
  /// The changes of one commit were all pushed.
  virtual void flush() {}
};

/// Whether a change passes a watch's twin name and filter.
bool watch_matches(const std::optional<std::string>& asset_id, const core::filter& f,
                   const core::twin_change& c, const core::twin* snapshot, int64_t now_ms,
                   int64_t stale_after_ms);

/// One open WatchTwins stream.
class watch_stream final : public queued_writer<fleettwin::v1::TwinChange>, public watcher {
public:
  /// `masks`: the values its caller may not read.
  watch_stream(class watch_hub& hub, std::optional<std::string> asset_id, core::filter f,
               size_t max_queued, privacy masks = {});

  /// Queues a change (any thread); ends the stream when the client is too slow.
  void push(const fleettwin::v1::TwinChange& change) override {
    if (!masks_.masks()) {
      enqueue(change);
      return;
    }
    fleettwin::v1::TwinChange masked = change;
    masks_.redact(masked);
    enqueue(masked);
  }

  bool wants(const core::twin_change& c, const core::twin* snapshot, int64_t now_ms,
             int64_t stale_after_ms) const override;

  bool needs_snapshots() const override {
    return !filter_.matches_all();
  }

private:
  void detach() override;

  watch_hub& hub_;
  std::optional<std::string> asset_id_;
  core::filter filter_;
  privacy masks_;
};

/// Fans committed changes out to watch streams.
class watch_hub final : public runtime::change_listener {
public:
  watch_hub(int64_t stale_after_ms, std::function<void(size_t)> on_count);

  void add(watcher* s);
  void remove(watcher* s);

  bool wants_snapshots() const override;
  void on_changes(const std::vector<core::twin_change>& changes,
                  const std::vector<std::shared_ptr<const core::twin>>& snapshots) override;

private:
  int64_t stale_after_ms_;
  std::function<void(size_t)> on_count_;
  mutable std::mutex mutex_;
  std::vector<watcher*> streams_;
  std::atomic<size_t> filter_streams_{0};
};

}  // namespace fleettwin::grpc_api

#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "actors/core/filter.hpp"
#include "actors/runtime/ports.hpp"
#include "fleettwin/v1/twin.pb.h"

namespace fleettwin::grpc_api {

/// One open WatchTwins stream.
class watch_stream final : public ::grpc::ServerWriteReactor<fleettwin::v1::TwinChange> {
public:
  watch_stream(class watch_hub& hub, std::optional<std::string> asset_id, core::filter f,
               size_t max_queued);

  /// Queues a change (any thread); ends the stream when the client is too slow.
  void push(const fleettwin::v1::TwinChange& change);

  bool wants(const core::twin_change& c, const core::twin* snapshot, int64_t now_ms,
             int64_t stale_after_ms) const;

  bool needs_snapshots() const {
    return !filter_.matches_all();
  }

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

private:
  void finish_locked(::grpc::Status status);

  watch_hub& hub_;
  std::optional<std::string> asset_id_;
  core::filter filter_;
  size_t max_queued_;
  std::mutex mutex_;
  std::deque<fleettwin::v1::TwinChange> queue_;
  bool writing_ = false;
  bool finished_ = false;
  ::grpc::Status final_status_;
};

/// Fans committed changes out to watch streams.
class watch_hub final : public runtime::change_listener {
public:
  watch_hub(int64_t stale_after_ms, std::function<void(size_t)> on_count);

  void add(watch_stream* s);
  void remove(watch_stream* s);

  bool wants_snapshots() const override;
  void on_changes(const std::vector<core::twin_change>& changes,
                  const std::vector<std::shared_ptr<const core::twin>>& snapshots) override;

private:
  int64_t stale_after_ms_;
  std::function<void(size_t)> on_count_;
  mutable std::mutex mutex_;
  std::vector<watch_stream*> streams_;
  std::atomic<size_t> filter_streams_{0};
};

}  // namespace fleettwin::grpc_api

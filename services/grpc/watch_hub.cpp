#include "services/grpc/watch_hub.hpp"

#include <algorithm>
#include <chrono>

#include "services/grpc/convert.hpp"

namespace fleettwin::grpc_api {

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

watch_stream::watch_stream(watch_hub& hub, std::optional<std::string> asset_id, core::filter f,
                           size_t max_queued, privacy masks)
    : queued_writer(max_queued),
      hub_(hub),
      asset_id_(std::move(asset_id)),
      filter_(std::move(f)),
      masks_(std::move(masks)) {}

bool watch_matches(const std::optional<std::string>& asset_id, const core::filter& f,
                   const core::twin_change& c, const core::twin* snapshot, int64_t now_ms,
                   int64_t stale_after_ms) {
  if (asset_id && *asset_id != c.asset_id)
    return false;
  if (f.matches_all())
    return true;
  return snapshot != nullptr && f.matches(*snapshot, now_ms, stale_after_ms);
}

bool watch_stream::wants(const core::twin_change& c, const core::twin* snapshot, int64_t now_ms,
                         int64_t stale_after_ms) const {
  return watch_matches(asset_id_, filter_, c, snapshot, now_ms, stale_after_ms);
}

void watch_stream::detach() {
  hub_.remove(this);
}

watch_hub::watch_hub(int64_t stale_after_ms, std::function<void(size_t)> on_count)
    : stale_after_ms_(stale_after_ms), on_count_(std::move(on_count)) {}

void watch_hub::add(watcher* s) {
  std::lock_guard<std::mutex> guard{mutex_};
  streams_.push_back(s);
  if (s->needs_snapshots())
    ++filter_streams_;
  if (on_count_)
    on_count_(streams_.size());
}

void watch_hub::remove(watcher* s) {
  std::lock_guard<std::mutex> guard{mutex_};
  auto it = std::find(streams_.begin(), streams_.end(), s);
  if (it == streams_.end())
    return;
  streams_.erase(it);
  if (s->needs_snapshots())
    --filter_streams_;
  if (on_count_)
    on_count_(streams_.size());
}

bool watch_hub::wants_snapshots() const {
  return filter_streams_.load(std::memory_order_relaxed) > 0;
}

void watch_hub::on_changes(const std::vector<core::twin_change>& changes,
                           const std::vector<std::shared_ptr<const core::twin>>& snapshots) {
  std::lock_guard<std::mutex> guard{mutex_};
  if (streams_.empty())
    return;
  auto now = wall_ms();
  fleettwin::v1::TwinChange msg;
  for (size_t i = 0; i < changes.size(); ++i) {
    const auto* snap = i < snapshots.size() ? snapshots[i].get() : nullptr;
    bool converted = false;
    for (auto* s : streams_) {
      if (!s->wants(changes[i], snap, now, stale_after_ms_))
        continue;
      if (!converted) {
        to_proto(changes[i], msg);
        converted = true;
      }
      s->push(msg);
    }
  }
  for (auto* s : streams_)
    s->flush();
}

}  // namespace fleettwin::grpc_api

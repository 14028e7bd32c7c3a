#include "services/grpc/aggregate_watch.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace fleettwin::grpc_api {

aggregate_watch_stream::aggregate_watch_stream(aggregate_watch_hub& hub, std::string aggregate_id,
                                               std::string kind, size_t max_queued)
    : queued_writer(max_queued),
      hub_(hub),
      aggregate_id_(std::move(aggregate_id)),
      kind_(std::move(kind)) {}

bool aggregate_watch_stream::wants(std::string_view aggregate_id,
                                   const fleettwin::v1::AggregateChange& c) const {
  if (!aggregate_id_.empty() && aggregate_id_ != aggregate_id)
    return false;
  return kind_.empty() || kind_ == c.kind();
}

void aggregate_watch_stream::detach() {
  hub_.remove(this);
}

aggregate_watch_hub::aggregate_watch_hub(std::function<bool()> ready,
                                         std::function<void(size_t)> on_count)
    : ready_(std::move(ready)), on_count_(std::move(on_count)) {}

void aggregate_watch_hub::add(aggregate_watch_stream* s) {
  size_t n = 0;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    streams_.push_back(s);
    n = streams_.size();
    count_ = n;
  }
  if (on_count_)
    on_count_(n);
}

void aggregate_watch_hub::remove(aggregate_watch_stream* s) {
  size_t n = 0;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    auto it = std::find(streams_.begin(), streams_.end(), s);
    if (it == streams_.end())
      return;
    streams_.erase(it);
    n = streams_.size();
    count_ = n;
  }
  if (on_count_)
    on_count_(n);
}

void aggregate_watch_hub::on_record(std::string_view key, std::string_view value) {
  if (count_.load(std::memory_order_relaxed) == 0)
    return;
  fleettwin::v1::AggregateChange change;
  if (!change.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    spdlog::warn("event=aggregate_change_unreadable key=\"{}\" bytes={}", key, value.size());
    return;
  }
  std::lock_guard<std::mutex> guard{mutex_};
  for (auto* s : streams_)
    if (s->wants(key, change))
      s->enqueue(change);
}

}  // namespace fleettwin::grpc_api

#pragma once

// Watch streams fed from a topic every node writes to (aggregate changes,
// alert events), through kafka::topic_feed: the hub decodes each record once
// and hands it to the streams that want it.

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <string_view>
#include <vector>

#include <spdlog/spdlog.h>

#include "services/grpc/queued_writer.hpp"

namespace fleettwin::grpc_api {

template <class Event>
class feed_hub;

/// One open watch stream of a feed.
template <class Event>
class feed_stream : public queued_writer<Event> {
public:
  feed_stream(feed_hub<Event>& hub, size_t max_queued)
      : queued_writer<Event>(max_queued), hub_(hub) {}

  /// Whether the record (its key, decoded) goes to this stream.
  virtual bool wants(std::string_view key, const Event& e) const = 0;

private:
  void detach() override {
    hub_.remove(this);
  }

  feed_hub<Event>& hub_;
};

/// Fans the records of a feed out to its watch streams.
template <class Event>
class feed_hub {
public:
  /// `ready()`: whether the feed is positioned (watches opened before would
  /// miss records); `on_count(n)` after every add or remove.
  feed_hub(std::function<bool()> ready, std::function<void(size_t)> on_count)
      : ready_(std::move(ready)), on_count_(std::move(on_count)) {}

  bool ready() const {
    return ready_ && ready_();
  }

  void add(feed_stream<Event>* s) {
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

  void remove(feed_stream<Event>* s) {
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

  /// A record of the topic (the feed's thread). Nothing is decoded while
  /// nobody watches.
  void on_record(std::string_view key, std::string_view value) {
    if (count_.load(std::memory_order_relaxed) == 0)
      return;
    Event e;
    if (!e.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      spdlog::warn("event=feed_record_unreadable type={} key=\"{}\" bytes={}", e.GetTypeName(), key,
                   value.size());
      return;
    }
    std::lock_guard<std::mutex> guard{mutex_};
    for (auto* s : streams_)
      if (s->wants(key, e))
        s->enqueue(e);
  }

private:
  std::function<bool()> ready_;
  std::function<void(size_t)> on_count_;
  mutable std::mutex mutex_;
  std::vector<feed_stream<Event>*> streams_;
  std::atomic<size_t> count_{0};
};

}  // namespace fleettwin::grpc_api

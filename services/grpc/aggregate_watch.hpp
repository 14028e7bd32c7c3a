#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "fleettwin/v1/aggregate.pb.h"
#include "services/grpc/queued_writer.hpp"

namespace fleettwin::grpc_api {

class aggregate_watch_hub;

/// One open WatchAggregates stream: one aggregate, one kind, or all.
class aggregate_watch_stream final : public queued_writer<fleettwin::v1::AggregateChange> {
public:
  aggregate_watch_stream(aggregate_watch_hub& hub, std::string aggregate_id, std::string kind,
                         size_t max_queued);

  bool wants(std::string_view aggregate_id, const fleettwin::v1::AggregateChange& c) const;

private:
  void detach() override;

  aggregate_watch_hub& hub_;
  std::string aggregate_id_;
  std::string kind_;
};

/// Fans the committed aggregate changes of the whole cluster (records of
/// the aggregates topic, from kafka::aggregate_feed) out to watch streams.
class aggregate_watch_hub {
public:
  /// `ready()`: whether the feed is positioned (watches opened before would
  /// miss changes); `on_count(n)` after every add or remove.
  aggregate_watch_hub(std::function<bool()> ready, std::function<void(size_t)> on_count);

  bool ready() const {
    return ready_ && ready_();
  }
  void add(aggregate_watch_stream* s);
  void remove(aggregate_watch_stream* s);

  /// A record of the aggregates topic (the feed's thread). Nothing is
  /// decoded while nobody watches.
  void on_record(std::string_view key, std::string_view value);

private:
  std::function<bool()> ready_;
  std::function<void(size_t)> on_count_;
  mutable std::mutex mutex_;
  std::vector<aggregate_watch_stream*> streams_;
  std::atomic<size_t> count_{0};
};

}  // namespace fleettwin::grpc_api

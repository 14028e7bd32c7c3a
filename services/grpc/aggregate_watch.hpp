#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "fleettwin/v1/aggregate.pb.h"
#include "services/grpc/feed_watch.hpp"

namespace fleettwin::grpc_api {

/// Fans the committed aggregate changes of the whole cluster (records of
/// the aggregates topic, from kafka::topic_feed) out to watch streams.
using aggregate_watch_hub = feed_hub<fleettwin::v1::AggregateChange>;

/// One open WatchAggregates stream: one aggregate, one kind, or all; with `tenant` (a
/// caller confined to one), only changes of aggregates whose member twins are all that
/// tenant's.
class aggregate_watch_stream final : public feed_stream<fleettwin::v1::AggregateChange> {
public:
  aggregate_watch_stream(aggregate_watch_hub& hub, std::string aggregate_id, std::string kind,
                         size_t max_queued, const std::string* tenant = nullptr)
      : feed_stream(hub, max_queued),
        aggregate_id_(std::move(aggregate_id)),
        kind_(std::move(kind)) {
    if (tenant)
      tenant_ = *tenant;
  }

  bool wants(std::string_view aggregate_id,
             const fleettwin::v1::AggregateChange& c) const override {
    if (!aggregate_id_.empty() && aggregate_id_ != aggregate_id)
      return false;
    if (tenant_ && *tenant_ != c.tenant())
      return false;
    return kind_.empty() || kind_ == c.kind();
  }

private:
  std::string aggregate_id_;
  std::string kind_;
  std::optional<std::string> tenant_;
};

}  // namespace fleettwin::grpc_api

#pragma once

// Mapping between the pure twin model and the fleettwin.v1 protobuf types.

#include <optional>
#include <string>

#include "actors/core/aggregate_codec.hpp"
#include "actors/core/change.hpp"
#include "actors/core/codec.hpp"
#include "actors/core/twin.hpp"
#include "actors/core/twin_analytics.hpp"
#include "fleettwin/v1/aggregate.pb.h"
#include "fleettwin/v1/analytics.pb.h"
#include "fleettwin/v1/service.pb.h"
#include "fleettwin/v1/twin.pb.h"

namespace fleettwin::grpc_api {

void to_proto(const core::value& v, fleettwin::v1::Value& out);

/// nullopt when the Value has no kind set.
std::optional<core::value> from_proto(const fleettwin::v1::Value& v);

void to_proto(const core::twin_change& c, fleettwin::v1::TwinChange& out);
/// Appends `c` to `out` as the wire bytes of fleettwin.v1.TwinChange (what
/// to_proto and SerializeToString give, without building the message: the
/// change events' hot path). Unset fields (proto3 defaults) are left out.
void encode_change(const core::twin_change& c, std::string& out);

/// Fills `out` (cleared first); connectivity is judged at `now_ms`.
void to_proto(const core::twin& tw, int64_t now_ms, int64_t stale_after_ms,
              fleettwin::v1::Twin& out);

/// The twin a Twin resource shows (what filters read: kind, tenant,
/// attributes, reported and desired properties, version, last seen).
core::twin from_proto(const fleettwin::v1::Twin& t);

void to_proto(const core::history_point& p, fleettwin::v1::HistoryPoint& out);

/// An aggregate's change event (fleettwin.aggregates, WatchAggregates).
void to_proto(const core::aggregate_header& h, fleettwin::v1::AggregateChange& out);

/// The aggregate resource from its stored header and own attributes.
void to_proto(const core::aggregate_header& h, const core::twin* self,
              fleettwin::v1::Aggregate& out);

/// The alert resource of a twin's property, as its state is now (`out` is
/// cleared first).
void alert_to_proto(std::string_view asset_id, std::string_view twin_kind, std::string_view tenant,
                    std::string_view property, const core::alert_state& a,
                    fleettwin::v1::Alert& out);

/// An alert event (fleettwin.alerts, WatchAlerts).
void to_proto(std::string_view asset_id, std::string_view twin_kind, std::string_view tenant,
              const core::alert_change& c, fleettwin::v1::AlertEvent& out);

/// "twins/{asset_id}/alerts/{property}/{number}".
std::string alert_name(std::string_view asset_id, std::string_view property, uint32_t number);

struct alert_name_parts {
  std::string asset_id;
  std::string property;
  uint32_t number = 0;
};
/// Parses an alert's name; nullopt with a reason when malformed.
std::optional<alert_name_parts> parse_alert_name(const std::string& name, std::string& error);

/// "twins/{asset_id}" -> asset id; nullopt with a reason when malformed.
std::optional<std::string> parse_twin_name(const std::string& name, std::string& error);

}  // namespace fleettwin::grpc_api

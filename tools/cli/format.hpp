#pragma once

// Human-readable and JSON renderings of API messages.

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <google/protobuf/message.h>
#include <grpcpp/support/status.h>

#include "fleettwin/v1/aggregate.pb.h"
#include "fleettwin/v1/analytics.pb.h"
#include "fleettwin/v1/service.pb.h"
#include "fleettwin/v1/twin.pb.h"

namespace fleettwin::cli {

/// A value as it would be typed to set it: strings quoted, doubles always with a point.
std::string format_value(const v1::Value& value);

/// Unix ms as ISO-8601 UTC with milliseconds; "-" for 0 (unset).
std::string format_time(int64_t unix_ms);

/// "NOT_FOUND" for grpc::StatusCode::NOT_FOUND.
std::string status_code_name(grpc::StatusCode code);

/// Compact single-line JSON with the proto field names and default values.
std::string to_json(const google::protobuf::Message& message);

/// Columns padded to their widest cell, two spaces apart. Widths persist across
/// print() calls so that pages printed one after the other stay aligned.
class table {
public:
  explicit table(std::vector<std::string> header);
  void add(std::vector<std::string> row);
  /// Prints the pending rows (and the header the first time) and clears them.
  void print(std::ostream& out, const std::string& indent = "");

private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
  std::vector<size_t> widths_;
  bool header_printed_ = false;
};

void print_twin(std::ostream& out, const v1::Twin& twin);
/// The version, desired and delta of a twin after UpdateDesired.
void print_desired_result(std::ostream& out, const v1::Twin& twin);
/// A one-row summary for ListTwins: asset id, kind, version, connectivity, last seen,
/// and the first few reported values.
std::vector<std::string> twin_summary_row(const v1::Twin& twin);
std::vector<std::string> twin_summary_header();
/// One line: time asset version type changed-properties.
std::string format_change(const v1::TwinChange& change);
void print_history(std::ostream& out, const v1::GetHistoryResponse& history);
void print_status(std::ostream& out, const v1::NodeStatus& status, int64_t now_ms);
/// An aggregate: kind, version, member counts, parents, attributes, measures.
void print_aggregate(std::ostream& out, const v1::Aggregate& aggregate);
/// One row per aggregate: id, kind, member twins, version, the first measures.
std::vector<std::string> aggregate_summary_header();
std::vector<std::string> aggregate_summary_row(const v1::Aggregate& aggregate);
/// One row per member: name, depth, relation, kind, version, fields.
/// One line per aggregate change: time, aggregate, version, counts, measures.
std::string format_aggregate_change(const v1::AggregateChange& change);
/// History table: columns are the measures of the first point.
std::vector<std::string> aggregate_history_header(const v1::AggregatePoint& first);
std::vector<std::string> aggregate_history_row(const v1::AggregatePoint& point,
                                               const std::vector<std::string>& header);
std::vector<std::string> member_header();
std::vector<std::string> member_row(const v1::AggregateMember& member);
void print_kinds(std::ostream& out, const v1::ListAggregateKindsResponse& kinds);
void print_relations(std::ostream& out, const v1::Relations& relations);
/// One row per alert: twin, property, number, state, severity, detector,
/// peak score, raised (and cleared) time.
std::vector<std::string> alert_header();
std::vector<std::string> alert_row(const v1::Alert& alert);
/// One line per alert event: time, event, alert name, severity, detector, score.
std::string format_alert_event(const v1::AlertEvent& event);
/// An asset model: kind, revision, one row per property.
void print_model(std::ostream& out, const v1::AssetModel& model);
/// The cluster: one row per node, its partitions by role, lag and twins.
void print_cluster(std::ostream& out, const v1::ClusterStatus& cluster);
/// An audit trail: one line per event (time, outcome, method, who, target, message).
void print_audit(std::ostream& out, const std::string& target,
                 const v1::ListAuditEventsResponse& trail);

}  // namespace fleettwin::cli

#pragma once

// Binary records of aggregates: the header (what GetAggregate answers
// without loading members), one record per member (so that a change of one
// member of a 100k-member aggregate writes one small record, not all of
// them), and the contribution batches that travel on the aggregate-updates
// topic. Pure C++ (DESIGN.md, principle 4).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "actors/core/aggregate.hpp"

namespace fleettwin::core {

/// An aggregate's state apart from its members.
struct aggregate_header {
  std::string id;
  std::string kind;
  uint64_t version = 0;
  /// When the aggregate last changed (its clock, ms).
  int64_t updated_ms = 0;
  uint64_t members = 0;
  uint64_t twins = 0;
  uint64_t in_transit = 0;
  /// The measures of the last change, by name, in the kind's order.
  std::vector<std::pair<std::string, std::optional<double>>> measures;
  /// The revision of the kind they were computed with.
  uint64_t kind_revision = 0;
  /// The tenant every member twin belongs to (see aggregate::tenant()).
  std::string tenant;

  bool operator==(const aggregate_header&) const = default;
};

void encode_aggregate_header(const aggregate_header& h, std::string& out);
std::optional<std::string> decode_aggregate_header(std::string_view bytes, aggregate_header& out);

void encode_member_entry(const member_entry& e, std::string& out);
std::optional<std::string> decode_member_entry(std::string_view bytes, member_entry& out);

/// Contributions to one parent (from one or more children) in one record.
void encode_contributions(const std::vector<contribution>& items, std::string& out);
/// The same, from contributions held elsewhere (no copies).
void encode_contributions(const std::vector<const contribution*>& items, std::string& out);
/// Appends the decoded contributions to `out`; every one names `parent`.
std::optional<std::string> decode_contributions(std::string_view bytes, std::string_view parent,
                                                std::vector<contribution>& out);

/// The content type of contribution records (Kafka header).
inline constexpr std::string_view contributions_content_type =
    "application/x-fleettwin-contributions";

}  // namespace fleettwin::core

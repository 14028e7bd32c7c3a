#pragma once

// What a twin or an aggregate sends its parents when it changes: its own
// view (a twin's projected fields), the views of members below it that
// changed (an aggregate), and on a relation change everything it carries,
// taken out of the old parents and put into the new ones in one step (the
// caller publishes them in one Kafka transaction). Pure C++ (DESIGN.md,
// principle 4).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/core/aggregate.hpp"
#include "actors/core/member.hpp"
#include "actors/core/relations.hpp"
#include "actors/core/twin.hpp"

namespace fleettwin::core {

/// The fields of `tw` that measures read.
member_values project(const twin& tw, const field_set& fields);

/// One child's change, as input to route().
struct child_change {
  std::string_view child;
  /// Relations before and after the change (sorted by parent).
  const relation_list* before = nullptr;
  const relation_list* after = nullptr;
  /// The child's own view now: a twin's projection (depth 0, twin), or an
  /// aggregate's presence (depth 0, not a twin).
  member_delta self;
  /// The child's own view changed (a twin's projected fields).
  bool self_changed = false;
  /// Views of members below the child that changed (aggregates only).
  const std::vector<member_delta>* members = nullptr;
  /// The child as an aggregate, if it is one: a new parent gets all of it.
  const aggregate* as_aggregate = nullptr;
  /// Carried by every contribution (see contribution::origin_ms, hops).
  int64_t origin_ms = 0;
  uint32_t hops = 1;
};

/// Appends the contributions `c` sends to each parent (at most one per
/// parent) to `out`.
void route(const child_change& c, std::vector<contribution>& out);

/// Merges contributions to the same parent from the same child, keeping the
/// last view of each member: what one commit sends is one record per parent.
void coalesce(std::vector<contribution>& items);

}  // namespace fleettwin::core

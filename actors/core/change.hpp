#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "actors/core/twin.hpp"

namespace fleettwin::core {

/// reported: telemetry changed it; desired: a client changed its desired state; erased:
/// it was erased (DeleteTwin), nothing of it is left but the change.
enum class change_type : uint8_t { reported = 1, desired = 2, erased = 3 };

/// One applied change of a twin, as published to the twin-changes topic and
/// to watchers; or, for reported changes, all of one work item's changes of a
/// twin merged into one (versions first_version..version): each property the
/// item set with its value after the item, the time and sequence of the last.
struct twin_change {
  std::string asset_id;
  uint64_t version = 0;
  /// The first version this change covers; 0: only `version` (see first()).
  uint64_t first_version = 0;
  change_type type = change_type::reported;
  int64_t time_ms = 0;
  std::string kind;
  std::string tenant;
  uint64_t sequence = 0;
  std::vector<std::pair<std::string, reported_property>> reported;
  std::vector<std::pair<std::string, value>> desired;
  std::vector<std::string> removed;

  /// The first version covered, whether or not first_version was set.
  uint64_t first() const {
    return first_version != 0 ? first_version : version;
  }
};

}  // namespace fleettwin::core

#pragma once

// What an aggregate knows of one member twin: the projection of the fields
// that some aggregate kind's measures read. Pure C++ (DESIGN.md, principle 4).

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "actors/core/value.hpp"

namespace fleettwin::core {

/// What a twin's analytics say of it, projected like a reported property
/// under a key no property can have (property names are [A-Za-z0-9_.:/-]):
/// its data quality score and its health, in [0, 1]. Measures read them as
/// `quality.score` and `health`, as ListTwins filters do.
inline constexpr std::string_view member_quality_key = "@quality";
inline constexpr std::string_view member_health_key = "@health";

/// The twin fields some measure or measure filter reads; members project
/// only these (so that a contribution stays small).
struct field_set {
  std::set<std::string, std::less<>> reported;
  std::set<std::string, std::less<>> attributes;
  /// A filter asks whether the map has any key at all (`reported:*`).
  bool all_reported = false;
  bool all_attributes = false;
  /// A filter reads connectivity: the member's last-seen time is projected.
  bool connectivity = false;

  void merge(const field_set& o) {
    reported.insert(o.reported.begin(), o.reported.end());
    attributes.insert(o.attributes.begin(), o.attributes.end());
    all_reported |= o.all_reported;
    all_attributes |= o.all_attributes;
    connectivity |= o.connectivity;
  }

  bool wants_reported(std::string_view key) const {
    return all_reported || reported.find(key) != reported.end();
  }
  bool wants_attribute(std::string_view key) const {
    return all_attributes || attributes.find(key) != attributes.end();
  }

  bool operator==(const field_set&) const = default;
};

/// A member twin's projected fields. Vectors sorted by name.
struct member_values {
  std::string kind;
  std::string tenant;
  /// The twin's version when projected: tells newer projections from older
  /// ones that arrive late along another path of the relation graph.
  uint64_t version = 0;
  /// Last ingest time (0 unless connectivity is projected).
  int64_t last_seen_ms = 0;
  std::vector<std::pair<std::string, value>> reported;
  std::vector<std::pair<std::string, std::string>> attributes;

  const value* find_reported(std::string_view key) const {
    auto it = std::lower_bound(reported.begin(), reported.end(), key,
                               [](const auto& e, std::string_view k) { return e.first < k; });
    return it != reported.end() && it->first == key ? &it->second : nullptr;
  }
  const std::string* find_attribute(std::string_view key) const {
    auto it = std::lower_bound(attributes.begin(), attributes.end(), key,
                               [](const auto& e, std::string_view k) { return e.first < k; });
    return it != attributes.end() && it->first == key ? &it->second : nullptr;
  }

  /// Equal in every projected field (the version is not a field).
  bool same_fields(const member_values& o) const {
    return kind == o.kind && tenant == o.tenant && last_seen_ms == o.last_seen_ms &&
           reported == o.reported && attributes == o.attributes;
  }
  bool operator==(const member_values&) const = default;
};

/// A member as a filter sees it: its id and projected fields.
struct member_view {
  std::string_view id;
  const member_values& values;
};

}  // namespace fleettwin::core

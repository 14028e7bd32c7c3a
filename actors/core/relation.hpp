#pragma once

// A relation from a twin or aggregate (the child) to an aggregate (the
// parent), as stored with the child. Pure C++ (DESIGN.md, principle 4).

#include <cstdint>
#include <string>
#include <vector>

namespace fleettwin::core {

/// Where a relation came from.
enum class relation_origin : uint8_t {
  /// Derived from the child's attributes by a rule of the configuration.
  rule = 1,
  /// Set over gRPC (SetRelations).
  api = 2,
  /// Written to the relations topic.
  topic = 3,
};

const char* to_string(relation_origin o);

/// One edge from its child to `parent`. A child relates to a given parent
/// by one type (setting another type replaces it).
struct relation {
  std::string type;
  std::string parent;
  relation_origin origin = relation_origin::api;

  bool operator==(const relation&) const = default;
};

/// A child's relations, sorted by parent.
using relation_list = std::vector<relation>;

}  // namespace fleettwin::core

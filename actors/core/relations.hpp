#pragma once

// Relations: typed, directed edges from a twin or aggregate (the child) to
// an aggregate (the parent), and the registry of aggregate kinds and the
// rules that derive relations from attributes. Pure C++ (DESIGN.md,
// principle 4).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/core/aggregate_kind.hpp"
#include "actors/core/member.hpp"
#include "actors/core/relation.hpp"

namespace fleettwin::core {

/// Derives relations from an attribute: `attributes.<attribute>` = v gives
/// `<type> <collection>/v`.
struct relation_rule {
  std::string attribute;
  std::string type;
  std::string collection;

  bool operator==(const relation_rule&) const = default;
};

/// Deepest path a member may take to an aggregate: deeper contributions are
/// dropped (it also ends the echo of a cycle created by a race).
constexpr uint32_t max_relation_depth = 32;

/// Most parents one twin or aggregate may have.
constexpr size_t max_parents = 64;

/// Every aggregate kind and relation rule of a cluster: an immutable
/// snapshot, replaced as a whole when a kind changes.
class kind_registry {
public:
  kind_registry() = default;

  /// Adds or replaces a kind; returns what to fix when it is invalid (the
  /// registry is then unchanged).
  std::optional<std::string> put(const aggregate_kind& kind);

  /// Adds a rule; returns what to fix when it is invalid.
  std::optional<std::string> add_rule(const relation_rule& rule);

  const compiled_kind* by_name(std::string_view name) const;
  /// The kind whose collection prefixes `id` ("fleets/north" -> fleet).
  const compiled_kind* kind_of(std::string_view id) const;
  bool is_aggregate(std::string_view id) const {
    return kind_of(id) != nullptr;
  }

  const std::vector<relation_rule>& rules() const {
    return rules_;
  }
  /// Every kind, by name.
  const std::map<std::string, std::shared_ptr<const compiled_kind>, std::less<>>& kinds() const {
    return kinds_;
  }
  /// The fields any measure reads: what member twins project.
  const field_set& fields() const {
    return fields_;
  }

  /// Checks a relation a child wants (shape and kind, not cycles).
  std::optional<std::string> check(std::string_view child, const relation& r) const;

  /// The relations the rules derive from `attributes`.
  relation_list derive(std::string_view child,
                       const std::map<std::string, std::string, std::less<>>& attributes) const;

private:
  void refresh_fields();

  std::map<std::string, std::shared_ptr<const compiled_kind>, std::less<>> kinds_;
  std::map<std::string, std::shared_ptr<const compiled_kind>, std::less<>> by_collection_;
  std::vector<relation_rule> rules_;
  field_set fields_;
};

/// The collection part of an aggregate id ("fleets/north" -> "fleets").
std::string_view collection_of(std::string_view id);

/// A child's relations after an update: explicit ones (api, topic) merged
/// with those its attribute rules derive now. Explicit relations win over a
/// derived one to the same parent.
relation_list merge_relations(const relation_list& explicit_relations,
                              const relation_list& derived);

/// Sorts by parent and keeps the last relation to each parent.
void normalize(relation_list& relations);

/// A change of a child's explicit relations (SetRelations, DeleteRelations,
/// a record of the relations topic).
struct relation_update {
  /// Relations to set; each replaces the child's relation to its parent.
  relation_list set;
  /// Parents to remove the relation to.
  std::vector<std::string> remove;
  /// Drop every explicit relation not in `set` first.
  bool replace = false;
  relation_origin origin = relation_origin::api;
};

/// Applies `u` to a child's relations (derived ones included) into `out`.
/// Returns what to fix when the update is invalid: a relation the registry
/// rejects, one that would close a cycle (`below(parent)` is true when the
/// parent lies below the child), removing a relation that a rule derives
/// from an attribute, or more than max_parents parents.
std::optional<std::string> apply_relation_update(std::string_view child,
                                                 const relation_list& current,
                                                 const relation_update& u,
                                                 const kind_registry& kinds,
                                                 const std::function<bool(std::string_view)>& below,
                                                 relation_list& out);

/// A child's relations after its attributes changed: the explicit ones
/// kept, the derived ones derived again.
relation_list rederive(std::string_view child, const relation_list& current,
                       const std::map<std::string, std::string, std::less<>>& attributes,
                       const kind_registry& kinds);

/// The parents in `before` that are not in `after`, and the reverse.
struct relation_diff {
  relation_list removed;
  relation_list added;
  /// Same parent, another type.
  relation_list retyped;
};
relation_diff diff(const relation_list& before, const relation_list& after);

}  // namespace fleettwin::core

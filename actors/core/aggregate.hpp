#pragma once

// The state of one aggregate and the rules that change it. An aggregate
// holds every member below it (twins and aggregates, each once however many
// paths of the relation graph lead to it) with the path(s) it arrives by,
// and keeps its measures incrementally over the member twins.
//
// Members travel as deltas: a child sends its parent the full current view
// of each member that changed below it (present or gone, depth, projected
// fields), so applying a delta twice, or late along another path, changes
// nothing (a newer twin version wins). A member that leaves its last path
// while moving to a parent that lies below this aggregate stays counted
// ("in transit") until it arrives there: re-parenting below a common
// ancestor never shows the member in neither place. Pure C++ (DESIGN.md,
// principle 4).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "actors/core/aggregate_kind.hpp"
#include "actors/core/member.hpp"
#include "actors/core/ordered_values.hpp"
#include "actors/core/relations.hpp"

namespace fleettwin::core {

/// One way a member reaches an aggregate: through the direct child `via`,
/// `depth` hops below the aggregate. `type` is the relation of `via` to the
/// aggregate.
struct member_path {
  std::string via;
  uint32_t depth = 1;
  std::string type;

  bool operator==(const member_path&) const = default;
};

/// A member as an aggregate holds it.
struct member_entry {
  /// A twin (measures count it); otherwise an aggregate below.
  bool twin = false;
  /// Sorted by via.
  std::vector<member_path> paths;
  /// Twins: the projected fields (the newest version seen on any path).
  member_values values;
  /// Non-empty: the member left every path while moving to these parents,
  /// one of which lies below this aggregate; it stays counted until it
  /// arrives there.
  std::vector<std::string> moving_to;
  /// The shortest path's depth (kept while in transit).
  uint32_t depth = 1;
  /// In transit: when the hold ends if the member has not arrived (ms).
  int64_t held_until = 0;

  // Bookkeeping of the incremental measures (not stored; rebuilt on load).
  /// Bit s: counted in series s.
  uint64_t counted = 0;
  /// When it goes stale (0: not indexed).
  int64_t deadline = 0;

  bool in_transit() const {
    return paths.empty();
  }
  /// The member's direct relation type to the aggregate, if it is a child.
  const member_path* direct(std::string_view id) const;

  /// Equal as stored (bookkeeping aside).
  bool same_state(const member_entry& o) const {
    return twin == o.twin && paths == o.paths && values == o.values && moving_to == o.moving_to &&
           depth == o.depth && held_until == o.held_until;
  }
};

/// The current view of one member, as a child sends it to a parent.
struct member_delta {
  std::string id;
  /// False: the member no longer reaches the parent through this child.
  bool present = true;
  bool twin = false;
  /// Hops below the sender: 0 is the sender itself.
  uint32_t depth = 0;
  member_values values;
  /// On removal: the member's new parents, if it is moving (and in
  /// values.version, the member's version when it moved).
  std::vector<std::string> moving_to;

  bool operator==(const member_delta&) const = default;
};

/// Member deltas from one child to one parent.
struct contribution {
  std::string child;
  std::string parent;
  /// The relation type of child to parent.
  std::string type;
  std::vector<member_delta> deltas;
  /// Ingest time (ms) of the oldest twin change these deltas carry, and the
  /// levels it has travelled so far (1: from a twin to its parent): what
  /// leaf-to-aggregate latency is measured from. 0: unknown.
  int64_t origin_ms = 0;
  uint32_t hops = 1;
};

/// Counters of one apply (metrics and logs).
struct apply_counts {
  /// Deltas that carried the aggregate itself: a relation cycle.
  uint32_t cycles = 0;
  /// Deltas deeper than max_relation_depth (dropped).
  uint32_t too_deep = 0;
  /// Older twin versions that arrived after a newer one (ignored fields).
  uint32_t stale_versions = 0;
  /// Members held in transit whose hold ended before they arrived.
  uint32_t expired_holds = 0;
};

class aggregate {
public:
  /// Members in transit are held at most `hold_ms`.
  aggregate(std::string id, std::shared_ptr<const compiled_kind> kind, int64_t stale_after_ms,
            int64_t hold_ms = 10'000);

  const std::string& id() const {
    return id_;
  }
  const compiled_kind& kind() const {
    return *kind_;
  }
  const std::shared_ptr<const compiled_kind>& kind_ptr() const {
    return kind_;
  }
  int64_t stale_after_ms() const {
    return stale_after_ms_;
  }

  /// Applies a child's deltas at `now_ms`. Appends to `out` the new view of
  /// every member whose view changed (what to send this aggregate's parents)
  /// and to `touched` the ids of members whose stored entry changed.
  apply_counts apply(const contribution& c, int64_t now_ms, std::vector<member_delta>& out,
                     std::vector<std::string>* touched = nullptr);

  /// Moves the aggregate's clock to `now_ms`: members that went stale since
  /// leave or join the series whose filter reads connectivity; holds that
  /// ended release their members (their removal is appended to `out`).
  apply_counts advance(int64_t now_ms, std::vector<member_delta>* out = nullptr,
                       std::vector<std::string>* touched = nullptr);

  /// The measures, in the kind's declared order.
  std::vector<std::optional<double>> measures(const measure_inputs& in) const;

  /// The measures computed from scratch over the member twins held: equal to
  /// measures() unless the incremental bookkeeping is wrong.
  std::vector<std::optional<double>> recompute(const measure_inputs& in) const;

  /// Replaces the kind (its definition changed): rebuilds every series.
  void set_kind(std::shared_ptr<const compiled_kind> kind);

  /// Adds a stored member without producing deltas (loading from storage).
  void restore(std::string id, member_entry e);

  /// The view of member `id` to send parents: present with its depth, or
  /// removed (with `moving_to` as the hint) when it is not held.
  member_delta view(std::string_view id, const std::vector<std::string>& moving_to = {}) const;

  /// Every member's view (what a new parent needs), or their removal
  /// (what a parent that is no longer one needs), with `moving_to` as the
  /// hint: the aggregate's new parents.
  void all_views(bool present, const std::vector<std::string>& moving_to,
                 std::vector<member_delta>& out) const;

  const member_entry* member(std::string_view id) const;
  const std::map<std::string, member_entry, std::less<>>& members() const {
    return members_;
  }
  /// Member twins (what count() counts).
  uint64_t twins() const {
    return twins_;
  }
  /// The tenant every member twin belongs to; empty when they belong to no tenant, to
  /// several, or there are none (then only callers not confined to a tenant see the
  /// aggregate).
  const std::string& tenant() const;
  /// Member twins of more than one tenant (or of a tenant and of none).
  bool mixed_tenants() const {
    return tenants_.size() > 1;
  }
  /// Members in transit (held while they move below this aggregate).
  size_t in_transit() const {
    return held_.size();
  }
  /// True if `id` is a member (at any depth): a relation from this aggregate
  /// to `id` would close a cycle.
  bool below(std::string_view id) const {
    return members_.find(id) != members_.end();
  }
  int64_t clock_ms() const {
    return now_ms_;
  }

private:
  struct series_state {
    uint64_t n = 0;
    double sum = 0;
    double compensation = 0;
    ordered_values ordered;

    void add(double x);
    double total() const {
      return sum + compensation;
    }
  };

  class reader;

  /// The member's value for series `s`, or nullopt when it is not counted.
  std::optional<std::optional<double>> inclusion(std::string_view id, const member_entry& e,
                                                 uint32_t s) const;
  void count(std::string_view id, member_entry& e);
  void uncount(std::string_view id, member_entry& e);
  void erase(std::map<std::string, member_entry, std::less<>>::iterator it);
  bool hold_allowed(const std::vector<std::string>& targets) const;
  /// Removes a held member; appends its removal to `out`.
  void release(std::map<std::string, member_entry, std::less<>>::iterator it,
               std::vector<member_delta>* out, std::vector<std::string>* touched);
  /// Releases held members whose destination no longer lies below.
  void release_holds(std::vector<member_delta>* out, std::vector<std::string>* touched);

  std::string id_;
  std::shared_ptr<const compiled_kind> kind_;
  int64_t stale_after_ms_;
  int64_t hold_ms_;
  int64_t now_ms_ = 0;
  std::map<std::string, member_entry, std::less<>> members_;
  std::vector<series_state> series_;
  uint64_t twins_ = 0;
  /// Member twins counted, by tenant ("": none).
  std::map<std::string, uint64_t, std::less<>> tenants_;
  std::set<std::string, std::less<>> held_;
  /// Versions of members removed within the hold time: a removal hint
  /// older than the member's last removal is stale, even if an older view
  /// brought the member back meanwhile. Not stored (lost on restart).
  struct tombstone {
    uint64_t version = 0;
    int64_t until_ms = 0;
  };
  std::map<std::string, tombstone, std::less<>> tombstones_;
  /// Members by the time they go stale (kinds whose filters read connectivity).
  std::set<std::pair<int64_t, std::string_view>> deadlines_;
};

}  // namespace fleettwin::core

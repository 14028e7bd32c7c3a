#include "actors/core/contributions.hpp"

#include "actors/core/twin_analytics.hpp"

#include <algorithm>
#include <map>
#include <unordered_map>

namespace fleettwin::core {

member_values project(const twin& tw, const field_set& fields) {
  member_values v;
  v.kind = tw.kind;
  v.tenant = tw.tenant;
  v.version = tw.version;
  if (fields.connectivity)
    v.last_seen_ms = tw.last_seen_ms;
  // Both maps are sorted, so the projection comes out sorted.
  if (fields.all_reported) {
    for (const auto& [k, p] : tw.reported)
      v.reported.emplace_back(k, p.val);
  } else {
    for (const auto& k : fields.reported) {
      // The analytics' verdicts, as of the twin's last record.
      if (k == member_quality_key)
        v.reported.emplace_back(k, quality_score(tw, tw.last_seen_ms));
      else if (k == member_health_key)
        v.reported.emplace_back(k, health_score(tw, tw.last_seen_ms));
      else if (auto it = tw.reported.find(k); it != tw.reported.end())
        v.reported.emplace_back(k, it->second.val);
    }
  }
  if (fields.all_attributes) {
    for (const auto& [k, a] : tw.attributes)
      v.attributes.emplace_back(k, a);
  } else {
    for (const auto& k : fields.attributes)
      if (auto it = tw.attributes.find(k); it != tw.attributes.end())
        v.attributes.emplace_back(k, it->second);
  }
  return v;
}

namespace {

contribution& to(std::vector<contribution>& out, const child_change& from, const relation& r) {
  contribution c;
  c.child = std::string{from.child};
  c.parent = r.parent;
  c.type = r.type;
  c.origin_ms = from.origin_ms;
  c.hops = from.hops;
  out.push_back(std::move(c));
  return out.back();
}

}  // namespace

void route(const child_change& c, std::vector<contribution>& out) {
  static const relation_list none;
  const relation_list& before = c.before ? *c.before : none;
  const relation_list& after = c.after ? *c.after : none;
  const relation_diff d = diff(before, after);

  // A member that leaves old parents while joining new ones tells the old
  // ones where it goes: a common ancestor keeps it counted meanwhile.
  std::vector<std::string> moving_to;
  for (const auto& r : d.added)
    moving_to.push_back(r.parent);

  for (const auto& r : d.removed) {
    auto& k = to(out, c, r);
    member_delta gone;
    gone.id = std::string{c.child};
    gone.present = false;
    gone.twin = c.self.twin;
    gone.moving_to = moving_to;
    gone.values.version = c.self.values.version;
    k.deltas.push_back(std::move(gone));
    if (c.as_aggregate)
      c.as_aggregate->all_views(false, moving_to, k.deltas);
  }
  auto everything = [&](const relation& r) {
    auto& k = to(out, c, r);
    k.deltas.push_back(c.self);
    if (c.as_aggregate)
      c.as_aggregate->all_views(true, {}, k.deltas);
  };
  for (const auto& r : d.added)
    everything(r);
  for (const auto& r : d.retyped)
    everything(r);

  const bool members_changed = c.members && !c.members->empty();
  if (!c.self_changed && !members_changed)
    return;
  for (const auto& r : after) {
    const bool fresh = std::any_of(d.added.begin(), d.added.end(),
                                   [&](const relation& a) { return a.parent == r.parent; }) ||
                       std::any_of(d.retyped.begin(), d.retyped.end(),
                                   [&](const relation& a) { return a.parent == r.parent; });
    if (fresh)
      continue;  // sent in full above
    auto& k = to(out, c, r);
    if (c.self_changed)
      k.deltas.push_back(c.self);
    if (members_changed)
      k.deltas.insert(k.deltas.end(), c.members->begin(), c.members->end());
  }
}

void coalesce(std::vector<contribution>& items) {
  // Group by (parent, child) in first-seen order; later views replace
  // earlier ones of the same member, keeping each member's first position
  // so that the order of different members is preserved.
  std::map<std::pair<std::string, std::string>, size_t> slot;
  std::vector<contribution> merged;
  std::vector<std::unordered_map<std::string, size_t>> positions;
  for (auto& c : items) {
    auto key = std::make_pair(c.parent, c.child);
    auto [it, fresh] = slot.emplace(key, merged.size());
    if (fresh) {
      contribution m;
      m.child = c.child;
      m.parent = c.parent;
      m.type = c.type;
      m.hops = c.hops;
      merged.push_back(std::move(m));
      positions.emplace_back();
    }
    auto& m = merged[it->second];
    auto& pos = positions[it->second];
    m.type = c.type;
    if (c.origin_ms != 0 && (m.origin_ms == 0 || c.origin_ms < m.origin_ms))
      m.origin_ms = c.origin_ms;
    m.hops = std::max(m.hops, c.hops);
    for (auto& d : c.deltas) {
      auto [p, added] = pos.emplace(d.id, m.deltas.size());
      if (added)
        m.deltas.push_back(std::move(d));
      else
        m.deltas[p->second] = std::move(d);
    }
  }
  items = std::move(merged);
}

}  // namespace fleettwin::core

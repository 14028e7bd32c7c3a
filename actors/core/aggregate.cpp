#include "actors/core/aggregate.hpp"

#include <algorithm>
#include <cmath>

namespace fleettwin::core {

const member_path* member_entry::direct(std::string_view id) const {
  for (const auto& p : paths)
    if (p.via == id && p.depth == 1)
      return &p;
  return nullptr;
}

void aggregate::series_state::add(double x) {
  // Neumaier's compensated sum: removals (adding -x) do not drift.
  const double t = sum + x;
  if (std::fabs(sum) >= std::fabs(x))
    compensation += (sum - t) + x;
  else
    compensation += (x - t) + sum;
  sum = t;
}

class aggregate::reader final : public series_reader {
public:
  explicit reader(const std::vector<series_state>& s) : s_(s) {}

  uint64_t count(uint32_t s) const override {
    return s_[s].n;
  }
  double sum(uint32_t s) const override {
    return s_[s].total();
  }
  std::optional<double> min(uint32_t s) const override {
    const auto& o = s_[s].ordered;
    return o.empty() ? std::nullopt : std::optional<double>{o.min()};
  }
  std::optional<double> max(uint32_t s) const override {
    const auto& o = s_[s].ordered;
    return o.empty() ? std::nullopt : std::optional<double>{o.max()};
  }
  std::optional<double> percentile(uint32_t s, double q) const override {
    const auto& o = s_[s].ordered;
    if (o.empty())
      return std::nullopt;
    auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(o.size())));
    rank = std::clamp<size_t>(rank, 1, o.size());
    return o.nth(rank - 1);
  }

private:
  const std::vector<series_state>& s_;
};

aggregate::aggregate(std::string id, std::shared_ptr<const compiled_kind> kind,
                     int64_t stale_after_ms, int64_t hold_ms)
    : id_(std::move(id)),
      kind_(std::move(kind)),
      stale_after_ms_(stale_after_ms),
      hold_ms_(hold_ms) {
  series_.resize(kind_->series.size());
}

std::optional<std::optional<double>> aggregate::inclusion(std::string_view id,
                                                          const member_entry& e, uint32_t s) const {
  const series_spec& spec = kind_->series[s];
  std::optional<double> v;
  if (!spec.field.empty()) {
    const value* r = e.values.find_reported(spec.field);
    if (!r)
      return std::nullopt;
    v = as_number(*r);
    if (!v || std::isnan(*v))
      return std::nullopt;
  }
  if (!spec.where.matches(member_view{id, e.values}, now_ms_, stale_after_ms_))
    return std::nullopt;
  return v;
}

const std::string& aggregate::tenant() const {
  static const std::string none;
  return tenants_.size() == 1 ? tenants_.begin()->first : none;
}

void aggregate::count(std::string_view id, member_entry& e) {
  if (!e.twin)
    return;
  ++twins_;
  ++tenants_[e.values.tenant];
  for (uint32_t s = 0; s < series_.size(); ++s) {
    auto in = inclusion(id, e, s);
    if (!in)
      continue;
    e.counted |= uint64_t{1} << s;
    auto& st = series_[s];
    ++st.n;
    if (*in) {
      st.add(**in);
      if (kind_->series[s].ordered)
        st.ordered.insert(**in);
    }
  }
  if (kind_->time_dependent && e.values.last_seen_ms != 0) {
    const int64_t deadline = e.values.last_seen_ms + stale_after_ms_;
    if (deadline >= now_ms_) {
      e.deadline = deadline;
      deadlines_.emplace(deadline, id);
    }
  }
}

void aggregate::uncount(std::string_view id, member_entry& e) {
  if (!e.twin)
    return;
  --twins_;
  if (auto t = tenants_.find(e.values.tenant); t != tenants_.end() && --t->second == 0)
    tenants_.erase(t);
  for (uint32_t s = 0; s < series_.size(); ++s) {
    if (!(e.counted & (uint64_t{1} << s)))
      continue;
    auto& st = series_[s];
    --st.n;
    const auto& field = kind_->series[s].field;
    if (!field.empty()) {
      const double v = *as_number(*e.values.find_reported(field));
      if (st.n == 0) {
        st.sum = st.compensation = 0;  // an empty series restarts exact
      } else {
        st.add(-v);
      }
      if (kind_->series[s].ordered)
        st.ordered.erase(v);
    }
  }
  e.counted = 0;
  if (e.deadline != 0) {
    deadlines_.erase({e.deadline, id});
    e.deadline = 0;
  }
}

void aggregate::erase(std::map<std::string, member_entry, std::less<>>::iterator it) {
  constexpr size_t max_tombstones = 100'000;
  if (it->second.twin && tombstones_.size() < max_tombstones) {
    auto& t = tombstones_[it->first];
    t.version = std::max(t.version, it->second.values.version);
    t.until_ms = now_ms_ + hold_ms_;
  }
  uncount(it->first, it->second);
  held_.erase(it->first);
  members_.erase(it);
}

bool aggregate::hold_allowed(const std::vector<std::string>& targets) const {
  for (const auto& t : targets)
    if (t == id_ || members_.find(t) != members_.end())
      return true;
  return false;
}

apply_counts aggregate::advance(int64_t now_ms, std::vector<member_delta>* out,
                                std::vector<std::string>* touched) {
  apply_counts counts;
  if (now_ms <= now_ms_)
    return counts;
  now_ms_ = now_ms;
  for (auto t = tombstones_.begin(); t != tombstones_.end();)
    t = t->second.until_ms < now_ms_ ? tombstones_.erase(t) : std::next(t);
  for (auto h = held_.begin(); h != held_.end();) {
    auto it = members_.find(*h);
    ++h;
    if (it != members_.end() && it->second.held_until < now_ms_) {
      ++counts.expired_holds;
      release(it, out, touched);
    }
  }
  while (!deadlines_.empty() && deadlines_.begin()->first < now_ms_) {
    auto m = members_.find(deadlines_.begin()->second);
    deadlines_.erase(deadlines_.begin());
    if (m == members_.end())
      continue;
    m->second.deadline = 0;  // already out of the index
    uncount(m->first, m->second);
    count(m->first, m->second);
  }
  return counts;
}

void aggregate::release(std::map<std::string, member_entry, std::less<>>::iterator it,
                        std::vector<member_delta>* out, std::vector<std::string>* touched) {
  std::string id = it->first;
  auto hint = std::move(it->second.moving_to);
  const uint64_t version = it->second.values.version;
  erase(it);
  if (touched)
    touched->push_back(id);
  if (out) {
    out->push_back(view(id, hint));
    out->back().values.version = version;
  }
}

namespace {

uint32_t min_depth(const std::vector<member_path>& paths, uint32_t fallback) {
  if (paths.empty())
    return fallback;
  uint32_t d = paths.front().depth;
  for (const auto& p : paths)
    d = std::min(d, p.depth);
  return d;
}

/// What a parent of the aggregate sees of a member: it changes when any of
/// these does.
struct outward_view {
  bool present = false;
  bool twin = false;
  uint32_t depth = 0;
  uint64_t version = 0;

  bool operator==(const outward_view&) const = default;
};

outward_view outward_of(const member_entry* e) {
  if (!e)
    return {};
  return {true, e->twin, e->depth, e->values.version};
}

}  // namespace

apply_counts aggregate::apply(const contribution& c, int64_t now_ms, std::vector<member_delta>& out,
                              std::vector<std::string>* touched) {
  apply_counts counts = advance(now_ms, &out, touched);
  bool aggregate_left = false;
  for (const auto& d : c.deltas) {
    if (d.id == id_) {
      // The aggregate itself arrives from below: a relation cycle (rejected
      // when relations are set, possible only through a race). Ignoring it
      // keeps the aggregate out of its own members.
      ++counts.cycles;
      continue;
    }
    const uint32_t depth = d.depth + 1;
    auto it = members_.find(d.id);
    const member_entry* before_ptr = it == members_.end() ? nullptr : &it->second;
    const outward_view before = outward_of(before_ptr);
    bool changed_entry = false;
    if (d.present && depth > max_relation_depth) {
      ++counts.too_deep;
      if (!before_ptr)
        continue;
      // Treated as the path's removal: a cycle's echo dies out here.
    }
    if (d.present && depth <= max_relation_depth) {
      if (it == members_.end()) {
        member_entry e;
        e.twin = d.twin;
        e.values = d.values;
        e.paths.push_back(member_path{c.child, depth, c.type});
        e.depth = depth;
        it = members_.emplace(d.id, std::move(e)).first;
        count(it->first, it->second);
        changed_entry = true;
      } else {
        member_entry& e = it->second;
        if (!e.moving_to.empty()) {
          e.moving_to.clear();
          e.held_until = 0;
          held_.erase(it->first);
          changed_entry = true;
        }
        const bool newer = d.values.version > e.values.version;
        const bool retwin = d.twin != e.twin;
        if (retwin || (d.twin && newer)) {
          if (retwin || !e.values.same_fields(d.values)) {
            uncount(it->first, e);
            e.twin = d.twin;
            e.values = d.values;
            count(it->first, e);
          } else {
            e.values.version = d.values.version;
          }
          changed_entry = true;
        } else if (d.twin && d.values.version < e.values.version) {
          ++counts.stale_versions;
        }
        auto p = std::lower_bound(
            e.paths.begin(), e.paths.end(), c.child,
            [](const member_path& x, const std::string& via) { return x.via < via; });
        member_path path{c.child, depth, c.type};
        if (p != e.paths.end() && p->via == c.child) {
          if (!(*p == path)) {
            *p = std::move(path);
            changed_entry = true;
          }
        } else {
          e.paths.insert(p, std::move(path));
          changed_entry = true;
        }
        e.depth = min_depth(e.paths, e.depth);
      }
    } else {
      if (it == members_.end())
        continue;
      member_entry& e = it->second;
      auto p = std::lower_bound(
          e.paths.begin(), e.paths.end(), c.child,
          [](const member_path& x, const std::string& via) { return x.via < via; });
      if (p == e.paths.end() || p->via != c.child)
        continue;  // not here through this child (or already in transit)
      e.paths.erase(p);
      changed_entry = true;
      if (e.paths.empty()) {
        // A removal older than the view held, or than the member's last
        // removal, is a stale hint: no hold.
        uint64_t newest = e.values.version;
        if (auto t = tombstones_.find(d.id); t != tombstones_.end())
          newest = std::max(newest, t->second.version);
        if (hold_allowed(d.moving_to) && d.values.version >= newest) {
          e.moving_to = d.moving_to;
          e.held_until = now_ms_ + hold_ms_;
          held_.insert(it->first);
        } else {
          aggregate_left |= !e.twin;
          erase(it);
          it = members_.end();
        }
      } else {
        e.depth = min_depth(e.paths, e.depth);
      }
    }
    if (changed_entry && touched)
      touched->push_back(d.id);
    const member_entry* after_ptr = it == members_.end() ? nullptr : &it->second;
    const outward_view after = outward_of(after_ptr);
    if (!(before == after)) {
      out.push_back(view(d.id, d.present ? std::vector<std::string>{} : d.moving_to));
      if (!out.back().present)
        out.back().values.version = d.values.version;
    }
  }
  if (aggregate_left && !held_.empty())
    release_holds(&out, touched);
  return counts;
}

void aggregate::release_holds(std::vector<member_delta>* out, std::vector<std::string>* touched) {
  // Releasing one member may remove an aggregate another hold waits for.
  bool again = true;
  while (again) {
    again = false;
    for (auto h = held_.begin(); h != held_.end();) {
      auto it = members_.find(*h);
      ++h;
      if (it == members_.end() || hold_allowed(it->second.moving_to))
        continue;
      again |= !it->second.twin;
      release(it, out, touched);
    }
  }
}

member_delta aggregate::view(std::string_view id, const std::vector<std::string>& moving_to) const {
  member_delta d;
  d.id = std::string{id};
  auto it = members_.find(id);
  if (it == members_.end()) {
    d.present = false;
    d.moving_to = moving_to;
    return d;
  }
  const member_entry& e = it->second;
  d.present = true;
  d.twin = e.twin;
  d.depth = e.depth;
  if (e.twin)
    d.values = e.values;
  return d;
}

void aggregate::all_views(bool present, const std::vector<std::string>& moving_to,
                          std::vector<member_delta>& out) const {
  out.reserve(out.size() + members_.size());
  for (const auto& [id, e] : members_) {
    member_delta d;
    d.id = id;
    d.present = present;
    d.twin = e.twin;
    d.depth = e.depth;
    if (present) {
      if (e.twin)
        d.values = e.values;
    } else {
      d.moving_to = moving_to;
      d.values.version = e.values.version;
    }
    out.push_back(std::move(d));
  }
}

std::vector<std::optional<double>> aggregate::measures(const measure_inputs& in) const {
  return evaluate_measures(*kind_, reader{series_}, in);
}

std::vector<std::optional<double>> aggregate::recompute(const measure_inputs& in) const {
  std::vector<member_view> views;
  views.reserve(twins_);
  for (const auto& [id, e] : members_)
    if (e.twin)
      views.push_back(member_view{id, e.values});
  return recompute_measures(*kind_, views, in, now_ms_, stale_after_ms_);
}

void aggregate::set_kind(std::shared_ptr<const compiled_kind> kind) {
  kind_ = std::move(kind);
  series_.assign(kind_->series.size(), series_state{});
  deadlines_.clear();
  twins_ = 0;
  tenants_.clear();
  for (auto& [id, e] : members_) {
    e.counted = 0;
    e.deadline = 0;
    count(id, e);
  }
}

void aggregate::restore(std::string id, member_entry e) {
  e.counted = 0;
  e.deadline = 0;
  if (auto old = members_.find(id); old != members_.end())
    erase(old);
  auto [it, inserted] = members_.emplace(std::move(id), std::move(e));
  if (it->second.in_transit())
    held_.insert(it->first);
  count(it->first, it->second);
}

const member_entry* aggregate::member(std::string_view id) const {
  auto it = members_.find(id);
  return it == members_.end() ? nullptr : &it->second;
}

}  // namespace fleettwin::core

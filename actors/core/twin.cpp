#include "actors/core/twin.hpp"

#include <algorithm>

#include <cmath>
#include <cstdio>

namespace fleettwin::core {

std::string to_string(const value& v) {
  switch (v.index()) {
    case 0: {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.17g", std::get<double>(v));
      return buf;
    }
    case 1:
      return std::to_string(std::get<int64_t>(v));
    case 2:
      return std::get<bool>(v) ? "true" : "false";
    default:
      return std::get<std::string>(v);
  }
}

const char* to_string(apply_status s) {
  switch (s) {
    case apply_status::applied:
      return "applied";
    case apply_status::duplicate:
      return "duplicate";
    case apply_status::sequence_too_old:
      return "sequence_too_old";
    case apply_status::out_of_order:
      return "out_of_order";
    case apply_status::unchanged:
      return "unchanged";
    case apply_status::tenant_conflict:
      return "tenant_conflict";
    case apply_status::erased:
      return "erased";
  }
  return "unknown";
}

namespace {

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-' || c == ':' || c == '/';
}

std::optional<std::string> validate_value(std::string_view name, const value& v,
                                          const limits& lim) {
  if (auto d = std::get_if<double>(&v); d && !std::isfinite(*d))
    return "metric \"" + std::string{name} + "\" is not a finite number";
  if (auto s = std::get_if<std::string>(&v); s && s->size() > lim.max_string_value_bytes)
    return "metric \"" + std::string{name} + "\" has a string value of " +
           std::to_string(s->size()) + " bytes (limit " +
           std::to_string(lim.max_string_value_bytes) + ")";
  return std::nullopt;
}

// Welford-style running mean; min/max over numeric samples only.
void update_stats(property_stats& st, const value& v, const value* previous, int64_t at_ms) {
  ++st.count;
  if (auto x = as_number(v)) {
    ++st.numeric_count;
    if (st.numeric_count == 1) {
      st.min = st.max = st.mean = *x;
    } else {
      st.min = std::min(st.min, *x);
      st.max = std::max(st.max, *x);
      st.mean += (*x - st.mean) / static_cast<double>(st.numeric_count);
    }
  }
  if (previous == nullptr || *previous != v)
    st.last_change_ms = at_ms;
}

}  // namespace

std::optional<std::string> validate_name(std::string_view name, const limits& lim,
                                         std::string_view what) {
  if (name.empty())
    return std::string{what} + " name is empty";
  if (name.size() > lim.max_name_bytes)
    return std::string{what} + " name \"" + std::string{name.substr(0, 32)} + "...\" has " +
           std::to_string(name.size()) + " bytes (limit " + std::to_string(lim.max_name_bytes) +
           ")";
  for (char c : name)
    if (!name_char(c))
      return std::string{what} + " name \"" + std::string{name} +
             "\" has a character outside [A-Za-z0-9_.:/-]";
  return std::nullopt;
}

std::optional<std::string> validate(const telemetry& t, const limits& lim) {
  if (t.asset_id.empty())
    return std::string{"missing asset id (record key and payload asset_id are empty)"};
  if (t.asset_id.size() > lim.max_asset_id_bytes)
    return "asset id has " + std::to_string(t.asset_id.size()) + " bytes (limit " +
           std::to_string(lim.max_asset_id_bytes) + ")";
  for (unsigned char c : t.asset_id)
    if (c < 0x20 || c == 0x7f)
      return std::string{"asset id contains a control character"};
  if (t.metrics.empty() && t.attributes.empty())
    return std::string{"record has no metrics and no attributes"};
  if (t.metrics.size() > lim.max_metrics_per_record)
    return "record has " + std::to_string(t.metrics.size()) + " metrics (limit " +
           std::to_string(lim.max_metrics_per_record) + ")";
  if (t.attributes.size() > lim.max_attributes_per_record)
    return "record has " + std::to_string(t.attributes.size()) + " attributes (limit " +
           std::to_string(lim.max_attributes_per_record) + ")";
  if (t.source_time_ms < 0)
    return std::string{"source_time_ms is negative"};
  if (!t.tenant.empty())
    if (auto err = validate_name(t.tenant, lim, "tenant"))
      return err;
  for (const auto& [name, v] : t.metrics) {
    if (auto err = validate_name(name, lim, "metric"))
      return err;
    if (auto err = validate_value(name, v, lim))
      return err;
  }
  for (const auto& [key, v] : t.attributes) {
    if (auto err = validate_name(key, lim, "attribute"))
      return err;
    if (v.size() > lim.max_string_value_bytes)
      return "attribute \"" + key + "\" value is too long";
  }
  return std::nullopt;
}

namespace {}  // namespace

void apply_telemetry(twin& tw, const telemetry& t, int64_t now_ms, const limits& lim,
                     apply_result& out) {
  out.applied_metrics.clear();
  out.stale_samples = 0;
  out.attributes_changed = false;
  out.sequence_restarted = false;
  if (tw.erased_ms != 0 && t.source_time_ms > 0 && t.source_time_ms <= tw.erased_ms) {
    out.status = apply_status::erased;
    return;
  }
  if (!t.tenant.empty() && !tw.tenant.empty() && t.tenant != tw.tenant) {
    // A twin's tenant is fixed by the first record that names one: a record that names
    // another is refused whole (nothing of it applied, its sequence not marked).
    out.status = apply_status::tenant_conflict;
    return;
  }
  auto verdict = tw.window.check(t.sequence);
  if (verdict != sequence_window::verdict::fresh && t.source_time_ms > 0 &&
      t.source_time_ms > tw.newest_source_ms) {
    // A replay carries the source time it had when it was applied, so it is
    // never newer than every record seen: this is a new record from a source
    // whose sequence counter started again. (Every record counts, not only
    // stored samples: a replayed attributes-only record must not pass for new
    // and reset the window, which would let older attributes be applied again.)
    tw.window.reset();
    out.sequence_restarted = true;
    verdict = sequence_window::verdict::fresh;
  }
  switch (verdict) {
    case sequence_window::verdict::duplicate:
      ++tw.duplicates;
      out.status = apply_status::duplicate;
      return;
    case sequence_window::verdict::too_old:
      ++tw.out_of_order;
      out.status = apply_status::sequence_too_old;
      return;
    case sequence_window::verdict::fresh:
      break;
  }
  const int64_t source_ms = t.source_time_ms > 0 ? t.source_time_ms : now_ms;
  for (uint32_t i = 0; i < t.metrics.size(); ++i) {
    const auto& [name, v] = t.metrics[i];
    auto it = tw.reported.find(name);
    if (it == tw.reported.end()) {
      if (tw.reported.size() >= lim.max_properties_per_twin) {
        ++out.stale_samples;  // bounded: new properties beyond the limit are dropped
        continue;
      }
      it = tw.reported.emplace(name, reported_property{}).first;
      update_stats(it->second.stats, v, nullptr, source_ms);
    } else {
      auto& rp = it->second;
      // An older sample never overwrites a newer one; on equal time the
      // higher sequence wins.
      if (source_ms < rp.source_time_ms ||
          (source_ms == rp.source_time_ms && t.sequence != 0 && t.sequence < rp.sequence)) {
        ++out.stale_samples;
        continue;
      }
      update_stats(rp.stats, v, &rp.val, source_ms);
    }
    auto& rp = it->second;
    rp.val = v;
    rp.source_time_ms = source_ms;
    rp.ingest_time_ms = now_ms;
    rp.sequence = t.sequence;
    out.applied_metrics.push_back(i);
  }
  for (const auto& [key, v] : t.attributes) {
    auto it = tw.attributes.find(key);
    if (it == tw.attributes.end()) {
      if (tw.attributes.size() >= lim.max_attributes_per_twin)
        continue;
      tw.attributes.emplace(key, v);
      out.attributes_changed = true;
    } else if (it->second != v) {
      it->second = v;
      out.attributes_changed = true;
    }
  }
  if (!t.kind.empty() && t.kind != tw.kind) {
    tw.kind = t.kind;
    out.attributes_changed = true;
  }
  if (!t.tenant.empty() && tw.tenant.empty()) {
    tw.tenant = t.tenant;
    out.attributes_changed = true;
  }
  tw.window.mark(t.sequence);
  tw.newest_source_ms = std::max(tw.newest_source_ms, source_ms);
  if (out.applied_metrics.empty() && !out.attributes_changed) {
    tw.out_of_order += out.stale_samples;
    out.status = t.metrics.empty() ? apply_status::unchanged : apply_status::out_of_order;
    return;
  }
  tw.out_of_order += out.stale_samples;
  if (tw.asset_id.empty())
    tw.asset_id = t.asset_id;
  ++tw.version;
  ++tw.applied_records;
  tw.last_seen_ms = now_ms;
  out.status = apply_status::applied;
}

erasure erase_twin(twin& tw, int64_t now_ms, uint32_t history_capacity) {
  erasure out;
  out.history_slots = static_cast<uint32_t>(
      std::min<uint64_t>(tw.history_segments, static_cast<uint64_t>(history_capacity)));
  out.relations = std::move(tw.relations);
  std::string id = std::move(tw.asset_id);
  tw = twin{};
  tw.asset_id = std::move(id);
  tw.erased_ms = now_ms;
  return out;
}

desired_result apply_desired(twin& tw, std::string_view asset_id, const desired_update& u,
                             int64_t now_ms, const limits& lim) {
  if (u.set.empty() && u.remove.empty())
    return {desired_status::invalid,
            "nothing to change: set at least one desired property or "
            "name one to remove"};
  for (const auto& [name, v] : u.set) {
    if (auto err = validate_name(name, lim, "desired property"))
      return {desired_status::invalid, *err};
    if (auto err = validate_value(name, v, lim))
      return {desired_status::invalid, "desired " + *err};
  }
  for (const auto& name : u.remove)
    if (auto err = validate_name(name, lim, "removed property"))
      return {desired_status::invalid, *err};
  if ((tw.empty() && tw.erased_ms != 0) ||  // an erased twin's tombstone
      (u.only_tenant && tw.tenant != *u.only_tenant))
    return {desired_status::not_found, "twin \"" + std::string{asset_id} + "\" not found"};
  if (u.expected_version && *u.expected_version != tw.version)
    return {desired_status::version_mismatch,
            "twin is at version " + std::to_string(tw.version) + ", request expected version " +
                std::to_string(*u.expected_version) + ": re-read the twin and retry"};
  size_t new_names = 0;
  for (const auto& [name, v] : u.set)
    if (!tw.desired.contains(name))
      ++new_names;
  if (tw.desired.size() + new_names > lim.max_properties_per_twin)
    return {desired_status::invalid, "too many desired properties (limit " +
                                         std::to_string(lim.max_properties_per_twin) + ")"};
  bool changed = false;
  for (const auto& name : u.remove)
    changed |= tw.desired.erase(name) > 0;
  for (const auto& [name, v] : u.set) {
    auto [it, inserted] = tw.desired.try_emplace(name, v);
    if (!inserted && it->second != v) {
      it->second = v;
      changed = true;
    }
    changed |= inserted;
  }
  if (!changed)
    return {desired_status::unchanged, {}};
  if (tw.asset_id.empty())
    tw.asset_id = std::string{asset_id};
  ++tw.version;
  tw.desired_updated_ms = now_ms;
  return {desired_status::applied, {}};
}

value_map delta(const twin& tw) {
  value_map out;
  for (const auto& [name, want] : tw.desired) {
    auto it = tw.reported.find(name);
    if (it == tw.reported.end()) {
      out.emplace(name, want);
      continue;
    }
    const auto& have = it->second.val;
    // 1 and 1.0 are the same setting: compare numbers numerically.
    auto a = as_number(have);
    auto b = as_number(want);
    bool same = (a && b && have.index() != 3 && want.index() != 3) ? *a == *b : have == want;
    if (!same)
      out.emplace(name, want);
  }
  return out;
}

connectivity connectivity_of(const twin& tw, int64_t now_ms, int64_t stale_after_ms) {
  if (tw.last_seen_ms == 0)
    return connectivity::stale;
  return now_ms - tw.last_seen_ms <= stale_after_ms ? connectivity::online : connectivity::stale;
}

}  // namespace fleettwin::core

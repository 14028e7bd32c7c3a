#include "services/scenario/fork_part.hpp"

#include <algorithm>

#include "actors/core/codec.hpp"
#include "actors/core/partitioning.hpp"
#include "actors/core/scenario.hpp"

namespace fleettwin::scenario {

namespace {

/// Records listed per store call while a page fills.
constexpr size_t scan_batch = 256;

outcome storage_failed(std::string error) {
  return outcome{failure::unavailable, std::move(error)};
}

}  // namespace

bool fork_selection::forks(const core::twin& tw) const {
  if (!visible(tw))
    return false;
  if (!names.empty())
    return names.count(tw.asset_id) > 0;
  if (!parents.empty())
    return std::any_of(tw.relations.begin(), tw.relations.end(),
                       [&](const core::relation& r) { return parents.count(r.parent) > 0; });
  return !where.matches_all() && where.matches(tw, at_ms, stale_after_ms);
}

snapshot_part::snapshot_part(storage::rocksdb_store& store,
                             std::shared_ptr<const storage::store_snapshot> at,
                             std::vector<int32_t> partitions, int32_t partition_count,
                             std::shared_ptr<const core::kind_registry> kinds,
                             std::shared_ptr<const core::model_set> models)
    : store_(store),
      at_(std::move(at)),
      partitions_(std::move(partitions)),
      partition_count_(partition_count),
      kinds_(kinds ? std::move(kinds) : std::make_shared<const core::kind_registry>()),
      models_(std::move(models)) {
  std::sort(partitions_.begin(), partitions_.end());
}

outcome snapshot_part::check(const fork_spec& spec, const std::string& tenant,
                             int64_t stale_after_ms, uint64_t max_twins, fork_check& out) const {
  out = fork_check{};
  std::string error;
  auto here = [&](const std::string& id) -> std::optional<int32_t> {
    if (partition_count_ <= 0)
      return std::nullopt;
    const auto p = core::kafka_partition(id, partition_count_);
    if (!std::binary_search(partitions_.begin(), partitions_.end(), p))
      return std::nullopt;
    return p;
  };
  core::twin tw;
  for (const auto& name : spec.names) {
    const auto p = here(name);
    if (!p)
      continue;
    const auto st = store_.read_twin(*at_, *p, name, tw, error);
    if (st == runtime::load_status::failed)
      return storage_failed(error);
    if (st == runtime::load_status::found && !tw.empty() && !kinds_->is_aggregate(name) &&
        (tenant.empty() || tw.tenant == tenant))
      out.names_found.push_back(name);
  }
  if (!spec.below.empty())
    if (const auto p = here(spec.below)) {
      runtime::stored_aggregate stored;
      const auto st = store_.read_aggregate(*at_, *p, spec.below, stored, error);
      if (st == runtime::load_status::failed)
        return storage_failed(error);
      if (st == runtime::load_status::found && (tenant.empty() || stored.header.tenant == tenant)) {
        out.below_found = true;
        out.below_twins = stored.header.twins;
      }
    }
  if (!spec.where.matches_all()) {
    const int64_t at = at_->taken_ms;
    store_.list_twins(
        partitions_, "",
        [&](const core::twin& t) {
          // Aggregates' own records are not twins a run drives.
          if (out.matched <= max_twins && !kinds_->is_aggregate(t.asset_id) &&
              (tenant.empty() || t.tenant == tenant) && spec.where.matches(t, at, stale_after_ms))
            ++out.matched;
          return false;  // counted, not kept
        },
        0, 0, error, at_.get());
    if (!error.empty())
      return storage_failed(error);
  }
  return {};
}

bool snapshot_part::prepare(const fork_selection& sel, core::twin& tw, std::string& error) const {
  if (sel.rewind_to_ms > 0) {
    std::vector<std::pair<std::string, core::history_point>> samples;
    if (!store_.read_samples(*at_, core::kafka_partition(tw.asset_id, partition_count_), tw,
                             sel.rewind_to_ms, samples, error))
      return false;
    const core::asset_model* model = nullptr;
    if (models_)
      if (auto m = models_->find(tw.kind); m != models_->end())
        model = &m->second;
    if (!core::rewind(tw, samples, sel.rewind_to_ms, model))
      return false;
  }
  strip_for_run(tw);
  return true;
}

outcome snapshot_part::entities(const std::string& after, size_t budget,
                                std::vector<part_record>& out, std::string& next) const {
  std::string error;
  std::string cursor = after;
  size_t bytes = 0;
  core::twin e;
  for (;;) {
    auto page = store_.list_aggregates(
        partitions_, cursor, [](const core::aggregate_header&) { return true; }, scan_batch, 0,
        error, at_.get());
    if (!error.empty())
      return storage_failed(error);
    for (const auto& h : page.aggregates) {
      const auto p = core::kafka_partition(h.id, partition_count_);
      e = core::twin{};
      if (store_.read_twin(*at_, p, h.id, e, error) == runtime::load_status::failed)
        return storage_failed(error);
      e.asset_id = h.id;
      strip_for_run(e);
      part_record r;
      core::encode_twin(e, r.bytes);
      bytes += r.bytes.size();
      out.push_back(std::move(r));
      cursor = h.id;
    }
    if (page.next_page_token.empty()) {
      next.clear();
      return {};
    }
    if (budget > 0 && bytes >= budget) {
      next = cursor;
      return {};
    }
  }
}

outcome snapshot_part::twins(const fork_selection& sel, const std::string& after, size_t budget,
                             std::vector<part_record>& out, std::string& next) const {
  std::string error;
  std::string cursor = after;
  size_t bytes = 0;
  for (;;) {
    auto page = store_.list_twins(
        partitions_, cursor,
        [&](const core::twin& tw) {
          return !tw.empty() && !kinds_->is_aggregate(tw.asset_id) &&
                 (!tw.relations.empty() || sel.forks(tw));
        },
        scan_batch, 0, error, at_.get());
    if (!error.empty())
      return storage_failed(error);
    for (auto& tw : page.twins) {
      part_record r;
      r.forked = sel.forks(tw);
      if (!prepare(sel, tw, error)) {
        if (!error.empty())
          return storage_failed(error);
        continue;
      }
      core::encode_twin(tw, r.bytes);
      bytes += r.bytes.size();
      out.push_back(std::move(r));
    }
    if (page.next_page_token.empty()) {
      next.clear();
      return {};
    }
    cursor = page.next_page_token;
    if (budget > 0 && bytes >= budget) {
      next = cursor;
      return {};
    }
  }
}

outcome snapshot_part::each_entity(const std::function<void(core::twin&&)>& each) const {
  std::string error;
  std::vector<std::string> ids;
  store_.list_aggregates(
      partitions_, "",
      [&](const core::aggregate_header& h) {
        ids.push_back(h.id);
        return false;
      },
      0, 0, error, at_.get());
  if (!error.empty())
    return storage_failed(error);
  for (auto& id : ids) {
    core::twin e;
    if (store_.read_twin(*at_, core::kafka_partition(id, partition_count_), id, e, error) ==
        runtime::load_status::failed)
      return storage_failed(error);
    e.asset_id = std::move(id);
    strip_for_run(e);
    each(std::move(e));
  }
  return {};
}

outcome snapshot_part::each_twin(
    const fork_selection& sel,
    const std::function<void(const core::twin&, bool forked)>& each) const {
  std::string error;
  std::string failed;
  store_.list_twins(
      partitions_, "",
      [&](const core::twin& tw) {
        if (tw.empty() || kinds_->is_aggregate(tw.asset_id))
          return false;
        const bool forked = sel.forks(tw);
        if (!forked && tw.relations.empty())
          return false;
        if (sel.rewind_to_ms == 0) {
          each(tw, forked);
          return false;
        }
        core::twin past = tw;
        if (prepare(sel, past, failed))
          each(past, forked);
        return false;
      },
      0, 0, error, at_.get());
  if (!error.empty())
    return storage_failed(error);
  if (!failed.empty())
    return storage_failed(failed);
  return {};
}

}  // namespace fleettwin::scenario

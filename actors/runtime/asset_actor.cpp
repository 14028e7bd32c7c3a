#include "actors/runtime/asset_actor.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "actors/core/codec.hpp"
#include "actors/core/contributions.hpp"

namespace fleettwin::runtime {

int64_t asset_config::system_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::shared_ptr<const core::twin> asset_state::current() {
  if (!snapshot)
    snapshot = std::make_shared<const core::twin>(tw);
  return snapshot;
}

void asset_state::encode_state(std::string& out) {
  out.reserve(state_bytes + 64);
  core::encode_twin(tw, out);
  state_bytes = static_cast<uint32_t>(std::min<size_t>(out.size(), UINT32_MAX - 64));
}

void asset_state::changed() {
  snapshot.reset();
  if (cached) {
    config->cache->erase(asset_id);
    cached = false;
  }
}

namespace {

/// The model of a twin's kind among a snapshot of the models, looked up
/// again only when the kind changes (a slice's records share their twin).
class model_lookup {
public:
  explicit model_lookup(std::shared_ptr<const core::model_set> models)
      : models_(std::move(models)) {}
  const core::asset_model* of(const std::string& kind) {
    if (!models_)
      return nullptr;
    if (!looked_up_ || kind != kind_) {
      auto it = models_->find(kind);
      model_ = it == models_->end() ? nullptr : &it->second;
      kind_ = kind;
      looked_up_ = true;
    }
    return model_;
  }

private:
  std::shared_ptr<const core::model_set> models_;
  const core::asset_model* model_ = nullptr;
  std::string kind_;
  bool looked_up_ = false;
};

/// A history segment this large is closed and the next samples of the item go to a new
/// one (its own ring slot): a hot twin's item of tens of thousands of records would
/// otherwise make one changelog record larger than a Kafka broker accepts (1 MiB by
/// default), and its transaction would fail again on every retry.
constexpr size_t max_segment_bytes = 256 * 1024;

/// The open segment closes into its own ring slot at the end of a work item once
/// it holds this much (a few records of a typical asset); until then it is part of
/// the twin's state record. Larger, it would make every state write larger; smaller,
/// a twin reporting once a second would write a history record with nearly every item.
constexpr size_t close_segment_bytes = 1024;

/// Hands the open segment to the update under the twin's next ring slot.
void close_segment(asset_state& st, asset_update& u, std::string& segment) {
  if (segment.empty())
    return;
  auto& h = u.history.emplace_back();
  h.asset_id = st.asset_id;
  h.slot = core::history_slot(++st.tw.history_segments, st.config->history_capacity);
  h.segment = std::move(segment);
  segment.clear();
}

using reported_entry = std::pair<const std::string, core::reported_property>;

/// The properties the records of the slice applying set, repeats included
/// (asset_config::merge_changes): one slice at a time per worker thread.
thread_local std::vector<const reported_entry*> merged_properties;

/// The change of the record just applied: its own (one per record), or folded
/// into the slice's one change (merge_changes; finished by finish_merged).
void record_change(asset_state& st, const core::telemetry& t, int64_t ingest_ms, asset_update& u,
                   std::string& segment) {
  const bool merge = st.config->merge_changes;
  core::twin_change* change = nullptr;
  if (!merge || u.changes.empty()) {
    change = &u.changes.emplace_back();
    change->asset_id = st.asset_id;
    change->first_version = st.tw.version;
    change->type = core::change_type::reported;
    change->kind = st.tw.kind;
    change->tenant = st.tw.tenant;
    if (merge)
      merged_properties.clear();
    else
      change->reported.reserve(st.scratch.applied_metrics.size());
  } else {
    change = &u.changes.back();
  }
  change->version = st.tw.version;
  change->time_ms = ingest_ms;
  change->sequence = t.sequence;
  const bool keep_history = st.config->history_capacity > 0;
  const core::reported_property* previous = nullptr;  // this record's last sample
  for (auto i : st.scratch.applied_metrics) {
    const auto& name = t.metrics[i].first;
    const auto& entry = *st.tw.reported.find(name);
    const auto& rp = entry.second;
    if (merge)
      merged_properties.push_back(&entry);
    else
      change->reported.emplace_back(name, rp);
    if (keep_history) {
      if (segment.empty())
        core::begin_history_segment(segment);
      const bool same = previous && previous->source_time_ms == rp.source_time_ms &&
                        previous->sequence == rp.sequence;
      core::append_history_sample(segment, name, rp.val, rp.source_time_ms, rp.sequence, same);
      previous = &rp;
    }
  }
  if (segment.size() >= max_segment_bytes)
    close_segment(st, u, segment);
}

/// The slice's one merged change gets each property it set, as it is now
/// (the last value applied), in name order.
void finish_merged(asset_update& u) {
  if (u.changes.empty() || !u.changes.back().reported.empty())
    return;
  auto& props = merged_properties;
  std::sort(props.begin(), props.end(),
            [](const reported_entry* a, const reported_entry* b) { return a->first < b->first; });
  props.erase(std::unique(props.begin(), props.end()), props.end());
  auto& change = u.changes.back();
  change.reported.reserve(props.size());
  for (const auto* p : props)
    change.reported.emplace_back(p->first, p->second);
  props.clear();
}

std::shared_ptr<const core::kind_registry> kinds_of(const asset_state& st) {
  return st.config->kinds ? st.config->kinds->get() : nullptr;
}

/// The entity as its parents see it: a twin with its projected fields, or
/// an aggregate (which measures do not count itself).
core::member_delta self_view(const asset_state& st, const core::kind_registry& kinds) {
  core::member_delta d;
  d.id = st.asset_id;
  d.present = true;
  d.twin = !st.agg && !kinds.is_aggregate(st.asset_id);
  if (d.twin)
    d.values = st.projected ? *st.projected : core::project(st.tw, kinds.fields());
  return d;
}

/// Makes `st.agg` the aggregate of the entity's kind (created empty, or
/// rebuilt when the kind's definition changed). False when the id belongs to
/// no kind.
bool ensure_aggregate(asset_state& st, const core::kind_registry& kinds) {
  const core::compiled_kind* kind = kinds.kind_of(st.asset_id);
  if (!kind)
    return false;
  if (st.agg && st.agg->kind_ptr().get() == kind)
    return true;
  auto shared = kinds.kinds().at(kind->def.name);
  if (st.agg) {
    st.agg->set_kind(std::move(shared));
  } else {
    st.agg = std::make_unique<core::aggregate>(st.asset_id, std::move(shared),
                                               st.config->stale_after_ms, st.config->hold_ms);
    st.header.id = st.asset_id;
  }
  st.header.kind = kind->def.name;
  return true;
}

bool same_measures(const core::aggregate_header& h,
                   const std::vector<std::optional<double>>& values,
                   const core::compiled_kind& kind) {
  if (h.measures.size() != values.size())
    return false;
  for (size_t i = 0; i < values.size(); ++i)
    if (h.measures[i].first != kind.measures[i].name || h.measures[i].second != values[i])
      return false;
  return true;
}

/// Whether the aggregate changes with time alone.
bool timed(const asset_state& st) {
  return st.agg && (st.agg->kind().time_dependent || st.agg->in_transit() > 0);
}

/// The records of members `ids` as the aggregate holds them now (deleted
/// when it no longer does).
void member_records(const asset_state& st, const std::vector<std::string>& ids,
                    std::vector<member_write>& out) {
  for (const auto& id : ids) {
    member_write w{st.asset_id, id, {}};
    if (const auto* e = st.agg->member(id))
      core::encode_member_entry(*e, w.entry);
    out.push_back(std::move(w));
  }
}

/// Member records changed (`touched`, sorted): written with this commit, or
/// (checkpoint_members) kept for the partition's next flush.
void write_members(asset_state& st, const std::vector<std::string>& touched, asset_update& u) {
  if (!st.config->checkpoint_members) {
    member_records(st, touched, u.members);
    return;
  }
  st.unwritten.insert(touched.begin(), touched.end());
  u.unwritten_members = static_cast<uint32_t>(st.unwritten.size());
}

/// After the aggregate changed (members, attributes, time): its member
/// records, its new header and change, and what its parents get.
void finish_aggregate(asset_state& st, const core::kind_registry& kinds, int64_t now_ms,
                      std::vector<core::member_delta>& outward, std::vector<std::string>& touched,
                      asset_update& u, int64_t origin_ms = 0, uint32_t hops = 0) {
  auto& agg = *st.agg;
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  write_members(st, touched, u);
  u.timed = timed(st);
  auto values = agg.measures(core::measure_inputs{&st.tw.attributes});
  if (!touched.empty() || !same_measures(st.header, values, agg.kind()) ||
      st.header.kind_revision != agg.kind().def.revision) {
    auto& h = st.header;
    ++h.version;
    h.updated_ms = now_ms;
    h.members = agg.members().size();
    h.twins = agg.twins();
    h.in_transit = agg.in_transit();
    h.measures.clear();
    h.kind_revision = agg.kind().def.revision;
    h.tenant = agg.tenant();
    for (size_t i = 0; i < values.size(); ++i)
      h.measures.emplace_back(agg.kind().measures[i].name, values[i]);
    core::encode_aggregate_header(h, u.aggregate_state);
    if (const auto capacity = st.config->aggregate_history_capacity; capacity > 0) {
      // One segment per version: every measure that has a value, and the
      // member counts, at the change's time.
      auto& w = u.history.emplace_back();
      w.asset_id = st.asset_id;
      w.slot = core::aggregate_history_slot(h.version, capacity);
      core::begin_history_segment(w.segment);
      bool same = false;  // every sample after the first shares its time and version
      for (const auto& [name, v] : h.measures)
        if (v) {
          core::append_history_sample(w.segment, name, core::value{*v}, now_ms, h.version, same);
          same = true;
        }
      core::append_history_sample(w.segment, core::member_twins_measure,
                                  core::value{static_cast<int64_t>(h.twins)}, now_ms, h.version,
                                  same);
      core::append_history_sample(w.segment, core::members_measure,
                                  core::value{static_cast<int64_t>(h.members)}, now_ms, h.version,
                                  true);
    }
    u.aggregate_change = h;
    u.origin_ms = origin_ms;
    u.hops = hops;
  }
  if (outward.empty() || st.tw.relations.empty())
    return;
  core::child_change c;
  c.child = st.asset_id;
  c.before = &st.tw.relations;
  c.after = &st.tw.relations;
  c.self = self_view(st, kinds);
  c.members = &outward;
  c.origin_ms = origin_ms;
  c.hops = hops + 1;
  core::route(c, u.contributions);
  core::coalesce(u.contributions);
}

/// After the entity's relations may have changed (from `before`) or its
/// fields did: parents get the twin's new projected fields, or the
/// relation change (out of the old parents, into the new ones).
void tell_parents(asset_state& st, const core::kind_registry& kinds,
                  const core::relation_list& before, int64_t now_ms, asset_update& u) {
  bool self_changed = false;
  if (before.empty() && st.tw.relations.empty()) {
    // No parent to tell: no projection on the hot path. A parent added
    // later gets the full view then.
    st.projected.reset();
  } else if (!st.agg && !kinds.is_aggregate(st.asset_id)) {
    auto now = core::project(st.tw, kinds.fields());
    self_changed = !st.projected || !st.projected->same_fields(now);
    st.projected = std::move(now);
  }
  const bool moved = before != st.tw.relations;
  if (self_changed || moved) {
    core::child_change c;
    c.child = st.asset_id;
    c.before = &before;
    c.after = &st.tw.relations;
    c.self = self_view(st, kinds);
    c.self_changed = self_changed;
    c.as_aggregate = st.agg.get();
    c.origin_ms = now_ms;
    c.hops = 1;
    core::route(c, u.contributions);
  }
}

/// After telemetry: relations follow the attributes (rules), and parents get
/// the twin's new projected fields or the relation change.
void contribute_change(asset_state& st, bool attributes_changed, int64_t now_ms, asset_update& u) {
  auto kinds = kinds_of(st);
  if (!kinds)
    return;
  // Relations change only with attributes: the previous list is kept (a
  // copy) only then, not for every record.
  core::relation_list previous;
  if (attributes_changed) {
    previous = st.tw.relations;
    st.tw.relations = core::rederive(st.asset_id, st.tw.relations, st.tw.attributes, *kinds);
    if (st.agg) {
      // A derived parent that lies below this aggregate would close a cycle:
      // the relation is not taken (counted as a cycle), the attribute stays.
      u.aggregate_counts.cycles +=
          static_cast<uint32_t>(std::erase_if(st.tw.relations, [&st](const core::relation& r) {
            return r.parent == st.asset_id || st.agg->member(r.parent) != nullptr;
          }));
    }
  }
  tell_parents(st, *kinds, attributes_changed ? previous : st.tw.relations, now_ms, u);
  if (st.agg && attributes_changed) {
    // Expressions read the aggregate's own attributes: the change comes from
    // its own record, ingested now (no level below it).
    std::vector<core::member_delta> none;
    std::vector<std::string> untouched;
    finish_aggregate(st, *kinds, now_ms, none, untouched, u, now_ms, 0);
  }
}

/// Answers a lookup with the twin as it is. Only a committed state is
/// published to the snapshot cache, which queries read without asking the
/// partition (`committed` is false while a change awaits its commit).
void answer_get(asset_actor::stateful_pointer<asset_state> self, const twin_completion& done,
                bool committed) {
  auto& st = self->state;
  if (st.tw.empty())
    done(twin_reply{query_error::not_found, "twin \"" + st.asset_id + "\" not found", {}});
  else
    done(twin_reply{query_error::none, {}, st.current()});
  // Publish only twins somebody reads (the ingest path never copies for it).
  if (committed && st.config->cache && !st.cached && !st.tw.empty()) {
    st.config->cache->put(st.asset_id, st.current());
    st.cached = true;
    if (!st.exit_hook) {
      // However the actor ends, its snapshot must not outlive it.
      self->attach_functor([cache = st.config->cache, id = st.asset_id] { cache->erase(id); });
      st.exit_hook = true;
    }
  }
}

}  // namespace

asset_actor::behavior_type asset(asset_actor::stateful_pointer<asset_state> self,
                                 std::string asset_id, core::twin initial,
                                 std::shared_ptr<const asset_config> config,
                                 std::optional<stored_aggregate> aggregate) {
  auto& st = self->state;
  st.asset_id = std::move(asset_id);
  st.tw = std::move(initial);
  st.config = std::move(config);
  if (auto kinds = kinds_of(st); kinds && ensure_aggregate(st, *kinds) && aggregate) {
    st.header = std::move(aggregate->header);
    st.header.id = st.asset_id;
    st.agg->advance(st.header.updated_ms);
    for (auto& [id, e] : aggregate->members)
      st.agg->restore(std::move(id), std::move(e));
    if (st.header.kind != st.agg->kind().def.name)
      st.header.kind = st.agg->kind().def.name;
  }
  return {
      [self](apply_atom, const batch_slice& slice) {
        auto& st = self->state;
        asset_update u;
        u.asset_id = st.asset_id;
        const auto& batch = *slice.batch;
        const bool was_empty = st.tw.empty();
        auto& segment = st.tw.open_history;
        bool attributes_changed = false;
        // The models as they are for this slice (one snapshot, not one per record).
        model_lookup models{st.config->analytics && st.config->models ? st.config->models->get()
                                                                      : nullptr};
        for (auto idx : slice.indexes) {
          const auto& t = batch.records[idx];
          core::apply_telemetry(st.tw, t, batch.ingest_ms, st.config->limits, st.scratch);
          attributes_changed |= st.scratch.attributes_changed;
          u.stale_samples += st.scratch.stale_samples;
          u.sequence_restarts += st.scratch.sequence_restarted ? 1 : 0;
          switch (st.scratch.status) {
            case core::apply_status::applied:
              ++u.applied;
              if (st.config->analytics)
                core::analyze_applied(st.tw, t, st.scratch, models.of(st.tw.kind), batch.ingest_ms,
                                      u.analysis);
              record_change(st, t, batch.ingest_ms, u, segment);
              break;
            case core::apply_status::duplicate:
              ++u.duplicates;
              break;
            case core::apply_status::sequence_too_old:
              ++u.too_old;
              break;
            case core::apply_status::out_of_order:
              ++u.out_of_order;
              break;
            case core::apply_status::unchanged:
              ++u.unchanged;
              break;
            case core::apply_status::erased:
              // A replay from before the twin's erasure: counted with the late records.
              ++u.too_old;
              break;
            case core::apply_status::tenant_conflict:
              u.telemetry_rejects.emplace_back(
                  idx, "twin \"" + st.asset_id + "\" belongs to tenant \"" + st.tw.tenant +
                           "\" and this record names tenant \"" + t.tenant +
                           "\": a twin's tenant is fixed by its first record");
              break;
          }
        }
        if (st.config->merge_changes)
          finish_merged(u);
        u.created = was_empty && !st.tw.empty();
        if (!u.analysis.alerts.empty()) {
          u.kind = st.tw.kind;
          u.tenant = st.tw.tenant;
        }
        if (segment.size() >= close_segment_bytes)
          close_segment(st, u, segment);
        if (u.applied > 0)
          contribute_change(st, attributes_changed || was_empty, batch.ingest_ms, u);
        // Duplicates and late samples change counters and the sequence window
        // too: persist whenever anything was looked at, so a restart keeps them.
        if (!slice.indexes.empty()) {
          st.changed();
          st.encode_state(u.state);
          if (batch.want_snapshots)
            u.snapshot = st.current();
        }
        return u;
      },
      [self](contribute_atom, const contribution_slice& slice) {
        auto& st = self->state;
        asset_update u;
        u.asset_id = st.asset_id;
        auto kinds = kinds_of(st);
        if (!kinds || !ensure_aggregate(st, *kinds)) {
          // The id belongs to no aggregate kind (any more): nothing to fold.
          for (auto i : slice.indexes)
            u.misdirected += static_cast<uint32_t>((*slice.items)[i].deltas.size());
          return u;
        }
        std::vector<core::member_delta> outward;
        std::vector<std::string> touched;
        int64_t origin_ms = 0;
        uint32_t hops = 0;
        if (slice.replay) {
          // Applied before a restart, outputs committed then: only the
          // members catch up (the header already shows the result).
          for (auto i : slice.indexes) {
            const auto& c = (*slice.items)[i];
            st.agg->apply(c, slice.now_ms, outward, &touched);
          }
          std::sort(touched.begin(), touched.end());
          touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
          write_members(st, touched, u);
          u.timed = timed(st);
          return u;
        }
        for (auto i : slice.indexes) {
          const auto& c = (*slice.items)[i];
          if (c.origin_ms != 0 && (origin_ms == 0 || c.origin_ms < origin_ms))
            origin_ms = c.origin_ms;
          hops = std::max(hops, c.hops);
          auto n = st.agg->apply(c, slice.now_ms, outward, &touched);
          u.aggregate_counts.cycles += n.cycles;
          u.aggregate_counts.too_deep += n.too_deep;
          u.aggregate_counts.stale_versions += n.stale_versions;
          u.aggregate_counts.expired_holds += n.expired_holds;
          u.deltas_applied += static_cast<uint32_t>(c.deltas.size());
        }
        finish_aggregate(st, *kinds, slice.now_ms, outward, touched, u, origin_ms, hops);
        return u;
      },
      [self](relate_atom, const relation_slice& slice) {
        auto& st = self->state;
        asset_update u;
        u.asset_id = st.asset_id;
        auto kinds = kinds_of(st);
        if (!kinds) {
          for (const auto& [record, update] : slice.updates)
            u.relation_rejects.emplace_back(
                record, "this node has no aggregate kinds (start it with --aggregates <file>)");
          return u;
        }
        ensure_aggregate(st, *kinds);
        // A parent below this entity would close a cycle: an aggregate
        // knows every member below it, at any depth.
        auto below = [&st](std::string_view parent) {
          return st.agg && st.agg->member(std::string{parent}) != nullptr;
        };
        const core::relation_list before = st.tw.relations;
        core::relation_list next;
        for (const auto& [record, update] : slice.updates) {
          next.clear();
          if (auto err = core::apply_relation_update(st.asset_id, st.tw.relations, update, *kinds,
                                                     below, next)) {
            u.relation_rejects.emplace_back(record, std::move(*err));
            continue;
          }
          st.tw.relations = std::move(next);
        }
        if (st.tw.relations != before) {
          // A relation is part of the entity's state: a new version, stored
          // and in the changelog with it.
          const bool was_empty = st.tw.empty();
          ++st.tw.version;
          u.created = was_empty;
          tell_parents(st, *kinds, before, slice.now_ms, u);
          st.changed();
          st.encode_state(u.state);
        }
        if (slice.want_snapshot)
          u.snapshot = st.current();
        return u;
      },
      [self](flush_atom) {
        auto& st = self->state;
        asset_update u;
        u.asset_id = st.asset_id;
        if (st.agg) {
          std::vector<std::string> ids(std::make_move_iterator(st.unwritten.begin()),
                                       std::make_move_iterator(st.unwritten.end()));
          member_records(st, ids, u.members);
        }
        st.unwritten.clear();
        u.timed = timed(st);
        return u;
      },
      [self](check_atom) {
        auto& st = self->state;
        if (!st.agg)
          return std::string{};
        const core::measure_inputs in{&st.tw.attributes};
        auto incremental = st.agg->measures(in);
        auto full = st.agg->recompute(in);
        // Sums are kept compensated; a recompute adds in another order.
        auto same = [](const std::optional<double>& a, const std::optional<double>& b) {
          if (!a || !b)
            return a.has_value() == b.has_value();
          return std::fabs(*a - *b) <= 1e-9 * std::max({1.0, std::fabs(*a), std::fabs(*b)});
        };
        for (size_t i = 0; i < incremental.size() && i < full.size(); ++i)
          if (!same(incremental[i], full[i]))
            return "aggregate=" + st.asset_id + " measure=" + st.agg->kind().measures[i].name +
                   " incremental=" + (incremental[i] ? std::to_string(*incremental[i]) : "none") +
                   " recomputed=" + (full[i] ? std::to_string(*full[i]) : "none");
        return std::string{};
      },
      [self](get_atom, const twin_completion& done) { answer_get(self, done, true); },
      [self](get_atom, const twin_completion& done, bool committed) {
        answer_get(self, done, committed);
      },
      [self](advance_atom, int64_t now_ms) {
        auto& st = self->state;
        asset_update u;
        u.asset_id = st.asset_id;
        auto kinds = kinds_of(st);
        if (!st.agg || !kinds)
          return u;
        ensure_aggregate(st, *kinds);  // the kind may have changed meanwhile
        std::vector<core::member_delta> outward;
        std::vector<std::string> touched;
        u.aggregate_counts = st.agg->advance(now_ms, &outward, &touched);
        finish_aggregate(st, *kinds, now_ms, outward, touched, u);
        return u;
      },
      [self](get_atom, const aggregate_query& q, const aggregate_completion& done) {
        auto& st = self->state;
        if (!st.agg || (st.header.version == 0 && st.agg->members().empty())) {
          done(aggregate_reply{query_error::not_found,
                               "aggregate \"" + st.asset_id + "\" not found: nothing has joined it",
                               {}});
          return;
        }
        auto v = std::make_shared<aggregate_view>();
        v->header = st.header;
        v->header.tenant = st.agg->tenant();  // also for a header stored before it was kept
        v->self = st.current();
        for (const auto& [id, e] : st.agg->members()) {
          if (const auto* p = e.direct(id))
            v->children.emplace_back(id, p->type);
        }
        if (q.page_size > 0) {
          const auto& members = st.agg->members();
          for (auto it = members.upper_bound(q.start_after); it != members.end(); ++it) {
            const auto& [id, e] = *it;
            if (e.depth > q.depth || (q.twins_only && !e.twin) || (q.aggregates_only && e.twin))
              continue;
            if (q.filter &&
                !q.filter->matches(core::member_view{id, e.values}, q.now_ms, q.stale_after_ms))
              continue;
            if (v->members.size() == q.page_size) {
              v->next_after = v->members.back().first;
              break;
            }
            v->members.emplace_back(id, e);
          }
          for (const auto& [id, e] : members)
            v->total += e.depth <= q.depth ? 1 : 0;
        }
        done(aggregate_reply{query_error::none, {}, std::move(v)});
      },
      [self](desired_atom, const core::desired_update& update) {
        auto& st = self->state;
        desired_reply r;
        auto now = st.config->clock();
        if (update.validate_only) {
          // A dry run: what the update would make of the twin, kept nowhere.
          auto copy = std::make_shared<core::twin>(st.tw);
          r.result = core::apply_desired(*copy, st.asset_id, update, now, st.config->limits);
          r.update.snapshot = std::move(copy);
          return r;
        }
        r.result = core::apply_desired(st.tw, st.asset_id, update, now, st.config->limits);
        if (r.result.status != core::desired_status::applied)
          return r;
        st.changed();
        r.update.asset_id = st.asset_id;
        st.encode_state(r.update.state);
        r.update.snapshot = st.current();
        auto& change = r.update.changes.emplace_back();
        change.asset_id = st.asset_id;
        change.version = st.tw.version;
        change.type = core::change_type::desired;
        change.time_ms = now;
        change.kind = st.tw.kind;
        change.tenant = st.tw.tenant;
        change.desired.assign(st.tw.desired.begin(), st.tw.desired.end());
        change.removed = update.remove;
        return r;
      },
      [self](erase_atom, uint64_t expected_version) {
        auto& st = self->state;
        desired_reply r;
        auto kinds = kinds_of(st);
        if (st.agg || (kinds && kinds->is_aggregate(st.asset_id))) {
          r.result = {core::desired_status::invalid,
                      "\"" + st.asset_id +
                          "\" is an aggregate: it is computed from its members (erase them, "
                          "or delete their relations to it)"};
          return r;
        }
        if (st.tw.empty()) {
          r.result = {core::desired_status::not_found, "twin \"" + st.asset_id + "\" not found"};
          return r;
        }
        if (expected_version != 0 && expected_version != st.tw.version) {
          r.result = {core::desired_status::version_mismatch,
                      "twin is at version " + std::to_string(st.tw.version) +
                          ", request expected version " + std::to_string(expected_version) +
                          ": re-read the twin and retry"};
          return r;
        }
        const auto now = st.config->clock();
        // What the twin was (for the answer, the change and watchers' filters).
        auto was = std::make_shared<core::twin>();
        was->asset_id = st.asset_id;
        was->kind = st.tw.kind;
        was->tenant = st.tw.tenant;
        was->version = st.tw.version;
        was->erased_ms = now;
        auto gone = core::erase_twin(st.tw, now, st.config->history_capacity);
        st.changed();
        auto& u = r.update;
        u.asset_id = st.asset_id;
        st.encode_state(u.state);
        // Every history slot it wrote, deleted (tombstones in the changelog too).
        for (uint32_t slot = 0; slot < gone.history_slots; ++slot)
          u.history.push_back(history_write{st.asset_id, slot, {}});
        auto& change = u.changes.emplace_back();
        change.asset_id = st.asset_id;
        change.version = was->version;
        change.type = core::change_type::erased;
        change.time_ms = now;
        change.kind = was->kind;
        change.tenant = was->tenant;
        // Out of every aggregate it counted in.
        if (kinds && !gone.relations.empty())
          tell_parents(st, *kinds, gone.relations, now, u);
        st.projected.reset();
        u.snapshot = std::move(was);
        return r;
      },
      [self](ack_atom, const std::string& property, uint32_t number) {
        auto& st = self->state;
        ack_reply r;
        r.status =
            core::acknowledge_alert(st.tw, property, number, st.config->clock(), r.update.analysis);
        if (r.status != core::ack_status::acknowledged)
          return r;
        // The twin's state changes (its alert), not its version: nothing
        // it reported or was asked to do changed.
        st.changed();
        r.update.asset_id = st.asset_id;
        r.update.kind = st.tw.kind;
        r.update.tenant = st.tw.tenant;
        st.encode_state(r.update.state);
        r.update.snapshot = st.current();
        return r;
      },
      [self](passivate_atom) {
        self->state.changed();
        self->quit();
      },
  };
}

}  // namespace fleettwin::runtime

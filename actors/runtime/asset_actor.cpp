#include "actors/runtime/asset_actor.hpp"

#include <chrono>

#include "actors/core/codec.hpp"

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

void asset_state::changed() {
  snapshot.reset();
  if (cached) {
    config->cache->erase(asset_id);
    cached = false;
  }
}

namespace {

void record_change(asset_state& st, const core::telemetry& t, int64_t ingest_ms, asset_update& u,
                   std::string& segment) {
  auto& change = u.changes.emplace_back();
  change.asset_id = st.asset_id;
  change.version = st.tw.version;
  change.type = core::change_type::reported;
  change.time_ms = ingest_ms;
  change.kind = st.tw.kind;
  change.tenant = st.tw.tenant;
  change.sequence = t.sequence;
  change.reported.reserve(st.scratch.applied_metrics.size());
  const bool keep_history = st.config->history_capacity > 0;
  for (auto i : st.scratch.applied_metrics) {
    const auto& name = t.metrics[i].first;
    const auto& rp = st.tw.reported.find(name)->second;
    change.reported.emplace_back(name, rp);
    if (keep_history) {
      if (segment.empty())
        core::begin_history_segment(segment);
      core::append_history_sample(segment, name, rp.val, rp.source_time_ms, rp.sequence);
    }
  }
}

}  // namespace

asset_actor::behavior_type asset(asset_actor::stateful_pointer<asset_state> self,
                                 std::string asset_id, core::twin initial,
                                 std::shared_ptr<const asset_config> config) {
  self->state.asset_id = std::move(asset_id);
  self->state.tw = std::move(initial);
  self->state.config = std::move(config);
  return {
      [self](apply_atom, const batch_slice& slice) {
        auto& st = self->state;
        asset_update u;
        u.asset_id = st.asset_id;
        const auto& batch = *slice.batch;
        const bool was_empty = st.tw.empty();
        std::string segment;
        for (auto idx : slice.indexes) {
          const auto& t = batch.records[idx];
          core::apply_telemetry(st.tw, t, batch.ingest_ms, st.config->limits, st.scratch);
          u.stale_samples += st.scratch.stale_samples;
          u.sequence_restarts += st.scratch.sequence_restarted ? 1 : 0;
          switch (st.scratch.status) {
            case core::apply_status::applied:
              ++u.applied;
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
          }
        }
        u.created = was_empty && !st.tw.empty();
        if (!segment.empty()) {
          auto& h = u.history.emplace_back();
          h.asset_id = st.asset_id;
          h.slot = core::history_slot(++st.tw.history_segments, st.config->history_capacity);
          h.segment = std::move(segment);
        }
        // Duplicates and late samples change counters and the sequence window
        // too: persist whenever anything was looked at, so a restart keeps them.
        if (!slice.indexes.empty()) {
          st.changed();
          core::encode_twin(st.tw, u.state);
          if (batch.want_snapshots)
            u.snapshot = st.current();
        }
        return u;
      },
      [self](get_atom, const twin_completion& done) {
        auto& st = self->state;
        if (st.tw.empty())
          done(twin_reply{query_error::not_found, "twin \"" + st.asset_id + "\" not found", {}});
        else
          done(twin_reply{query_error::none, {}, st.current()});
        // Publish only twins somebody reads (the ingest path never copies for it).
        if (st.config->cache && !st.cached && !st.tw.empty()) {
          st.config->cache->put(st.asset_id, st.current());
          st.cached = true;
          if (!st.exit_hook) {
            // However the actor ends, its snapshot must not outlive it.
            self->attach_functor(
                [cache = st.config->cache, id = st.asset_id] { cache->erase(id); });
            st.exit_hook = true;
          }
        }
      },
      [self](desired_atom, const core::desired_update& update) {
        auto& st = self->state;
        desired_reply r;
        auto now = st.config->clock();
        r.result = core::apply_desired(st.tw, st.asset_id, update, now, st.config->limits);
        if (r.result.status != core::desired_status::applied)
          return r;
        st.changed();
        r.update.asset_id = st.asset_id;
        core::encode_twin(st.tw, r.update.state);
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
      [self](passivate_atom) {
        self->state.changed();
        self->quit();
      },
  };
}

}  // namespace fleettwin::runtime

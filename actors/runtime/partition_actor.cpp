#include "actors/runtime/partition_actor.hpp"

#include <algorithm>
#include <map>
#include <unordered_set>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/core/contributions.hpp"
#include "actors/core/partitioning.hpp"

namespace fleettwin::runtime {

namespace {

using self_ptr = partition_actor::stateful_pointer<partition_state>;

void process_next(self_ptr self);
void settle(self_ptr self);
void abandon(self_ptr self, const std::string& why);

int64_t now_ms(self_ptr self) {
  return self->state.cfg.assets->clock();
}

constexpr size_t contrib_slot = follower_slot(input::contributions);

/// Contributions applied before a restart are still being replayed into
/// the members: nothing but contributions may run meanwhile (a relation
/// change would send parents members the replay has not restored yet).
bool replaying(const partition_state& st) {
  return st.replay_until >= 0;
}

/// Items this actor handed to Kafka and that are not reported yet must not
/// commit once it gives up: the partition's next owner (maybe on this node)
/// starts from what Kafka committed. The sink fences them all, also the one
/// item in flight of a partition that was lost while its transaction waited
/// for an absent broker (that transaction would otherwise commit after the
/// next owner's restore, with the consumer's next generation).
void fence_outputs(self_ptr self) {
  auto& st = self->state;
  if (st.cfg.sink)
    st.cfg.sink->abandon(st.cfg.partition, self->id());
}

void fail(self_ptr self, std::string why, bool retryable = false) {
  auto& st = self->state;
  if (st.failed)
    return;
  st.failed = true;
  st.queue.clear();
  fence_outputs(self);
  if (st.cfg.on_fatal)
    st.cfg.on_fatal("partition " + std::to_string(st.cfg.partition) + ": " + why, retryable);
  // Late replies for the abandoned items are ignored (the partition failed).
  abandon(self, "has a change that will not commit here: the partition is failing over");
}

/// Nothing is applying and nothing waits for Kafka or the store.
bool idle(const partition_state& st) {
  return !st.applying && st.pipeline.empty();
}

/// The oldest item in flight (nullptr: none).
const partition_state::inflight* oldest(const partition_state& st) {
  if (!st.pipeline.empty())
    return &st.pipeline.front();
  return st.applying ? &*st.applying : nullptr;
}

/// What the partition waits for, in words: the item applying, the items
/// waiting for Kafka, a store commit, queued work.
std::string describe_wait(const partition_state& st) {
  const auto now = std::chrono::steady_clock::now();
  auto ms = [&](std::chrono::steady_clock::time_point t) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now - t).count());
  };
  std::string out;
  auto part = [&out](const std::string& text) {
    if (!out.empty())
      out += "; ";
    out += text;
  };
  if (st.failed)
    part("failed (its outputs abandoned)");
  if (st.applying)
    part("item " + std::to_string(st.applying->id) + " applying for " + ms(st.applying->started) +
         " ms, " + std::to_string(st.applying->pending) + " replies awaited");
  if (!st.pipeline.empty()) {
    size_t delivered = 0;
    for (const auto& item : st.pipeline)
      delivered += item.delivered ? 1 : 0;
    const auto& front = st.pipeline.front();
    part(std::to_string(st.pipeline.size()) + " items in flight (" + std::to_string(delivered) +
         " committed in Kafka; the oldest, item " + std::to_string(front.id) + ", " +
         (front.delivered ? "waits for its RocksDB write" : "waits for Kafka") + ", started " +
         ms(front.started) + " ms ago)");
  }
  if (st.committing)
    part("a RocksDB commit in flight");
  if (!st.queue.empty())
    part(std::to_string(st.queue.size()) + " work items queued");
  if (replaying(st))
    part("replaying contributions up to offset " + std::to_string(st.replay_until));
  if (!st.stop_waiters.empty())
    part("stopping");
  return out.empty() ? "nothing" : out;
}

/// A held answer of a lookup (see held_read), of a twin or an aggregate.
template <class Reply>
class held_answer final : public held_read {
public:
  explicit held_answer(completion<Reply> done) : done_(std::move(done)) {}

  /// The entity's actor answers into this (from its own thread).
  static completion<Reply> receiver(const std::shared_ptr<held_answer>& h) {
    return completion<Reply>{
        [h](Reply r) { h->arrive(std::move(r)); },
        Reply{
            query_error::unavailable, "the entity's actor stopped before it answered; retry", {}}};
  }

  void release() override {
    std::unique_lock<std::mutex> lock{mutex_};
    if (phase_ != phase::waiting)
      return;
    phase_ = phase::released;
    if (!reply_)
      return;  // handed over on arrival
    auto r = std::move(*reply_);
    reply_.reset();
    lock.unlock();
    done_(std::move(r));
  }

  void expire(std::string why) override {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      if (phase_ != phase::waiting)
        return;
      phase_ = phase::expired;
      reply_.reset();
    }
    done_(Reply{query_error::unavailable, std::move(why), {}});
  }

private:
  enum class phase : uint8_t { waiting, released, expired };

  void arrive(Reply r) {
    std::unique_lock<std::mutex> lock{mutex_};
    if (phase_ == phase::waiting) {
      reply_ = std::move(r);
      return;
    }
    const bool released = phase_ == phase::released;
    lock.unlock();
    if (released)
      done_(std::move(r));
  }

  std::mutex mutex_;
  phase phase_ = phase::waiting;
  std::optional<Reply> reply_;
  completion<Reply> done_;
};

/// Every item up to this id is committed, in Kafka at least.
uint64_t visible_through(const partition_state& st) {
  return std::max(st.completed_through, st.durable_through);
}

/// Hands over the held answers whose item committed (in Kafka: the local
/// write that follows adds nothing a reader could see).
void release_held(partition_state& st) {
  std::vector<std::shared_ptr<held_read>> waiting;
  for (auto& h : st.held)
    if (h->after <= visible_through(st))
      h->release();
    else
      waiting.push_back(std::move(h));
  st.held = std::move(waiting);
}

/// The resident actor of an asset, loading its state when it is not resident.
/// Returns nullopt when the asset does not exist and `create` is false.
void report_active(self_ptr self) {
  auto& st = self->state;
  st.cfg.probe->on_active_twins(st.cfg.partition, st.assets.size());
  st.cfg.probe->on_active_aggregates(st.cfg.partition, st.active_aggregates);
}

/// Asks every resident aggregate to compare its measures with a full
/// recompute (a check of the incremental bookkeeping; mismatches counted).
void check_aggregates(self_ptr self) {
  auto& st = self->state;
  for (const auto& [id, e] : st.assets)
    if (e.aggregate)
      self->request(e.handle, caf::infinite, check_atom::value)
          .then([self](
                    std::string& mismatch) { self->state.cfg.probe->on_aggregate_check(mismatch); },
                [](caf::error&) {});
}

/// Whether a stored aggregate's measures are not its kind's any more.
bool kind_changed(const stored_aggregate& agg, const std::string& id, const asset_config& assets) {
  auto kinds = assets.kinds ? assets.kinds->get() : nullptr;
  const auto* kind = kinds ? kinds->kind_of(id) : nullptr;
  if (!kind)
    return false;
  if (agg.header.kind != kind->def.name || agg.header.kind_revision != kind->def.revision ||
      agg.header.measures.size() != kind->measures.size())
    return true;
  for (size_t i = 0; i < kind->measures.size(); ++i)
    if (agg.header.measures[i].first != kind->measures[i].name)
      return true;
  return false;
}

bool is_aggregate_id(const partition_state& st, std::string_view id) {
  auto kinds = st.cfg.assets->kinds ? st.cfg.assets->kinds->get() : nullptr;
  return kinds && kinds->is_aggregate(id);
}

/// Adds `id` to the entities `r` reads unless it is resident (the caller asks for each
/// id once).
void want(const partition_state& st, load_request_ptr& r, std::string_view id) {
  if (st.assets.find(std::string{id}) != st.assets.end())
    return;
  if (!r) {
    r = std::make_shared<load_request>();
    r->partition = st.cfg.partition;
  }
  auto& e = r->entities.emplace_back();
  e.id = std::string{id};
  e.aggregate = is_aggregate_id(st, id);
}

/// Runs `then` once the entities of `r` that are not resident have been read by the
/// committer, off this actor's thread (one MultiGet); at once when there is nothing to
/// read. While `then` runs, resident() takes their state from what was read. The
/// committer runs a partition's reads and commits in the order they were asked for, so
/// a read sees every commit asked for before it; an entity that became resident while
/// it was read keeps its resident state (it may have changed since).
template <class F>
void preload(self_ptr self, load_request_ptr r, F then) {
  if (!r || r->entities.empty()) {
    then();
    return;
  }
  self->request(self->state.committer, caf::infinite, load_atom::value, std::move(r))
      .then(
          [self, then](load_request_ptr& done) mutable {
            auto& st = self->state;
            for (auto& e : done->entities)
              if (st.assets.find(e.id) == st.assets.end())
                st.preloaded.emplace(e.id, &e);
            then();
            st.preloaded.clear();
          },
          [self](caf::error& e) { fail(self, "reading twins failed: " + to_string(e)); });
}

/// `item` is the work item that uses the entity (0: a lookup).
std::optional<asset_actor> resident(self_ptr self, const std::string& asset_id, uint64_t item,
                                    bool create, std::string& error) {
  auto& st = self->state;
  auto now = now_ms(self);
  if (auto it = st.assets.find(asset_id); it != st.assets.end()) {
    it->second.last_used_ms = now;
    it->second.last_item = std::max(it->second.last_item, item);
    return it->second.handle;
  }
  core::twin tw;
  std::optional<stored_aggregate> agg;
  bool is_aggregate = false;
  load_status twin_status = load_status::missing;
  if (auto p = st.preloaded.find(asset_id); p != st.preloaded.end()) {
    // Read by the committer (preload): no store access on this thread.
    auto& e = *p->second;
    if (e.twin_status == load_status::failed || e.aggregate_status == load_status::failed) {
      error = e.error;
      return std::nullopt;
    }
    twin_status = e.twin_status;
    tw = std::move(e.twin);
    is_aggregate = e.aggregate;
    if (e.aggregate_status == load_status::found)
      agg = std::move(e.stored);
    st.preloaded.erase(p);
  } else {
    ++st.synchronous_loads;
    twin_status = st.cfg.store->load_twin(st.cfg.partition, asset_id, tw, error);
    if (twin_status == load_status::failed)
      return std::nullopt;
    if (is_aggregate_id(st, asset_id)) {
      is_aggregate = true;
      stored_aggregate stored;
      switch (st.cfg.store->load_aggregate(st.cfg.partition, asset_id, stored, error)) {
        case load_status::failed:
          return std::nullopt;
        case load_status::found:
          agg = std::move(stored);
          break;
        case load_status::missing:
          break;
      }
    }
  }
  if (twin_status == load_status::missing && !agg && !create)
    return std::nullopt;
  // A header stored before its kind changed shows other measures: the
  // aggregate is advanced (recomputed) on the next tick, like a timed one.
  const bool stale_header = agg && kind_changed(*agg, asset_id, *st.cfg.assets);
  if (stale_header && !st.advance_queued) {
    st.advance_queued = true;
    st.queue.emplace_back(advance_work{});
  }
  auto handle = self->spawn(asset, asset_id, std::move(tw), st.cfg.assets, std::move(agg));
  st.assets.emplace(asset_id,
                    partition_state::entry{handle, now, item, stale_header, is_aggregate});
  st.cfg.probe->on_active_twins(st.cfg.partition, st.assets.size());
  if (is_aggregate) {
    ++st.active_aggregates;
    st.cfg.probe->on_active_aggregates(st.cfg.partition, st.active_aggregates);
  }
  return handle;
}

/// Makes sure held lookups and queued updates are answered within
/// max_read_wait even when the oldest item in flight does not commit
/// (broker down).
void arm_expiry(self_ptr self) {
  auto& st = self->state;
  const auto* item = oldest(st);
  if (!item || st.expiry_armed_for == item->id)
    return;
  st.expiry_armed_for = item->id;
  self->delayed_send(self, st.cfg.max_read_wait, expire_atom::value, item->id);
}

/// The item in flight whose commit a read of `id` waits for (0: none):
/// exactly-once reads never see state that may still roll back.
uint64_t awaited(const partition_state& st, const std::string& id) {
  if (!st.cfg.read_committed)
    return 0;
  auto it = st.assets.find(id);
  return it != st.assets.end() && it->second.last_item > visible_through(st) ? it->second.last_item
                                                                             : 0;
}

void publish_gauges(self_ptr self) {
  auto& st = self->state;
  if (!st.cfg.gauges)
    return;
  st.cfg.gauges->next_offset = st.next_offset;
  st.cfg.gauges->active_twins = st.assets.size();
  st.cfg.gauges->records_applied = st.records_applied;
}

/// Answers a lookup from the twin's actor (loading it if needed); a state
/// not committed yet is asked for now and handed over at its commit.
void lookup(self_ptr self, std::string& asset_id, twin_completion& done) {
  auto& st = self->state;
  if (st.preloaded.empty()) {
    load_request_ptr r;
    want(st, r, asset_id);
    if (r) {
      preload(self, std::move(r),
              [self, asset_id, done]() mutable { lookup(self, asset_id, done); });
      return;
    }
  }
  const auto wait = awaited(st, asset_id);
  std::string error;
  auto handle = resident(self, asset_id, 0, false, error);
  if (handle && wait > 0) {
    auto h = std::make_shared<held_answer<twin_reply>>(std::move(done));
    h->after = wait;
    h->id = asset_id;
    st.held.push_back(h);
    self->send(*handle, get_atom::value, held_answer<twin_reply>::receiver(h), false);
    arm_expiry(self);
  } else if (handle)
    self->send(*handle, get_atom::value, std::move(done));
  else if (error.empty())
    done(twin_reply{query_error::not_found, "twin \"" + asset_id + "\" not found", {}});
  else
    done(twin_reply{query_error::internal, error, {}});
}

/// Answers a lookup of an aggregate from its actor (loading it if needed).
void lookup_aggregate(self_ptr self, std::string& id, aggregate_query& q,
                      aggregate_completion& done) {
  auto& st = self->state;
  if (st.preloaded.empty()) {
    load_request_ptr r;
    want(st, r, id);
    if (r) {
      preload(self, std::move(r),
              [self, id, q, done]() mutable { lookup_aggregate(self, id, q, done); });
      return;
    }
  }
  const auto wait = awaited(st, id);
  std::string error;
  auto handle = resident(self, id, 0, false, error);
  if (handle && wait > 0) {
    auto h = std::make_shared<held_answer<aggregate_reply>>(std::move(done));
    h->after = wait;
    h->id = id;
    h->aggregate = true;
    st.held.push_back(h);
    self->send(*handle, get_atom::value, std::move(q), held_answer<aggregate_reply>::receiver(h));
    arm_expiry(self);
  } else if (handle)
    self->send(*handle, get_atom::value, std::move(q), std::move(done));
  else if (error.empty())
    done(aggregate_reply{
        query_error::not_found, "aggregate \"" + id + "\" not found: nothing has joined it", {}});
  else
    done(aggregate_reply{query_error::internal, error, {}});
}

/// After an item ended or was abandoned: a last checkpoint when stopping,
/// the next item, and the stop itself once nothing is left.
void settle(self_ptr self) {
  auto& st = self->state;
  if (!st.stop_waiters.empty() && !st.failed && replaying(st)) {
    // Stopping before the replay ended: what is queued was not committed and
    // the next owner consumes it again; the stored state stays as it is.
    st.queue.clear();
  }
  if (!st.stop_waiters.empty() && !st.failed && idle(st) && st.queue.empty() &&
      !st.unwritten.empty() && !st.flush_queued && !replaying(st)) {
    // A last checkpoint: the next owner then has nothing to replay.
    st.flush_queued = true;
    st.queue.emplace_back(flush_work{});
  }
  if (!st.failed)
    process_next(self);
  if (idle(st) && st.queue.empty() && !st.stop_waiters.empty() && !st.committing) {
    for (auto& [id, e] : st.assets)
      self->send(e.handle, passivate_atom::value);
    st.cfg.probe->on_passivated(st.assets.size());
    st.assets.clear();
    st.active_aggregates = 0;
    report_active(self);
    publish_gauges(self);
    auto waiters = std::move(st.stop_waiters);
    self->quit();
    for (auto& w : waiters)
      w();
  }
}

/// Drops every item in flight (nothing of them reaches the store; late
/// replies and deliveries find no item and are ignored) and answers the
/// held lookups UNAVAILABLE.
void abandon(self_ptr self, const std::string& why) {
  auto& st = self->state;
  st.applying.reset();
  st.pipeline.clear();
  // A store commit in flight is left to finish (the actor stops after it).
  auto held = std::move(st.held);
  st.held.clear();
  for (auto& h : held)
    h->expire(h->subject() + " " + why + "; retry");
  settle(self);
}

/// Queues a checkpoint of the aggregates' unwritten member records once the
/// oldest has waited member_checkpoint_interval (first in the queue).
void schedule_flush(self_ptr self) {
  auto& st = self->state;
  if (st.unwritten.empty() || st.flush_queued || st.failed || replaying(st) ||
      now_ms(self) - st.unwritten_since_ms < st.cfg.member_checkpoint_interval.count())
    return;
  st.flush_queued = true;
  st.queue.emplace_front(flush_work{});
}

/// The contributions offset this item commits: where the stored members
/// stand (behind what was applied while aggregates hold unwritten member
/// records), with the next contribution not applied yet beside it.
void hold_contributions(partition_state& st, partition_state::inflight& item) {
  auto& o = item.commit.input_offsets[contrib_slot];
  const int64_t real = item.contributions_next.value_or(st.applied_input_offsets[contrib_slot]);
  if (real < 0 || (!st.cfg.assets->checkpoint_members && !replaying(st)))
    return;
  const int64_t applied = std::max(real, st.replay_until);
  const int64_t cover = st.unwritten.empty() ? real : std::min(st.members_cover, real);
  if (cover < 0)
    return;  // nothing consumed before: unknown (cannot happen with members unwritten)
  o = cover;
  item.commit.contributions_applied = applied;
}

/// The item committed: notify, acknowledge, answer.
void complete(self_ptr self, partition_state::inflight& item) {
  auto& st = self->state;
  st.completed_through = item.id;
  if (!item.contributions.empty() || !item.aggregate_changes.empty()) {
    st.cfg.probe->on_aggregate_outputs(item.contributions.size(), item.aggregate_changes.size());
    // Latency is measured on the wall clock: ingest times come from other
    // nodes' clocks too.
    const auto now = asset_config::system_clock_ms();
    for (auto [origin, hops] : item.aggregate_origins)
      if (origin > 0 && hops > 0)
        st.cfg.probe->on_aggregate_latency(hops, std::max<int64_t>(0, now - origin) / 1000.0);
  }
  if (st.cfg.listener && !item.changes.empty())
    st.cfg.listener->on_changes(item.changes, item.snapshots);
  if (!item.raws.empty()) {
    size_t batches[1 + follower_input_count] = {};
    for (const auto& raw : item.raws)
      ++batches[static_cast<size_t>(raw->source)];
    if (item.commit.next_offset && batches[0] > 0)
      st.next_offset = *item.commit.next_offset;
    for (auto in : follower_inputs)
      if (const auto& o = in == input::contributions ? item.contributions_next
                                                     : item.commit.input_offsets[follower_slot(in)])
        st.next_input_offsets[follower_slot(in)] = *o;
    if (replaying(st) && st.next_input_offsets[contrib_slot] >= st.replay_until)
      st.replay_until = -1;
    st.records_applied += item.applied;
    if (st.cfg.on_committed) {
      const auto changelog = item.commit.changelog_offset;
      if (batches[0] > 0)
        st.cfg.on_committed(st.cfg.partition, input::telemetry, st.next_offset, batches[0],
                            changelog);
      for (auto in : follower_inputs)
        if (auto n = batches[static_cast<size_t>(in)]; n > 0)
          st.cfg.on_committed(st.cfg.partition, in, st.next_input_offsets[follower_slot(in)], n,
                              changelog);
    }
  }
  for (auto& w : item.writes)
    if (w.answer)
      w.work.done(std::move(*w.answer));
}

/// Every item up to `last` committed: complete them in order, hand over
/// the answers they held, and go on.
void complete_through(self_ptr self, uint64_t last) {
  auto& st = self->state;
  while (!st.pipeline.empty() && st.pipeline.front().id <= last) {
    complete(self, st.pipeline.front());
    st.pipeline.pop_front();
  }
  if (st.unwritten.empty())
    st.members_cover = st.applied_input_offsets[contrib_slot];
  release_held(st);
  publish_gauges(self);
  schedule_flush(self);
  if (!st.held.empty() || std::any_of(st.queue.begin(), st.queue.end(), [](const work_item& w) {
        return std::holds_alternative<desired_work>(w);
      }))
    arm_expiry(self);
}

bool nothing_to_store(const commit_batch& c) {
  return c.twins.empty() && !c.next_offset && c.aggregates.empty() && c.members.empty() &&
         !any_offset(c.input_offsets);
}

/// Appends a later item's commit to `into` (one RocksDB write for both):
/// later values of the same key win, offsets move forward.
void merge_commit(commit_batch& into, commit_batch& from) {
  auto append = [](auto& to, auto& more) {
    if (to.empty())
      to = std::move(more);
    else
      std::move(more.begin(), more.end(), std::back_inserter(to));
    more.clear();
  };
  append(into.twins, from.twins);
  append(into.history, from.history);
  append(into.aggregates, from.aggregates);
  append(into.members, from.members);
  into.created_twins += from.created_twins;
  from.created_twins = 0;
  if (from.next_offset)
    into.next_offset = from.next_offset;
  if (from.changelog_offset)
    into.changelog_offset = from.changelog_offset;
  for (size_t slot = 0; slot < follower_input_count; ++slot)
    if (from.input_offsets[slot]) {
      into.input_offsets[slot] = from.input_offsets[slot];
      if (slot == contrib_slot)
        into.contributions_applied = from.contributions_applied;
    }
}

/// The items at the front of the pipeline that Kafka made durable are
/// visible to reads from now on, before their local commit.
void advance_durable(partition_state& st) {
  for (const auto& item : st.pipeline) {
    if (!item.delivered)
      break;
    st.durable_through = std::max(st.durable_through, item.id);
  }
  release_held(st);
}

/// Writes the items at the front of the pipeline that Kafka made durable,
/// all in one RocksDB commit (group commit), so that the store never runs
/// ahead of Kafka and follows the items' order.
void try_commit(self_ptr self) {
  auto& st = self->state;
  if (st.committing || st.failed)
    return;
  size_t n = 0;
  while (n < st.pipeline.size() && st.pipeline[n].delivered)
    ++n;
  if (n == 0)
    return;
  const uint64_t last = st.pipeline[n - 1].id;
  commit_batch batch;
  batch.partition = st.cfg.partition;
  for (size_t i = 0; i < n; ++i)
    if (!nothing_to_store(st.pipeline[i].commit))
      merge_commit(batch, st.pipeline[i].commit);
  if (nothing_to_store(batch)) {
    complete_through(self, last);
    settle(self);
    return;
  }
  st.committing = true;
  const auto started = std::chrono::steady_clock::now();
  const auto twins = batch.twins.size();
  const auto history = batch.history.size();
  self->request(st.committer, caf::infinite, commit_atom::value, std::move(batch))
      .then(
          [self, last, started, twins, history](std::string& err) {
            auto& st = self->state;
            if (st.failed) {
              // Written or not, the items were abandoned; a stop waits for it.
              st.committing = false;
              settle(self);
              return;
            }
            st.committing = false;
            if (!err.empty()) {
              st.cfg.probe->on_commit_failed();
              for (auto& item : st.pipeline)
                if (item.id <= last)
                  for (auto& w : item.writes)
                    w.work.done(twin_reply{query_error::internal, "commit failed: " + err, {}});
              fail(self, "commit failed: " + err);
              return;
            }
            st.cfg.probe->on_commit(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
                twins, history);
            complete_through(self, last);
            try_commit(self);
            settle(self);
          },
          [self](caf::error& e) {
            self->state.committing = false;
            fail(self, "committer failed: " + to_string(e));
          });
}

/// The applying item is done: into the pipeline behind the items before
/// it (`delivered`: nothing to wait for from Kafka), and the next may start.
void to_pipeline(self_ptr self, bool delivered) {
  auto& st = self->state;
  auto& item = *st.applying;
  item.delivered = delivered;
  st.pipeline.push_back(std::move(item));
  st.applying.reset();
  advance_durable(st);
  try_commit(self);
  settle(self);
}

/// The applying item ends with nothing to publish or store (answered
/// already, or it changed nothing); it still completes in order.
void end_item(self_ptr self) {
  auto& st = self->state;
  auto& item = *st.applying;
  item.writes.clear();  // answered
  item.commit = commit_batch{};
  item.raws.clear();
  if (st.pipeline.empty()) {
    st.completed_through = item.id;
    st.applying.reset();
    release_held(st);
    settle(self);
    return;
  }
  to_pipeline(self, true);
}

/// Every asset replied: hand the outputs to Kafka, then commit locally once
/// they are durable there (acknowledged, or committed in a transaction with
/// the input offset), so the local store never runs ahead of Kafka.
void publish(self_ptr self) {
  auto& st = self->state;
  auto& item = *st.applying;
  if (item.raws.empty() && item.writes.empty() && item.changes.empty() &&
      item.contributions.empty() && item.commit.aggregates.empty() && item.commit.members.empty()) {
    end_item(self);  // an advance that changed nothing
    return;
  }
  hold_contributions(st, item);
  // An item without input (a desired update) still carries the partition's
  // offset: a transaction then also fences a zombie owner of the partition.
  if (!item.commit.next_offset && st.applied_offset >= 0)
    item.commit.next_offset = st.applied_offset;
  if (!st.cfg.sink) {
    to_pipeline(self, true);
    return;
  }
  core::coalesce(item.contributions);
  for (auto& w : item.writes)
    if (w.work.done.audit && w.answer && w.answer->error == query_error::none) {
      // The write succeeded: audited in the transaction of its change.
      auto& e = item.audit.emplace_back(*w.work.done.audit);
      e.time_ms = now_ms(self);
      w.answer->audited = true;
    }
  item.published = std::chrono::steady_clock::now();
  auto handle = caf::actor_cast<partition_actor>(self);
  item_outputs out{st.cfg.partition,
                   item.changes,
                   item.rejects,
                   item.commit,
                   item.contributions,
                   item.aggregate_changes,
                   &item.aggregate_origins,
                   &item.alerts,
                   &item.audit};
  out.incarnation = self->id();
  st.cfg.sink->publish(out, [handle, id = item.id](publish_result r) {
    caf::anon_send(handle, delivered_atom::value, id, std::move(r));
  });
  to_pipeline(self, false);
}

void reject(partition_state::inflight& item, ingest_probe& probe, const raw_record& r,
            std::string code, std::string reason, input source = input::telemetry) {
  probe.on_rejected(code);
  item.rejects.push_back(rejected_record{r, std::move(reason), std::move(code), source});
}

void collect(self_ptr self, uint64_t id, asset_update& u) {
  auto& st = self->state;
  if (!st.applying || st.applying->id != id)
    return;
  auto& item = *st.applying;
  if (!u.state.empty())
    item.commit.twins.emplace_back(u.asset_id, std::move(u.state));
  item.commit.created_twins += u.created ? 1 : 0;
  std::move(u.history.begin(), u.history.end(), std::back_inserter(item.commit.history));
  if (u.snapshot)
    item.snapshots.resize(item.changes.size(), nullptr);
  for (auto& c : u.changes) {
    item.changes.push_back(std::move(c));
    if (u.snapshot)
      item.snapshots.push_back(u.snapshot);
  }
  if (!item.snapshots.empty())
    item.snapshots.resize(item.changes.size(), nullptr);
  item.applied += u.applied;
  std::move(u.contributions.begin(), u.contributions.end(), std::back_inserter(item.contributions));
  if (!u.aggregate_state.empty())
    item.commit.aggregates.emplace_back(u.asset_id, std::move(u.aggregate_state));
  std::move(u.members.begin(), u.members.end(), std::back_inserter(item.commit.members));
  if (u.aggregate_change) {
    item.aggregate_changes.push_back(std::move(*u.aggregate_change));
    item.aggregate_origins.emplace_back(u.origin_ms, u.hops);
  }
  if (auto it = st.assets.find(u.asset_id); it != st.assets.end())
    it->second.timed = u.timed;
  if (u.unwritten_members > 0) {
    if (st.unwritten.empty()) {
      // Stored members cover the contributions before this item's.
      st.members_cover = item.contributions_first >= 0 ? item.contributions_first
                                                       : st.applied_input_offsets[contrib_slot];
      st.unwritten_since_ms = now_ms(self);
    }
    st.unwritten.insert(u.asset_id);
  }
  if (u.deltas_applied || u.misdirected || u.aggregate_counts.cycles)
    st.cfg.probe->on_contributions(u.deltas_applied, u.misdirected, u.aggregate_counts);
  for (auto& [record, why] : u.relation_rejects)
    reject(item, *st.cfg.probe, *item.relation_records.at(record), "relation_refused",
           std::move(why), input::relations);
  for (auto& [record, why] : u.telemetry_rejects)
    reject(item, *st.cfg.probe, *st.decoded_from.at(record), "tenant_conflict", std::move(why));
  if (u.applied)
    st.cfg.probe->on_applied(u.applied);
  if (u.duplicates)
    st.cfg.probe->on_duplicates(u.duplicates);
  if (u.sequence_restarts)
    st.cfg.probe->on_sequence_restarts(u.sequence_restarts);
  if (u.out_of_order + u.too_old + u.stale_samples)
    st.cfg.probe->on_out_of_order(u.out_of_order + u.too_old, u.stale_samples);
  if (u.unchanged)
    st.cfg.probe->on_unchanged(u.unchanged);
  for (auto& a : u.analysis.alerts)
    item.alerts.push_back(alert_record{u.asset_id, u.kind, u.tenant, std::move(a)});
  if (!u.analysis.alerts.empty() ||
      std::any_of(u.analysis.anomalies.begin(), u.analysis.anomalies.end(),
                  [](uint32_t n) { return n > 0; }) ||
      std::any_of(u.analysis.quality.begin(), u.analysis.quality.end(),
                  [](uint32_t n) { return n > 0; }) ||
      u.analysis.scored > 0)
    st.cfg.probe->on_analysis(u.analysis);
  if (--item.pending == 0)
    publish(self);
}

/// Decodes the item's contribution records, grouped by the aggregate they
/// go to (each record's key); invalid ones are rejected (dead letters).
/// Records below replay_until go to `replayed` instead (applied before a
/// restart: members only).
std::map<std::string, contribution_slice> decode_contributions(
    self_ptr self, partition_state::inflight& item,
    std::map<std::string, contribution_slice>& replayed) {
  auto& st = self->state;
  std::map<std::string, contribution_slice> out;
  std::shared_ptr<std::vector<core::contribution>> items;
  for (const auto& raw : item.raws) {
    if (raw->source != input::contributions)
      continue;
    if (!items)
      items = std::make_shared<std::vector<core::contribution>>();
    for (const auto& r : raw->records) {
      if (st.cfg.partition_count > 0) {
        auto expected = core::kafka_partition(r.key, st.cfg.partition_count);
        if (expected != st.cfg.partition) {
          reject(item, *st.cfg.probe, r, "wrong_partition",
                 "contributions for \"" + std::string{r.key} + "\" belong to partition " +
                     std::to_string(expected),
                 input::contributions);
          continue;
        }
      }
      const size_t first = items->size();
      if (auto err = core::decode_contributions(r.payload, r.key, *items)) {
        items->resize(first);
        reject(item, *st.cfg.probe, r, "malformed_contributions", std::move(*err),
               input::contributions);
        continue;
      }
      const bool replay = r.offset < st.replay_until;
      auto& slice = (replay ? replayed : out)[std::string{r.key}];
      slice.replay = replay;
      for (size_t i = first; i < items->size(); ++i)
        slice.indexes.push_back(static_cast<uint32_t>(i));
    }
  }
  const auto now = now_ms(self);
  for (auto* m : {&out, &replayed})
    for (auto& [id, slice] : *m) {
      slice.items = items;
      slice.now_ms = now;
    }
  return out;
}

/// Decodes the item's relation records, grouped by child (each record's
/// key) in offset order; invalid ones are rejected (dead letters).
std::map<std::string, relation_slice> decode_relations(self_ptr self,
                                                       partition_state::inflight& item) {
  auto& st = self->state;
  std::map<std::string, relation_slice> out;
  std::string child;
  for (const auto& raw : item.raws) {
    if (raw->source != input::relations)
      continue;
    for (const auto& r : raw->records) {
      if (st.cfg.partition_count > 0) {
        auto expected = core::kafka_partition(r.key, st.cfg.partition_count);
        if (expected != st.cfg.partition) {
          reject(item, *st.cfg.probe, r, "wrong_partition",
                 "relations of \"" + std::string{r.key} + "\" belong to partition " +
                     std::to_string(expected) +
                     ": produce with Kafka's default murmur2 partitioner",
                 input::relations);
          continue;
        }
      }
      core::relation_update update;
      if (auto err = st.decoder->decode_relations(r, child, update)) {
        reject(item, *st.cfg.probe, r, std::move(err->first), std::move(err->second),
               input::relations);
        continue;
      }
      const auto index = static_cast<uint32_t>(item.relation_records.size());
      item.relation_records.push_back(&r);
      out[child].updates.emplace_back(index, std::move(update));
    }
  }
  const auto now = now_ms(self);
  for (auto& [id, slice] : out)
    slice.now_ms = now;
  return out;
}

/// Hands each child its relation updates (after its telemetry); false when
/// the partition failed.
bool send_relations(self_ptr self, std::map<std::string, relation_slice>& groups) {
  auto& st = self->state;
  const auto id = st.applying->id;
  for (auto& [child, slice] : groups) {
    std::string error;
    auto handle = resident(self, child, id, true, error);
    if (!handle) {
      fail(self, "cannot load \"" + child + "\": " + error);
      return false;
    }
    self->request(*handle, caf::infinite, relate_atom::value, std::move(slice))
        .then([self, id](asset_update& u) { collect(self, id, u); },
              [self](caf::error& e) { fail(self, "asset actor failed: " + to_string(e)); });
  }
  return true;
}

/// Hands each aggregate its contributions; false when the partition failed.
bool send_contributions(self_ptr self, std::map<std::string, contribution_slice>& groups) {
  auto& st = self->state;
  const auto id = st.applying->id;
  for (auto& [aggregate_id, slice] : groups) {
    std::string error;
    auto handle = resident(self, aggregate_id, id, true, error);
    if (!handle) {
      fail(self, "cannot load aggregate \"" + aggregate_id + "\": " + error);
      return false;
    }
    self->request(*handle, caf::infinite, contribute_atom::value, std::move(slice))
        .then([self, id](asset_update& u) { collect(self, id, u); },
              [self](caf::error& e) { fail(self, "aggregate actor failed: " + to_string(e)); });
  }
  return true;
}

void dispatch_batch(self_ptr self, const std::shared_ptr<decoded_batch>& decoded,
                    std::map<std::string, contribution_slice>& replayed,
                    std::map<std::string, contribution_slice>& contributions,
                    std::map<std::string, relation_slice>& relations);

void start_batch(self_ptr self) {
  auto& st = self->state;
  auto& item = *st.applying;
  size_t total = 0;
  for (const auto& raw : item.raws) {
    if (raw->source != input::telemetry) {
      item.commit.input_offsets[follower_slot(raw->source)] = raw->next_offset;
      st.applied_input_offsets[follower_slot(raw->source)] = raw->next_offset;
      if (raw->source == input::contributions) {
        item.contributions_next = raw->next_offset;
        if (item.contributions_first < 0 && !raw->records.empty())
          item.contributions_first = raw->records.front().offset;
      }
      continue;
    }
    item.commit.next_offset = raw->next_offset;
    st.applied_offset = raw->next_offset;
    st.cfg.probe->on_batch(raw->records.size(), raw->bytes);
    total += raw->records.size();
  }
  // Reuse the previous item's records (and their string and vector capacity)
  // once no asset actor holds them any more: decoding then allocates nothing.
  // Items beyond spare_records get a one-off batch, so a partition keeps at
  // most that many decoded records between items.
  constexpr size_t spare_records = 16'384;
  std::shared_ptr<decoded_batch> decoded;
  if (total > spare_records) {
    decoded = std::make_shared<decoded_batch>();
  } else {
    if (!st.spare || st.spare.use_count() > 1)
      st.spare = std::make_shared<decoded_batch>();
    decoded = st.spare;
  }
  decoded->ingest_ms = now_ms(self);
  decoded->want_snapshots = st.cfg.listener && st.cfg.listener->wants_snapshots();
  if (decoded->records.size() < total)
    decoded->records.resize(total);
  if (st.decoded_from.size() < total)
    st.decoded_from.resize(total);
  st.groups.clear();
  size_t valid = 0;
  const auto& limits = st.cfg.assets->limits;
  for (const auto& raw : item.raws)
    for (const auto& r : raw->records) {
      if (raw->source != input::telemetry)
        continue;
      auto& t = decoded->records[valid];
      if (auto err = st.decoder->decode(r, t)) {
        reject(item, *st.cfg.probe, r, std::move(err->first), std::move(err->second));
        continue;
      }
      if (auto err = core::validate(t, limits)) {
        reject(item, *st.cfg.probe, r, "invalid", std::move(*err));
        continue;
      }
      if (st.cfg.partition_count > 0) {
        auto expected = core::kafka_partition(t.asset_id, st.cfg.partition_count);
        if (expected != st.cfg.partition) {
          reject(item, *st.cfg.probe, r, "wrong_partition",
                 "key \"" + t.asset_id + "\" belongs to partition " + std::to_string(expected) +
                     " but arrived on partition " + std::to_string(st.cfg.partition) +
                     ": produce with Kafka's default murmur2 partitioner");
          continue;
        }
      }
      st.decoded_from[valid] = &r;
      ++valid;
    }
  // Records past `valid` are scratch: only the grouped indexes are read.
  for (uint32_t i = 0; i < valid; ++i)
    st.groups[decoded->records[i].asset_id].push_back(i);
  // At most one change per valid record: the item's changes never regrow
  // (each regrowth moved every change so far into fresh pages).
  item.changes.reserve(item.changes.size() + valid);
  std::map<std::string, contribution_slice> replayed;
  auto contributions = decode_contributions(self, item, replayed);
  auto relations = decode_relations(self, item);
  item.pending = st.groups.size() + replayed.size() + contributions.size() + relations.size();
  if (item.pending == 0) {
    publish(self);
    return;
  }
  // Entities not resident are read by the committer first (one MultiGet), not here.
  load_request_ptr r;
  {
    std::unordered_set<std::string_view> asked;  // the entities not resident
    auto ask = [&](std::string_view id) {
      if (st.assets.find(std::string{id}) == st.assets.end() && asked.insert(id).second)
        want(st, r, id);
    };
    for (const auto& [id, slice] : replayed)
      ask(id);
    for (const auto& [id, slice] : contributions)
      ask(id);
    for (const auto& [id, indexes] : st.groups)
      ask(id);
    for (const auto& [id, slice] : relations)
      ask(id);
  }
  if (!r) {
    dispatch_batch(self, decoded, replayed, contributions, relations);
    return;
  }
  struct parts {
    std::shared_ptr<decoded_batch> decoded;
    std::map<std::string, contribution_slice> replayed, contributions;
    std::map<std::string, relation_slice> relations;
  };
  auto held = std::make_shared<parts>(
      parts{decoded, std::move(replayed), std::move(contributions), std::move(relations)});
  preload(self, std::move(r), [self, id = item.id, held] {
    auto& st = self->state;
    if (st.failed || !st.applying || st.applying->id != id)
      return;
    dispatch_batch(self, held->decoded, held->replayed, held->contributions, held->relations);
  });
}

/// Hands the decoded item to its entities (every one resident or read by now).
void dispatch_batch(self_ptr self, const std::shared_ptr<decoded_batch>& decoded,
                    std::map<std::string, contribution_slice>& replayed,
                    std::map<std::string, contribution_slice>& contributions,
                    std::map<std::string, relation_slice>& relations) {
  auto& st = self->state;
  // Replayed records come first: each aggregate gets them before newer ones.
  if (!send_contributions(self, replayed) || !send_contributions(self, contributions))
    return;
  std::shared_ptr<const decoded_batch> shared = decoded;
  const auto id = st.applying->id;
  for (auto& [asset_id, indexes] : st.groups) {
    std::string error;
    auto handle = resident(self, std::string{asset_id}, id, true, error);
    if (!handle) {
      fail(self, "cannot load twin \"" + std::string{asset_id} + "\": " + error);
      return;
    }
    self->request(*handle, caf::infinite, apply_atom::value,
                  batch_slice{shared, std::move(indexes)})
        .then([self, id](asset_update& u) { collect(self, id, u); },
              [self](caf::error& e) { fail(self, "asset actor failed: " + to_string(e)); });
  }
  send_relations(self, relations);
}

/// A change of an entity's relations through the API: refused changes are
/// answered at once, accepted ones after their commit.
void start_relations(self_ptr self, desired_work work) {
  auto& st = self->state;
  std::string error;
  // Relations may name a twin that has reported nothing yet.
  auto handle = resident(self, work.asset_id, st.applying->id, true, error);
  if (!handle) {
    work.done(twin_reply{query_error::internal, error, {}});
    end_item(self);
    return;
  }
  auto id = st.applying->id;
  relation_slice slice;
  slice.updates.emplace_back(0, std::move(*work.relations));
  slice.now_ms = now_ms(self);
  slice.want_snapshot = true;
  st.applying->writes.push_back({std::move(work), nullptr});
  self->request(*handle, caf::infinite, relate_atom::value, std::move(slice))
      .then(
          [self, id](asset_update& u) {
            auto& st = self->state;
            if (!st.applying || st.applying->id != id)
              return;
            auto& item = *st.applying;
            auto& w = item.writes.front();
            if (!u.relation_rejects.empty()) {
              w.work.done(twin_reply{
                  query_error::invalid, std::move(u.relation_rejects.front().second), {}});
              end_item(self);
              return;
            }
            if (u.state.empty()) {
              // Nothing changed: the entity as it is.
              w.work.done(twin_reply{query_error::none, {}, u.snapshot});
              end_item(self);
              return;
            }
            w.answer = std::make_shared<twin_reply>(twin_reply{query_error::none, {}, u.snapshot});
            item.pending = 1;
            collect(self, id, u);
          },
          [self](caf::error& e) { fail(self, "asset actor failed: " + to_string(e)); });
}

/// The actor of the twin a desired update or acknowledgement is for; when
/// there is no such twin (or it cannot be loaded) the call is answered and
/// the item finished.
std::optional<asset_actor> existing_twin(self_ptr self, desired_work& work) {
  std::string error;
  auto handle = resident(self, work.asset_id, self->state.applying->id, false, error);
  if (!handle) {
    if (error.empty())
      work.done(twin_reply{query_error::not_found, "twin \"" + work.asset_id + "\" not found", {}});
    else
      work.done(twin_reply{query_error::internal, error, {}});
    end_item(self);
  }
  return handle;
}

/// An operator acknowledges an alert: answered after its commit with the
/// twin, at once when the alert is unknown or not open.
void start_acknowledge(self_ptr self, desired_work work) {
  auto& st = self->state;
  auto handle = existing_twin(self, work);
  if (!handle)
    return;
  auto id = st.applying->id;
  auto [property, number] = *work.acknowledge;
  st.applying->writes.push_back({std::move(work), nullptr});
  self->request(*handle, caf::infinite, ack_atom::value, std::move(property), number)
      .then(
          [self, id](ack_reply& r) {
            auto& st = self->state;
            if (!st.applying || st.applying->id != id)
              return;
            auto& item = *st.applying;
            auto& w = item.writes.front();
            const auto& [prop, n] = *w.work.acknowledge;
            const std::string alert = "alert " + std::to_string(n) + " of property \"" + prop +
                                      "\" of twin \"" + w.work.asset_id + "\"";
            switch (r.status) {
              case core::ack_status::acknowledged:
                w.answer = std::make_shared<twin_reply>(
                    twin_reply{query_error::none, {}, r.update.snapshot});
                item.pending = 1;
                collect(self, id, r.update);
                return;
              case core::ack_status::not_found:
                w.work.done(twin_reply{query_error::not_found, alert + " not found", {}});
                break;
              case core::ack_status::not_open:
                w.work.done(
                    twin_reply{query_error::precondition,
                               alert + " is not open (cleared, superseded or acknowledged already)",
                               {}});
                break;
            }
            end_item(self);
          },
          [self](caf::error& e) { fail(self, "asset actor failed: " + to_string(e)); });
}

/// Queues a write of the API (desired update, relations, acknowledgement, erasure) behind
/// the work in flight; answered UNAVAILABLE at once while the partition fails over.
void queue_write(self_ptr self, desired_work work) {
  auto& st = self->state;
  if (st.failed) {
    work.done(twin_reply{query_error::unavailable, "partition is failing over", {}});
    return;
  }
  st.queue.emplace_back(std::move(work));
  process_next(self);
  arm_expiry(self);
}

/// Write `k` of the item (a desired update or an erasure) has its outcome from the twin:
/// committed with the item when applied, answered at once otherwise. The last outcome
/// publishes the item when some write applied, else ends it.
void settle_desired(self_ptr self, uint64_t id, size_t k, desired_reply& r) {
  auto& st = self->state;
  if (!st.applying || st.applying->id != id)
    return;
  auto& item = *st.applying;
  auto& w = item.writes[k];
  switch (r.result.status) {
    case core::desired_status::applied:
      if (w.work.update.validate_only) {
        // A dry run: what the twin would be, nothing to commit.
        w.work.done(twin_reply{query_error::none, {}, std::move(r.update.snapshot)});
        break;
      }
      w.answer = std::make_shared<twin_reply>(twin_reply{query_error::none, {}, r.update.snapshot});
      collect(self, id, r.update);  // publishes after the last outcome
      return;
    case core::desired_status::unchanged:
      // Nothing to commit: answer with the current state.
      self->send(st.assets.at(w.work.asset_id).handle, get_atom::value,
                 twin_completion{[done = w.work.done](twin_reply r) {
                                   r.unchanged = r.error == query_error::none;
                                   done(std::move(r));
                                 },
                                 twin_reply{query_error::unavailable,
                                            "the twin stopped before answering; retry",
                                            {}}});
      break;
    case core::desired_status::version_mismatch:
      w.work.done(twin_reply{query_error::aborted, r.result.error, {}});
      break;
    case core::desired_status::invalid:
      w.work.done(twin_reply{query_error::invalid, r.result.error, {}});
      break;
    case core::desired_status::not_found:
      w.work.done(twin_reply{query_error::not_found, r.result.error, {}});
      break;
  }
  if (--item.pending > 0)
    return;
  if (std::any_of(item.writes.begin(), item.writes.end(), [](const auto& x) { return x.answer; }))
    publish(self);
  else
    end_item(self);
}

/// The erasure of a twin (DeleteTwin): answered after its commit with what the twin was,
/// at once when there is none or it may not be erased.
void start_erase(self_ptr self, desired_work work) {
  auto& st = self->state;
  auto handle = existing_twin(self, work);
  if (!handle)
    return;
  auto id = st.applying->id;
  const uint64_t expected = work.update.expected_version.value_or(0);
  st.applying->writes.push_back({std::move(work), nullptr});
  st.applying->pending = 1;
  self->request(*handle, caf::infinite, erase_atom::value, expected)
      .then([self, id](desired_reply& r) { settle_desired(self, id, 0, r); },
            [self](caf::error& e) { fail(self, "asset actor failed: " + to_string(e)); });
}

/// Whether a queued write is a plain desired update (several coalesce into one item).
bool plain_desired(const desired_work& w) {
  return !w.relations && !w.erase && !w.acknowledge;
}

void start_desired(self_ptr self, std::vector<desired_work> works) {
  auto& st = self->state;
  auto& first = works.front();
  if (first.relations) {
    start_relations(self, std::move(first));
    return;
  }
  if (first.erase) {
    start_erase(self, std::move(first));
    return;
  }
  if (first.acknowledge) {
    start_acknowledge(self, std::move(first));
    return;
  }
  // Desired updates of distinct twins: each twin applies its own, the item commits
  // those that changed something in one transaction.
  auto& item = *st.applying;
  const auto id = item.id;
  item.writes.reserve(works.size());
  for (auto& w : works) {
    std::string error;
    auto handle = resident(self, w.asset_id, id, false, error);
    if (!handle) {
      if (error.empty())
        w.done(twin_reply{query_error::not_found, "twin \"" + w.asset_id + "\" not found", {}});
      else
        w.done(twin_reply{query_error::internal, error, {}});
      continue;
    }
    const size_t k = item.writes.size();
    auto update = w.update;
    item.writes.push_back({std::move(w), nullptr});
    ++item.pending;
    self->request(*handle, caf::infinite, desired_atom::value, std::move(update))
        .then([self, id, k](desired_reply& r) { settle_desired(self, id, k, r); },
              [self](caf::error& e) { fail(self, "asset actor failed: " + to_string(e)); });
  }
  if (item.pending == 0)
    end_item(self);
}

/// Moves the clock of every resident timed aggregate (`all`: of every
/// resident aggregate); their changes commit like any other work.
void start_advance(self_ptr self, bool all) {
  auto& st = self->state;
  st.advance_queued = false;
  auto& item = *st.applying;
  const auto id = item.id;
  const auto now = now_ms(self);
  for (auto& [asset_id, e] : st.assets) {
    if (!e.timed && !(all && e.aggregate))
      continue;
    e.last_item = id;
    ++item.pending;
    self->request(e.handle, caf::infinite, advance_atom::value, now)
        .then([self, id](asset_update& u) { collect(self, id, u); },
              [self](caf::error& err) { fail(self, "aggregate actor failed: " + to_string(err)); });
  }
  if (item.pending == 0)
    end_item(self);
}

/// Writes the member records every aggregate holds unwritten; the commit
/// then moves the contributions offset to what was applied.
void start_flush(self_ptr self) {
  auto& st = self->state;
  st.flush_queued = false;
  auto& item = *st.applying;
  const auto id = item.id;
  if (const auto next = st.applied_input_offsets[contrib_slot]; next >= 0) {
    item.commit.input_offsets[contrib_slot] = next;
    item.contributions_next = next;
  }
  auto ids = std::move(st.unwritten);
  st.unwritten.clear();
  for (const auto& asset_id : ids) {
    auto it = st.assets.find(asset_id);
    if (it == st.assets.end())
      continue;  // cannot happen: entities with unwritten members stay resident
    it->second.last_item = id;
    ++item.pending;
    self->request(it->second.handle, caf::infinite, flush_atom::value)
        .then([self, id](asset_update& u) { collect(self, id, u); },
              [self](caf::error& err) { fail(self, "aggregate actor failed: " + to_string(err)); });
  }
  if (item.pending == 0)
    publish(self);
}

/// While replaying, the next contributions batch queued (others wait);
/// false when none is queued yet.
bool take_replay_batch(self_ptr self, work_item& out) {
  auto& st = self->state;
  for (auto it = st.queue.begin(); it != st.queue.end(); ++it) {
    auto* raw = std::get_if<raw_batch_ptr>(&*it);
    if (!raw || (*raw)->source != input::contributions)
      continue;
    if (!(*raw)->records.empty() &&
        (*raw)->records.front().offset < st.applied_input_offsets[contrib_slot])
      st.replay_until = -1;  // the log starts over (a new topic): nothing to replay
    out = std::move(*it);
    st.queue.erase(it);
    return true;
  }
  return false;
}

/// Records in the consumed batches at the front of the queue (counting
/// stops at `enough`).
size_t queued_records(const partition_state& st, size_t enough) {
  size_t n = 0;
  for (const auto& w : st.queue) {
    const auto* raw = std::get_if<raw_batch_ptr>(&w);
    if (!raw || n >= enough)
      break;
    n += (*raw)->records.size();
  }
  return n;
}

/// Whether the next item may start now. An idle partition starts at once;
/// behind items in flight, a new item waits until there is room in the
/// pipeline, and consumed batches linger a little to make a fuller item.
/// Updates through the API and the replay of a restore run with nothing
/// else in flight (an update that waited too long then fails having
/// changed nothing). A partition falling behind (behind_records queued)
/// stops pipelining until its items are small again.
bool may_start(self_ptr self) {
  auto& st = self->state;
  if (st.pipeline.empty())
    return true;
  if (st.pipeline.size() + 1 > st.cfg.max_items_in_flight || replaying(st))
    return false;
  const auto& next = st.queue.front();
  if (std::holds_alternative<desired_work>(next))
    return false;
  if (std::holds_alternative<raw_batch_ptr>(next) && st.cfg.behind_records > 0 &&
      (st.catching_up || queued_records(st, st.cfg.behind_records) >= st.cfg.behind_records))
    return false;  // behind: one large item once the pipeline empties
  if (!std::holds_alternative<raw_batch_ptr>(next) || st.cfg.item_linger.count() <= 0 ||
      st.lingered || queued_records(st, st.cfg.min_item_records) >= st.cfg.min_item_records)
    return true;
  const auto now = std::chrono::steady_clock::now();
  const auto ready = st.queued_since + st.cfg.item_linger;
  if (now >= ready)
    return true;
  if (!st.linger_armed) {
    st.linger_armed = true;
    self->delayed_send(self, std::chrono::duration_cast<std::chrono::microseconds>(ready - now),
                       linger_atom::value);
  }
  return false;
}

void process_next(self_ptr self) {
  auto& st = self->state;
  if (st.applying || st.queue.empty() || st.failed || !may_start(self))
    return;
  work_item next;
  if (replaying(st)) {
    if (!take_replay_batch(self, next))
      return;
  } else {
    next = std::move(st.queue.front());
    st.queue.pop_front();
  }
  st.applying.emplace();
  auto& item = *st.applying;
  item.id = st.next_item_id++;
  item.started = std::chrono::steady_clock::now();
  item.commit.partition = st.cfg.partition;
  if (auto* raw = std::get_if<raw_batch_ptr>(&next)) {
    // Coalesce every consumed batch queued behind this one (while
    // replaying, one batch at a time).
    size_t records = (*raw)->records.size();
    item.raws.push_back(std::move(*raw));
    while (!replaying(st) && !st.queue.empty() &&
           std::holds_alternative<raw_batch_ptr>(st.queue.front())) {
      auto& more = std::get<raw_batch_ptr>(st.queue.front());
      if (records + more->records.size() > st.cfg.max_item_records)
        break;
      records += more->records.size();
      item.raws.push_back(std::move(more));
      st.queue.pop_front();
    }
    st.lingered = false;
    // Catching up until the items are small again (hysteresis: a quarter).
    if (records >= st.cfg.behind_records)
      st.catching_up = st.cfg.behind_records > 0;
    else if (records < st.cfg.behind_records / 4)
      st.catching_up = false;
    if (!st.queue.empty())
      st.queued_since = item.started;
    start_batch(self);
  } else if (auto* d = std::get_if<desired_work>(&next)) {
    // Plain desired updates of distinct twins queued behind this one join its item.
    std::vector<desired_work> works;
    works.push_back(std::move(*d));
    if (plain_desired(works.front())) {
      std::unordered_set<std::string> ids{works.front().asset_id};
      while (!st.queue.empty() && works.size() < st.cfg.max_item_writes) {
        auto* more = std::get_if<desired_work>(&st.queue.front());
        if (!more || !plain_desired(*more) || ids.contains(more->asset_id))
          break;
        ids.insert(more->asset_id);
        works.push_back(std::move(*more));
        st.queue.pop_front();
      }
    }
    load_request_ptr r;
    for (const auto& w : works)
      want(st, r, w.asset_id);
    if (!r) {
      start_desired(self, std::move(works));
    } else {
      auto shared = std::make_shared<std::vector<desired_work>>(std::move(works));
      preload(self, std::move(r), [self, id = item.id, shared] {
        auto& st = self->state;
        if (st.failed || !st.applying || st.applying->id != id)
          return;  // the calls' completions answer with their fallback
        start_desired(self, std::move(*shared));
      });
    }
  } else if (std::holds_alternative<flush_work>(next)) {
    start_flush(self);
  } else {
    start_advance(self, std::get<advance_work>(next).all);
  }
}

/// Passivates twins idle longer than passivate_after, and the least recently
/// used beyond max_active_twins. Twins touched by items in flight stay:
/// their state is not committed yet.
void passivate_idle(self_ptr self) {
  auto& st = self->state;
  auto in_flight = [&st](const partition_state::entry& e) {
    return e.last_item > st.completed_through;
  };
  auto now = now_ms(self);
  auto idle_before = now - st.cfg.passivate_after.count();
  size_t before = st.assets.size();
  for (auto it = st.assets.begin(); it != st.assets.end();) {
    if (it->second.last_used_ms <= idle_before && !in_flight(it->second) && !it->second.timed &&
        !st.unwritten.contains(it->first)) {
      self->send(it->second.handle, passivate_atom::value);
      st.active_aggregates -= it->second.aggregate ? 1 : 0;
      it = st.assets.erase(it);
    } else {
      ++it;
    }
  }
  if (st.assets.size() > st.cfg.max_active_twins) {
    std::vector<std::pair<int64_t, std::string>> by_age;
    by_age.reserve(st.assets.size());
    for (auto& [id, e] : st.assets)
      if (!in_flight(e) && !st.unwritten.contains(id))
        by_age.emplace_back(e.last_used_ms, id);
    auto excess = std::min(st.assets.size() - st.cfg.max_active_twins, by_age.size());
    std::nth_element(by_age.begin(), by_age.begin() + excess, by_age.end());
    for (size_t i = 0; i < excess; ++i) {
      auto it = st.assets.find(by_age[i].second);
      self->send(it->second.handle, passivate_atom::value);
      st.active_aggregates -= it->second.aggregate ? 1 : 0;
      st.assets.erase(it);
    }
  }
  if (before != st.assets.size()) {
    st.cfg.probe->on_passivated(before - st.assets.size());
    report_active(self);
    publish_gauges(self);
  }
}

}  // namespace

committer_actor::behavior_type committer(committer_actor::pointer self,
                                         std::shared_ptr<twin_store> store) {
  return {
      [store](commit_atom, const commit_batch& b) -> std::string {
        return store->commit(b).value_or(std::string{});
      },
      [store](load_atom, load_request_ptr& r) -> load_request_ptr {
        store->load_many(*r);
        return std::move(r);
      },
  };
}

partition_actor::behavior_type partition(partition_actor::stateful_pointer<partition_state> self,
                                         partition_config cfg) {
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.committer = st.cfg.detached_committer
                     ? self->spawn<caf::linked + caf::detached>(committer, st.cfg.store)
                     : self->spawn<caf::linked>(committer, st.cfg.store);
  st.decoder = st.cfg.make_decoder ? st.cfg.make_decoder() : nullptr;
  if (st.cfg.initial_offset)
    st.next_offset = *st.cfg.initial_offset;
  else if (auto off = st.cfg.store->load_offset(st.cfg.partition))
    st.next_offset = *off;
  for (auto in : follower_inputs) {
    const auto slot = follower_slot(in);
    if (st.cfg.initial_input_offsets[slot])
      st.next_input_offsets[slot] = *st.cfg.initial_input_offsets[slot];
    else if (auto off = st.cfg.store->load_input_offset(st.cfg.partition, in))
      st.next_input_offsets[slot] = *off;
  }
  st.members_cover = st.next_input_offsets[contrib_slot];
  st.applied_offset = st.next_offset;
  st.applied_input_offsets = st.next_input_offsets;
  if (const auto applied = st.cfg.contributions_applied
                               ? st.cfg.contributions_applied
                               : st.cfg.store->load_contributions_applied(st.cfg.partition);
      applied && st.members_cover >= 0 && *applied > st.members_cover)
    st.replay_until = *applied;
  publish_gauges(self);
  report_active(self);  // the partition's gauges exist (at 0) while it is served
  self->delayed_send(self, st.cfg.tick_interval, tick_atom::value);
  return {
      [self](batch_atom, raw_batch_ptr& batch) {
        auto& st = self->state;
        const auto epoch = batch->source == input::telemetry
                               ? st.cfg.epoch
                               : st.cfg.input_epochs[follower_slot(batch->source)];
        if (st.failed || batch->epoch != epoch)
          return;
        if (st.queue.empty())
          st.queued_since = std::chrono::steady_clock::now();
        st.queue.emplace_back(std::move(batch));
        process_next(self);
      },
      [self](get_atom, std::string& asset_id, twin_completion& done) {
        lookup(self, asset_id, done);
      },
      [self](get_atom, std::string& id, aggregate_query& q, aggregate_completion& done) {
        lookup_aggregate(self, id, q, done);
      },
      [self](desired_atom, std::string& asset_id, core::desired_update& update,
             twin_completion& done) {
        queue_write(self, desired_work{std::move(asset_id), std::move(update), std::move(done),
                                       std::nullopt, now_ms(self), std::nullopt});
      },
      [self](relate_atom, std::string& id, core::relation_update& update, twin_completion& done) {
        queue_write(self, desired_work{std::move(id), core::desired_update{}, std::move(done),
                                       std::move(update), now_ms(self), std::nullopt});
      },
      [self](ack_atom, std::string& asset_id, std::string& property, uint32_t number,
             twin_completion& done) {
        desired_work w{std::move(asset_id), core::desired_update{}, std::move(done),
                       std::nullopt,        now_ms(self),           std::nullopt};
        w.acknowledge.emplace(std::move(property), number);
        queue_write(self, std::move(w));
      },
      [self](erase_atom, std::string& asset_id, uint64_t expected_version, twin_completion& done) {
        desired_work w{std::move(asset_id), core::desired_update{}, std::move(done),
                       std::nullopt,        now_ms(self),           std::nullopt};
        if (expected_version != 0)
          w.update.expected_version = expected_version;
        w.erase = true;
        queue_write(self, std::move(w));
      },
      [self](expire_atom, uint64_t id) {
        auto& st = self->state;
        if (st.expiry_armed_for == id)
          st.expiry_armed_for = 0;
        const auto* item = oldest(st);
        if (!item || item->id != id)
          return;  // committed (or failed) meanwhile; later waits are armed anew
        const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::steady_clock::now() - item->started)
                                .count();
        auto held = std::move(st.held);
        st.held.clear();
        for (auto& h : held)
          h->expire(h->subject() + " has a change that Kafka has not committed for " +
                    std::to_string(waited) + " ms (the broker is slow or unreachable); retry");
        // Updates queued behind the stuck item fail the same way, oldest first.
        auto limit = now_ms(self) - st.cfg.max_read_wait.count();
        for (auto it = st.queue.begin(); it != st.queue.end();) {
          auto* w = std::get_if<desired_work>(&*it);
          if (w && w->queued_ms <= limit) {
            w->done(twin_reply{query_error::unavailable,
                               "the update of twin \"" + w->asset_id +
                                   "\" waited too long behind work Kafka has not committed yet "
                                   "(the broker is slow or unreachable); nothing was changed; "
                                   "retry",
                               {}});
            it = st.queue.erase(it);
          } else {
            ++it;
          }
        }
        arm_expiry(self);  // the item is still in flight: check again later
      },
      [self](status_atom, partition_info_completion& done) {
        auto& st = self->state;
        done(partition_info{st.cfg.partition, st.next_offset, st.assets.size(), st.records_applied,
                            st.synchronous_loads, describe_wait(st)});
      },
      [self](stop_atom, std::function<void()>& done) {
        auto& st = self->state;
        st.stop_waiters.push_back(std::move(done));
        if (idle(st))
          settle(self);
      },
      [self](drop_atom, std::function<void()>& done) {
        auto& st = self->state;
        // Nothing of the abandoned work reaches the store: its outputs cannot
        // commit in Kafka any more either (the group moved on), and whoever
        // owns the partition next restores what was committed. Late replies
        // and deliveries no longer match an item and are ignored.
        st.failed = true;
        st.queue.clear();
        fence_outputs(self);
        st.stop_waiters.push_back(std::move(done));
        abandon(self,
                "has a change that will not commit here: the partition moved to another node");
      },
      [self](refresh_atom) {
        auto& st = self->state;
        if (st.failed || st.active_aggregates == 0)
          return;
        st.queue.emplace_back(advance_work{true});
        process_next(self);
      },
      [self](tick_atom) {
        auto& st = self->state;
        if (!st.failed && !st.advance_queued &&
            std::any_of(st.assets.begin(), st.assets.end(),
                        [](const auto& kv) { return kv.second.timed; })) {
          st.advance_queued = true;
          st.queue.emplace_back(advance_work{});
          process_next(self);
        }
        schedule_flush(self);
        process_next(self);
        passivate_idle(self);
        if (const auto every = st.cfg.aggregate_check_interval.count();
            every > 0 && st.active_aggregates > 0 && now_ms(self) - st.last_check_ms >= every) {
          st.last_check_ms = now_ms(self);
          check_aggregates(self);
        }
        self->delayed_send(self, self->state.cfg.tick_interval, tick_atom::value);
      },
      [self](delivered_atom, uint64_t id, publish_result& r) {
        auto& st = self->state;
        if (st.failed)
          return;
        auto it = std::find_if(st.pipeline.begin(), st.pipeline.end(),
                               [id](const auto& item) { return item.id == id; });
        if (it == st.pipeline.end())
          return;
        if (!r.ok) {
          // Every item from here on built on outputs that will not commit.
          for (auto& item : st.pipeline)
            for (auto& w : item.writes)
              w.work.done(twin_reply{query_error::unavailable,
                                     "publishing the update failed: " + r.error + "; retry",
                                     {}});
          fail(self, "publishing outputs failed: " + r.error, true);
          return;
        }
        it->commit.changelog_offset = r.changelog_offset;
        it->delivered = true;
        advance_durable(st);
        st.cfg.probe->on_item_phases(
            std::chrono::duration<double>(it->published - it->started).count(),
            std::chrono::duration<double>(std::chrono::steady_clock::now() - it->published)
                .count());
        try_commit(self);
      },
      [self](linger_atom) {
        // Armed for when the oldest queued batch has lingered enough.
        self->state.linger_armed = false;
        self->state.lingered = !self->state.queue.empty();
        process_next(self);
      },
  };
}

}  // namespace fleettwin::runtime

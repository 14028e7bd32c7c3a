// Partition lifecycle: assignment, restore from the changelog, activation,
// revival after lost work, revocation, and routing a twin to its actor.

#include <future>

#include <spdlog/spdlog.h>
#include <caf/all.hpp>

#include "actors/core/partitioning.hpp"
#include "services/kafka/telemetry_decoder.hpp"
#include "services/node/node.hpp"

namespace fleettwin::node {

std::optional<int32_t> node::routable_partitions(std::string& why) {
  if (stopping_.load()) {
    why = "node " + cfg_.node_id + " is shutting down; its partitions move to other nodes; retry";
    return std::nullopt;
  }
  auto count = consumer_->partition_count();
  if (count <= 0) {
    why = "the telemetry topic's partitions are not known yet; retry";
    return std::nullopt;
  }
  return count;
}

std::optional<grpc_api::route> node::route_asset(const std::string& asset_id, std::string& why) {
  auto count = routable_partitions(why);
  if (!count)
    return std::nullopt;
  auto p = core::kafka_partition(asset_id, *count);
  std::shared_lock<std::shared_mutex> lock{routes_mutex_};
  if (restoring_.contains(p)) {
    why = "partition " + std::to_string(p) + " of twin \"" + asset_id +
          "\" is being restored from the changelog on this node; retry shortly";
    return std::nullopt;
  }
  auto it = partitions_.find(p);
  if (it == partitions_.end()) {
    why = "partition " + std::to_string(p) + " of twin \"" + asset_id +
          "\" is not served by this node right now (assignment or rebalance in progress); "
          "retry shortly";
    return std::nullopt;
  }
  // Reads are fenced: only a node that knows it still owns the partition
  // answers (see cluster::group_lease).
  if (!lease_->held()) {
    why = "partition " + std::to_string(p) + " of twin \"" + asset_id +
          "\": " + lease_->view().why + "; retry shortly";
    return std::nullopt;
  }
  return grpc_api::route{it->second.actor, p};
}

std::vector<int32_t> node::local_partitions() {
  std::vector<int32_t> out;
  if (!lease_->held() || stopping_.load())
    return out;  // fenced or shutting down: nothing is answered from here
  std::shared_lock<std::shared_mutex> lock{routes_mutex_};
  for (const auto& [p, s] : partitions_)
    out.push_back(p);
  return out;
}

kafka::assignment node::on_assigned(int32_t partition) {
  if (!restorer_) {
    // No changelog: the local store is the only copy of the state.
    activate(partition, std::nullopt, std::nullopt);
    return {store_->load_offset(partition), false};
  }
  uint64_t generation = 0;
  {
    std::unique_lock<std::shared_mutex> lock{routes_mutex_};
    generation = next_generation_++;
    restoring_[partition] = generation;
    standbys_.erase(partition);  // the restore continues from the warm copy
  }
  restore(partition, generation, 0);
  if (membership_)
    membership_->publish_soon();
  return {std::nullopt, true};
}

void node::restore(int32_t partition, uint64_t generation, uint64_t epoch) {
  // The group's committed position tells how far the changelog must be read:
  // the state committed with the input offset reaches that changelog offset.
  struct target {
    bool known = false;
    std::optional<kafka::committed_position> committed;
  };
  auto goal = std::make_shared<target>();
  auto* consumer = consumer_.get();
  auto* producer = producer_.get();
  auto* restorer = restorer_.get();
  auto check = [goal, consumer, producer, restorer](int32_t p, int64_t position, std::string& why) {
    if (!goal->known) {
      std::string error;
      auto c = consumer->committed(p, std::chrono::seconds{2}, error);
      if (!c) {
        why = error;
        return false;
      }
      // This node committed further itself: the group's coordinator (just
      // moved to another broker, say) does not show it yet. Asked again
      // rather than resuming before an offset known to be committed.
      if (auto floor = producer->committed_floor(p); floor && (!c->offset || *c->offset < *floor)) {
        why = "the group reports offset " + (c->offset ? std::to_string(*c->offset) : "none") +
              " but this node committed " + std::to_string(*floor) +
              " already; waiting for the coordinator";
        return false;
      }
      goal->committed = c;
      goal->known = true;
    }
    const auto& c = *goal->committed;
    if (c.changelog && position < *c.changelog) {
      why = "the changelog is read up to " + std::to_string(position) +
            " but the committed state reaches " + std::to_string(*c.changelog) +
            " (records behind an open transaction of a failed node)";
      return false;
    }
    // Records beyond what is readable belong to a transaction not resolved
    // yet: a previous owner's, maybe committed by the broker after it came
    // back (its outputs and input offsets then become visible together,
    // after the group answered). Resuming now would apply its records a
    // second time: wait until it is resolved (committed, or aborted by the
    // transaction timeout or its producer's restart), then ask the group
    // again.
    auto end = restorer->log_end(p);
    if (end < 0 || position < end) {
      why = "the changelog holds records up to " + std::to_string(end) + " beyond the " +
            std::to_string(position) + " readable (an unresolved transaction); waiting";
      goal->known = false;
      return false;
    }
    return true;
  };
  auto started = std::chrono::steady_clock::now();
  restorer_->restore(
      partition, check,
      [this, partition, generation, epoch, goal, started](kafka::restore_result r) {
        {
          std::shared_lock<std::shared_mutex> lock{routes_mutex_};
          auto it = restoring_.find(partition);
          if (it == restoring_.end() || it->second != generation)
            return;  // revoked meanwhile
        }
        if (!r.ok) {
          partition_failed(partition, "restoring from the changelog: " + r.error, false);
          return;
        }
        metrics_->restore().on_restored(r.records, r.seconds);
        // The restored state covers exactly the input before the offset in its
        // checkpoint (now the store's offset). Exactly-once resumes at the
        // offset committed with the outputs, which is the same unless the
        // group's offsets were moved by hand (then the group wins, loudly).
        std::optional<int64_t> resume = store_->load_offset(partition);
        if (cfg_.exactly_once() && goal->committed && goal->committed->offset &&
            resume != goal->committed->offset) {
          // They commit together, so they agree, unless the group's offsets
          // were moved by hand (forward: the group wins) or the group's answer
          // trails what the restored state covers (never resume before the
          // state: that would apply records twice).
          const bool forward = !resume || *goal->committed->offset > *resume;
          spdlog::warn(
              "event=restore_offset_mismatch partition={} restored_state_offset={} "
              "group_committed_offset={} action={}",
              partition, resume ? std::to_string(*resume) : "none", *goal->committed->offset,
              forward ? "resume_at_group_offset" : "resume_after_restored_state");
          if (forward)
            resume = goal->committed->offset;
        }
        // The stored position must still exist in the log (a recreated
        // topic, a new broker, retention): checked here, off the consumer's
        // thread.
        resume = consumer_->reconcile(partition, resume.value_or(RD_KAFKA_OFFSET_BEGINNING));
        if (*resume < 0)
          resume.reset();  // the log's range is unknown: its beginning
        // Resumed together with the activation (a revocation in between
        // would resume a later assignment of the partition).
        if (!activate(partition, resume, generation, epoch, [this, partition, resume] {
              consumer_->resume(partition, resume.value_or(RD_KAFKA_OFFSET_BEGINNING));
            }))
          return;  // revoked meanwhile
        spdlog::info(
            "event=partition_ready partition={} resume_offset={} restored_records={} "
            "seconds={:.3f}",
            partition, resume ? std::to_string(*resume) : "beginning", r.records,
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      });
}

bool node::activate(int32_t partition, std::optional<int64_t> resume_offset,
                    std::optional<uint64_t> generation, uint64_t epoch,
                    const std::function<void()>& then) {
  runtime::partition_config pc;
  pc.partition = partition;
  pc.partition_count = consumer_->partition_count();
  pc.assets = asset_cfg_;
  pc.passivate_after = std::chrono::milliseconds{cfg_.passivate_after_ms};
  pc.tick_interval = std::chrono::milliseconds{std::max<int64_t>(cfg_.passivate_after_ms / 4, 50)};
  pc.aggregate_check_interval = std::chrono::milliseconds{cfg_.aggregate_check_interval_ms};
  pc.member_checkpoint_interval = std::chrono::milliseconds{cfg_.member_checkpoint_ms};
  pc.max_active_twins = cfg_.max_active_twins;
  pc.max_items_in_flight = cfg_.max_items_in_flight;
  pc.max_item_writes = cfg_.max_item_writes;
  pc.item_linger = std::chrono::milliseconds{cfg_.item_linger_ms};
  pc.store = std::shared_ptr<runtime::twin_store>(store_.get(), [](auto*) {});
  if (restorer_)
    pc.initial_offset = resume_offset;
  pc.sink = producer_;
  auto max_bytes = cfg_.max_record_bytes;
  pc.make_decoder = [max_bytes] { return kafka::make_telemetry_decoder(max_bytes); };
  pc.listener = hub_;
  pc.probe = metrics_->ingest();
  auto* consumer = consumer_.get();
  std::array<kafka::telemetry_consumer*, runtime::follower_input_count> followers{};
  for (size_t slot = 0; slot < followers.size(); ++slot)
    followers[slot] = followers_[slot].get();
  pc.on_committed = [consumer, followers](int32_t p, runtime::input source, int64_t next,
                                          size_t batches, std::optional<int64_t> changelog) {
    if (source == runtime::input::telemetry)
      consumer->acknowledge(p, next, batches, changelog);
    else if (auto* f = followers[runtime::follower_slot(source)])
      f->acknowledge(p, next, batches);
  };
  pc.epoch = epoch;
  // The follower inputs resume where the (restored) state says; batches
  // fetched for an earlier actor of the partition carry older epochs.
  for (auto in : runtime::follower_inputs) {
    const auto slot = runtime::follower_slot(in);
    pc.initial_input_offsets[slot] = store_->load_input_offset(partition, in);
    pc.input_epochs[slot] = followers_[slot] ? followers_[slot]->new_epoch() : 0;
  }
  const auto contrib = runtime::follower_slot(runtime::input::contributions);
  const auto input_offsets = pc.initial_input_offsets;
  // Contributions applied beyond the stored members are replayed into them,
  // unless the log no longer holds them (a new Kafka): then the members
  // catch up as their twins next change.
  if (const auto applied = store_->load_contributions_applied(partition);
      applied && input_offsets[contrib] && *applied > *input_offsets[contrib]) {
    if (auto* f = followers_[contrib].get()) {
      if (const auto end = f->log_end(partition); end && *end < *applied) {
        spdlog::warn(
            "event=member_replay_skipped partition={} from={} to={} log_end={} "
            "reason=\"the contributions log ends before the contributions applied: members "
            "changed since the last checkpoint catch up as their twins next change\"",
            partition, *input_offsets[contrib], *applied, *end);
        pc.contributions_applied = *input_offsets[contrib];
      } else {
        spdlog::info("event=member_replay partition={} from={} to={}", partition,
                     *input_offsets[contrib], *applied);
      }
    }
  }
  const auto input_epochs = pc.input_epochs;
  pc.read_committed = cfg_.exactly_once();
  pc.gauges = std::make_shared<runtime::partition_gauges>();
  pc.on_fatal = [this, partition](std::string why, bool retryable) {
    partition_failed(partition, why, retryable);
  };
  auto gauges = pc.gauges;
  auto actor = system_->spawn(runtime::partition, std::move(pc));
  {
    std::unique_lock<std::shared_mutex> lock{routes_mutex_};
    auto it = restoring_.find(partition);
    if (!generation || (it != restoring_.end() && it->second == *generation)) {
      if (it != restoring_.end())
        restoring_.erase(it);
      partitions_[partition] = served{actor, gauges};
      if (then)
        then();
      if (membership_)
        membership_->publish_soon();
      for (size_t slot = 0; slot < followers_.size(); ++slot)
        if (followers_[slot])
          followers_[slot]->assign(partition, {input_offsets[slot], false}, input_epochs[slot]);
      return true;
    }
  }
  caf::anon_send(actor, runtime::stop_atom::value, std::function<void()>{[] {}});
  return false;
}

void node::partition_failed(int32_t partition, const std::string& why, bool retryable) {
  if (stopping_.load()) {
    spdlog::warn("event=partition_failed_while_stopping partition={} reason=\"{}\"", partition,
                 why);
    return;
  }
  if (retryable && !producer_->failed()) {
    revive(partition, why);
    return;
  }
  // The local store cannot take writes (disk full, unwritable, corrupt):
  // stop taking work rather than run ahead of it. Kafka holds everything
  // committed, so a restart (or another node) continues exactly there.
  {
    std::unique_lock<std::shared_mutex> lock{routes_mutex_};
    if (store_failure_.empty())
      store_failure_ = why;
  }
  spdlog::critical("event=fatal partition={} reason=\"{}\" action=stopping_the_node", partition,
                   why);
  if (readiness_)
    readiness_->update();
  request_stop(1);
}

void node::revive(int32_t partition, const std::string& why) {
  runtime::partition_actor old;
  uint64_t generation = 0;
  {
    std::unique_lock<std::shared_mutex> lock{routes_mutex_};
    auto it = partitions_.find(partition);
    if (it == partitions_.end())
      return;
    old = it->second.actor;
    partitions_.erase(it);
    // Queries answer UNAVAILABLE meanwhile; a revocation cancels the revival.
    generation = next_generation_++;
    restoring_[partition] = generation;
  }
  metrics_->reliability().on_revival();
  spdlog::warn("event=partition_revived partition={} reason=\"{}\"", partition, why);
  // The old actor stops once a store commit it has in flight (of items
  // Kafka made durable before the failure) is written: only then is the
  // store read, so that a late write can never land over newer state.
  caf::anon_send(
      old, runtime::stop_atom::value, std::function<void()>{[this, partition, generation] {
        uint64_t epoch = 0;
        std::optional<int64_t> offset;
        {
          // Only while the revival is current, decided together with the
          // consumer request: a revocation (and maybe a new assignment
          // with its own restore) may have come while the old actor
          // stopped, and a request asked after that would reposition the
          // new assignment under an epoch its actor does not know.
          std::unique_lock<std::shared_mutex> lock{routes_mutex_};
          auto it = restoring_.find(partition);
          if (it == restoring_.end() || it->second != generation)
            return;
          if (!restorer_) {
            // The store holds exactly what the last local commit covered.
            offset = store_->load_offset(partition);
            epoch = consumer_->rewind(partition, offset.value_or(RD_KAFKA_OFFSET_BEGINNING));
          } else {
            // Held until restored: the store may lack the tail a
            // transaction committed before the local write, and the
            // group's committed offset (not the beginning) is where
            // consumption resumes.
            epoch = consumer_->hold(partition);
          }
        }
        if (!restorer_) {
          activate(partition, offset, generation, epoch);
          return;
        }
        if (membership_)
          membership_->publish_soon();
        restore(partition, generation, epoch);
      }});
}

void node::on_revoked(int32_t partition, bool lost) {
  runtime::partition_actor actor;
  {
    std::unique_lock<std::shared_mutex> lock{routes_mutex_};
    if (restoring_.erase(partition) > 0) {
      restorer_->stop(partition);
      if (membership_)
        membership_->publish_soon();
      return;
    }
    auto it = partitions_.find(partition);
    if (it == partitions_.end())
      return;
    actor = it->second.actor;
    partitions_.erase(it);
  }
  for (auto& follower : followers_)
    if (follower)
      follower->unassign(partition);
  if (membership_)
    membership_->publish_soon();
  std::promise<void> stopped;
  auto done = stopped.get_future();
  std::function<void()> callback{[&stopped] { stopped.set_value(); }};
  if (lost)  // its work in flight may wait for a broker that is away: drop it
    caf::anon_send(actor, runtime::drop_atom::value, std::move(callback));
  else
    caf::anon_send(actor, runtime::stop_atom::value, std::move(callback));
  // A partition finishes its queued work first; one that takes long says what
  // it waits for (and what the Kafka producer does), every 10 s until it stops.
  const auto began = std::chrono::steady_clock::now();
  while (done.wait_for(std::chrono::seconds{10}) == std::future_status::timeout) {
    auto info = std::make_shared<std::promise<std::string>>();
    auto answer = info->get_future();
    caf::anon_send(actor, runtime::status_atom::value,
                   runtime::partition_info_completion{
                       [info](runtime::partition_info i) { info->set_value(i.waiting_on); },
                       runtime::partition_info{partition, -1, 0, 0, 0, "no answer"}});
    std::string waiting = "no answer within 2 s";
    if (answer.wait_for(std::chrono::seconds{2}) == std::future_status::ready)
      waiting = answer.get();
    spdlog::warn(
        "event=partition_stop_slow partition={} lost={} seconds={:.0f} waiting_on=\"{}\" "
        "producer=\"{}\"",
        partition, lost,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count(), waiting,
        producer_ ? producer_->activity() : std::string{"none"});
  }
}

void node::dispatch(runtime::raw_batch_ptr batch) {
  std::shared_lock<std::shared_mutex> lock{routes_mutex_};
  auto it = partitions_.find(batch->partition);
  if (it != partitions_.end())
    caf::anon_send(it->second.actor, runtime::batch_atom::value, std::move(batch));
}

}  // namespace fleettwin::node

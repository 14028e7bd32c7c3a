#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "actors/core/aggregate.hpp"
#include "actors/core/asset_model.hpp"
#include "actors/core/relations.hpp"
#include "actors/core/twin.hpp"
#include "actors/runtime/interfaces.hpp"
#include "actors/runtime/twin_cache.hpp"

namespace fleettwin::runtime {

/// Definitions the cluster shares: replaced as a whole when one changes,
/// read by every actor (thread-safe).
template <class T>
class snapshot_holder {
public:
  explicit snapshot_holder(std::shared_ptr<const T> r = nullptr) : current_(std::move(r)) {}
  std::shared_ptr<const T> get() const {
    return std::atomic_load(&current_);
  }
  void set(std::shared_ptr<const T> r) {
    std::atomic_store(&current_, std::move(r));
  }

private:
  std::shared_ptr<const T> current_;
};

/// The cluster's aggregate kinds and relation rules.
using kinds_holder = snapshot_holder<core::kind_registry>;
/// The cluster's asset models, by the kind they describe.
using models_holder = snapshot_holder<core::model_set>;

/// What every asset actor of a node shares.
struct asset_config {
  core::limits limits;
  /// Samples kept per property in the history ring; 0 disables history.
  uint32_t history_capacity = 256;
  /// Versions kept in an aggregate's measure history ring; 0 disables it.
  uint32_t aggregate_history_capacity = 1024;
  /// Wall clock in Unix ms; injectable so tests are deterministic.
  std::function<int64_t()> clock = system_clock_ms;
  /// Where snapshots handed to readers are published (may be null).
  std::shared_ptr<twin_cache> cache;
  /// Aggregate kinds and relation rules (null: no aggregates).
  std::shared_ptr<kinds_holder> kinds;
  /// Connectivity of members, for measures whose filter reads it.
  int64_t stale_after_ms = 30'000;
  /// How long an aggregate holds a member moving below it (see aggregate).
  int64_t hold_ms = 10'000;
  /// Aggregates keep changed member records in memory until their partition
  /// flushes them (a checkpoint) instead of writing each with its commit.
  bool checkpoint_members = false;
  /// Forecasts, anomaly scores and alerts on every numeric sample.
  bool analytics = true;
  /// One reported change per twin per work item (the item's changes of the
  /// twin merged: core::twin_change::first_version); false: one per record.
  bool merge_changes = true;
  /// Asset models by kind (null or missing: defaults for every property).
  std::shared_ptr<models_holder> models;

  static int64_t system_clock_ms();
};

struct asset_state {
  std::string asset_id;
  core::twin tw;
  /// Immutable copy handed to readers; rebuilt on the first read after a change.
  std::shared_ptr<const core::twin> snapshot;
  std::shared_ptr<const asset_config> config;
  core::apply_result scratch;
  /// The twin's fields as its parents last got them (leaf twins).
  std::optional<core::member_values> projected;
  /// The entity as an aggregate (ids in an aggregate kind's collection).
  std::unique_ptr<core::aggregate> agg;
  core::aggregate_header header;
  /// Members whose record changed since the last flush (checkpoint_members).
  std::set<std::string, std::less<>> unwritten;

  /// True while `snapshot` is published in the config's cache.
  bool cached = false;
  bool exit_hook = false;
  /// Bytes of the twin's last encoded state: the next encoding reserves them.
  uint32_t state_bytes = 0;

  std::shared_ptr<const core::twin> current();

  /// The twin's state record into `out`, sized up front from the last one (a
  /// state with analytics grows through seven reallocations to about 1 KiB).
  void encode_state(std::string& out);

  /// The state changed: drop the snapshot and withdraw it from the cache.
  void changed();

  static inline const char* name = "asset";
};

/// Spawns with the twin's stored state (empty for a new asset) and, for an
/// aggregate, its stored members.
asset_actor::behavior_type asset(asset_actor::stateful_pointer<asset_state> self,
                                 std::string asset_id, core::twin initial,
                                 std::shared_ptr<const asset_config> config,
                                 std::optional<stored_aggregate> aggregate);

}  // namespace fleettwin::runtime

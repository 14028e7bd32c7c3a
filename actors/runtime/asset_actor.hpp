#pragma once

#include <functional>
#include <memory>
#include <string>

#include "actors/core/twin.hpp"
#include "actors/runtime/interfaces.hpp"
#include "actors/runtime/twin_cache.hpp"

namespace fleettwin::runtime {

/// What every asset actor of a node shares.
struct asset_config {
  core::limits limits;
  /// Samples kept per property in the history ring; 0 disables history.
  uint32_t history_capacity = 256;
  /// Wall clock in Unix ms; injectable so tests are deterministic.
  std::function<int64_t()> clock = system_clock_ms;
  /// Where snapshots handed to readers are published (may be null).
  std::shared_ptr<twin_cache> cache;

  static int64_t system_clock_ms();
};

struct asset_state {
  std::string asset_id;
  core::twin tw;
  /// Immutable copy handed to readers; rebuilt on the first read after a change.
  std::shared_ptr<const core::twin> snapshot;
  std::shared_ptr<const asset_config> config;
  core::apply_result scratch;

  /// True while `snapshot` is published in the config's cache.
  bool cached = false;
  bool exit_hook = false;

  std::shared_ptr<const core::twin> current();

  /// The state changed: drop the snapshot and withdraw it from the cache.
  void changed();

  static inline const char* name = "asset";
};

/// Spawns with the twin's stored state (empty for a new asset).
asset_actor::behavior_type asset(asset_actor::stateful_pointer<asset_state> self,
                                 std::string asset_id, core::twin initial,
                                 std::shared_ptr<const asset_config> config);

}  // namespace fleettwin::runtime

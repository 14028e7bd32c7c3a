#pragma once

// The scenarios of a node: each a fork of live twins held as a RocksDB
// snapshot (copy-on-write: creating one copies nothing, and what it holds in
// memory is its inputs and results, not its twins), hypothetical inputs, and
// the result of its last run. Runs load the fork from the snapshot into a
// core::scenario_world and run it and its baseline forward (core/scenario)
// on a thread of their own, never on an actor or a gRPC thread.
//
// Floor: above storage, below grpc (DESIGN.md, "Layout").

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "actors/core/asset_model.hpp"
#include "actors/core/contributions.hpp"
#include "actors/core/relations.hpp"
#include "actors/core/scenario.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::scenario {

/// What a scenario forks: named twins, twins a filter matches, or every twin
/// below an aggregate (exactly one).
struct fork_spec {
  std::vector<std::string> names;
  core::filter where;
  std::string below;
};

/// Both runs of one RunScenario: the baseline (no inputs) and the scenario.
struct run_outcome {
  core::run_options options;
  core::run_result baseline;
  core::run_result scenario;
  double base_wall_s = 0;
  double wall_s = 0;
  int64_t finished_ms = 0;
};

/// A sweep: each setting tried and the best.
struct sweep_outcome {
  core::run_options options;
  core::sweep_options sweep;
  core::sweep_result result;
  double wall_s = 0;
  int64_t finished_ms = 0;
};

enum class run_state : uint8_t { created, running, done, failed };
const char* to_string(run_state s);

/// One scenario (immutable once published: changes replace it).
struct scenario {
  std::string id;
  std::string description;
  std::string owner;
  /// Set when its creator was confined to a tenant: only that tenant sees it.
  std::string tenant;
  int64_t created_ms = 0;
  fork_spec fork;
  std::shared_ptr<const storage::store_snapshot> snapshot;
  /// The partitions this node served when it forked.
  std::vector<int32_t> partitions;
  std::vector<core::scenario_input> inputs;
  /// Each input as the client sent it (serialized), to echo.
  std::vector<std::string> raw_inputs;
  run_state state = run_state::created;
  std::string error;
  std::shared_ptr<const run_outcome> last;
  std::shared_ptr<const sweep_outcome> last_sweep;

  /// Bytes it holds in memory (inputs, results), an estimate.
  uint64_t memory_bytes() const;
};

/// Why a call on the registry failed.
enum class failure : uint8_t {
  none,
  not_found,
  exists,
  /// A bound of the node (scenarios, running runs, inputs).
  exhausted,
  /// The fork or an input cannot be applied (named twin missing, bad input...).
  invalid,
  /// The scenario is running.
  busy,
  /// A twin or aggregate lives on another node, or storage failed.
  unavailable,
};

struct outcome {
  failure code = failure::none;
  std::string message;
  explicit operator bool() const {
    return code == failure::none;
  }
};

struct registry_limits {
  size_t max_scenarios = 16;
  /// Twins a fork may hold (added twins included).
  size_t max_twins = 100'000;
  size_t max_inputs = 256;
  size_t max_running = 1;
  /// The longest run: steps of both runs together.
  uint64_t max_steps = 100'000;
};

/// Where the registry reads what a fork needs.
struct world_sources {
  storage::rocksdb_store* store = nullptr;
  /// The partition of `id` when this node serves it; nullopt with why otherwise.
  std::function<std::optional<int32_t>(const std::string& id, std::string& why)> partition_of;
  std::function<std::vector<int32_t>()> local_partitions;
  std::function<std::shared_ptr<const core::kind_registry>()> kinds;
  std::function<std::shared_ptr<const core::model_set>()> models;
  int64_t stale_after_ms = 30'000;
};

/// Progress of a run: steps done of both runs, their total, virtual ms per wall second.
using run_progress = std::function<void(uint64_t done, uint64_t total, double speed)>;
/// The end of a run: the scenario as it is afterwards, or why it failed.
using run_done = std::function<void(const outcome& o, std::shared_ptr<const scenario> s)>;

class registry {
public:
  registry(world_sources sources, registry_limits limits);
  /// Stops the runs in progress and waits for them.
  ~registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  /// Forks: takes the snapshot and checks the fork selects something
  /// (blocking: call on the query pool).
  outcome create(scenario s, std::shared_ptr<const scenario>& out);
  /// The scenario `id`, when `tenant` (empty: any) may see it.
  std::shared_ptr<const scenario> get(const std::string& id, const std::string& tenant) const;
  /// Scenarios after `after` by id, at most `n`, that `tenant` may see.
  std::vector<std::shared_ptr<const scenario>> list(const std::string& after, size_t n,
                                                    const std::string& tenant) const;
  outcome remove(const std::string& id, const std::string& tenant);
  outcome add_inputs(const std::string& id, const std::string& tenant,
                     std::vector<core::scenario_input> inputs, std::vector<std::string> raw,
                     bool replace, std::shared_ptr<const scenario>& out);
  /// Starts a run on a thread of its own; `progress` and `done` are called
  /// there. `cancelled` (if set) is polled: a client that went away.
  outcome start_run(const std::string& id, const std::string& tenant, core::run_options opts,
                    run_progress progress, run_done done, std::function<bool()> cancelled = {});

  /// Starts a sweep (see core::sweep) like a run; its result is kept as last_sweep.
  outcome start_sweep(const std::string& id, const std::string& tenant, core::run_options opts,
                      core::sweep_options sweep, run_progress progress, run_done done,
                      std::function<bool()> cancelled = {});

  /// Gauges.
  size_t size() const;
  size_t running() const;
  uint64_t memory_bytes() const;
  /// When the oldest scenario's snapshot was taken (ms; 0: none): what keeps the most
  /// overwritten versions from compaction.
  int64_t oldest_snapshot_ms() const;
  /// The virtual-time speed of the last run that finished (x real time).
  double last_speed() const;
  /// Runs that ended, by outcome: done, failed, cancelled.
  std::array<uint64_t, 3> runs() const;

  /// Loads the fork of `s` from its snapshot (blocking).
  outcome load_world(const scenario& s, core::scenario_world& w) const;

private:
  /// What a run or sweep leaves for its scenario.
  struct job_result {
    std::shared_ptr<const run_outcome> run;
    std::shared_ptr<const sweep_outcome> sweep;
    /// Virtual time per wall time.
    double speed = 0;
  };
  using job = std::function<outcome(const scenario& s, const std::function<bool()>& stopped,
                                    job_result& out)>;
  /// Checks a run's steps (`runs` runs of opts) against the bound.
  outcome check_run(const core::run_options& opts, uint64_t runs) const;
  outcome prepare_inputs(const scenario& s, const std::vector<core::scenario_input>& inputs,
                         core::scenario_world& w) const;
  /// Marks the scenario running and runs `j` on a thread of its own.
  outcome launch(const std::string& id, const std::string& tenant, job j, run_done done,
                 std::function<bool()> cancelled);
  void execute(const std::shared_ptr<const scenario>& s,
               const std::shared_ptr<std::atomic<bool>>& stop, const job& j, const run_done& done,
               const std::function<bool()>& cancelled);

  world_sources src_;
  registry_limits limits_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const scenario>, std::less<>> scenarios_;
  /// Runs in progress, by scenario id: their stop flags.
  std::map<std::string, std::shared_ptr<std::atomic<bool>>, std::less<>> stops_;
  /// Run threads, each with the flag it sets when it ends (then joined).
  std::vector<std::pair<std::shared_ptr<std::atomic<bool>>, std::thread>> threads_;
  std::atomic<uint64_t> last_speed_bits_{0};
  std::array<std::atomic<uint64_t>, 3> runs_{};
};

/// A scenario id: 1-64 of [a-z0-9-], starting with a letter or digit.
std::optional<std::string> validate_id(std::string_view id);

}  // namespace fleettwin::scenario

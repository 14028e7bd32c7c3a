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
#include "services/scenario/fork_part.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::scenario {

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
  /// The partitions this node served when it forked, and how many the cluster has.
  std::vector<int32_t> partitions;
  int32_t partition_count = 0;
  /// The other nodes' parts of the fork (a cluster), known there by part_id (the id
  /// and a suffix unique to this creation: a scenario created again under the same id
  /// never reads or releases the parts of one before it).
  std::vector<remote_part> parts;
  std::string part_id;
  /// What the calls on those parts carry (who they are made for: the creator).
  std::string forward_as;
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

struct registry_limits {
  size_t max_scenarios = 16;
  /// Twins a fork may hold (added twins included).
  size_t max_twins = 100'000;
  size_t max_inputs = 256;
  size_t max_running = 1;
  /// The longest run: steps of both runs together.
  uint64_t max_steps = 100'000;
  /// Parts of other nodes' scenarios this node holds.
  size_t max_parts = 64;
  /// A part nobody read for this long is released (its scenario's node may be gone).
  int64_t part_idle_ms = 24 * 3600 * 1000;
};

/// Where the registry reads what a fork needs.
struct world_sources {
  storage::rocksdb_store* store = nullptr;
  /// The cluster's partitions: this node's (`local`) and, by endpoint, the other
  /// nodes'; nullopt with why when some partition has no serving node now.
  std::function<std::optional<std::map<std::string, std::vector<int32_t>>>(
      std::vector<int32_t>& local, std::string& why)>
      plan;
  std::function<std::vector<int32_t>()> local_partitions;
  /// Calls on other nodes' parts (null: a single node).
  std::shared_ptr<part_client> parts;
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

  /// Reads back the scenarios this node kept (at its start, before serving): their
  /// definitions, inputs and results; each forks again from its point in time when it
  /// next runs. Returns how many.
  size_t restore(const std::function<std::optional<core::scenario_input>(
                     const std::string& raw, std::string& error)>& parse);

  /// Loads the fork of `s` from its snapshots (blocking).
  outcome load_world(const scenario& s, core::scenario_world& w) const;

  // --- parts of other nodes' scenarios (ScenarioPartService) -------------------

  /// Pins this node's part `id` of a scenario created on another node (blocking).
  outcome pin_part(const std::string& id, std::vector<int32_t> partitions, int32_t partition_count,
                   const fork_spec& spec, const std::string& tenant, fork_check& check,
                   int64_t& taken_ms);
  /// One page of a part's records, about `budget` bytes (blocking).
  /// `tenant` (empty: any): the caller's, which must be the part's.
  outcome part_entities(const std::string& id, const std::string& tenant, const std::string& after,
                        size_t budget, std::vector<part_record>& out, std::string& next);
  outcome part_twins(const std::string& id, const std::string& tenant, const fork_selection& sel,
                     const std::string& after, size_t budget, std::vector<part_record>& out,
                     std::string& next);
  void release_part(const std::string& id);
  /// Parts held for other nodes' scenarios.
  size_t parts() const;

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

  /// A part of another node's scenario: its snapshot, and when it was last read.
  struct held_part {
    std::shared_ptr<const snapshot_part> part;
    std::string tenant;
    int64_t used_ms = 0;
  };
  /// The part `id`, marked used (null: none).
  std::shared_ptr<const snapshot_part> use_part(const std::string& id, const std::string& tenant);
  /// Pins the fork of `s` (its snapshot, the other nodes' parts) and checks what it
  /// selects exists and is not too much (blocking).
  outcome take_fork(scenario& s) const;
  /// A restored scenario (no snapshot) forked again from its point in time; kept in
  /// place of `s` (blocking).
  outcome refork(const scenario& s, std::shared_ptr<const scenario>& out);
  static std::string record_key(std::string_view id);
  /// Keeps `s` across restarts (the store's records).
  void persist(const scenario& s) const;
  /// Drops the parts idle for longer than limits_.part_idle_ms (mutex_ held).
  void expire_parts(int64_t now_ms);
  /// Releases a scenario's parts on the other nodes (never blocks).
  void release_remote(const scenario& s) const;

  world_sources src_;
  registry_limits limits_;
  std::map<std::string, held_part, std::less<>> parts_;
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

#pragma once

// One node's share of a scenario's fork: the twins and aggregates of some
// partitions as a RocksDB snapshot saw them. A fork on a single node has one
// part, read from the node's own store; a fork in a cluster has one more on
// every other node serving some partitions, pinned there when the scenario is
// created and read page by page (ScenarioPartService) when it runs. Whatever
// node owns a twin, a run sees the same world: the parts are merged by id.
//
// Floor: above storage, below grpc (DESIGN.md, "Layout").

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "actors/core/asset_model.hpp"
#include "actors/core/filter.hpp"
#include "actors/core/relations.hpp"
#include "actors/core/twin.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::scenario {

/// What a scenario forks: named twins, twins a filter matches, or every twin
/// below an aggregate (exactly one).
struct fork_spec {
  std::vector<std::string> names;
  core::filter where;
  std::string below;
  /// A past point to fork from (ms since the epoch; 0: now): the twins as they were
  /// then, rebuilt from their retained history (see fork_selection::rewind_to_ms).
  int64_t at_ms = 0;
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

/// Which twins of a part a run takes whole (the others come as their
/// relations and fields: frozen members, if a forked aggregate counts them).
struct fork_selection {
  /// Empty: every tenant's twins are visible.
  std::string tenant;
  std::set<std::string, std::less<>> names;
  /// A `below` fork: the aggregate and every aggregate below it (a twin with
  /// a relation to one of them is forked).
  std::set<std::string, std::less<>> parents;
  /// A filter fork (matches_all otherwise).
  core::filter where;
  /// The fork's point in time and when a twin counts as stale (for filters).
  int64_t at_ms = 0;
  int64_t stale_after_ms = 30'000;
  /// A fork from a past point: the twins as they were then, rebuilt from their
  /// retained history (core::rewind; a twin that had not reported yet is left out).
  /// 0: as the snapshot saw them.
  int64_t rewind_to_ms = 0;

  bool visible(const core::twin& tw) const {
    return tenant.empty() || tw.tenant == tenant;
  }
  /// Whether the fork takes `tw` whole.
  bool forks(const core::twin& tw) const;
};

/// What a part holds of a fork, checked when the scenario is created.
struct fork_check {
  std::vector<std::string> names_found;
  bool below_found = false;
  uint64_t below_twins = 0;
  /// Twins a filter matches.
  uint64_t matched = 0;
};

/// A twin or aggregate record of a part (core::encode_twin), and whether the
/// fork takes the twin whole.
struct part_record {
  std::string bytes;
  bool forked = false;
};

/// Drops what a run never reads: the open history segment (up to 256 KiB of
/// samples, the live twin's to write). A frozen member's projection may read
/// its analytics (quality, health), so the rest stays.
inline void strip_for_run(core::twin& tw) {
  std::string{}.swap(tw.open_history);
}

/// A part read from this node's store under a snapshot.
class snapshot_part {
public:
  /// `models` (may be null): the kinds' asset models, which rewinding analyses under.
  snapshot_part(storage::rocksdb_store& store, std::shared_ptr<const storage::store_snapshot> at,
                std::vector<int32_t> partitions, int32_t partition_count,
                std::shared_ptr<const core::kind_registry> kinds,
                std::shared_ptr<const core::model_set> models = nullptr);

  /// What the part holds of `spec` for `tenant` (at most `max_twins` + 1 counted).
  outcome check(const fork_spec& spec, const std::string& tenant, int64_t stale_after_ms,
                uint64_t max_twins, fork_check& out) const;
  /// The aggregates' own records (attributes, relations to their parents)
  /// after `after`, until about `budget` bytes (0: all); `next` is empty after
  /// the last one.
  outcome entities(const std::string& after, size_t budget, std::vector<part_record>& out,
                   std::string& next) const;
  /// The twins after `after` that `sel` forks, and the others with relations,
  /// stripped (strip_for_run), until about `budget` bytes.
  outcome twins(const fork_selection& sel, const std::string& after, size_t budget,
                std::vector<part_record>& out, std::string& next) const;
  /// The aggregates' own records, all of them.
  outcome each_entity(const std::function<void(core::twin&&)>& each) const;
  /// Every twin `twins` would give, handed to `each` as it is read (not stripped).
  outcome each_twin(const fork_selection& sel,
                    const std::function<void(const core::twin&, bool forked)>& each) const;

  const storage::store_snapshot& snapshot() const {
    return *at_;
  }

private:
  /// `tw` as `sel` wants it handed out: rewound (false: it did not exist then).
  bool prepare(const fork_selection& sel, core::twin& tw, std::string& error) const;

  storage::rocksdb_store& store_;
  std::shared_ptr<const storage::store_snapshot> at_;
  std::vector<int32_t> partitions_;
  int32_t partition_count_;
  std::shared_ptr<const core::kind_registry> kinds_;
  std::shared_ptr<const core::model_set> models_;
};

/// Another node's part of a scenario, as the node that created it knows it.
struct remote_part {
  std::string endpoint;
  std::vector<int32_t> partitions;
  int64_t taken_ms = 0;
};

/// Calls on other nodes' parts (ScenarioPartService through call forwarding).
/// `as`: the metadata the calls carry (who they are made for). Blocking, except
/// release.
class part_client {
public:
  virtual ~part_client() = default;
  virtual outcome pin(const std::string& endpoint, const std::string& as, const std::string& id,
                      const std::vector<int32_t>& partitions, int32_t partition_count,
                      const fork_spec& spec, const std::string& tenant, fork_check& check,
                      int64_t& taken_ms) = 0;
  /// One page of the part's records (see snapshot_part::entities and twins).
  virtual outcome entities(const std::string& endpoint, const std::string& as,
                           const std::string& id, const std::string& after,
                           std::vector<part_record>& out, std::string& next) = 0;
  virtual outcome twins(const std::string& endpoint, const std::string& as, const std::string& id,
                        const fork_selection& sel, const std::string& after,
                        std::vector<part_record>& out, std::string& next) = 0;
  virtual void release(const std::string& endpoint, const std::string& as,
                       const std::string& id) = 0;
};

}  // namespace fleettwin::scenario

#pragma once

// The aggregate kinds of the cluster: those of the node's configuration
// file, overridden and extended by PutAggregateKind. A put is written to the
// models topic (key "aggregate-kind/<name>", a fleettwin.v1.AggregateKind;
// see definitions.hpp) that every node follows, so every node applies the
// same kinds in the same order; each node also keeps the kinds it applied in
// its store, so that a restart on an empty (embedded) Kafka keeps them.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "actors/core/relations.hpp"
#include "actors/runtime/asset_actor.hpp"
#include "services/node/definitions.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::node {

class kind_catalog {
public:
  /// Reads the kinds of `defs` (before it starts).
  kind_catalog(std::shared_ptr<runtime::kinds_holder> holder, storage::rocksdb_store& store,
               definitions& defs);

  /// Applies the kinds stored locally (before `defs` starts).
  void load_local();
  /// Once `defs` caught up: writes the kinds stored locally that the topic
  /// lacks (a fresh Kafka) back to it.
  void republish(std::chrono::milliseconds timeout);

  /// Outcome of a put.
  struct put_result {
    bool invalid = false;  // the kind is refused (INVALID_ARGUMENT), else UNAVAILABLE
    std::string error;     // empty on success
    core::aggregate_kind kind;
  };
  /// Checks `kind`, writes it with the next revision and waits until this
  /// node applied it (blocking: call from the query pool).
  put_result put(core::aggregate_kind kind, std::chrono::milliseconds timeout);

  /// Called (from the models topic's thread) after a kind changed.
  void on_change(std::function<void()> f) {
    on_change_ = std::move(f);
  }

private:
  void on_record(std::string_view key, std::string_view value);
  /// Applies a kind with a higher revision than the one known; false when
  /// the registry refuses it.
  bool apply(const core::aggregate_kind& kind, std::string& error);

  std::shared_ptr<runtime::kinds_holder> holder_;
  storage::rocksdb_store& store_;
  definitions& defs_;
  std::mutex mutex_;
  std::condition_variable applied_;
  std::mutex put_mutex_;  // one put at a time per node
  /// The kinds stored locally when the node started.
  std::vector<core::aggregate_kind> local_;
  std::function<void()> on_change_;
};

}  // namespace fleettwin::node

#pragma once

// The aggregate kinds of the cluster: those of the node's configuration
// file, overridden and extended by PutAggregateKind. A put is written to the
// compacted models topic (key "aggregate-kind/<name>", a
// fleettwin.v1.AggregateKind) that every node follows, so every node applies
// the same kinds in the same order; each node also keeps the kinds it
// applied in its store, so that a restart on an empty (embedded) Kafka keeps
// them.

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
#include "services/kafka/compacted_log.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::node {

class kind_catalog {
public:
  kind_catalog(std::shared_ptr<runtime::kinds_holder> holder, storage::rocksdb_store& store);

  /// Applies the kinds stored locally, then follows the models topic until it
  /// caught up (every node then has the same kinds); false with `error`.
  bool start(kafka::compacted_log_options opts, std::chrono::milliseconds timeout,
             std::string& error);

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
  std::unique_ptr<kafka::compacted_log> log_;
  std::mutex mutex_;
  std::condition_variable applied_;
  std::mutex put_mutex_;  // one put at a time per node
  /// Kinds the topic holds (read since start).
  std::set<std::string> seen_;
  std::function<void()> on_change_;
};

/// The models-topic key of a kind.
std::string kind_key(std::string_view name);

}  // namespace fleettwin::node

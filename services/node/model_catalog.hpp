#pragma once

// The asset models of the cluster: those of the node's file (--models),
// overridden and extended by PutModel. A put is written to the models topic
// (key "asset-model/<kind>", a fleettwin.v1.AssetModel; see
// definitions.hpp) that every node follows, so every node applies the same
// models in the same order; each node keeps the models it applied in its
// store, so that a restart on an empty (embedded) Kafka keeps them.

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "actors/core/asset_model.hpp"
#include "actors/runtime/asset_actor.hpp"
#include "services/node/definitions.hpp"
#include "services/storage/rocksdb_store.hpp"

namespace fleettwin::node {

class model_catalog {
public:
  /// Reads the models of `defs` (before it starts) into `holder`.
  model_catalog(std::shared_ptr<runtime::models_holder> holder, storage::rocksdb_store& store,
                definitions& defs);

  /// Applies the models stored locally (before `defs` starts).
  void load_local();
  /// Once `defs` caught up: writes the models stored locally that the topic
  /// lacks (a fresh Kafka) back to it.
  void republish(std::chrono::milliseconds timeout);

  struct put_result {
    bool invalid = false;  // the model is refused (INVALID_ARGUMENT), else UNAVAILABLE
    std::string error;     // empty on success
    core::asset_model model;
  };
  /// Checks `m`, writes it with the next revision and waits until this node
  /// applied it (blocking: call from the query pool).
  put_result put(core::asset_model m, std::chrono::milliseconds timeout);

private:
  void on_record(std::string_view kind, std::string_view value);
  /// Applies a model with a higher revision than the one known.
  void apply(const core::asset_model& m);

  std::shared_ptr<runtime::models_holder> holder_;
  storage::rocksdb_store& store_;
  definitions& defs_;
  std::mutex mutex_;
  std::condition_variable applied_;
  std::mutex put_mutex_;  // one put at a time per node
  std::vector<core::asset_model> local_;
};

}  // namespace fleettwin::node

#pragma once

#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "actors/core/twin.hpp"
#include "actors/runtime/asset_actor.hpp"
#include "fleettwin/v1/aggregate.pb.h"
#include "services/grpc/twin_service.hpp"

namespace fleettwin::grpc_api {

/// Reads of the relation graph and of its entities from any node: from the
/// entity's actor when this node serves it, else from the node that does
/// (one forwarded call). Callbacks run on actor or cluster threads; none
/// blocks.
class graph_lookup {
public:
  /// `may_forward`: false for a call another node forwarded here (it must
  /// not travel further): entities served elsewhere are then UNAVAILABLE.
  graph_lookup(twin_backend& backend, std::shared_ptr<runtime::kinds_holder> kinds,
               bool may_forward);

  template <class T>
  using answer = std::function<void(::grpc::Status, T)>;

  /// An entity's relations to its parents and, for an aggregate, its direct
  /// members' relations to it (name: "twins/{id}" or "aggregates/{id}").
  void relations(const std::string& id, bool twin, answer<fleettwin::v1::Relations> done);
  /// A twin as filters read it.
  void twin(const std::string& id, answer<core::twin> done);
  /// An aggregate resource.
  void aggregate(const std::string& id, answer<fleettwin::v1::Aggregate> done);

  bool is_aggregate(const std::string& id) const;

private:
  /// Forwards `request` to the owner of `id` (or answers UNAVAILABLE).
  void forward(const std::string& id, const std::string& why, const char* method,
               std::string request, std::function<void(::grpc::Status, std::string)> done);

  twin_backend& backend_;
  std::shared_ptr<runtime::kinds_holder> kinds_;
  bool may_forward_;
};

/// Fills `out` with a child's relations to its parents of the wanted types
/// (all when empty).
void add_parents(const std::string& child, const core::twin& tw, const std::set<std::string>& types,
                 fleettwin::v1::Relations& out);

}  // namespace fleettwin::grpc_api

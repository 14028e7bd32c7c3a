#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

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
  /// `metadata`: what lookups forwarded to other nodes carry (call::forward_metadata():
  /// the caller, whom the owner checks like its own; node_metadata(): the node itself).
  graph_lookup(twin_backend& backend, std::shared_ptr<runtime::kinds_holder> kinds,
               bool may_forward, std::string metadata);

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
  std::string metadata_;
};

/// Forwarded metadata for a lookup the node makes for itself (a check that must see every
/// tenant, e.g. whom an aggregate counts): on a node that authenticates, a caller that is
/// the node (admin, no tenant); "" on one that does not.
std::string node_metadata(const class call& c);

/// How long one lookup may take (the owner is down or moving: UNAVAILABLE).
inline constexpr auto lookup_timeout = std::chrono::seconds{10};

/// Runs `start(i, done)` for i in [0, n) concurrently and waits for all (on a
/// query pool thread, never a gRPC or actor thread); the first failure wins.
template <class T>
::grpc::Status gather_lookups(size_t n, std::vector<T>& out,
                              const std::function<void(size_t, graph_lookup::answer<T>)>& start) {
  struct shared {
    std::mutex mutex;
    std::vector<T>* out;
    std::optional<::grpc::Status> error;
    size_t remaining;
    std::promise<void> done;
  };
  out.assign(n, T{});
  if (n == 0)
    return ::grpc::Status::OK;
  auto s = std::make_shared<shared>();
  s->out = &out;
  s->remaining = n;
  auto finished = s->done.get_future();
  for (size_t i = 0; i < n; ++i)
    start(i, [s, i](::grpc::Status st, T value) {
      std::lock_guard<std::mutex> guard{s->mutex};
      if (!st.ok() && !s->error)
        s->error = std::move(st);
      else if (st.ok() && s->out)
        (*s->out)[i] = std::move(value);
      if (--s->remaining == 0)
        s->done.set_value();
    });
  if (finished.wait_for(lookup_timeout) != std::future_status::ready) {
    std::lock_guard<std::mutex> guard{s->mutex};
    s->out = nullptr;  // late answers go nowhere
    return {::grpc::StatusCode::UNAVAILABLE, "a node did not answer within 10 s; retry"};
  }
  return s->error ? *s->error : ::grpc::Status::OK;
}

/// Why the caller of `c` may not have what a lookup of entity `name` ("twins/{id}" or
/// "aggregates/{id}") answered (`st`, the entity's `tenant`); nullopt when it may. For a
/// caller confined to a tenant, an entity of another tenant and one that does not exist
/// answer alike (NOT_FOUND).
std::optional<::grpc::Status> lookup_refusal(const class call& c, const std::string& name,
                                             const ::grpc::Status& st, const std::string& tenant);

/// Fills `out` with a child's relations to its parents of the wanted types
/// (all when empty).
void add_parents(const std::string& child, const core::twin& tw, const std::set<std::string>& types,
                 fleettwin::v1::Relations& out);

}  // namespace fleettwin::grpc_api

#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "actors/runtime/asset_actor.hpp"
#include "fleettwin/v1/aggregate.grpc.pb.h"
#include "services/grpc/aggregate_watch.hpp"
#include "services/grpc/query_pool.hpp"
#include "services/grpc/twin_service.hpp"
#include "services/metrics/metrics.hpp"

namespace fleettwin::grpc_api {

/// Writes an aggregate kind for the whole cluster and waits until this node
/// applied it (blocking: called on the query pool). On success `kind` is the
/// kind as applied (with its revision); otherwise `error`, and `invalid`
/// when the kind itself is refused.
using kind_writer =
    std::function<bool(core::aggregate_kind& kind, bool& invalid, std::string& error)>;

/// fleettwin.v1.AggregateService: aggregates, their members and relations.
/// Every node answers; calls for an aggregate or child served elsewhere are
/// forwarded to its owner, like twins.
class aggregate_service final : public fleettwin::v1::AggregateService::CallbackService {
public:
  /// `watch` (may be null: WatchAggregates is then UNAVAILABLE) follows the
  /// cluster's committed aggregate changes.
  aggregate_service(twin_backend& backend, query_pool& pool,
                    std::shared_ptr<runtime::kinds_holder> kinds, aggregate_watch_hub* watch,
                    kind_writer put_kind, metrics::grpc_probe& probe, service_limits limits,
                    std::shared_ptr<runtime::models_holder> models = nullptr);

  ::grpc::ServerWriteReactor<fleettwin::v1::AggregateChange>* WatchAggregates(
      ::grpc::CallbackServerContext* ctx,
      const fleettwin::v1::WatchAggregatesRequest* req) override;

  ::grpc::ServerUnaryReactor* GetAggregate(::grpc::CallbackServerContext* ctx,
                                           const fleettwin::v1::GetAggregateRequest* req,
                                           fleettwin::v1::Aggregate* resp) override;
  ::grpc::ServerUnaryReactor* BatchGetAggregates(
      ::grpc::CallbackServerContext* ctx, const fleettwin::v1::BatchGetAggregatesRequest* req,
      fleettwin::v1::BatchGetAggregatesResponse* resp) override;
  ::grpc::ServerUnaryReactor* GetAggregateHistory(
      ::grpc::CallbackServerContext* ctx, const fleettwin::v1::GetAggregateHistoryRequest* req,
      fleettwin::v1::GetAggregateHistoryResponse* resp) override;
  ::grpc::ServerUnaryReactor* ListAggregates(::grpc::CallbackServerContext* ctx,
                                             const fleettwin::v1::ListAggregatesRequest* req,
                                             fleettwin::v1::ListAggregatesResponse* resp) override;
  ::grpc::ServerUnaryReactor* ListMembers(::grpc::CallbackServerContext* ctx,
                                          const fleettwin::v1::ListMembersRequest* req,
                                          fleettwin::v1::ListMembersResponse* resp) override;
  ::grpc::ServerUnaryReactor* GetRelations(::grpc::CallbackServerContext* ctx,
                                           const fleettwin::v1::GetRelationsRequest* req,
                                           fleettwin::v1::Relations* resp) override;
  ::grpc::ServerUnaryReactor* Traverse(::grpc::CallbackServerContext* ctx,
                                       const fleettwin::v1::TraverseRequest* req,
                                       fleettwin::v1::TraverseResponse* resp) override;
  ::grpc::ServerUnaryReactor* SetRelations(::grpc::CallbackServerContext* ctx,
                                           const fleettwin::v1::SetRelationsRequest* req,
                                           fleettwin::v1::Relations* resp) override;
  ::grpc::ServerUnaryReactor* DeleteRelations(::grpc::CallbackServerContext* ctx,
                                              const fleettwin::v1::DeleteRelationsRequest* req,
                                              fleettwin::v1::Relations* resp) override;
  ::grpc::ServerUnaryReactor* PutAggregateKind(::grpc::CallbackServerContext* ctx,
                                               const fleettwin::v1::PutAggregateKindRequest* req,
                                               fleettwin::v1::AggregateKind* resp) override;
  ::grpc::ServerUnaryReactor* ListAggregateKinds(
      ::grpc::CallbackServerContext* ctx, const fleettwin::v1::ListAggregateKindsRequest* req,
      fleettwin::v1::ListAggregateKindsResponse* resp) override;

private:
  /// The aggregate id of `name`; finishes `c` with INVALID_ARGUMENT when
  /// the name is not an aggregate's.
  std::optional<std::string> aggregate_id(const class call& c, const std::string& name) const;

  /// The id of a twin or aggregate ("twins/{id}" or "aggregates/{id}");
  /// finishes `c` with INVALID_ARGUMENT (naming `field`) otherwise.
  std::optional<std::string> entity_id(const class call& c, const std::string& name,
                                       const char* field) const;
  /// Sends a relation change to the child's partition, or forwards the call.
  template <class Request>
  void change_relations(const class call& c, const std::string& child, core::relation_update update,
                        const char* method, const Request& req, fleettwin::v1::Relations* resp,
                        std::shared_ptr<const runtime::audit_entry> audit);

  /// For a caller confined to a tenant: runs `then` on the query pool once the relation
  /// change may go ahead (the child is its tenant's, and no parent counts twins of another
  /// tenant); finishes `c` otherwise.
  void when_relatable(const class call& c, const std::string& child, bool child_twin,
                      std::vector<std::string> parents, std::function<void()> then);

  twin_backend& backend_;
  query_pool& pool_;
  std::shared_ptr<runtime::kinds_holder> kinds_;
  std::shared_ptr<runtime::models_holder> models_;
  aggregate_watch_hub* watch_;
  kind_writer put_kind_;
  metrics::grpc_probe& probe_;
  service_limits limits_;
  metrics::method_probe& get_;
  metrics::method_probe& batch_get_;
  metrics::method_probe& history_;
  metrics::method_probe& list_;
  metrics::method_probe& members_;
  metrics::method_probe& relations_;
  metrics::method_probe& traverse_;
  metrics::method_probe& set_relations_;
  metrics::method_probe& delete_relations_;
  metrics::method_probe& kinds_list_;
  metrics::method_probe& kinds_put_;
};

void kind_to_proto(const core::aggregate_kind& k, fleettwin::v1::AggregateKind& out);

/// An aggregate as filters see it: a twin whose reported properties are its
/// measures (and member_twins, members).
core::twin aggregate_as_twin(const fleettwin::v1::Aggregate& a);

/// "aggregates/{id}" -> id, checked against the kinds; nullopt with the
/// reason (INVALID_ARGUMENT) otherwise.
std::optional<std::string> parse_aggregate_name(const std::string& name,
                                                const core::kind_registry* kinds,
                                                std::string& error);

}  // namespace fleettwin::grpc_api

#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "actors/runtime/asset_actor.hpp"
#include "actors/runtime/interfaces.hpp"
#include "fleettwin/v1/service.grpc.pb.h"
#include "services/grpc/admission.hpp"
#include "services/grpc/privacy.hpp"
#include "services/grpc/query_pool.hpp"
#include "services/grpc/watch_hub.hpp"
#include "services/metrics/metrics.hpp"

namespace fleettwin::storage {
class rocksdb_store;
}

namespace fleettwin::grpc_api {

/// Where a twin lives.
struct route {
  runtime::partition_actor actor;
  int32_t partition = 0;
};

/// What the gRPC services need from the node.
class twin_backend {
public:
  virtual ~twin_backend() = default;
  /// The owner of the asset's partition; nullopt with the reason when this
  /// node cannot serve it now (answered as UNAVAILABLE).
  virtual std::optional<route> route_asset(const std::string& asset_id, std::string& why) = 0;
  virtual std::vector<int32_t> local_partitions() = 0;
  virtual storage::rocksdb_store& store() = 0;
  virtual int64_t stale_after_ms() const = 0;
  /// A published snapshot of a resident twin, answered without an actor hop.
  virtual std::shared_ptr<const core::twin> cached_twin(const std::string& asset_id) = 0;
  virtual void node_status(std::function<void(fleettwin::v1::NodeStatus)> done) = 0;

  // --- cluster: calls for twins this node does not serve ---------------------

  /// The cluster endpoint of the node serving the asset's partition, when
  /// that is another node; nullopt with the reason otherwise (answered as
  /// UNAVAILABLE when the partition is not served here either).
  virtual std::optional<std::string> remote_owner(const std::string& asset_id,
                                                  std::string& why) = 0;
  /// Which node lists which partitions for a cluster-wide ListTwins: this
  /// node's own and, by endpoint, the others'; nullopt with the reason when
  /// some partition has no serving node right now.
  virtual std::optional<std::map<std::string, std::vector<int32_t>>> list_plan(
      std::vector<int32_t>& local, std::string& why) = 0;
  /// Sends a serialized call to the node at `endpoint` (never blocks).
  virtual void forward(const std::string& endpoint, const std::string& method, std::string request,
                       std::string metadata, runtime::forward_completion done) = 0;
  /// Also streams the matching changes of every other node into `stream`
  /// (until it is done).
  virtual void watch_cluster(watch_stream* stream, const std::string& asset_id,
                             const std::string& filter) = 0;
  /// The cluster as this node sees it.
  virtual void cluster_status(std::function<void(fleettwin::v1::ClusterStatus)> done) = 0;
  /// Writes an audit entry outside any transaction (refused or failed writes, admin
  /// calls, reads of sensitive properties); never blocks.
  virtual void audit(runtime::audit_entry entry) {}
  /// Reads the audit trail of `target` since `since_ms`, the newest `limit` events, into
  /// `out` (blocking: called on the query pool); the status to answer.
  virtual ::grpc::Status audit_trail(const std::string& target, int64_t since_ms, size_t limit,
                                     fleettwin::v1::ListAuditEventsResponse& out) {
    return {::grpc::StatusCode::FAILED_PRECONDITION, "this node keeps no audit topic"};
  }
  /// The node's per-principal limits (nullptr: none).
  virtual admission* gate() {
    return nullptr;
  }
};

struct service_limits {
  size_t max_batch_get = 1000;
  int32_t default_page_size = 100;
  int32_t max_page_size = 1000;
  /// Twins examined per ListTwins page before a short page is returned.
  size_t max_scanned_per_page = 20'000;
  size_t max_watch_queue = 10'000;
};

class twin_service final : public fleettwin::v1::TwinService::CallbackService {
public:
  /// `models` (may be null: defaults) sets the forecasters' parameters.
  twin_service(twin_backend& backend, query_pool& pool, watch_hub& hub, metrics::grpc_probe& probe,
               service_limits limits, std::shared_ptr<runtime::models_holder> models = nullptr);

  ::grpc::ServerUnaryReactor* GetTwin(::grpc::CallbackServerContext* ctx,
                                      const fleettwin::v1::GetTwinRequest* req,
                                      fleettwin::v1::Twin* resp) override;
  ::grpc::ServerUnaryReactor* BatchGetTwins(::grpc::CallbackServerContext* ctx,
                                            const fleettwin::v1::BatchGetTwinsRequest* req,
                                            fleettwin::v1::BatchGetTwinsResponse* resp) override;
  ::grpc::ServerUnaryReactor* ListTwins(::grpc::CallbackServerContext* ctx,
                                        const fleettwin::v1::ListTwinsRequest* req,
                                        fleettwin::v1::ListTwinsResponse* resp) override;
  ::grpc::ServerUnaryReactor* UpdateDesired(::grpc::CallbackServerContext* ctx,
                                            const fleettwin::v1::UpdateDesiredRequest* req,
                                            fleettwin::v1::Twin* resp) override;
  /// In bulk_desired.cpp.
  ::grpc::ServerUnaryReactor* BatchUpdateDesired(
      ::grpc::CallbackServerContext* ctx, const fleettwin::v1::BatchUpdateDesiredRequest* req,
      fleettwin::v1::BatchUpdateDesiredResponse* resp) override;
  /// In bulk_desired.cpp.
  ::grpc::ServerWriteReactor<fleettwin::v1::BulkUpdateDesiredProgress>* BulkUpdateDesired(
      ::grpc::CallbackServerContext* ctx,
      const fleettwin::v1::BulkUpdateDesiredRequest* req) override;
  ::grpc::ServerUnaryReactor* GetHistory(::grpc::CallbackServerContext* ctx,
                                         const fleettwin::v1::GetHistoryRequest* req,
                                         fleettwin::v1::GetHistoryResponse* resp) override;
  ::grpc::ServerWriteReactor<fleettwin::v1::TwinChange>* WatchTwins(
      ::grpc::CallbackServerContext* ctx, const fleettwin::v1::WatchTwinsRequest* req) override;
  /// In forecast.cpp.
  ::grpc::ServerUnaryReactor* GetForecast(::grpc::CallbackServerContext* ctx,
                                          const fleettwin::v1::GetForecastRequest* req,
                                          fleettwin::v1::Forecast* resp) override;
  /// In erasure.cpp.
  ::grpc::ServerUnaryReactor* DeleteTwin(::grpc::CallbackServerContext* ctx,
                                         const fleettwin::v1::DeleteTwinRequest* req,
                                         fleettwin::v1::DeleteTwinResponse* resp) override;

private:
  /// What the call's caller may not read.
  privacy privacy_of(const class call& c) const;

  twin_backend& backend_;
  query_pool& pool_;
  watch_hub& hub_;
  metrics::grpc_probe& probe_;
  service_limits limits_;
  metrics::method_probe& get_twin_;
  metrics::method_probe& batch_get_;
  metrics::method_probe& list_;
  metrics::method_probe& update_desired_;
  metrics::method_probe& batch_update_;
  metrics::method_probe& history_;
  metrics::method_probe& forecast_;
  metrics::method_probe& delete_;
  std::shared_ptr<runtime::models_holder> models_;
};

class admin_service final : public fleettwin::v1::AdminService::CallbackService {
public:
  admin_service(twin_backend& backend, query_pool& pool, metrics::grpc_probe& probe);

  ::grpc::ServerUnaryReactor* GetCluster(::grpc::CallbackServerContext* ctx,
                                         const fleettwin::v1::GetClusterRequest* req,
                                         fleettwin::v1::ClusterStatus* resp) override;
  /// In audit_trail.cpp.
  ::grpc::ServerUnaryReactor* ListAuditEvents(
      ::grpc::CallbackServerContext* ctx, const fleettwin::v1::ListAuditEventsRequest* req,
      fleettwin::v1::ListAuditEventsResponse* resp) override;

private:
  twin_backend& backend_;
  query_pool& pool_;
  metrics::method_probe& cluster_;
  metrics::method_probe& audit_;
};

class node_service final : public fleettwin::v1::NodeService::CallbackService {
public:
  node_service(twin_backend& backend, metrics::grpc_probe& probe);

  ::grpc::ServerUnaryReactor* GetStatus(::grpc::CallbackServerContext* ctx,
                                        const fleettwin::v1::GetStatusRequest* req,
                                        fleettwin::v1::NodeStatus* resp) override;
  ::grpc::ServerUnaryReactor* Ping(::grpc::CallbackServerContext* ctx,
                                   const fleettwin::v1::PingRequest* req,
                                   fleettwin::v1::PingResponse* resp) override;

private:
  twin_backend& backend_;
  metrics::grpc_probe& probe_;
  metrics::method_probe& status_;
};

/// Merges the ListTwins pages of several nodes (each over its partitions)
/// into one page of `page_size` in asset-id order.
::grpc::Status merge_pages(std::vector<fleettwin::v1::ListTwinsResponse>& parts,
                           const std::string& filter, size_t page_size,
                           fleettwin::v1::ListTwinsResponse& out);

/// Unary calls of the services started and not finished yet (a drain on
/// shutdown waits for them).
int64_t calls_in_flight();

/// Encodes a ListTwins continuation (opaque to clients, bound to the filter).
std::string encode_page_token(const std::string& filter, const std::string& last_asset_id);

/// Decodes a token; nullopt when it is malformed or was issued for another filter.
std::optional<std::string> decode_page_token(const std::string& token, const std::string& filter);

}  // namespace fleettwin::grpc_api

#pragma once

#include <string>
#include <string_view>

#include <grpcpp/grpcpp.h>

#include "actors/runtime/asset_actor.hpp"
#include "fleettwin/v1/analytics.grpc.pb.h"
#include "services/grpc/feed_watch.hpp"
#include "services/grpc/query_pool.hpp"
#include "services/grpc/twin_service.hpp"
#include "services/metrics/metrics.hpp"

namespace fleettwin::grpc_api {

/// Fans the committed alert events of the whole cluster (records of the
/// alerts topic, from kafka::topic_feed) out to WatchAlerts streams.
using alert_watch_hub = feed_hub<fleettwin::v1::AlertEvent>;

/// One open WatchAlerts stream: one twin's alerts or all, from a severity on, of one
/// tenant or all.
class alert_watch_stream final : public feed_stream<fleettwin::v1::AlertEvent> {
public:
  /// `tenant`: only that tenant's alerts ("" every tenant's).
  alert_watch_stream(alert_watch_hub& hub, std::string asset_id,
                     fleettwin::v1::AlertSeverity min_severity, size_t max_queued,
                     std::string tenant = {})
      : feed_stream(hub, max_queued),
        asset_id_(std::move(asset_id)),
        min_(min_severity),
        tenant_(std::move(tenant)) {}

  bool wants(std::string_view asset_id, const fleettwin::v1::AlertEvent& e) const override {
    return (asset_id_.empty() || asset_id_ == asset_id) && e.alert().severity() >= min_ &&
           (tenant_.empty() || e.alert().tenant() == tenant_);
  }

private:
  std::string asset_id_;
  fleettwin::v1::AlertSeverity min_;
  std::string tenant_;
};

/// fleettwin.v1.AlertService: the alerts the twins' analytics raise. Every
/// node answers: listings gather every node's partitions, acknowledgements
/// go to the node serving the twin, watches read the alerts topic.
class alert_service final : public fleettwin::v1::AlertService::CallbackService {
public:
  /// `watch` (may be null: WatchAlerts is then UNAVAILABLE) follows the
  /// cluster's committed alert events.
  /// `models` (may be null): what is sensitive (filters may not compare it).
  alert_service(twin_backend& backend, query_pool& pool, alert_watch_hub* watch,
                metrics::grpc_probe& probe, service_limits limits,
                std::shared_ptr<runtime::models_holder> models = nullptr);

  ::grpc::ServerUnaryReactor* ListAlerts(::grpc::CallbackServerContext* ctx,
                                         const fleettwin::v1::ListAlertsRequest* req,
                                         fleettwin::v1::ListAlertsResponse* resp) override;
  ::grpc::ServerWriteReactor<fleettwin::v1::AlertEvent>* WatchAlerts(
      ::grpc::CallbackServerContext* ctx, const fleettwin::v1::WatchAlertsRequest* req) override;
  ::grpc::ServerUnaryReactor* AcknowledgeAlert(::grpc::CallbackServerContext* ctx,
                                               const fleettwin::v1::AcknowledgeAlertRequest* req,
                                               fleettwin::v1::Alert* resp) override;

private:
  twin_backend& backend_;
  query_pool& pool_;
  alert_watch_hub* watch_;
  metrics::grpc_probe& probe_;
  service_limits limits_;
  metrics::method_probe& list_;
  metrics::method_probe& ack_;
  std::shared_ptr<runtime::models_holder> models_;
};

}  // namespace fleettwin::grpc_api

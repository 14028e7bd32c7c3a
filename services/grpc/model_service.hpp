#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "actors/core/asset_model.hpp"
#include "actors/runtime/asset_actor.hpp"
#include "fleettwin/v1/analytics.grpc.pb.h"
#include "services/grpc/query_pool.hpp"
#include "services/grpc/twin_service.hpp"
#include "services/metrics/metrics.hpp"

namespace fleettwin::grpc_api {

void model_to_proto(const core::asset_model& m, fleettwin::v1::AssetModel& out);
/// The model a message describes; nullopt with what to fix (naming the
/// property) when a field is malformed. Not validated further (core::validate).
std::optional<core::asset_model> model_from_proto(const fleettwin::v1::AssetModel& p,
                                                  std::string& error);

/// Writes a model for the whole cluster and waits until this node applied it
/// (blocking: called on the query pool). On success `model` is the model as
/// applied (with its revision); otherwise `error`, and `invalid` when the
/// model itself is refused.
using model_writer =
    std::function<bool(core::asset_model& model, bool& invalid, std::string& error)>;

/// fleettwin.v1.ModelService: the asset models every node applies.
class model_service final : public fleettwin::v1::ModelService::CallbackService {
public:
  /// `audit_to` (may be null): where PutModel calls are audited.
  model_service(std::shared_ptr<runtime::models_holder> models, query_pool& pool, model_writer put,
                metrics::grpc_probe& probe, twin_backend* audit_to = nullptr);

  ::grpc::ServerUnaryReactor* PutModel(::grpc::CallbackServerContext* ctx,
                                       const fleettwin::v1::PutModelRequest* req,
                                       fleettwin::v1::AssetModel* resp) override;
  ::grpc::ServerUnaryReactor* GetModel(::grpc::CallbackServerContext* ctx,
                                       const fleettwin::v1::GetModelRequest* req,
                                       fleettwin::v1::AssetModel* resp) override;
  ::grpc::ServerUnaryReactor* ListModels(::grpc::CallbackServerContext* ctx,
                                         const fleettwin::v1::ListModelsRequest* req,
                                         fleettwin::v1::ListModelsResponse* resp) override;

private:
  std::shared_ptr<runtime::models_holder> models_;
  query_pool& pool_;
  model_writer put_;
  metrics::method_probe& put_probe_;
  metrics::method_probe& get_probe_;
  metrics::method_probe& list_probe_;
  twin_backend* audit_to_;
};

}  // namespace fleettwin::grpc_api

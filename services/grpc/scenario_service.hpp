#pragma once

// fleettwin.v1.ScenarioService: what-if scenarios over this node's twins
// (services/scenario/scenario_registry.hpp holds them and runs them).

#include <memory>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "actors/core/scenario.hpp"
#include "fleettwin/v1/scenario.grpc.pb.h"
#include "services/grpc/caller_scope.hpp"
#include "services/grpc/query_pool.hpp"
#include "services/grpc/twin_service.hpp"
#include "services/kafka/record_export.hpp"
#include "services/metrics/metrics.hpp"
#include "services/scenario/scenario_registry.hpp"

namespace fleettwin::grpc_api {

/// The input a message describes; nullopt with what to fix otherwise.
std::optional<core::scenario_input> input_from_proto(const fleettwin::v1::ScenarioInput& p,
                                                     std::string& error);

/// The status a registry outcome answers.
::grpc::Status status_of(const scenario::outcome& o);

void scenario_to_proto(const scenario::scenario& s, fleettwin::v1::Scenario& out);

/// The result of a scenario's last run against `other` (another scenario's
/// run; null: its own baseline).
void result_to_proto(const scenario::scenario& s, const scenario::run_outcome& run,
                     const scenario::scenario* other, bool summary_only,
                     fleettwin::v1::ScenarioResult& out);

/// A sweep's result, with the settings its best point would apply.
void sweep_to_proto(const scenario::scenario& s, const scenario::sweep_outcome& o,
                    fleettwin::v1::SweepResult& out);

/// Writes exported records to the scenario-results topic (blocking: called on the query
/// pool); false with why when they could not all be written.
using result_exporter =
    std::function<bool(const std::vector<kafka::export_record>& records, std::string& error)>;

class scenario_service final : public fleettwin::v1::ScenarioService::CallbackService {
public:
  /// `models` (may be null): which properties are sensitive (filters over them
  /// need the right to read them).
  scenario_service(scenario::registry& scenarios, twin_backend& backend, query_pool& pool,
                   metrics::grpc_probe& probe,
                   std::shared_ptr<runtime::models_holder> models = nullptr,
                   result_exporter exporter = {}, std::string export_topic = {});

  ::grpc::ServerUnaryReactor* CreateScenario(::grpc::CallbackServerContext* ctx,
                                             const fleettwin::v1::CreateScenarioRequest* req,
                                             fleettwin::v1::Scenario* resp) override;
  ::grpc::ServerUnaryReactor* GetScenario(::grpc::CallbackServerContext* ctx,
                                          const fleettwin::v1::GetScenarioRequest* req,
                                          fleettwin::v1::Scenario* resp) override;
  ::grpc::ServerUnaryReactor* ListScenarios(::grpc::CallbackServerContext* ctx,
                                            const fleettwin::v1::ListScenariosRequest* req,
                                            fleettwin::v1::ListScenariosResponse* resp) override;
  ::grpc::ServerUnaryReactor* DeleteScenario(::grpc::CallbackServerContext* ctx,
                                             const fleettwin::v1::DeleteScenarioRequest* req,
                                             fleettwin::v1::DeleteScenarioResponse* resp) override;
  ::grpc::ServerUnaryReactor* AddScenarioInputs(::grpc::CallbackServerContext* ctx,
                                                const fleettwin::v1::AddScenarioInputsRequest* req,
                                                fleettwin::v1::Scenario* resp) override;
  ::grpc::ServerWriteReactor<fleettwin::v1::RunScenarioProgress>* RunScenario(
      ::grpc::CallbackServerContext* ctx, const fleettwin::v1::RunScenarioRequest* req) override;
  ::grpc::ServerUnaryReactor* GetScenarioResult(::grpc::CallbackServerContext* ctx,
                                                const fleettwin::v1::GetScenarioResultRequest* req,
                                                fleettwin::v1::ScenarioResult* resp) override;

  ::grpc::ServerWriteReactor<fleettwin::v1::SweepScenarioProgress>* SweepScenario(
      ::grpc::CallbackServerContext* ctx, const fleettwin::v1::SweepScenarioRequest* req) override;
  ::grpc::ServerUnaryReactor* GetSweepResult(::grpc::CallbackServerContext* ctx,
                                             const fleettwin::v1::GetSweepResultRequest* req,
                                             fleettwin::v1::SweepResult* resp) override;

  ::grpc::ServerUnaryReactor* ExportScenarioResult(
      ::grpc::CallbackServerContext* ctx, const fleettwin::v1::ExportScenarioResultRequest* req,
      fleettwin::v1::ExportScenarioResultResponse* resp) override;

private:
  /// The scenario a call names, when the caller may see it; otherwise finishes the call
  /// (INVALID_ARGUMENT, NOT_FOUND) and returns null.
  std::shared_ptr<const scenario::scenario> lookup(const class call& c, const std::string& name);

  scenario::registry& scenarios_;
  twin_backend& backend_;
  query_pool& pool_;
  metrics::grpc_probe& probe_;
  std::shared_ptr<runtime::models_holder> models_;
  metrics::method_probe& create_;
  metrics::method_probe& get_;
  metrics::method_probe& list_;
  metrics::method_probe& delete_;
  metrics::method_probe& add_inputs_;
  metrics::method_probe& result_;
  metrics::method_probe& sweep_result_;
  metrics::method_probe& export_;
  result_exporter exporter_;
  std::string export_topic_;
};

}  // namespace fleettwin::grpc_api

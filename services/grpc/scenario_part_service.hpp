#pragma once

// fleettwin.v1.ScenarioPartService: the parts of a scenario whose fork spans
// twins of several nodes (services/scenario/fork_part.hpp). The node a
// scenario is created on calls the others through call forwarding
// (forwarded_part_client); they answer from snapshots the registry holds.

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "fleettwin/v1/scenario.grpc.pb.h"
#include "services/grpc/query_pool.hpp"
#include "services/grpc/twin_service.hpp"
#include "services/metrics/metrics.hpp"
#include "services/scenario/scenario_registry.hpp"

namespace fleettwin::grpc_api {

class scenario_part_service final : public fleettwin::v1::ScenarioPartService::CallbackService {
public:
  scenario_part_service(scenario::registry& scenarios, twin_backend& backend, query_pool& pool,
                        metrics::grpc_probe& probe);

  ::grpc::ServerUnaryReactor* PinScenarioPart(::grpc::CallbackServerContext* ctx,
                                              const fleettwin::v1::PinScenarioPartRequest* req,
                                              fleettwin::v1::ScenarioPart* resp) override;
  ::grpc::ServerUnaryReactor* ListScenarioPartRecords(
      ::grpc::CallbackServerContext* ctx, const fleettwin::v1::ListScenarioPartRecordsRequest* req,
      fleettwin::v1::ListScenarioPartRecordsResponse* resp) override;
  ::grpc::ServerUnaryReactor* ReleaseScenarioPart(
      ::grpc::CallbackServerContext* ctx, const fleettwin::v1::ReleaseScenarioPartRequest* req,
      fleettwin::v1::ReleaseScenarioPartResponse* resp) override;

private:
  scenario::registry& scenarios_;
  twin_backend& backend_;
  query_pool& pool_;
  metrics::method_probe& pin_;
  metrics::method_probe& list_;
  metrics::method_probe& release_;
};

/// Calls other nodes' ScenarioPartService through the node's call forwarding
/// (blocking: from the query pool or a run's thread).
class forwarded_part_client final : public scenario::part_client {
public:
  explicit forwarded_part_client(twin_backend& backend) : backend_(backend) {}

  scenario::outcome pin(const std::string& endpoint, const std::string& as, const std::string& id,
                        const std::vector<int32_t>& partitions, int32_t partition_count,
                        const scenario::fork_spec& spec, const std::string& tenant,
                        scenario::fork_check& check, int64_t& taken_ms) override;
  scenario::outcome entities(const std::string& endpoint, const std::string& as,
                             const std::string& id, const std::string& after,
                             std::vector<scenario::part_record>& out, std::string& next) override;
  scenario::outcome twins(const std::string& endpoint, const std::string& as, const std::string& id,
                          const scenario::fork_selection& sel, const std::string& after,
                          std::vector<scenario::part_record>& out, std::string& next) override;
  void release(const std::string& endpoint, const std::string& as, const std::string& id) override;

private:
  twin_backend& backend_;
};

}  // namespace fleettwin::grpc_api

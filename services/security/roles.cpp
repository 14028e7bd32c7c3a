#include "services/security/roles.hpp"

#include <array>
#include <utility>

namespace fleettwin::security {

namespace {

constexpr std::string_view prefix = "/fleettwin.v1.";

constexpr std::array<std::pair<std::string_view, role>, 45> methods{{
    {"TwinService/GetTwin", role::viewer},
    {"TwinService/BatchGetTwins", role::viewer},
    {"TwinService/ListTwins", role::viewer},
    {"TwinService/GetHistory", role::viewer},
    {"TwinService/WatchTwins", role::viewer},
    {"TwinService/GetForecast", role::viewer},
    {"TwinService/UpdateDesired", role::operator_},
    {"TwinService/BatchUpdateDesired", role::operator_},
    {"TwinService/BulkUpdateDesired", role::operator_},
    {"TwinService/DeleteTwin", role::admin},
    {"AggregateService/GetAggregate", role::viewer},
    {"AggregateService/BatchGetAggregates", role::viewer},
    {"AggregateService/ListAggregates", role::viewer},
    {"AggregateService/WatchAggregates", role::viewer},
    {"AggregateService/GetAggregateHistory", role::viewer},
    {"AggregateService/ListMembers", role::viewer},
    {"AggregateService/GetRelations", role::viewer},
    {"AggregateService/Traverse", role::viewer},
    {"AggregateService/ListAggregateKinds", role::viewer},
    {"AggregateService/SetRelations", role::admin},
    {"AggregateService/DeleteRelations", role::admin},
    {"AggregateService/PutAggregateKind", role::admin},
    {"AlertService/ListAlerts", role::viewer},
    {"AlertService/WatchAlerts", role::viewer},
    {"AlertService/AcknowledgeAlert", role::operator_},
    {"ModelService/GetModel", role::viewer},
    {"ModelService/ListModels", role::viewer},
    {"ModelService/PutModel", role::admin},
    {"ScenarioService/GetScenario", role::viewer},
    {"ScenarioService/ListScenarios", role::viewer},
    {"ScenarioService/GetScenarioResult", role::viewer},
    {"ScenarioService/GetSweepResult", role::viewer},
    {"ScenarioService/SweepScenario", role::operator_},
    {"ScenarioService/CreateScenario", role::operator_},
    {"ScenarioService/AddScenarioInputs", role::operator_},
    {"ScenarioService/RunScenario", role::operator_},
    {"ScenarioService/DeleteScenario", role::operator_},
    {"ScenarioService/ExportScenarioResult", role::operator_},
    // Node to node (refused unless forwarded): on behalf of a scenario's creator.
    {"ScenarioPartService/PinScenarioPart", role::operator_},
    {"ScenarioPartService/ListScenarioPartRecords", role::operator_},
    {"ScenarioPartService/ReleaseScenarioPart", role::operator_},
    {"NodeService/GetStatus", role::viewer},
    {"NodeService/Ping", role::viewer},
    {"AdminService/GetCluster", role::admin},
    {"AdminService/ListAuditEvents", role::admin},
}};

}  // namespace

const char* role_name(role r) {
  switch (r) {
    case role::viewer:
      return "viewer";
    case role::operator_:
      return "operator";
    case role::admin:
      return "admin";
  }
  return "admin";
}

std::optional<role> required_role(std::string_view method) {
  if (method.rfind("/grpc.health.v1.", 0) == 0 || method.rfind("/grpc.reflection.", 0) == 0)
    return std::nullopt;
  if (method.rfind(prefix, 0) == 0) {
    auto name = method.substr(prefix.size());
    for (const auto& [m, r] : methods)
      if (m == name)
        return r;
  }
  return role::admin;  // unclassified: closed
}

std::optional<role> highest_role(const std::vector<std::string>& roles) {
  std::optional<role> best;
  for (const auto& r : roles) {
    std::optional<role> this_one;
    if (r == "viewer")
      this_one = role::viewer;
    else if (r == "operator")
      this_one = role::operator_;
    else if (r == "admin")
      this_one = role::admin;
    if (this_one && (!best || *this_one > *best))
      best = this_one;
  }
  return best;
}

}  // namespace fleettwin::security

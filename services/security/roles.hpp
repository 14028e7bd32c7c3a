#pragma once

// Who may call what: three roles, each including the one below it.
//   viewer    read twins, aggregates, history, forecasts, alerts, models; watch
//   operator  + UpdateDesired, BatchUpdateDesired, BulkUpdateDesired, AcknowledgeAlert
//   admin     + AdminService, PutModel, PutAggregateKind, SetRelations, DeleteRelations,
//             DeleteTwin
// Methods of FleetTwin's API that are not listed need admin (new methods are closed until
// they are classified); grpc.health.v1 and server reflection need no token (probes and
// tools that discover the API).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fleettwin::security {

enum class role { viewer = 1, operator_ = 2, admin = 3 };

const char* role_name(role r);

/// The role `method` ("/package.Service/Method") needs; nullopt when it needs none.
std::optional<role> required_role(std::string_view method);

/// The highest FleetTwin role among `roles` (others are ignored); nullopt when none.
std::optional<role> highest_role(const std::vector<std::string>& roles);

}  // namespace fleettwin::security

#pragma once

// The caller of a gRPC call (see services/security/caller.hpp) and what it confines: a
// caller of one tenant sees only that tenant's twins, aggregates and alerts, through every
// method; any other twin is "not found", exactly like one that does not exist.

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <grpcpp/grpcpp.h>

#include "services/security/caller.hpp"

namespace fleettwin::grpc_api {

using security::caller;

/// Finds the caller of a call the authenticator accepted, from its `authorization`
/// metadata (empty: none) and its connection's auth context (client certificates).
using caller_resolver = std::function<std::optional<caller>(std::string_view authorization,
                                                            const ::grpc::AuthContext* context)>;

/// Makes this node's calls authenticated ones, whose callers `resolve` finds (set once,
/// before the server starts; an empty one: the node does not authenticate).
void set_caller_resolver(caller_resolver resolve);

/// Whether this node authenticates its calls.
bool authenticating();

/// The caller of a call: the one a forwarding node sent along (metadata, set only by the
/// gateway: clients sending it are refused by the authenticator), else the one its own
/// token (or client certificate) names; nullopt when the node does not authenticate.
std::optional<caller> caller_of(const ::grpc::ServerContextBase& ctx);

/// The filter text confining `filter` (a valid filter, or "") to the caller's tenant: the
/// text itself when the caller is not confined.
std::string scoped_filter(const std::optional<caller>& who, const std::string& filter);

/// Whether the caller may see an entity of `tenant`.
inline bool sees(const std::optional<caller>& who, std::string_view tenant) {
  return !who || who->sees(tenant);
}

}  // namespace fleettwin::grpc_api

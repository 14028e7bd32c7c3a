#include "services/grpc/caller_scope.hpp"

namespace fleettwin::grpc_api {

namespace {

caller_resolver& resolver() {
  static caller_resolver r;
  return r;
}

}  // namespace

void set_caller_resolver(caller_resolver resolve) {
  resolver() = std::move(resolve);
}

bool authenticating() {
  return static_cast<bool>(resolver());
}

std::optional<caller> caller_of(const ::grpc::ServerContextBase& ctx) {
  const auto& metadata = ctx.client_metadata();
  if (auto it = metadata.find(security::caller_header); it != metadata.end())
    return security::decode_caller({it->second.data(), it->second.size()});
  const auto& resolve = resolver();
  if (!resolve)
    return std::nullopt;
  // The call's own token: the auth context is its connection's, shared by every call on it.
  std::string_view authorization;
  if (auto it = metadata.find("authorization"); it != metadata.end())
    authorization = {it->second.data(), it->second.size()};
  if (!authorization.empty())
    return resolve(authorization, nullptr);
  auto auth = ctx.auth_context();
  return resolve({}, auth.get());
}

std::string scoped_filter(const std::optional<caller>& who, const std::string& filter) {
  if (!who || !who->scoped())
    return filter;
  // Tenants are names of [A-Za-z0-9_.:/-] (checked when the token was): no quote to
  // escape, and no trailing '*' that would make the comparison a prefix match.
  std::string out = "tenant = \"" + who->tenant + "\"";
  if (!filter.empty())
    out += " AND (" + filter + ")";
  return out;
}

}  // namespace fleettwin::grpc_api

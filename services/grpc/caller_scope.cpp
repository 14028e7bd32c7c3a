#include "services/grpc/caller_scope.hpp"

#include <atomic>

namespace fleettwin::grpc_api {

namespace {

std::atomic<bool>& authenticating() {
  static std::atomic<bool> on{false};
  return on;
}

}  // namespace

void set_authenticating(bool on) {
  authenticating().store(on);
}

std::optional<caller> caller_of(const ::grpc::ServerContextBase& ctx) {
  const auto& metadata = ctx.client_metadata();
  if (auto it = metadata.find(security::caller_header); it != metadata.end())
    return security::decode_caller({it->second.data(), it->second.size()});
  if (!authenticating().load(std::memory_order_relaxed))
    return std::nullopt;
  auto auth = ctx.auth_context();
  if (!auth)
    return std::nullopt;
  auto values = auth->FindPropertyValues(security::caller_property);
  if (values.empty())
    return std::nullopt;
  return security::decode_caller({values.front().data(), values.front().size()});
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

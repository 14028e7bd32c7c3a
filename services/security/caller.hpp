#pragma once

// Who a gRPC call speaks for, as the handlers see it: the authenticator finds it from the
// call's token (or its connection's client certificate) after checking it, and a node that
// forwards a call to the twin's owner sends it along
// (metadata `caller_header`), so the owner scopes and checks the call exactly like a local
// one. Calls of a node without authentication have no caller: nothing is scoped.

#include <optional>
#include <string>
#include <string_view>

#include "services/security/roles.hpp"

namespace fleettwin::security {

/// Metadata of a forwarded call: the caller the forwarding node authenticated. Clients may
/// never send it (nor any other x-fleettwin-* metadata): the authenticator refuses them.
inline constexpr const char* caller_header = "x-fleettwin-caller";
/// The entry of a token's roles claim that grants reading sensitive properties.
inline constexpr std::string_view read_sensitive_permission = "read_sensitive";
/// Metadata names reserved for calls between nodes.
inline constexpr std::string_view reserved_metadata_prefix = "x-fleettwin-";

struct caller {
  /// The token's subject, or the client certificate's identity.
  std::string subject;
  role granted = role::viewer;
  /// The tenant the caller is confined to; "" when it is not confined (a token without a
  /// tenant claim, a client certificate): it sees every tenant.
  std::string tenant;
  /// May read the values of properties the asset models mark sensitive (the permission
  /// `read_sensitive` among the token's roles); others see them masked.
  bool read_sensitive = false;

  bool scoped() const {
    return !tenant.empty();
  }
  /// Whether the caller may see a twin or aggregate of `twin_tenant`. A confined caller
  /// sees only its own tenant's (never those without a tenant).
  bool sees(std::string_view twin_tenant) const {
    return tenant.empty() || twin_tenant == tenant;
  }
  bool operator==(const caller&) const = default;
};

/// Why `c` may not call `method` (the role it needs, and what the caller has); nullopt
/// when it may.
std::optional<std::string> forbidden(const caller& c, std::string_view method);

/// A compact printable form (a metadata value): "v1;<role>;<s|->;<tenant>;<subject>" (s:
/// may read sensitive properties), tenant and subject percent-encoded.
std::string encode_caller(const caller& c);
std::optional<caller> decode_caller(std::string_view text);

/// Checks a tenant name from a token claim by the rule telemetry's tenants follow (1 to 128
/// bytes of [A-Za-z0-9_.:/-]); the reason when it is not one.
std::optional<std::string> validate_tenant(std::string_view tenant);

}  // namespace fleettwin::security

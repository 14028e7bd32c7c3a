#pragma once

// Where plaintext may listen: on loopback only, unless the operator says --insecure.

#include <string>

namespace fleettwin::security {

/// True when a listener on `address` ("host:port", "[v6]:port", "unix:path") accepts
/// connections from this machine only: a unix socket, a loopback address, or a name
/// that resolves to loopback addresses alone. "0.0.0.0", "[::]" and an empty host
/// (every interface) are not.
bool loopback_only(const std::string& address);

/// The host part of "host:port" / "[v6]:port" ("" when there is none).
std::string host_of(const std::string& address);

}  // namespace fleettwin::security

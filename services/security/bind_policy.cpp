#include "services/security/bind_policy.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace fleettwin::security {

namespace {

bool loopback_v4(const in_addr& a) {
  return (ntohl(a.s_addr) >> 24) == 127;
}

bool loopback_v6(const in6_addr& a) {
  if (IN6_IS_ADDR_LOOPBACK(&a))
    return true;
  if (IN6_IS_ADDR_V4MAPPED(&a)) {
    in_addr v4;
    std::memcpy(&v4, a.s6_addr + 12, 4);
    return loopback_v4(v4);
  }
  return false;
}

}  // namespace

std::string host_of(const std::string& address) {
  if (!address.empty() && address.front() == '[') {
    auto close = address.find(']');
    return close == std::string::npos ? std::string{} : address.substr(1, close - 1);
  }
  auto colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

bool loopback_only(const std::string& address) {
  if (address.rfind("unix:", 0) == 0 || address.rfind("unix-abstract:", 0) == 0)
    return true;
  const std::string host = host_of(address);
  if (host.empty())
    return false;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1)
    return loopback_v4(v4);
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1)
    return loopback_v6(v6);
  // A name: loopback only when everything it resolves to is.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || found == nullptr)
    return false;
  bool all_loopback = true;
  for (auto* ai = found; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET)
      all_loopback &= loopback_v4(reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr);
    else if (ai->ai_family == AF_INET6)
      all_loopback &= loopback_v6(reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr);
    else
      all_loopback = false;
  }
  freeaddrinfo(found);
  return all_loopback;
}

}  // namespace fleettwin::security

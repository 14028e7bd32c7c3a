#pragma once

// Certificates for security tests, issued by tools/scripts/make-certs.sh (the script the
// README gives operators), and the client credentials built from them.

#include <memory>
#include <string>

#include <grpcpp/security/credentials.h>

#include "services/security/tls.hpp"

namespace fleettwin::test {

/// A temp directory with a CA of its own (ca.crt, ca.key) and what it issued.
struct pki {
  explicit pki(const std::string& name);
  /// make-certs.sh DIR <args>: "node NAME [SAN ...]", "client NAME"; throws on failure.
  void issue(const std::string& args);
  std::string file(const std::string& name) const {
    return dir + "/" + name;
  }
  /// --tls-cert, --tls-key (and --tls-ca when `with_ca`) of a node certificate.
  std::vector<std::string> node_flags(const std::string& node, bool with_ca = true) const;
  /// TLS settings of a client trusting this CA, with the certificate `name` when given.
  security::client_tls client(const std::string& name = "") const;
  /// Channel credentials of client(name).
  std::shared_ptr<grpc::ChannelCredentials> credentials(const std::string& name = "") const;

  std::string dir;
};

}  // namespace fleettwin::test

#pragma once

// TLS for gRPC: the node's server credentials (server certificate, optional or required
// client certificates verified against a CA bundle, files re-read when they change) and
// the client credentials the CLI and the tests use. Certificates are PEM files.

#include <memory>
#include <optional>
#include <string>

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

namespace fleettwin::security {

/// Whether a TLS server asks its clients for a certificate.
enum class client_auth {
  none,      ///< server TLS only; clients authenticate with tokens
  optional,  ///< a client certificate, when presented, must verify against the CA
  require,   ///< mutual TLS: no verified client certificate, no connection
};

/// "none", "optional", "require"; nullopt for anything else.
std::optional<client_auth> parse_client_auth(const std::string& text);

struct server_tls {
  std::string cert_file;  ///< certificate chain, leaf first
  std::string key_file;   ///< its private key
  std::string ca_file;    ///< CA bundle client certificates are verified against
  client_auth clients = client_auth::none;
  /// How often the files are checked for a new certificate, key or CA (rotation).
  unsigned refresh_seconds = 60;

  bool enabled() const {
    return !cert_file.empty();
  }
};

/// Reads the files now and says what is wrong with them: missing or unreadable files,
/// no PEM certificate, a key that does not belong to the certificate, a certificate
/// expired or not yet valid, a CA bundle without a certificate, client_auth without
/// a CA. nullopt when they are fine.
std::optional<std::string> check(const server_tls& tls);

/// The server credentials for `tls` (which check() accepted): gRPC's TLS credentials
/// over a file-watching certificate provider, so a rotated certificate, key or CA is
/// used by new connections within refresh_seconds, without a restart.
std::shared_ptr<grpc::ServerCredentials> server_credentials(const server_tls& tls);

struct client_tls {
  std::string ca_file;    ///< CA bundle the server's certificate is verified against
  std::string cert_file;  ///< client certificate for mutual TLS (optional)
  std::string key_file;
  /// Name the server certificate must carry, when it is not the dialled host.
  std::string server_name;

  bool enabled() const {
    return !ca_file.empty() || !cert_file.empty();
  }
};

/// Channel credentials for `tls` (insecure when !tls.enabled()); on an unreadable file
/// nullptr, with the reason in `error`.
std::shared_ptr<grpc::ChannelCredentials> channel_credentials(const client_tls& tls,
                                                              std::string& error);

/// Reads a whole file; nullopt when it cannot be read.
std::optional<std::string> read_file(const std::string& path);

}  // namespace fleettwin::security

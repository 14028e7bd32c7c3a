#pragma once

// Bearer tokens: JWTs (RFC 7519) signed with RS256 or ES256 by a key of a JWKS file, or with
// HS256 by a shared secret. The signature is checked by cpp-jwt (Debian libcpp-jwt-dev);
// what decides which key and algorithm may be used, and the claims, is checked here, so
// that every refusal says what is wrong: `alg: none`, an algorithm the key is not for
// (algorithm confusion), an unknown key id, a bad signature, expired, not yet valid, wrong
// issuer or audience.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace fleettwin::security {

/// Who a verified token speaks for.
struct principal {
  std::string subject;             ///< "sub"
  std::vector<std::string> roles;  ///< from the roles claim (array, or space-separated string)
  std::string tenant;              ///< from the tenant claim; "" when it names none
  int64_t expires_s = 0;           ///< "exp"
};

struct token_settings {
  std::string jwks_file;          ///< RS256 / ES256 keys (JWKS JSON); re-read when it changes
  std::string hs256_secret_file;  ///< HS256 shared secret (at least 32 bytes)
  std::string issuer;             ///< required "iss" when set
  std::string audience;           ///< required in "aud" (string or array) when set
  std::string roles_claim = "roles";
  std::string tenant_claim = "tenant";
  int64_t leeway_s = 30;  ///< clock skew allowed on exp and nbf

  bool enabled() const {
    return !jwks_file.empty() || !hs256_secret_file.empty();
  }
};

/// A public key of a JWKS document, as the PEM cpp-jwt verifies with.
struct jwk_key {
  std::string kid;
  std::string alg;  ///< "RS256" (kty RSA) or "ES256" (kty EC, crv P-256)
  std::string pem;
};

/// The usable keys of a JWKS document ("keys": RSA keys for RS256 and EC P-256 keys for
/// ES256; keys for other uses are skipped). Empty with `error` when the document is not a
/// JWKS or holds no usable key, or a key is malformed.
std::vector<jwk_key> parse_jwks(std::string_view json, std::string& error);

/// Encodes base64url without padding (as JWTs carry their parts).
std::string base64url_encode(std::string_view bytes);

/// Decodes base64url (RFC 4648 section 5, padding optional); nullopt when malformed.
std::optional<std::string> base64url_decode(std::string_view in);

class token_verifier {
public:
  /// Reads the keys; nullptr with `error` when they cannot be used (missing file, an empty,
  /// short or well-known secret, a JWKS without a usable key ...).
  static std::unique_ptr<token_verifier> create(token_settings settings, std::string& error);

  /// Verifies a compact JWS at time `now_s` (seconds since the epoch): the principal, or
  /// why the token is refused (a sentence for the UNAUTHENTICATED status).
  std::variant<principal, std::string> verify(std::string_view token, int64_t now_s) const;

  /// Re-reads the JWKS file when its modification time changed. On a bad new file the
  /// keys in use stay and the reason is returned.
  std::optional<std::string> reload_if_changed();

  const token_settings& settings() const {
    return settings_;
  }

private:
  explicit token_verifier(token_settings settings) : settings_(std::move(settings)) {}
  std::optional<std::string> load_jwks();

  token_settings settings_;
  std::string hs256_secret_;
  mutable std::mutex mutex_;  // guards keys_ and jwks_mtime_
  std::shared_ptr<const std::vector<jwk_key>> keys_;
  int64_t jwks_mtime_ns_ = 0;
};

}  // namespace fleettwin::security

#pragma once

// Signs JWTs for tests, with OpenSSL directly (not with the library the node verifies
// with): RS256 and ES256 keys made on the spot and published as a JWKS, or an HS256
// secret. Tokens can be made wrong in every way a test needs (expired, another audience,
// alg none, a forged signature, an unknown kid).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fleettwin::test {

class token_issuer {
public:
  enum class kind { rs256, es256, hs256 };
  /// A new key: RSA 2048 or EC P-256 with key id `kid`, or the HS256 `secret`.
  static token_issuer make(kind k, std::string kid_or_secret);
  ~token_issuer();
  token_issuer(token_issuer&&) noexcept;
  token_issuer& operator=(token_issuer&&) noexcept;

  const char* alg() const;
  /// The public key as a JWK (JSON object); "" for HS256.
  std::string jwk() const;
  /// A signed token: `header_json` and `claims_json` are JSON objects written as given
  /// ("" header: {"alg": alg(), "typ": "JWT", "kid": kid}).
  std::string sign(const std::string& claims_json, const std::string& header_json = "") const;

  /// {"keys": [jwks of the issuers]}.
  static std::string jwks(const std::vector<const token_issuer*>& issuers);
  /// base64url without padding.
  static std::string b64url(const std::string& bytes);

private:
  token_issuer() = default;
  kind kind_ = kind::hs256;
  std::string kid_;
  std::string secret_;
  void* key_ = nullptr;  // EVP_PKEY*
};

/// Claims JSON for a token of `subject` with `roles` (and `tenant` when not empty),
/// expiring `ttl_s` after `now_s` (negative: already expired), with iss and aud.
std::string claims(const std::string& subject, const std::vector<std::string>& roles, int64_t now_s,
                   int64_t ttl_s, const std::string& issuer = "fleettwin-tests",
                   const std::string& audience = "fleettwin", const std::string& tenant = "");

/// Seconds since the epoch, now.
int64_t unix_now();

}  // namespace fleettwin::test

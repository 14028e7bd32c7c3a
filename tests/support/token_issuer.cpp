#include "support/token_issuer.hpp"

#include <chrono>
#include <stdexcept>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include "services/security/token_verifier.hpp"

namespace fleettwin::test {

namespace {

std::string bn_bytes(const EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1)
    throw std::runtime_error(std::string{"no key parameter "} + name);
  std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

std::string token_issuer::b64url(const std::string& bytes) {
  return security::base64url_encode(bytes);
}

token_issuer token_issuer::make(kind k, std::string kid_or_secret) {
  token_issuer t;
  t.kind_ = k;
  if (k == kind::hs256) {
    t.secret_ = std::move(kid_or_secret);
    return t;
  }
  t.kid_ = std::move(kid_or_secret);
  EVP_PKEY* key = k == kind::rs256 ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
  if (!key)
    throw std::runtime_error("key generation failed");
  t.key_ = key;
  return t;
}

token_issuer::~token_issuer() {
  EVP_PKEY_free(static_cast<EVP_PKEY*>(key_));
}

token_issuer::token_issuer(token_issuer&& o) noexcept
    : kind_(o.kind_), kid_(std::move(o.kid_)), secret_(std::move(o.secret_)), key_(o.key_) {
  o.key_ = nullptr;
}

token_issuer& token_issuer::operator=(token_issuer&& o) noexcept {
  std::swap(kind_, o.kind_);
  std::swap(kid_, o.kid_);
  std::swap(secret_, o.secret_);
  std::swap(key_, o.key_);
  return *this;
}

const char* token_issuer::alg() const {
  switch (kind_) {
    case kind::rs256:
      return "RS256";
    case kind::es256:
      return "ES256";
    case kind::hs256:
      return "HS256";
  }
  return "";
}

std::string token_issuer::jwk() const {
  auto* key = static_cast<EVP_PKEY*>(key_);
  if (kind_ == kind::rs256)
    return R"({"kty":"RSA","use":"sig","alg":"RS256","kid":")" + escape(kid_) + R"(","n":")" +
           b64url(bn_bytes(key, OSSL_PKEY_PARAM_RSA_N)) + R"(","e":")" +
           b64url(bn_bytes(key, OSSL_PKEY_PARAM_RSA_E)) + "\"}";
  if (kind_ == kind::es256) {
    unsigned char point[65];
    size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point), &len) !=
            1 ||
        len != 65)
      throw std::runtime_error("no EC public point");
    std::string p(reinterpret_cast<char*>(point), len);
    return R"({"kty":"EC","use":"sig","crv":"P-256","kid":")" + escape(kid_) + R"(","x":")" +
           b64url(p.substr(1, 32)) + R"(","y":")" + b64url(p.substr(33, 32)) + "\"}";
  }
  return "";
}

std::string token_issuer::jwks(const std::vector<const token_issuer*>& issuers) {
  std::string out = R"({"keys":[)";
  bool first = true;
  for (const auto* i : issuers) {
    auto j = i->jwk();
    if (j.empty())
      continue;
    out += (first ? "" : ",") + j;
    first = false;
  }
  return out + "]}";
}

std::string token_issuer::sign(const std::string& claims_json,
                               const std::string& header_json) const {
  std::string header = header_json;
  if (header.empty()) {
    header = std::string{R"({"alg":")"} + alg() + R"(","typ":"JWT")";
    if (!kid_.empty())
      header += R"(,"kid":")" + escape(kid_) + "\"";
    header += "}";
  }
  const std::string input = b64url(header) + "." + b64url(claims_json);
  std::string sig;
  if (kind_ == kind::hs256) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
         reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
    sig.assign(reinterpret_cast<char*>(mac), len);
  } else {
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    size_t len = 0;
    EVP_DigestSignInit(md, nullptr, EVP_sha256(), nullptr, static_cast<EVP_PKEY*>(key_));
    EVP_DigestSign(md, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                   input.size());
    std::string der(len, '\0');
    EVP_DigestSign(md, reinterpret_cast<unsigned char*>(der.data()), &len,
                   reinterpret_cast<const unsigned char*>(input.data()), input.size());
    der.resize(len);
    EVP_MD_CTX_free(md);
    if (kind_ == kind::rs256) {
      sig = der;
    } else {
      // JWS wants r || s, 32 bytes each, not DER.
      const auto* p = reinterpret_cast<const unsigned char*>(der.data());
      ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
      const BIGNUM* r = nullptr;
      const BIGNUM* s = nullptr;
      ECDSA_SIG_get0(es, &r, &s);
      unsigned char raw[64];
      BN_bn2binpad(r, raw, 32);
      BN_bn2binpad(s, raw + 32, 32);
      ECDSA_SIG_free(es);
      sig.assign(reinterpret_cast<char*>(raw), 64);
    }
  }
  return input + "." + b64url(sig);
}

std::string claims(const std::string& subject, const std::vector<std::string>& roles, int64_t now_s,
                   int64_t ttl_s, const std::string& issuer, const std::string& audience,
                   const std::string& tenant) {
  std::string r;
  for (const auto& role : roles)
    r += (r.empty() ? "\"" : ",\"") + escape(role) + "\"";
  std::string out = R"({"sub":")" + escape(subject) + R"(","roles":[)" + r + R"(],"iat":)" +
                    std::to_string(now_s) + R"(,"exp":)" + std::to_string(now_s + ttl_s) +
                    R"(,"iss":")" + escape(issuer) + R"(","aud":")" + escape(audience) + "\"";
  if (!tenant.empty())
    out += R"(,"tenant":")" + escape(tenant) + "\"";
  return out + "}";
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace fleettwin::test

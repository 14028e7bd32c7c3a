#include "services/security/token_verifier.hpp"

#include "services/security/caller.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <ctime>

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <jwt/jwt.hpp>
#include <nlohmann/json.hpp>

#include "services/security/openssl_ptr.hpp"
#include "services/security/tls.hpp"

namespace fleettwin::security {

namespace {

using json = nlohmann::json;

constexpr size_t max_token_bytes = 16 * 1024;
constexpr size_t min_secret_bytes = 32;

std::string utc(int64_t s) {
  std::time_t t = static_cast<std::time_t>(s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// A JSON object from base64url text; nullopt when either layer is malformed.
std::optional<json> json_object(std::string_view part) {
  auto text = base64url_decode(part);
  if (!text)
    return std::nullopt;
  auto doc = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object())
    return std::nullopt;
  return doc;
}

/// A claim that is a number of seconds (integer or not); nullopt when absent or no number.
std::optional<int64_t> seconds_claim(const json& payload, const char* name) {
  auto it = payload.find(name);
  if (it == payload.end() || !it->is_number())
    return std::nullopt;
  double v = it->get<double>();
  if (!(v > -1e15 && v < 1e15))
    return std::nullopt;
  return static_cast<int64_t>(v);
}

/// PEM (SubjectPublicKeyInfo) of a public key built from OpenSSL parameters.
std::optional<std::string> pem_of(const char* type, OSSL_PARAM_BLD* bld) {
  params_ptr params{OSSL_PARAM_BLD_to_param(bld)};
  pkey_ctx_ptr ctx{EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr)};
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  pkey_ptr key{raw};
  bio_ptr out{BIO_new(BIO_s_mem())};
  if (!out || PEM_write_bio_PUBKEY(out.get(), key.get()) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::optional<std::string> string_member(const json& o, const std::string& name) {
  auto it = o.find(name);
  if (it == o.end() || !it->is_string())
    return std::nullopt;
  return it->get<std::string>();
}

/// The PEM of an RSA JWK (n, e), or why not.
std::variant<std::string, std::string> rsa_pem(const json& k) {
  auto n = string_member(k, "n");
  auto e = string_member(k, "e");
  auto nb = n ? base64url_decode(*n) : std::nullopt;
  auto eb = e ? base64url_decode(*e) : std::nullopt;
  if (!nb || !eb || nb->empty() || eb->empty())
    return std::variant<std::string, std::string>{std::in_place_index<1>,
                                                  "an RSA key needs base64url n and e"};
  if (nb->size() < 256)
    return std::variant<std::string, std::string>{std::in_place_index<1>,
                                                  "an RSA key shorter than 2048 bits"};
  bn_ptr bn_n{BN_bin2bn(reinterpret_cast<const unsigned char*>(nb->data()),
                        static_cast<int>(nb->size()), nullptr)};
  bn_ptr bn_e{BN_bin2bn(reinterpret_cast<const unsigned char*>(eb->data()),
                        static_cast<int>(eb->size()), nullptr)};
  param_bld_ptr bld{OSSL_PARAM_BLD_new()};
  if (!bn_n || !bn_e || !bld ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1)
    return std::variant<std::string, std::string>{std::in_place_index<1>, "an unusable RSA key"};
  auto pem = pem_of("RSA", bld.get());
  if (!pem)
    return std::variant<std::string, std::string>{std::in_place_index<1>, "an unusable RSA key"};
  return std::variant<std::string, std::string>{std::in_place_index<0>, std::move(*pem)};
}

/// The PEM of an EC P-256 JWK (x, y), or why not.
std::variant<std::string, std::string> ec_pem(const json& k) {
  auto crv = string_member(k, "crv");
  if (!crv || *crv != "P-256")
    return std::variant<std::string, std::string>{std::in_place_index<1>,
                                                  "only EC keys on curve P-256 (ES256) are used"};
  auto x = string_member(k, "x");
  auto y = string_member(k, "y");
  auto xb = x ? base64url_decode(*x) : std::nullopt;
  auto yb = y ? base64url_decode(*y) : std::nullopt;
  if (!xb || !yb || xb->size() != 32 || yb->size() != 32)
    return std::variant<std::string, std::string>{
        std::in_place_index<1>, "an EC P-256 key needs base64url x and y of 32 bytes each"};
  std::string point = "\x04" + *xb + *yb;
  param_bld_ptr bld{OSSL_PARAM_BLD_new()};
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) !=
          1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1)
    return std::variant<std::string, std::string>{std::in_place_index<1>, "an unusable EC key"};
  auto pem = pem_of("EC", bld.get());
  if (!pem)
    return std::variant<std::string, std::string>{std::in_place_index<1>,
                                                  "an EC key whose point is not on P-256"};
  return std::variant<std::string, std::string>{std::in_place_index<0>, std::move(*pem)};
}

int64_t mtime_ns(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0)
    return -1;
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  static constexpr char table[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += table[(acc >> bits) & 63];
    }
  }
  if (bits > 0)
    out += table[(acc << (6 - bits)) & 63];
  return out;
}

std::optional<std::string> base64url_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z')
      return c - 'A';
    if (c >= 'a' && c <= 'z')
      return c - 'a' + 26;
    if (c >= '0' && c <= '9')
      return c - '0' + 52;
    if (c == '-')
      return 62;
    if (c == '_')
      return 63;
    return -1;
  };
  while (!in.empty() && in.back() == '=')
    in.remove_suffix(1);
  if (in.size() % 4 == 1)
    return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = value(c);
    if (v < 0)
      return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

std::vector<jwk_key> parse_jwks(std::string_view text, std::string& error) {
  auto doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("keys") || !doc["keys"].is_array()) {
    error = "not a JWKS document (a JSON object with a \"keys\" array)";
    return {};
  }
  std::vector<jwk_key> keys;
  size_t index = 0;
  for (const auto& k : doc["keys"]) {
    const std::string where = fmt::format("key {}", index++);
    if (!k.is_object()) {
      error = where + " is not a JSON object";
      return {};
    }
    auto kty = string_member(k, "kty");
    auto use = string_member(k, "use");
    if (!kty || (use && *use != "sig"))
      continue;  // no key type, or an encryption key: not ours
    std::string alg;
    std::variant<std::string, std::string> pem;
    if (*kty == "RSA") {
      alg = "RS256";
      pem = rsa_pem(k);
    } else if (*kty == "EC") {
      alg = "ES256";
      pem = ec_pem(k);
    } else {
      continue;  // oct, OKP ...: not used for tokens here
    }
    auto declared = string_member(k, "alg");
    if (declared && *declared != alg)
      continue;  // e.g. an RSA key for PS256 or RS512: not used
    auto kid = string_member(k, "kid").value_or("");
    if (pem.index() == 1) {
      error = where + (kid.empty() ? "" : " (kid '" + kid + "')") + ": " + std::get<1>(pem);
      return {};
    }
    for (const auto& other : keys)
      if (other.kid == kid) {
        error = "two keys with the key id '" + kid + "'";
        return {};
      }
    keys.push_back({kid, alg, std::get<0>(std::move(pem))});
  }
  if (keys.empty())
    error = "no RS256 (RSA) or ES256 (EC P-256) signing key in the key set";
  return keys;
}

std::unique_ptr<token_verifier> token_verifier::create(token_settings settings,
                                                       std::string& error) {
  std::unique_ptr<token_verifier> v{new token_verifier(std::move(settings))};
  const auto& s = v->settings_;
  if (!s.enabled()) {
    error = "token authentication needs a JWKS file or an HS256 secret file";
    return nullptr;
  }
  if (!s.hs256_secret_file.empty()) {
    auto secret = read_file(s.hs256_secret_file);
    if (!secret) {
      error = "the HS256 secret file " + s.hs256_secret_file + " cannot be read";
      return nullptr;
    }
    while (!secret->empty() && (secret->back() == '\n' || secret->back() == '\r'))
      secret->pop_back();
    if (secret->size() < min_secret_bytes) {
      error = fmt::format("the HS256 secret in {} is {} bytes: at least {} (256 bits) are needed",
                          s.hs256_secret_file, secret->size(), min_secret_bytes);
      return nullptr;
    }
    if (std::all_of(secret->begin(), secret->end(), [&](char c) { return c == secret->front(); }) ||
        secret->find("your-256-bit-secret") != std::string::npos ||
        secret->find("changeme") != std::string::npos ||
        secret->find("secretsecretsecret") != std::string::npos) {
      error = "the HS256 secret in " + s.hs256_secret_file +
              " is a placeholder, not a secret: generate one (e.g. openssl rand -base64 48)";
      return nullptr;
    }
    v->hs256_secret_ = std::move(*secret);
  }
  if (!s.jwks_file.empty()) {
    if (auto e = v->load_jwks()) {
      error = *e;
      return nullptr;
    }
  }
  return v;
}

std::optional<std::string> token_verifier::load_jwks() {
  const int64_t mtime = mtime_ns(settings_.jwks_file);
  auto text = read_file(settings_.jwks_file);
  if (!text)
    return "the JWKS file " + settings_.jwks_file + " cannot be read";
  std::string error;
  auto keys = parse_jwks(*text, error);
  if (keys.empty())
    return "the JWKS file " + settings_.jwks_file + ": " + error;
  std::lock_guard<std::mutex> guard{mutex_};
  keys_ = std::make_shared<const std::vector<jwk_key>>(std::move(keys));
  jwks_mtime_ns_ = mtime;
  return std::nullopt;
}

std::optional<std::string> token_verifier::reload_if_changed() {
  if (settings_.jwks_file.empty())
    return std::nullopt;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    if (mtime_ns(settings_.jwks_file) == jwks_mtime_ns_)
      return std::nullopt;
  }
  return load_jwks();
}

std::variant<principal, std::string> token_verifier::verify(std::string_view token,
                                                            int64_t now_s) const {
  using result = std::variant<principal, std::string>;
  auto refuse = [](std::string why) { return result{std::in_place_index<1>, std::move(why)}; };
  if (token.size() > max_token_bytes)
    return refuse(fmt::format("the token is longer than {} bytes", max_token_bytes));
  const auto first = token.find('.');
  const auto second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos)
    return refuse("not a JWT: expected three base64url parts separated by dots");
  auto header = json_object(token.substr(0, first));
  if (!header)
    return refuse("the token's header is not base64url-encoded JSON");
  auto alg = string_member(*header, "alg");
  if (!alg)
    return refuse("the token's header names no algorithm (alg)");
  std::string lower = *alg;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "none")
    return refuse("alg none is not accepted: tokens must be signed");
  if (*alg != "RS256" && *alg != "ES256" && *alg != "HS256")
    return refuse("algorithm " + *alg + " is not accepted (RS256, ES256 or HS256)");
  if (second == first + 1 || second + 1 == token.size())
    return refuse("not a JWT: a part is empty");

  // The key decides the algorithm: a JWKS key only for its own (RS256 for RSA, ES256 for
  // EC), the HS256 secret only for HS256. A public key is never an HMAC secret.
  std::string key;
  if (*alg == "HS256") {
    if (hs256_secret_.empty())
      return refuse("HS256 tokens are not accepted here (no HS256 secret is configured)");
    key = hs256_secret_;
  } else {
    std::shared_ptr<const std::vector<jwk_key>> keys;
    {
      std::lock_guard<std::mutex> guard{mutex_};
      keys = keys_;
    }
    if (!keys)
      return refuse(*alg + " tokens are not accepted here (no JWKS is configured)");
    auto kid = string_member(*header, "kid");
    const jwk_key* found = nullptr;
    if (kid) {
      for (const auto& k : *keys)
        if (k.kid == *kid)
          found = &k;
      if (!found)
        return refuse("unknown key id '" + *kid + "'");
      if (found->alg != *alg)
        return refuse("key '" + *kid + "' is for " + found->alg + ", not " + *alg +
                      " (algorithm confusion is refused)");
    } else {
      size_t candidates = 0;
      for (const auto& k : *keys)
        if (k.alg == *alg) {
          found = &k;
          ++candidates;
        }
      if (candidates != 1)
        return refuse(candidates == 0 ? "no " + *alg + " key in the key set"
                                      : "the token names no key id (kid) and the key set has "
                                        "several " +
                                            *alg + " keys");
    }
    key = found->pem;
  }
  // The signature, by cpp-jwt's signature verifier alone (its decode() checks claims
  // first, and its leeway arithmetic on nbf wraps around); the claims are checked below.
  try {
    const jwt::jwt_header hdr{jwt::str_to_alg(*alg)};
    jwt::jwt_signature signature{key};
    auto [ok, ec] =
        signature.verify(hdr, jwt::string_view{token.data(), second},
                         jwt::string_view{token.data() + second + 1, token.size() - second - 1});
    ERR_clear_error();
    if (ec && ec != jwt::AlgorithmErrc::VerificationErr)
      return refuse("the token cannot be verified: " + ec.message());
    if (!ok || ec)
      return refuse("the signature does not verify");
  } catch (const std::exception& e) {
    ERR_clear_error();
    return refuse(std::string{"the token cannot be verified: "} + e.what());
  }

  auto payload = json_object(token.substr(first + 1, second - first - 1));
  if (!payload)
    return refuse("the token's payload is not base64url-encoded JSON");
  auto exp = seconds_claim(*payload, "exp");
  if (!exp)
    return refuse("the token has no expiry time (exp)");
  if (now_s > *exp + settings_.leeway_s)
    return refuse(fmt::format("the token expired at {} ({} s ago)", utc(*exp), now_s - *exp));
  if (auto nbf = seconds_claim(*payload, "nbf"); nbf && now_s + settings_.leeway_s < *nbf)
    return refuse(
        fmt::format("the token is not valid before {} ({} s from now)", utc(*nbf), *nbf - now_s));
  if (!settings_.issuer.empty()) {
    auto iss = string_member(*payload, "iss");
    if (!iss || *iss != settings_.issuer)
      return refuse("wrong issuer: the token is from '" + iss.value_or("") + "', expected '" +
                    settings_.issuer + "'");
  }
  if (!settings_.audience.empty()) {
    bool ok = false;
    std::string named;
    if (auto it = payload->find("aud"); it != payload->end()) {
      if (it->is_string()) {
        named = it->get<std::string>();
        ok = named == settings_.audience;
      } else if (it->is_array()) {
        for (const auto& a : *it)
          if (a.is_string()) {
            named += (named.empty() ? "" : ", ") + a.get<std::string>();
            ok |= a.get<std::string>() == settings_.audience;
          }
      }
    }
    if (!ok)
      return refuse("wrong audience: the token is for '" + named + "', not '" + settings_.audience +
                    "'");
  }
  principal p;
  p.subject = string_member(*payload, "sub").value_or("");
  if (p.subject.empty())
    return refuse("the token names no subject (sub)");
  p.expires_s = *exp;
  if (auto it = payload->find(settings_.roles_claim); it != payload->end()) {
    if (it->is_array()) {
      for (const auto& r : *it)
        if (r.is_string())
          p.roles.push_back(r.get<std::string>());
    } else if (it->is_string()) {
      std::string all = it->get<std::string>();
      size_t pos = 0;
      while (pos < all.size()) {
        auto end = all.find(' ', pos);
        if (end == std::string::npos)
          end = all.size();
        if (end > pos)
          p.roles.push_back(all.substr(pos, end - pos));
        pos = end + 1;
      }
    }
  }
  if (auto it = payload->find(settings_.tenant_claim); it != payload->end()) {
    // A tenant claim that is not a usable name must not pass for none (that would
    // widen the token to every tenant).
    if (!it->is_string())
      return refuse("the tenant claim '" + settings_.tenant_claim + "' is not a string");
    p.tenant = it->get<std::string>();
    if (auto err = validate_tenant(p.tenant))
      return refuse("the tenant claim '" + settings_.tenant_claim + "': " + *err);
  }
  return result{std::in_place_index<0>, std::move(p)};
}

}  // namespace fleettwin::security

// Bearer tokens and key sets, as a node's gRPC port and JWKS file receive them. The first
// byte picks what the rest is:
//   0  a token, verified as it arrives (against an HS256 secret and a key set with an RSA
//      and an EC key made at start)
//   1  a JWKS document
//   2  a header and a payload (JSON) that this harness signs with the HS256 secret before
//      verifying, so that claims of any shape reach the checks behind the signature
// Every refusal must be a sentence; an accepted token must name a subject and an expiry.

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "services/security/authenticator.hpp"
#include "services/security/token_verifier.hpp"
#include "tests/fuzz/fuzz_support.hpp"

using namespace fleettwin;

namespace {

const std::string secret = "fuzzing-secret-0123456789-abcdefghijklmnop";

security::token_verifier& verifier() {
  static std::unique_ptr<security::token_verifier> v = [] {
    const std::string dir = "/tmp/fleettwin-token-fuzz-" + std::to_string(getpid());
    std::string cmd = "mkdir -p " + dir;
    FUZZ_CHECK(std::system(cmd.c_str()) == 0);
    std::ofstream{dir + "/hs256.key"} << secret;
    // An EC P-256 key (public point only: tokens for it never verify here, the parsing
    // and key choice do run) and its JWKS.
    std::ofstream{dir + "/jwks.json"}
        << R"({"keys":[{"kty":"EC","crv":"P-256","kid":"ec-1","use":"sig",)"
        << R"("x":"GXEQofItMFynTih--AKYAAnOC0rPXpsUWpZylWEg5vE",)"
        << R"("y":"5E9FMt_IFQPpAvV3Y6uuaMrQUDJI2iiqDRy6zuNd5Us"}]})";
    security::token_settings s;
    s.hs256_secret_file = dir + "/hs256.key";
    s.jwks_file = dir + "/jwks.json";
    s.issuer = "fuzz";
    s.audience = "fleettwin";
    std::string error;
    auto made = security::token_verifier::create(s, error);
    if (!made)
      fuzz::invariant_failed(error.c_str());
    return made;
  }();
  return *v;
}

void check(const std::variant<security::principal, std::string>& verdict, int64_t now) {
  if (verdict.index() == 1) {
    FUZZ_CHECK(!std::get<1>(verdict).empty());
    return;
  }
  const auto& p = std::get<0>(verdict);
  FUZZ_CHECK(!p.subject.empty());
  FUZZ_CHECK(p.expires_s + verifier().settings().leeway_s >= now);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::pieces in{data, size};
  const int64_t now = 1'800'000'000;
  switch (in.byte() % 3) {
    case 0:
      check(verifier().verify(in.rest(), now), now);
      break;
    case 1: {
      std::string error;
      auto keys = security::parse_jwks(in.rest(), error);
      FUZZ_CHECK(keys.empty() != error.empty());
      for (const auto& k : keys)
        FUZZ_CHECK(k.pem.rfind("-----BEGIN PUBLIC KEY-----", 0) == 0);
      break;
    }
    default: {
      const auto header = in.piece();
      const auto payload = in.rest();
      const std::string input =
          security::base64url_encode(header) + "." + security::base64url_encode(payload);
      unsigned char mac[EVP_MAX_MD_SIZE];
      unsigned int len = 0;
      HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
      const auto token =
          input + "." +
          security::base64url_encode(std::string_view{reinterpret_cast<char*>(mac), len});
      check(verifier().verify(token, now), now);
      break;
    }
  }
  return 0;
}

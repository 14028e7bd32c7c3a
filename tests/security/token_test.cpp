// Token verification and the role check, with tokens signed by OpenSSL directly (not by the
// library the node verifies with).

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "services/security/authenticator.hpp"
#include "services/security/token_verifier.hpp"
#include "support/process.hpp"
#include "support/token_issuer.hpp"

namespace fleettwin::test {
namespace {

using security::principal;
using security::token_settings;
using security::token_verifier;

const std::string hs_secret = "0123456789abcdefghijklmnopqrstuvwxyzABCDEF";

class TokenTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir = make_temp_dir("tokens");
    write(dir + "/jwks.json", token_issuer::jwks({&rsa, &ec}));
    write(dir + "/hs256.key", hs_secret + "\n");
    settings.jwks_file = dir + "/jwks.json";
    settings.hs256_secret_file = dir + "/hs256.key";
    settings.issuer = "fleettwin-tests";
    settings.audience = "fleettwin";
    std::string error;
    verifier = token_verifier::create(settings, error);
    ASSERT_TRUE(verifier) << error;
  }
  static void write(const std::string& path, const std::string& text) {
    std::ofstream{path} << text;
  }
  /// A modification time a second past the file's, so that a rewrite within the
  /// file system's clock granularity still counts as a change.
  static void touch_later(const std::string& path) {
    static int bump = 0;
    std::filesystem::last_write_time(
        path, std::filesystem::last_write_time(path) + std::chrono::seconds{++bump});
  }
  /// The refusal for `token` ("" when it is accepted).
  std::string why(const std::string& token) {
    auto v = verifier->verify(token, unix_now());
    return v.index() == 1 ? std::get<1>(v) : "";
  }
  principal who(const std::string& token) {
    auto v = verifier->verify(token, unix_now());
    EXPECT_EQ(v.index(), 0u) << (v.index() == 1 ? std::get<1>(v) : "");
    return v.index() == 0 ? std::get<0>(v) : principal{};
  }

  token_issuer rsa = token_issuer::make(token_issuer::kind::rs256, "rsa-1");
  token_issuer ec = token_issuer::make(token_issuer::kind::es256, "ec-1");
  token_issuer hs = token_issuer::make(token_issuer::kind::hs256, hs_secret);
  std::string dir;
  token_settings settings;
  std::unique_ptr<token_verifier> verifier;
};

TEST_F(TokenTest, EachAlgorithmVerifiesAndNamesThePrincipal) {
  const auto now = unix_now();
  for (const auto* issuer : {&rsa, &ec, &hs}) {
    SCOPED_TRACE(issuer->alg());
    auto p = who(issuer->sign(
        claims("alice", {"viewer", "operator"}, now, 600, "fleettwin-tests", "fleettwin", "acme")));
    EXPECT_EQ(p.subject, "alice");
    EXPECT_EQ(p.roles, (std::vector<std::string>{"viewer", "operator"}));
    EXPECT_EQ(p.tenant, "acme");
    EXPECT_EQ(p.expires_s, now + 600);
  }
  // Roles as a space-separated string; the audience in an array.
  auto p = who(ec.sign(R"({"sub":"bob","roles":"viewer admin","exp":)" + std::to_string(now + 60) +
                       R"(,"iss":"fleettwin-tests","aud":["other","fleettwin"]})"));
  EXPECT_EQ(p.roles, (std::vector<std::string>{"viewer", "admin"}));
}

TEST_F(TokenTest, EveryRefusalSaysWhatIsWrong) {
  const auto now = unix_now();
  const auto good = claims("alice", {"viewer"}, now, 600);
  auto unsigned_token = [&](const std::string& alg) {
    return token_issuer::b64url(R"({"alg":")" + alg + R"(","typ":"JWT"})") + "." +
           token_issuer::b64url(good) + ".";
  };
  EXPECT_NE(why(unsigned_token("none")).find("alg none is not accepted"), std::string::npos);
  EXPECT_NE(why(unsigned_token("NoNe")).find("alg none is not accepted"), std::string::npos);
  EXPECT_NE(why(rsa.sign(good, R"({"alg":"RS512","kid":"rsa-1"})")).find("RS512 is not accepted"),
            std::string::npos);
  EXPECT_NE(why(rsa.sign(claims("alice", {"viewer"}, now, -120))).find("expired at"),
            std::string::npos);
  // Within the leeway (30 s) an expired token still passes.
  EXPECT_EQ(why(rsa.sign(claims("alice", {"viewer"}, now, -10))), "");
  const auto early =
      why(ec.sign(R"({"sub":"a","exp":)" + std::to_string(now + 600) + R"(,"nbf":)" +
                  std::to_string(now + 300) + R"(,"iss":"fleettwin-tests","aud":"fleettwin"})"));
  EXPECT_NE(early.find("not valid before"), std::string::npos) << early;
  EXPECT_NE(why(ec.sign(claims("alice", {"viewer"}, now, 600, "fleettwin-tests", "someone-else")))
                .find("wrong audience: the token is for 'someone-else', not 'fleettwin'"),
            std::string::npos);
  EXPECT_NE(why(ec.sign(claims("alice", {"viewer"}, now, 600, "evil-idp"))).find("wrong issuer"),
            std::string::npos);
  EXPECT_NE(why(ec.sign(R"({"sub":"a","iss":"fleettwin-tests","aud":"fleettwin"})"))
                .find("no expiry time"),
            std::string::npos);
  EXPECT_NE(why(ec.sign(R"({"exp":)" + std::to_string(now + 60) +
                        R"(,"iss":"fleettwin-tests","aud":"fleettwin"})"))
                .find("no subject"),
            std::string::npos);
  // Keys: unknown kid, a key of another type than the algorithm, a forged signature.
  auto stranger = token_issuer::make(token_issuer::kind::rs256, "rsa-9");
  EXPECT_NE(why(stranger.sign(good)).find("unknown key id 'rsa-9'"), std::string::npos);
  auto impostor = token_issuer::make(token_issuer::kind::rs256, "rsa-1");
  EXPECT_EQ(why(impostor.sign(good)), "the signature does not verify");
  EXPECT_NE(why(ec.sign(good, R"({"alg":"ES256","kid":"rsa-1"})")).find("algorithm confusion"),
            std::string::npos);
  // Algorithm confusion of the classic kind: HS256 with the RSA public key as the HMAC
  // secret. The HS256 key is only ever the configured secret.
  auto confused = token_issuer::make(token_issuer::kind::hs256, rsa.jwk());
  EXPECT_EQ(why(confused.sign(good, R"({"alg":"HS256","kid":"rsa-1"})")),
            "the signature does not verify");
  // A payload changed after signing.
  auto token = rsa.sign(good);
  auto dot = token.find('.');
  auto dot2 = token.find('.', dot + 1);
  auto admin = token.substr(0, dot + 1) +
               token_issuer::b64url(claims("alice", {"admin"}, now, 600)) + token.substr(dot2);
  EXPECT_EQ(why(admin), "the signature does not verify");
  // Not a token at all.
  for (const std::string& junk :
       std::vector<std::string>{"", "abc", "a.b", "a.b.c", "...", "e30.e30.e30", "e30.e30.",
                                std::string(20000, 'a') + ".b.c", "\xff\xfe.\x01.\x02"})
    EXPECT_NE(why(junk), "") << junk;
}

TEST_F(TokenTest, TheNodeRefusesUnusableKeysAndSecrets) {
  auto refuse = [&](token_settings s) {
    std::string error;
    auto v = token_verifier::create(s, error);
    EXPECT_FALSE(v);
    return error;
  };
  token_settings s;
  s.hs256_secret_file = dir + "/short.key";
  write(s.hs256_secret_file, "secret\n");
  EXPECT_NE(refuse(s).find("at least 32"), std::string::npos);
  write(s.hs256_secret_file, "");
  EXPECT_NE(refuse(s).find("is 0 bytes"), std::string::npos);
  write(s.hs256_secret_file, std::string(48, 'x'));
  EXPECT_NE(refuse(s).find("placeholder"), std::string::npos);
  write(s.hs256_secret_file, "your-256-bit-secret-your-256-bit-secret");
  EXPECT_NE(refuse(s).find("placeholder"), std::string::npos);
  s.hs256_secret_file = dir + "/missing.key";
  EXPECT_NE(refuse(s).find("cannot be read"), std::string::npos);
  token_settings j;
  j.jwks_file = dir + "/bad.json";
  write(j.jwks_file, R"({"keys":[{"kty":"oct","k":"abc"}]})");
  EXPECT_NE(refuse(j).find("no RS256 (RSA) or ES256"), std::string::npos);
  write(j.jwks_file, R"({"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"AAAA","y":"AAAA"}]})");
  EXPECT_NE(refuse(j).find("32 bytes"), std::string::npos);
  write(j.jwks_file, "not json");
  EXPECT_NE(refuse(j).find("not a JWKS document"), std::string::npos);
  EXPECT_NE(refuse(token_settings{}).find("needs a JWKS file or an HS256 secret"),
            std::string::npos);
}

TEST_F(TokenTest, ANewJwksIsUsedOnceWrittenAndABrokenOneKeepsTheOldKeys) {
  const auto now = unix_now();
  auto next = token_issuer::make(token_issuer::kind::es256, "ec-2");
  EXPECT_NE(why(next.sign(claims("a", {"viewer"}, now, 60))).find("unknown key id"),
            std::string::npos);
  write(dir + "/jwks.json", token_issuer::jwks({&ec, &next}));
  touch_later(dir + "/jwks.json");
  EXPECT_EQ(verifier->reload_if_changed(), std::nullopt);
  EXPECT_EQ(why(next.sign(claims("a", {"viewer"}, now, 60))), "");
  EXPECT_NE(why(rsa.sign(claims("a", {"viewer"}, now, 60))).find("unknown key id"),
            std::string::npos)
      << "a key removed from the set must stop working";
  write(dir + "/jwks.json", "{ broken");
  touch_later(dir + "/jwks.json");
  auto error = verifier->reload_if_changed();
  ASSERT_TRUE(error);
  EXPECT_NE(error->find("not a JWKS document"), std::string::npos);
  EXPECT_EQ(why(next.sign(claims("a", {"viewer"}, now, 60))), "");
}

TEST_F(TokenTest, RolesDecideWhichMethodsATokenMayCall) {
  std::vector<std::string> refusals;
  security::authenticator auth{std::shared_ptr<token_verifier>(std::move(verifier)),
                               std::chrono::seconds{3600},
                               [&](const char* r) { refusals.emplace_back(r); }};
  const auto now = unix_now();
  auto bearer = [&](const std::vector<std::string>& roles) {
    return "Bearer " + ec.sign(claims("carol", roles, now, 600));
  };
  auto code = [&](const char* method, const std::string& authorization) {
    return auth.check(method, authorization, now).error_code();
  };
  using grpc::StatusCode;
  EXPECT_EQ(code("/fleettwin.v1.TwinService/GetTwin", bearer({"viewer"})), StatusCode::OK);
  auto denied = auth.check("/fleettwin.v1.TwinService/UpdateDesired", bearer({"viewer"}), now);
  EXPECT_EQ(denied.error_code(), StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(denied.error_message(),
            "/fleettwin.v1.TwinService/UpdateDesired needs the role operator; the token of "
            "'carol' grants viewer");
  EXPECT_EQ(code("/fleettwin.v1.TwinService/UpdateDesired", bearer({"operator"})), StatusCode::OK);
  EXPECT_EQ(code("/fleettwin.v1.AdminService/GetCluster", bearer({"operator"})),
            StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(code("/fleettwin.v1.AdminService/GetCluster", bearer({"admin"})), StatusCode::OK);
  EXPECT_EQ(code("/fleettwin.v1.TwinService/GetTwin", bearer({"guest"})),
            StatusCode::PERMISSION_DENIED);
  // Methods nobody classified are admin's; health and reflection need no token.
  EXPECT_EQ(code("/fleettwin.v1.TwinService/SomethingNew", bearer({"operator"})),
            StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(code("/grpc.health.v1.Health/Check", ""), StatusCode::OK);
  EXPECT_EQ(code("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", ""),
            StatusCode::OK);
  auto missing = auth.check("/fleettwin.v1.TwinService/GetTwin", "", now);
  EXPECT_EQ(missing.error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_NE(missing.error_message().find("Bearer"), std::string::npos);
  EXPECT_EQ(code("/fleettwin.v1.TwinService/GetTwin", "Basic YWxpY2U6cHc="),
            StatusCode::UNAUTHENTICATED);
  auto expired = auth.check("/fleettwin.v1.TwinService/GetTwin",
                            "Bearer " + ec.sign(claims("carol", {"admin"}, now, -600)), now);
  EXPECT_EQ(expired.error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_NE(expired.error_message().find("invalid token: the token expired at"), std::string::npos);
  // A cached token is still refused once it expired.
  auto token = bearer({"viewer"});
  EXPECT_EQ(auth.check("/fleettwin.v1.TwinService/GetTwin", token, now).error_code(),
            StatusCode::OK);
  EXPECT_EQ(auth.check("/fleettwin.v1.TwinService/GetTwin", token, now + 700).error_code(),
            StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(refusals, (std::vector<std::string>{"forbidden", "forbidden", "forbidden", "forbidden",
                                                "missing", "invalid", "expired", "expired"}));
}

}  // namespace
}  // namespace fleettwin::test

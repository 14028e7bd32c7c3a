// The caller a node attaches to a call and forwards with it: its encoding survives any
// subject, and decoding refuses what a node never sends.

#include "services/security/caller.hpp"

#include <gtest/gtest.h>

namespace fleettwin::security {
namespace {

TEST(CallerTest, EncodesAndDecodesAnySubject) {
  for (const caller c :
       {caller{"alice", role::viewer, "acme"}, caller{"svc", role::admin, "", true},
        caller{"spiffe://fleettwin/ops; x=1\n%", role::operator_, "t:1/eu", true}}) {
    auto text = encode_caller(c);
    EXPECT_EQ(text.find('\n'), std::string::npos) << text;
    EXPECT_EQ(text.find('='), std::string::npos) << text;  // metadata lines are key=value
    auto back = decode_caller(text);
    ASSERT_TRUE(back.has_value()) << text;
    EXPECT_EQ(*back, c);
  }
}

TEST(CallerTest, RefusesWhatNoNodeSends) {
  for (const char* text :
       {"", "v1", "v1;admin", "v1;admin;-", "v1;root;-;;x", "v2;admin;-;;x", "v1;admin;-;;%4",
        "v1;admin;-;;%zz", "v1;viewer;-;a b;x", "v1;viewer;;;x", "v1;viewer;y;;x"})
    EXPECT_FALSE(decode_caller(text).has_value()) << text;
}

TEST(CallerTest, ConfinedCallersSeeTheirTenantOnly) {
  caller acme{"a", role::viewer, "acme"};
  EXPECT_TRUE(acme.sees("acme"));
  EXPECT_FALSE(acme.sees("beta"));
  EXPECT_FALSE(acme.sees(""));  // twins without a tenant are nobody's tenant
  caller all{"b", role::viewer, ""};
  EXPECT_TRUE(all.sees("beta"));
  EXPECT_TRUE(all.sees(""));
}

TEST(CallerTest, ForbiddenNamesTheRoleMissing) {
  caller viewer{"v", role::viewer, ""};
  auto why = forbidden(viewer, "/fleettwin.v1.TwinService/UpdateDesired");
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("needs the role operator"), std::string::npos) << *why;
  EXPECT_FALSE(forbidden(viewer, "/fleettwin.v1.TwinService/GetTwin").has_value());
  EXPECT_TRUE(forbidden(viewer, "/fleettwin.v1.Unknown/Method").has_value());
}

}  // namespace
}  // namespace fleettwin::security

// Which listen addresses count as loopback (plaintext allowed without --insecure).

#include <gtest/gtest.h>

#include "services/node/config.hpp"
#include "services/security/bind_policy.hpp"

namespace fleettwin::security {
namespace {

TEST(BindPolicy, LoopbackAddressesAndNamesAreLocal) {
  for (const char* a : {"127.0.0.1:50051", "127.0.0.2:1", "localhost:9464", "[::1]:50051",
                        "[::ffff:127.0.0.1]:1", "unix:/run/fleettwin.sock"})
    EXPECT_TRUE(loopback_only(a)) << a;
}

TEST(BindPolicy, WildcardsOtherAddressesAndUnknownNamesAreNot) {
  for (const char* a : {"0.0.0.0:50051", "[::]:50051", ":50051", "10.1.2.3:50051",
                        "[2001:db8::1]:1", "192.168.0.1:9464", "no-such-host.invalid:1"})
    EXPECT_FALSE(loopback_only(a)) << a;
}

TEST(BindPolicy, HostOfStripsThePortAndBrackets) {
  EXPECT_EQ(host_of("[::1]:50051"), "::1");
  EXPECT_EQ(host_of("node-0.fleettwin:50051"), "node-0.fleettwin");
  EXPECT_EQ(host_of(":50051"), "");
}

TEST(BindPolicy, EveryPlaintextListenerBeyondLoopbackIsNamedUnlessTlsCoversIt) {
  node::node_config cfg;
  EXPECT_TRUE(node::plaintext_listeners(cfg).empty());
  cfg.grpc_address = "0.0.0.0:50051";
  cfg.metrics_address = "0.0.0.0:9464";
  cfg.advertise_host = "10.0.0.7";
  auto open = node::plaintext_listeners(cfg);
  ASSERT_EQ(open.size(), 3u);
  EXPECT_EQ(open[0].what, "gRPC");
  EXPECT_EQ(open[2].address, "10.0.0.7:4242");
  auto why = node::plaintext_refusal(cfg);
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("--tls-cert"), std::string::npos) << *why;
  cfg.tls_cert = "node.crt";
  cfg.tls_key = "node.key";
  // TLS covers gRPC and metrics; the cluster port needs the CA its peers are checked with.
  open = node::plaintext_listeners(cfg);
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].what, "the cluster port");
  EXPECT_NE(node::plaintext_refusal(cfg)->find("--tls-ca"), std::string::npos);
  cfg.tls_ca = "ca.crt";
  EXPECT_TRUE(node::plaintext_listeners(cfg).empty());
  cfg.tls_ca.clear();
  cfg.insecure = true;
  EXPECT_FALSE(node::plaintext_refusal(cfg));
}

}  // namespace
}  // namespace fleettwin::security

// A node on a broker it reaches only through a SASL_SSL listener (TLS with the cluster's
// CA, SCRAM-SHA-512), its librdkafka settings in a file: every Kafka client of the node
// (topic admin, consumer group, transactional producer, changelog, feeds) goes through
// it; refused credentials stop the node at once with the broker's reason.

#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include <grpcpp/grpcpp.h>

#include "fleettwin/v1/service.grpc.pb.h"
#include "integration/harness.hpp"
#include "kafka_broker.hpp"
#include "support/kafka_io.hpp"
#include "support/process.hpp"

namespace fleettwin::test {
namespace {

using namespace std::chrono_literals;

TEST(KafkaSecurityTest, ANodeRunsThroughASaslSslListenerAlone) {
  kafka_broker broker{1, true};
  ASSERT_NE(broker.sasl_ssl_bootstrap(), broker.bootstrap());
  node_process node{broker.sasl_ssl_bootstrap(),
                    make_temp_dir("sasl-node"),
                    {"--kafka-options-file", broker.sasl_ssl_client_properties(), "--partitions",
                     "4", "--node-id", "sasl-1"}};
  node.on_real_kafka();
  node.start();  // topics created, group joined, partitions restored: all over SASL_SSL

  // Telemetry from a producer of the broker's own (plaintext) listener; the node reads it,
  // and commits twin state and change events in transactions, over SASL_SSL.
  constexpr int assets = 20;
  producer p{broker.bootstrap()};
  for (int i = 0; i < assets; ++i) {
    auto id = "v-" + std::to_string(i);
    p.send("fleettwin.telemetry", id, telemetry(id, 1, 1'700'000'000'000, {{"speed", 10.0 + i}}));
  }
  ASSERT_EQ(p.flush(), 0);
  auto twins = v1::TwinService::NewStub(
      grpc::CreateChannel(node.grpc_address(), grpc::InsecureChannelCredentials()));
  for (int i = 0; i < assets; ++i)
    ASSERT_TRUE(eventually([&] {
      grpc::ClientContext ctx;
      v1::GetTwinRequest req;
      req.set_name("twins/v-" + std::to_string(i));
      v1::Twin t;
      return twins->GetTwin(&ctx, req, &t).ok() && t.version() == 1;
    })) << i;
  auto changes = read_topic(broker.bootstrap(), "fleettwin.twin-changes", assets, 30s);
  EXPECT_EQ(changes.size(), static_cast<size_t>(assets));

  // The same settings with a wrong password: the node stops, saying what the broker said.
  std::ifstream in{broker.sasl_ssl_client_properties()};
  std::string settings{std::istreambuf_iterator<char>{in}, {}};
  auto wrong = make_temp_dir("sasl-wrong") + "/client.properties";
  std::ofstream{wrong} << std::regex_replace(settings, std::regex{"sasl\\.password=.*"},
                                             "sasl.password=not-the-password");
  auto [status, out] = run_command(
      std::string{"timeout 60 "} + FLEETTWIN_NODE_BINARY + " --kafka " +
      broker.sasl_ssl_bootstrap() + " --kafka-options-file " + wrong + " --data-dir " +
      make_temp_dir("sasl-wrong-data") + " --grpc 127.0.0.1:0 --metrics 127.0.0.1:0 2>&1");
  EXPECT_NE(status, 0);
  const auto failed = out.find("event=start_failed");
  ASSERT_NE(failed, std::string::npos) << out;
  const auto line = out.substr(failed, out.find('\n', failed) - failed);
  EXPECT_NE(line.find("invalid credentials"), std::string::npos) << line;
}

}  // namespace
}  // namespace fleettwin::test

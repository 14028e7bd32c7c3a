// fleettwin-node's options from a --config file (as the Helm chart's ConfigMap writes it).

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "services/node/config.hpp"

namespace fleettwin::node {
namespace {

struct parsed {
  std::optional<int> code;
  node_config cfg;
  std::string err;
};

parsed parse(std::vector<std::string> args) {
  args.insert(args.begin(), "fleettwin-node");
  std::vector<char*> argv;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  parsed result;
  std::ostringstream out;
  std::ostringstream err;
  result.code = parse_config(static_cast<int>(argv.size()), argv.data(), result.cfg, out, err);
  result.err = err.str();
  return result;
}

class NodeConfigFile : public ::testing::Test {
protected:
  std::string write(const std::string& text) {
    std::ofstream{path} << text;
    return path;
  }
  void TearDown() override {
    std::filesystem::remove(path);
  }
  // ctest runs these tests as parallel processes: each gets a file of its own.
  std::string path = ::testing::TempDir() + "node-config-test-" +
                     ::testing::UnitTest::GetInstance()->current_test_info()->name() + "-" +
                     std::to_string(::getpid()) + ".toml";
};

TEST_F(NodeConfigFile, KeysAreTheLongOptionNames) {
  auto file = write(R"(
standby-replicas = 1
partitions = 24
guarantee = "exactly-once"
sync-commits = false
analytics = true
kafka = "kafka:9093"
kafka-option = ["security.protocol=SSL","ssl.ca.location=/etc/fleettwin/tls/ca.crt"]
)");
  auto p = parse({"--config", file});
  ASSERT_FALSE(p.code.has_value()) << p.err;
  EXPECT_EQ(p.cfg.standby_replicas, 1);
  EXPECT_EQ(p.cfg.partitions, 24);
  EXPECT_EQ(p.cfg.kafka, "kafka:9093");
  EXPECT_EQ(p.cfg.kafka_options,
            (std::vector<std::string>{"security.protocol=SSL",
                                      "ssl.ca.location=/etc/fleettwin/tls/ca.crt"}));
  EXPECT_TRUE(p.cfg.exactly_once());
}

TEST_F(NodeConfigFile, TheCommandLineOverridesTheFile) {
  auto file = write("partitions = 24\n");
  auto p = parse({"--config", file, "--partitions", "6"});
  ASSERT_FALSE(p.code.has_value()) << p.err;
  EXPECT_EQ(p.cfg.partitions, 6);
}

TEST_F(NodeConfigFile, AnUnknownKeyIsAnErrorThatNamesIt) {
  auto file = write("partitions = 24\nstandby-replica = 1\n");
  auto p = parse({"--config", file});
  ASSERT_TRUE(p.code.has_value());
  EXPECT_EQ(*p.code, 2);
  EXPECT_EQ(p.err, "error: --config " + file +
                       ": unknown option 'standby-replica' (keys are the long option names "
                       "without --; see --help)\n");
}

TEST_F(NodeConfigFile, AValueOutOfRangeIsAnError) {
  auto file = write("partitions = 0\n");
  auto p = parse({"--config", file});
  ASSERT_TRUE(p.code.has_value());
  EXPECT_EQ(*p.code, 2);
  EXPECT_NE(p.err.find("partitions"), std::string::npos) << p.err;
}

TEST_F(NodeConfigFile, KafkaSettingsComeFromAFileThatTheCommandLineOverrides) {
  auto file = write(R"(# librdkafka settings of the node's clients
security.protocol=SASL_SSL
  sasl.mechanisms = SCRAM-SHA-512

sasl.username=fleettwin
sasl.password=s3cret=with=equals
)");
  auto p = parse({"--kafka-options-file", file, "--kafka-option", "sasl.username=other"});
  ASSERT_FALSE(p.code.has_value()) << p.err;
  EXPECT_EQ(p.cfg.kafka_options,
            (std::vector<std::string>{"security.protocol=SASL_SSL", "sasl.mechanisms=SCRAM-SHA-512",
                                      "sasl.username=fleettwin", "sasl.password=s3cret=with=equals",
                                      "sasl.username=other"}));
  // A line that is no setting is an error naming the line, never echoing a value.
  write("security.protocol=SSL\nsasl.password\n");
  p = parse({"--kafka-options-file", file});
  ASSERT_TRUE(p.code.has_value());
  EXPECT_EQ(p.err,
            "--kafka-options-file " + file + ":2: expected key=value, got \"sasl.password...\"\n");
}

TEST(NodeConsumerSettings, FetchWaitIsShortOnTheEmbeddedKafkaAndAKafkaOptionWins) {
  using settings = std::map<std::string, std::string>;
  const settings tls{{"security.protocol", "SSL"}};
  // --fetch-wait-ms -1 (the default): 5 ms on the embedded Kafka, whose fetches wait
  // out the whole time; on a real one each consumer keeps its own default.
  auto p = parse({});
  ASSERT_FALSE(p.code.has_value()) << p.err;
  EXPECT_EQ(p.cfg.fetch_wait_ms, -1);
  EXPECT_EQ(consumer_settings(tls, p.cfg.fetch_wait_ms, true),
            (settings{{"security.protocol", "SSL"}, {"fetch.wait.max.ms", "5"}}));
  EXPECT_EQ(consumer_settings(tls, p.cfg.fetch_wait_ms, false), tls);
  p = parse({"--fetch-wait-ms", "20"});
  ASSERT_FALSE(p.code.has_value()) << p.err;
  EXPECT_EQ(consumer_settings({}, p.cfg.fetch_wait_ms, false),
            (settings{{"fetch.wait.max.ms", "20"}}));
  EXPECT_EQ(consumer_settings({}, p.cfg.fetch_wait_ms, true),
            (settings{{"fetch.wait.max.ms", "20"}}));
  // A librdkafka setting given as such wins.
  EXPECT_EQ(consumer_settings({{"fetch.wait.max.ms", "100"}}, p.cfg.fetch_wait_ms, true),
            (settings{{"fetch.wait.max.ms", "100"}}));
  p = parse({"--fetch-wait-ms", "-2"});
  ASSERT_TRUE(p.code.has_value());
  EXPECT_NE(p.err.find("--fetch-wait-ms"), std::string::npos) << p.err;
}

}  // namespace
}  // namespace fleettwin::node

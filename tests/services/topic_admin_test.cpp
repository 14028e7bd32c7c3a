// Which CreateTopics refusals a node asks again (a cluster starting or
// electing a controller) and which it reports at once (the operator's to fix).

#include <gtest/gtest.h>

#include "services/kafka/topic_admin.hpp"

namespace fleettwin::kafka {
namespace {

TEST(TopicAdmin, RefusalsOfAStartingClusterAreAskedAgain) {
  // KRaft brokers are fenced until their first heartbeats reach the controller.
  EXPECT_TRUE(creation_may_succeed_later(
      RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR,
      "Unable to replicate the partition 1 time(s): All brokers are currently fenced."));
  EXPECT_TRUE(creation_may_succeed_later(RD_KAFKA_RESP_ERR_NOT_CONTROLLER, ""));
  EXPECT_TRUE(creation_may_succeed_later(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, ""));
  EXPECT_TRUE(creation_may_succeed_later(RD_KAFKA_RESP_ERR__TIMED_OUT, ""));
  EXPECT_TRUE(creation_may_succeed_later(RD_KAFKA_RESP_ERR__TRANSPORT, ""));
}

TEST(TopicAdmin, ConfigurationErrorsAreReportedAtOnce) {
  EXPECT_FALSE(creation_may_succeed_later(
      RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR,
      "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot "
      "be reached because only 1 broker(s) are registered."));
  EXPECT_FALSE(creation_may_succeed_later(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, ""));
  EXPECT_FALSE(creation_may_succeed_later(RD_KAFKA_RESP_ERR_INVALID_CONFIG, "cleanup.policy"));
  EXPECT_FALSE(creation_may_succeed_later(RD_KAFKA_RESP_ERR_INVALID_PARTITIONS, ""));
}

}  // namespace
}  // namespace fleettwin::kafka

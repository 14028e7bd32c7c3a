// Change events are written without building the protobuf message
// (grpc_api::encode_change): a data team's consumer must read exactly what
// the message would have said. Random changes of every kind and value type,
// each parsed back by protobuf and compared with to_proto's message.

#include <gtest/gtest.h>

#include <limits>
#include <random>

#include <google/protobuf/util/message_differencer.h>

#include "fleettwin/v1/twin.pb.h"
#include "services/grpc/convert.hpp"

namespace fleettwin::grpc_api {
namespace {

core::value random_value(std::mt19937_64& rng) {
  static const int64_t ints[] = {
      0, 1, -1, 127, 128, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
  static const double doubles[] = {0.0,     -0.0,  1.5,
                                   -273.15, 1e300, std::numeric_limits<double>::infinity()};
  switch (rng() % 4) {
    case 0:
      return doubles[rng() % std::size(doubles)];
    case 1:
      return ints[rng() % std::size(ints)] + static_cast<int64_t>(rng() % 3);
    case 2:
      return rng() % 2 == 0;
    default:
      return std::string(rng() % 3 == 0 ? 0 : rng() % 300, 'v');  // empty, short, > 127
  }
}

std::string random_name(std::mt19937_64& rng, size_t i) {
  // Distinct names (a map's keys), some empty-adjacent and some long.
  return std::string(rng() % 2 == 0 ? 1 : 140, 'p') + std::to_string(i);
}

core::twin_change random_change(std::mt19937_64& rng) {
  core::twin_change c;
  c.asset_id = rng() % 10 == 0 ? "" : "vehicle-" + std::to_string(rng() % 100'000);
  c.version = rng() % 4 == 0 ? 0 : rng();
  // Unset (a single change), merged (an earlier version) or the version itself.
  c.first_version = rng() % 3 == 0 ? 0 : rng() % 2 == 0 ? c.version : c.version / 2;
  c.type = static_cast<core::change_type>(1 + rng() % 3);
  c.time_ms = rng() % 5 == 0 ? 0 : static_cast<int64_t>(rng() % 4'000'000'000'000) - 1;
  c.kind = rng() % 3 == 0 ? "" : "vehicle";
  c.tenant = rng() % 3 == 0 ? "" : "demo";
  c.sequence = rng() % 3 == 0 ? 0 : rng() % 1'000'000;
  const size_t reported = rng() % 6;
  for (size_t i = 0; i < reported; ++i) {
    core::reported_property rp;
    rp.val = random_value(rng);
    rp.source_time_ms = rng() % 3 == 0 ? 0 : static_cast<int64_t>(rng() % 2'000'000) - 1'000'000;
    rp.ingest_time_ms = rng() % 3 == 0 ? 0 : static_cast<int64_t>(rng() >> 2);
    rp.sequence = rng() % 3 == 0 ? 0 : rng();
    c.reported.emplace_back(random_name(rng, i), std::move(rp));
  }
  const size_t desired = rng() % 4;
  for (size_t i = 0; i < desired; ++i)
    c.desired.emplace_back(random_name(rng, i), random_value(rng));
  const size_t removed = rng() % 3;
  for (size_t i = 0; i < removed; ++i)
    c.removed.push_back(rng() % 4 == 0 ? "" : random_name(rng, i));
  return c;
}

TEST(ChangeEncodingTest, ReadsBackAsTheMessageToProtoBuilds) {
  std::mt19937_64 rng{20261129};
  for (int round = 0; round < 5'000; ++round) {
    const auto c = random_change(rng);
    std::string bytes = "kept";  // appended to, never cleared
    encode_change(c, bytes);
    ASSERT_EQ(bytes.substr(0, 4), "kept");
    fleettwin::v1::TwinChange parsed;
    ASSERT_TRUE(parsed.ParseFromString(bytes.substr(4))) << "round " << round;
    fleettwin::v1::TwinChange expected;
    to_proto(c, expected);
    std::string diff;
    google::protobuf::util::MessageDifferencer differ;
    differ.ReportDifferencesToString(&diff);
    EXPECT_TRUE(differ.Compare(expected, parsed)) << "round " << round << ": " << diff;
    // Nothing more and nothing less than the message: the same size.
    EXPECT_EQ(bytes.size() - 4, expected.ByteSizeLong()) << "round " << round;
  }
}

TEST(ChangeEncodingTest, AChangeWithoutPropertiesIsByteForByteTheMessage) {
  core::twin_change c;
  c.asset_id = "meter-7";
  c.version = 300;
  c.type = core::change_type::erased;
  c.time_ms = 1'764'000'000'000;
  c.kind = "meter";
  c.tenant = "grid";
  c.sequence = 12;
  c.removed = {"mode"};
  std::string bytes;
  encode_change(c, bytes);
  fleettwin::v1::TwinChange expected;
  to_proto(c, expected);
  std::string serialized;
  ASSERT_TRUE(expected.SerializeToString(&serialized));
  EXPECT_EQ(bytes, serialized);
  EXPECT_EQ(expected.first_version(), 300u) << "a single change covers its own version";
}

TEST(ChangeEncodingTest, AMergedChangeNamesTheVersionsItCovers) {
  core::twin_change c;
  c.asset_id = "veh-1";
  c.first_version = 7;
  c.version = 9;
  c.reported.emplace_back("speed", core::reported_property{core::value{52.5}, 1000, 1001, 3});
  std::string bytes;
  encode_change(c, bytes);
  fleettwin::v1::TwinChange parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  EXPECT_EQ(parsed.first_version(), 7u);
  EXPECT_EQ(parsed.version(), 9u);
}

}  // namespace
}  // namespace fleettwin::grpc_api

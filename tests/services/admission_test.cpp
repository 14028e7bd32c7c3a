// Per-principal limits of the gRPC API: request rates (token buckets) and watch streams.

#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "services/grpc/admission.hpp"

namespace fleettwin::grpc_api {
namespace {

using namespace std::chrono_literals;
using clock = admission::clock;

TEST(AdmissionTest, APrincipalGetsItsBurstThenWaitsForItsRate) {
  std::map<std::string, int> refused;
  admission gate{{10, 5, 0}, [&](const char* limit) { ++refused[limit]; }};
  auto t = clock::now();
  for (int i = 0; i < 5; ++i)
    EXPECT_FALSE(gate.admit("alice", t)) << "request " << i << " of the burst";
  auto wait = gate.admit("alice", t);
  ASSERT_TRUE(wait);
  EXPECT_EQ(*wait, 100ms);  // one request every 100 ms at 10/s
  EXPECT_EQ(refused["rate"], 1);
  // Another principal has its own bucket.
  EXPECT_FALSE(gate.admit("bob", t));
  // After the wait, exactly one more; half of it, none.
  EXPECT_TRUE(gate.admit("alice", t + 50ms));
  EXPECT_FALSE(gate.admit("alice", t + 100ms));
  EXPECT_TRUE(gate.admit("alice", t + 100ms));
  // Idle for long, the bucket holds its burst again, no more.
  auto later = t + 10s;
  for (int i = 0; i < 5; ++i)
    EXPECT_FALSE(gate.admit("alice", later));
  EXPECT_TRUE(gate.admit("alice", later));
}

TEST(AdmissionTest, TheRateHoldsOverTime) {
  // 50 requests/s with a burst of 1: over 10 simulated seconds of a client asking every
  // millisecond, about 500 get through.
  admission gate{{50, 1, 0}};
  auto t = clock::now();
  int admitted = 0;
  for (int ms = 0; ms < 10'000; ++ms)
    if (!gate.admit("flood", t + std::chrono::milliseconds{ms}))
      ++admitted;
  EXPECT_GE(admitted, 499);
  EXPECT_LE(admitted, 501);
}

TEST(AdmissionTest, NoRateMeansNoLimitAndNoState) {
  admission gate{{0, 0, 0}};
  auto t = clock::now();
  for (int i = 0; i < 10'000; ++i)
    ASSERT_FALSE(gate.admit("p" + std::to_string(i), t));
  EXPECT_EQ(gate.tracked_principals(), 0u);
}

TEST(AdmissionTest, TrackedPrincipalsStayBoundedWhoeverCalls) {
  // At most max_principals buckets: idle principals are forgotten to make room, and a
  // new principal waits while every tracked one is busy.
  admission gate{{1, 1, 0, 0, 64}};
  auto t = clock::now();
  for (int i = 0; i < 64; ++i)
    (void)gate.admit("p" + std::to_string(i), t);
  EXPECT_LE(gate.tracked_principals(), 64u);
  int refused = 0;
  for (int i = 64; i < 1000; ++i)
    if (gate.admit("p" + std::to_string(i), t))
      ++refused;
  EXPECT_LE(gate.tracked_principals(), 64u);
  EXPECT_GT(refused, 0);
  // A second later the earlier ones are idle (their buckets full again): room for others.
  EXPECT_FALSE(gate.admit("newcomer", t + 1s));
  EXPECT_LE(gate.tracked_principals(), 64u);
}

TEST(AdmissionTest, WatchStreamsPerPrincipalAreCountedUntilTheyEnd) {
  std::map<std::string, int> refused;
  admission gate{{0, 0, 2}, [&](const char* limit) { ++refused[limit]; }};
  auto a = gate.open_stream("alice");
  auto b = gate.open_stream("alice");
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_FALSE(gate.open_stream("alice"));
  EXPECT_EQ(refused["watch_streams"], 1);
  EXPECT_TRUE(gate.open_stream("bob"));  // bob's own count (closed again at once)
  EXPECT_EQ(gate.open_streams("bob"), 0u);
  a.reset();
  EXPECT_EQ(gate.open_streams("alice"), 1u);
  auto c = gate.open_stream("alice");
  EXPECT_TRUE(c);
  b.reset();
  c.reset();
  EXPECT_EQ(gate.open_streams("alice"), 0u);
}

TEST(AdmissionTest, BulkCallsInProgressAreBoundedForTheWholeNode) {
  std::map<std::string, int> refused;
  admission gate{{0, 0, 0, 2}, [&](const char* limit) { ++refused[limit]; }};
  auto a = gate.begin_bulk();
  auto b = gate.begin_bulk();
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_EQ(gate.bulk_in_progress(), 2u);
  EXPECT_FALSE(gate.begin_bulk());
  EXPECT_EQ(refused["bulk_calls"], 1);
  EXPECT_EQ(gate.bulk_in_progress(), 2u);  // the refusal took nothing
  auto copy = a;                           // the call's copies share its slot
  a.reset();
  EXPECT_FALSE(gate.begin_bulk());
  copy.reset();
  EXPECT_TRUE(gate.begin_bulk());  // released with the last copy (and at once again)
  b.reset();
  EXPECT_EQ(gate.bulk_in_progress(), 0u);
  admission unbounded{{0, 0, 0, 0}};
  std::vector<std::shared_ptr<void>> many;
  for (int i = 0; i < 1000; ++i)
    many.push_back(unbounded.begin_bulk());
  EXPECT_TRUE(many.back());
}

TEST(AdmissionTest, ThePrincipalIsTheSubjectElseTheClientAddress) {
  EXPECT_EQ(principal_for("alice", "ipv4:10.0.0.7:51234"), "alice");
  EXPECT_EQ(principal_for("", "ipv4:10.0.0.7:51234"), "ipv4:10.0.0.7");
  EXPECT_EQ(principal_for("", "ipv6:[::1]:40000"), "ipv6:[::1]");
  EXPECT_EQ(principal_for("", "unix:/run/fleettwin.sock"), "unix:/run/fleettwin.sock");
}

}  // namespace
}  // namespace fleettwin::grpc_api

// The alert lifecycle: pending, raised, updated, cleared, acknowledged.

#include <gtest/gtest.h>

#include <vector>

#include "actors/core/alert.hpp"

using namespace fleettwin::core;

namespace {

constexpr auto warning = alert_severity::warning;
constexpr auto critical = alert_severity::critical;

/// The events of a series of scores, one a second.
std::vector<alert_event> events(alert_state& a, const alert_policy& p,
                                const std::vector<double>& scores, int64_t start = 0) {
  std::vector<alert_event> out;
  for (size_t i = 0; i < scores.size(); ++i)
    out.push_back(observe(a, p, scores[i], warning, 1, start + static_cast<int64_t>(i) * 1000));
  return out;
}

using enum alert_event;

}  // namespace

TEST(AlertTest, OneNoisySampleRaisesNothing) {
  alert_state a;
  alert_policy p;
  EXPECT_EQ(events(a, p, {0.1, 0.9, 0.1, 0.95, 0.2}),
            (std::vector<alert_event>{none, none, none, none, none}));
  EXPECT_FALSE(a.active);
  EXPECT_EQ(a.raised_count, 0u);
}

TEST(AlertTest, RaisedAfterTheMinimumAndClearedAfterTheHysteresis) {
  alert_state a;
  alert_policy p;  // two samples >= 0.5 raise; three < 0.3 clear
  auto e = events(a, p, {0.6, 0.7, 0.45, 0.35, 0.2, 0.4, 0.1, 0.1, 0.1, 0.1});
  EXPECT_EQ(e, (std::vector<alert_event>{none, raised, none, none, none, none, none, none, cleared,
                                         none}));
  // The sample at 0.4 (between the levels) restarted the clearing streak.
  EXPECT_FALSE(a.active);
  EXPECT_EQ(a.raised_count, 1u);
  EXPECT_EQ(a.raised_ms, 1000);
  EXPECT_EQ(a.cleared_ms, 8000);
  EXPECT_DOUBLE_EQ(a.peak, 0.7);
}

TEST(AlertTest, MinimumDurationsInTime) {
  alert_state a;
  alert_policy p;
  p.raise_after_samples = 1;
  p.raise_after_ms = 5000;  // held for five seconds
  auto e = events(a, p, {0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9});
  EXPECT_EQ(e[4], none);
  EXPECT_EQ(e[5], raised);  // 0 s .. 5 s
}

TEST(AlertTest, EscalationAndANewKindAreUpdates) {
  alert_state a;
  alert_policy p;
  p.raise_after_samples = 1;
  EXPECT_EQ(observe(a, p, 0.6, warning, 1, 0), raised);
  EXPECT_EQ(observe(a, p, 0.7, warning, 1, 1000), none);
  EXPECT_EQ(observe(a, p, 0.95, critical, 1, 2000), updated);
  EXPECT_EQ(a.severity, critical);
  EXPECT_EQ(observe(a, p, 0.6, warning, 1, 3000), none);  // no de-escalation while raised
  EXPECT_EQ(a.severity, critical);
  EXPECT_EQ(observe(a, p, 0.8, warning, 4, 4000), updated);  // another kind
  EXPECT_EQ(a.kind, 4);
  EXPECT_EQ(a.updated_ms, 4000);
}

TEST(AlertTest, AcknowledgedOnceWhileRaisedAndAnewWhenRaisedAgain) {
  alert_state a;
  alert_policy p;
  p.raise_after_samples = 1;
  p.clear_after_samples = 1;
  EXPECT_FALSE(acknowledge(a, 0));  // nothing raised
  observe(a, p, 0.9, warning, 1, 0);
  EXPECT_TRUE(acknowledge(a, 500));
  EXPECT_FALSE(acknowledge(a, 600));
  EXPECT_TRUE(a.acknowledged);
  EXPECT_EQ(observe(a, p, 0.1, warning, 1, 1000), cleared);
  EXPECT_EQ(observe(a, p, 0.9, warning, 1, 2000), raised);
  EXPECT_FALSE(a.acknowledged);
  EXPECT_EQ(a.raised_count, 2u);
}

TEST(AlertTest, StateRoundTripsBitExactly) {
  alert_state a;
  alert_policy p;
  events(a, p, {0.6, 0.8, 0.97, 0.2});
  acknowledge(a, 3500);
  std::string bytes;
  encode_alert(a, bytes);
  std::string_view in = bytes;
  alert_state b;
  ASSERT_TRUE(decode_alert(in, b));
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(a, b);
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::string_view cut{bytes.data(), n};
    alert_state x;
    EXPECT_FALSE(decode_alert(cut, x)) << n;
  }
}

// Asset models: thresholds, durations, validation, and the analytics
// settings a property's model implies.

#include <gtest/gtest.h>

#include "actors/core/asset_model.hpp"

using namespace fleettwin::core;

TEST(AssetModelTest, ThresholdsReadBothWays) {
  std::string error;
  auto low = parse_threshold(" < 20", error);
  ASSERT_TRUE(low);
  EXPECT_FALSE(low->above);
  EXPECT_EQ(low->value, 20);
  EXPECT_TRUE(low->crossed_by(19.9));
  EXPECT_FALSE(low->crossed_by(20));
  auto high = parse_threshold(">=7.1", error);
  ASSERT_TRUE(high);
  EXPECT_TRUE(high->above);
  EXPECT_TRUE(high->crossed_by(7.2));
  EXPECT_EQ(to_string(*high), "> 7.1");
  EXPECT_FALSE(parse_threshold("= 3", error));
  EXPECT_FALSE(parse_threshold("< lots", error));
  EXPECT_NE(error.find("\"lots\" is not a number"), std::string::npos) << error;
}

TEST(AssetModelTest, DurationsRoundTrip) {
  EXPECT_EQ(parse_duration_ms("500ms"), 500);
  EXPECT_EQ(parse_duration_ms("10s"), 10'000);
  EXPECT_EQ(parse_duration_ms("5m"), 300'000);
  EXPECT_EQ(parse_duration_ms("24h"), 86'400'000);
  EXPECT_EQ(parse_duration_ms("7d"), 604'800'000);
  EXPECT_EQ(parse_duration_ms("250"), 250);
  EXPECT_FALSE(parse_duration_ms("-1s"));
  EXPECT_FALSE(parse_duration_ms("5 parsecs"));
  EXPECT_FALSE(parse_duration_ms(""));
  for (int64_t ms : {500LL, 10'000LL, 300'000LL, 86'400'000LL, 1'500LL})
    EXPECT_EQ(parse_duration_ms(format_duration(ms)), ms) << format_duration(ms);
}

TEST(AssetModelTest, ValidationSortsAndRefusesDuplicates) {
  asset_model m;
  m.kind = "vehicle";
  auto named = [](std::string name) {
    property_model p;
    p.name = std::move(name);
    return p;
  };
  m.properties.push_back(named("speed"));
  m.properties.push_back(named("battery"));
  EXPECT_FALSE(validate(m));
  EXPECT_EQ(m.properties[0].name, "battery");
  EXPECT_NE(m.find("speed"), nullptr);
  EXPECT_EQ(m.find("odometer"), nullptr);
  m.properties.push_back(named("speed"));
  auto why = validate(m);
  ASSERT_TRUE(why);
  EXPECT_EQ(*why, "model \"vehicle\", property \"speed\": declared twice");
}

TEST(AssetModelTest, AModelSetsItsPropertysAnalytics) {
  // Without a model: the defaults.
  auto none = analytics_params(nullptr);
  EXPECT_EQ(none.forecast.period_ms, 0);
  EXPECT_EQ(none.detector.sensitivity, 1);
  property_model p;
  p.name = "voltage";
  p.period_ms = 86'400'000;
  p.sensitivity = 2;
  p.max_rate_per_s = 3;
  p.stuck_after_ms = 600'000;
  auto a = analytics_params(&p);
  EXPECT_EQ(a.forecast.period_ms, 86'400'000);
  EXPECT_EQ(a.forecast.alpha, forecast_params::seasonal(1).alpha);
  EXPECT_EQ(a.detector.sensitivity, 2);
  EXPECT_EQ(a.detector.max_rate_per_s, 3);
  EXPECT_EQ(a.detector.stuck_after_ms, 600'000);
  EXPECT_EQ(a.detector.stuck_samples, 0u);  // the model's time limit replaces the count
}

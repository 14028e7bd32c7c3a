#include "actors/core/aggregate_kind.hpp"
#include "actors/core/contributions.hpp"
#include "actors/core/twin_analytics.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace fleettwin::core;

namespace {

constexpr int64_t now_ms = 1'000'000;
constexpr int64_t stale_after_ms = 30'000;

aggregate_kind transformer(std::vector<std::pair<std::string, std::string>> measures) {
  return aggregate_kind{"transformer", "transformers", {"feeds"}, std::move(measures), ""};
}

std::string compile_error(const aggregate_kind& k) {
  compiled_kind out;
  auto err = compile_kind(k, out);
  return err ? *err : std::string{};
}

struct member {
  std::string id;
  member_values values;
};

member meter(std::string id, double power, double voltage, int64_t last_seen = now_ms) {
  member m{std::move(id), {}};
  m.values.kind = "meter";
  m.values.last_seen_ms = last_seen;
  m.values.reported = {{"power", power}, {"voltage", voltage}};
  return m;
}

std::vector<std::optional<double>> eval(
    const compiled_kind& k, const std::vector<member>& ms,
    const std::map<std::string, std::string, std::less<>>& attrs = {}) {
  std::vector<member_view> views;
  for (const auto& m : ms)
    views.push_back(member_view{m.id, m.values});
  return recompute_measures(k, views, measure_inputs{&attrs}, now_ms, stale_after_ms);
}

compiled_kind compile(const aggregate_kind& k) {
  compiled_kind out;
  auto err = compile_kind(k, out);
  EXPECT_FALSE(err) << *err;
  return out;
}

TEST(AggregateKind, EveryFunctionOverMembers) {
  auto k =
      compile(transformer({{"meters", "count()"},
                           {"power", "sum(reported.power)"},
                           {"mean_power", "mean(power)"},
                           {"avg_power", "avg(power)"},
                           {"min_v", "min(reported.voltage)"},
                           {"max_v", "max(voltage)"},
                           {"low", "count(reported.voltage < 207)"},
                           {"low_where", "count(where reported.voltage < 207)"},
                           {"p50", "p50(reported.voltage)"},
                           {"p99", "p99(reported.voltage)"},
                           {"p90", "percentile(reported.voltage, 0.9)"},
                           {"hi_power", "sum(reported.power where reported.voltage >= 207)"}}));
  std::vector<member> ms;
  for (int i = 1; i <= 10; ++i)
    ms.push_back(meter("m" + std::to_string(i), i * 1.5, 200 + i * 2));
  auto v = eval(k, ms);
  ASSERT_EQ(v.size(), 12u);
  EXPECT_EQ(v[0], 10);
  EXPECT_DOUBLE_EQ(*v[1], 1.5 * 55);
  EXPECT_DOUBLE_EQ(*v[2], 1.5 * 5.5);
  EXPECT_DOUBLE_EQ(*v[3], *v[2]);
  EXPECT_EQ(v[4], 202);
  EXPECT_EQ(v[5], 220);
  EXPECT_EQ(v[6], 3);  // 202, 204, 206
  EXPECT_EQ(v[7], 3);
  EXPECT_EQ(v[8], 210);   // nearest rank: 5th of 10
  EXPECT_EQ(v[9], 220);   // 10th
  EXPECT_EQ(v[10], 218);  // 9th
  EXPECT_DOUBLE_EQ(*v[11], 1.5 * (55 - 6));
  // The same (field, filter) is one series however many calls read it:
  // count(), power, voltage, count(voltage < 207), power where voltage >= 207.
  EXPECT_EQ(k.series.size(), 5u);
}

TEST(AggregateKind, EmptySetsGiveZeroCountAndSumAndNoValueOtherwise) {
  auto k = compile(transformer({{"n", "count()"},
                                {"s", "sum(power)"},
                                {"m", "mean(power)"},
                                {"lo", "min(power)"},
                                {"p", "p95(power)"}}));
  auto v = eval(k, {});
  EXPECT_EQ(v[0], 0);
  EXPECT_EQ(v[1], 0);
  EXPECT_FALSE(v[2]);
  EXPECT_FALSE(v[3]);
  EXPECT_FALSE(v[4]);
}

TEST(AggregateKind, ExpressionsOverMeasuresAndAttributes) {
  auto k = compile(transformer({{"utilisation", "power_kw / attributes.capacity_kw"},
                                {"power_kw", "sum(reported.power)"},
                                {"headroom", "attributes.capacity_kw - power_kw"},
                                {"pct", "100 * (sum(power) / attributes.capacity_kw)"},
                                {"neg", "-power_kw + 1.5e1"},
                                {"zero_div", "power_kw / (count() - count())"},
                                {"missing", "power_kw / attributes.nope"}}));
  std::map<std::string, std::string, std::less<>> attrs{{"capacity_kw", " 50 "}};
  auto v = eval(k, {meter("a", 10, 230), meter("b", 15, 230)}, attrs);
  EXPECT_DOUBLE_EQ(*v[0], 0.5);
  EXPECT_EQ(v[1], 25);
  EXPECT_EQ(v[2], 25);
  EXPECT_DOUBLE_EQ(*v[3], 50);
  EXPECT_EQ(v[4], -10);
  EXPECT_FALSE(v[5]);
  EXPECT_FALSE(v[6]);
  // utilisation is evaluated after power_kw, which it refers to.
  EXPECT_LT(std::find(k.order.begin(), k.order.end(), 1u),
            std::find(k.order.begin(), k.order.end(), 0u));
  attrs["capacity_kw"] = "fifty";
  EXPECT_FALSE(eval(k, {meter("a", 10, 230)}, attrs)[0]);
}

TEST(AggregateKind, ConnectivityFiltersReadTheMembersLastSeenTime) {
  auto k = compile(transformer({{"stale", "count(connectivity = stale)"},
                                {"online_power", "sum(power where connectivity = online)"}}));
  EXPECT_TRUE(k.time_dependent);
  EXPECT_TRUE(k.fields.connectivity);
  auto v = eval(k, {meter("a", 1, 230, now_ms - 1'000), meter("b", 2, 230, now_ms - 60'000)});
  EXPECT_EQ(v[0], 1);
  EXPECT_EQ(v[1], 1);
}

TEST(AggregateKind, ProjectsOnlyTheFieldsItReads) {
  auto k = compile(transformer({{"p", "sum(power where attributes.tariff = \"night\")"},
                                {"k", "count(kind = \"meter\" AND reported:alarm)"}}));
  EXPECT_EQ(k.fields.reported, (std::set<std::string, std::less<>>{"alarm", "power"}));
  EXPECT_EQ(k.fields.attributes, (std::set<std::string, std::less<>>{"tariff"}));
  EXPECT_FALSE(k.fields.connectivity);
  EXPECT_FALSE(k.time_dependent);
}

TEST(AggregateKind, FiltersWithParenthesesAndQuotesInsideCalls) {
  auto k =
      compile(transformer({{"n", "count((kind = \"a)\" OR kind = 'b where') AND reported.x > 1)"},
                           {"s", "sum(x where (kind = \"a)\"))"}}));
  member a{"1", {}};
  a.values.kind = "a)";
  a.values.reported = {{"x", 5.0}};
  member b{"2", {}};
  b.values.kind = "b where";
  b.values.reported = {{"x", 7.0}};
  auto v = eval(k, {a, b});
  EXPECT_EQ(v[0], 2);
  EXPECT_EQ(v[1], 5);
}

TEST(AggregateKind, TextAndNanValuesAreNotNumbers) {
  auto k = compile(transformer({{"n", "count(reported:x)"}, {"s", "sum(x)"}, {"c", "mean(x)"}}));
  member a{"a", {}};
  a.values.reported = {{"x", std::string{"high"}}};
  member b{"b", {}};
  b.values.reported = {{"x", std::numeric_limits<double>::quiet_NaN()}};
  member c{"c", {}};
  c.values.reported = {{"x", int64_t{4}}};
  member d{"d", {}};
  d.values.reported = {{"x", true}};
  auto v = eval(k, {a, b, c, d});
  EXPECT_EQ(v[0], 4);
  EXPECT_EQ(v[1], 5);
  EXPECT_EQ(v[2], 2.5);
}

TEST(AggregateKind, ErrorsSayWhatToFix) {
  EXPECT_NE(compile_error(transformer({{"x", "total(power)"}})).find("unknown function \"total\""),
            std::string::npos);
  EXPECT_NE(compile_error(transformer({{"x", "sum(power) / nope"}})).find("unknown name \"nope\""),
            std::string::npos);
  EXPECT_NE(compile_error(transformer({{"a", "b + 1"}, {"b", "a * 2"}})).find("cycle: a -> b -> a"),
            std::string::npos);
  EXPECT_NE(compile_error(transformer({{"a", "a + 1"}})).find("refers to itself"),
            std::string::npos);
  EXPECT_NE(compile_error(transformer({{"a", "percentile(power, 1.5)"}})).find("invalid quantile"),
            std::string::npos);
  EXPECT_NE(compile_error(transformer({{"a", "percentile(power)"}})).find("needs a field and a"),
            std::string::npos);
  EXPECT_NE(compile_error(transformer({{"a", "sum()"}})).find("sum needs a field"),
            std::string::npos);
  EXPECT_NE(compile_error(transformer({{"a", "sum(attributes.x)"}})).find("reported property"),
            std::string::npos);
  EXPECT_NE(compile_error(transformer({{"a", "count(speed >>> 2)"}})).find("invalid filter"),
            std::string::npos);
  EXPECT_NE(compile_error(transformer({{"a", "sum(power"}})).find("never closed"),
            std::string::npos);
  EXPECT_NE(compile_error(transformer({{"a", "(1 + 2"}})).find("expected \")\""),
            std::string::npos);
  EXPECT_NE(compile_error(transformer({{"a", "1 + 2)"}})).find("unbalanced"), std::string::npos);
  EXPECT_NE(compile_error(transformer({{"a", ""}})).find("has no expression"), std::string::npos);
  EXPECT_NE(compile_error(transformer({{"a", "1"}, {"a", "2"}})).find("declared twice"),
            std::string::npos);
  EXPECT_NE(compile_error(transformer({{"9a", "1"}})).find("must be an identifier"),
            std::string::npos);
  EXPECT_NE(
      compile_error(aggregate_kind{"Fleet", "fleets", {"member_of"}, {}, ""}).find("lowercase"),
      std::string::npos);
  EXPECT_NE(compile_error(aggregate_kind{"fleet", "", {"member_of"}, {}, ""}).find("is empty"),
            std::string::npos);
  EXPECT_NE(compile_error(aggregate_kind{"fleet", "fleets", {}, {}, ""}).find("no member"),
            std::string::npos);
  EXPECT_NE(compile_error(aggregate_kind{"fleet", "fleets", {"a", "a"}, {}, ""}).find("twice"),
            std::string::npos);
  std::vector<std::pair<std::string, std::string>> many;
  for (int i = 0; i <= 64; ++i)
    many.emplace_back("m" + std::to_string(i), "1");
  EXPECT_NE(compile_error(transformer(many)).find("at most 64"), std::string::npos);
  // The position points at the problem.
  EXPECT_NE(compile_error(transformer({{"a", "sum(power) + ?"}})).find("position 13"),
            std::string::npos);
}

}  // namespace

TEST(AggregateKind, MeasuresReadTheTwinsQualityAndHealth) {
  // As in ListTwins filters: quality.score and health are the analytics'
  // verdicts on a member (reported.health would be a property).
  auto k = compile(transformer({{"q", "mean(quality.score)"},
                                {"sick", "count(health < 0.5)"},
                                {"h", "min(health where quality.score < 1)"}}));
  EXPECT_EQ(k.fields.reported,
            (std::set<std::string, std::less<>>{std::string{member_health_key},
                                                std::string{member_quality_key}}));
  // Projected from twins: one whose voltage has an open critical alert and
  // misses reports, one in good shape.
  twin good;
  good.kind = "meter";
  good.last_seen_ms = now_ms;
  good.analysis["voltage"].quality.expected_interval_ms = 1000;
  twin bad = good;
  auto& a = bad.analysis["voltage"];
  a.alert.active = true;
  a.alert.severity = alert_severity::critical;
  a.quality.missing_rate = 0.5;
  std::vector<member> ms;
  for (auto* tw : {&good, &bad}) {
    tw->reported["voltage"].ingest_time_ms = now_ms;
    ms.push_back({tw == &good ? "good" : "bad", project(*tw, k.fields)});
  }
  ASSERT_NE(ms[1].values.find_reported(member_health_key), nullptr);
  EXPECT_DOUBLE_EQ(*as_number(*ms[1].values.find_reported(member_health_key)),
                   health_score(bad, now_ms));
  auto v = eval(k, ms);
  EXPECT_DOUBLE_EQ(*v[0], (1 + 0.5) / 2);
  EXPECT_EQ(v[1], 1);
  EXPECT_DOUBLE_EQ(*v[2], 0.4);  // the critical alert's penalty, 0.6
}

#include "actors/core/filter.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <string_view>

using namespace fleettwin::core;

namespace {

constexpr int64_t now_ms = 1'000'000;
constexpr int64_t stale_after_ms = 30'000;

struct FilterTest : ::testing::Test {
  twin tw;

  void SetUp() override {
    tw.asset_id = "veh-42";
    tw.kind = "vehicle";
    tw.tenant = "acme";
    tw.version = 7;
    tw.applied_records = 12;
    tw.last_seen_ms = now_ms - 1'000;
    tw.attributes = {
        {"fleet", "north"}, {"make", "volvo"}, {"slot", "3"}, {"electric", "true"}, {"blank", ""}};
    set_reported("speed", 72.5);
    set_reported("gear", std::string{"D"});
    set_reported("odometer", int64_t{120'000});
    set_reported("ignition", true);
    set_reported("parked", false);
    set_reported("code", int64_t{404});
    set_reported("nan", std::numeric_limits<double>::quiet_NaN());
    set_reported("neg", int64_t{-5});
    set_reported("ns:temp", 21.0);
    set_reported("battery level", 0.8);
    tw.desired = {{"speed", 60.0}, {"mode", std::string{"eco"}}, {"lights", false}};
  }

  void set_reported(const std::string& name, value v) {
    reported_property p;
    p.val = std::move(v);
    tw.reported[name] = std::move(p);
  }

  /// Parses `text` (which must be valid) and evaluates it against `tw`.
  bool match(std::string_view text, int64_t now = now_ms) {
    filter f;
    auto err = filter::parse(text, f);
    EXPECT_FALSE(err.has_value()) << "filter: " << text << "\nerror: " << err->message;
    if (err)
      return false;
    return f.matches(tw, now, stale_after_ms);
  }

  /// Parses `text`, which must be invalid, and returns the error.
  static filter_error error(std::string_view text) {
    filter f;
    auto err = filter::parse(text, f);
    EXPECT_TRUE(err.has_value()) << "filter parsed but should not: " << text;
    return err.value_or(filter_error{});
  }
};

// -- empty filter, text ------------------------------------------------------

TEST_F(FilterTest, DefaultFilterMatchesAll) {
  filter f;
  EXPECT_TRUE(f.matches_all());
  EXPECT_TRUE(f.matches(tw, now_ms, stale_after_ms));
  EXPECT_EQ(f.text(), "");
}

TEST_F(FilterTest, EmptyAndBlankTextMatchAll) {
  for (std::string_view text : {"", " ", "   \t\n\r  "}) {
    filter f;
    EXPECT_FALSE(filter::parse(text, f).has_value()) << text;
    EXPECT_TRUE(f.matches_all());
    EXPECT_TRUE(f.matches(tw, now_ms, stale_after_ms));
    EXPECT_TRUE(f.matches(twin{}, now_ms, stale_after_ms));
    EXPECT_EQ(f.text(), text);
  }
}

TEST_F(FilterTest, TextIsTheOriginal) {
  filter f;
  const std::string text = "  kind = \"veh*\"   AND  NOT version>3 ";
  ASSERT_FALSE(filter::parse(text, f).has_value());
  EXPECT_EQ(f.text(), text);
  EXPECT_FALSE(f.matches_all());
}

TEST_F(FilterTest, ReparseReplacesAndBlankResets) {
  filter f;
  ASSERT_FALSE(filter::parse("kind = truck", f).has_value());
  EXPECT_FALSE(f.matches(tw, now_ms, stale_after_ms));
  ASSERT_FALSE(filter::parse("kind = vehicle", f).has_value());
  EXPECT_TRUE(f.matches(tw, now_ms, stale_after_ms));
  ASSERT_FALSE(filter::parse(" ", f).has_value());
  EXPECT_TRUE(f.matches_all());
  EXPECT_EQ(f.text(), " ");
}

TEST_F(FilterTest, ErrorLeavesOutputUnchanged) {
  filter f;
  ASSERT_FALSE(filter::parse("kind = vehicle", f).has_value());
  ASSERT_TRUE(filter::parse("kind = (", f).has_value());
  EXPECT_EQ(f.text(), "kind = vehicle");
  EXPECT_TRUE(f.matches(tw, now_ms, stale_after_ms));
}

TEST_F(FilterTest, CopiesShareTheTree) {
  filter f;
  ASSERT_FALSE(filter::parse("tenant = acme", f).has_value());
  filter g = f;
  EXPECT_EQ(g.text(), "tenant = acme");
  EXPECT_TRUE(g.matches(tw, now_ms, stale_after_ms));
  tw.tenant = "other";
  EXPECT_FALSE(g.matches(tw, now_ms, stale_after_ms));
  EXPECT_FALSE(f.matches(tw, now_ms, stale_after_ms));
}

// -- string fields -------------------------------------------------------------

TEST_F(FilterTest, StringFieldsEveryOperator) {
  EXPECT_TRUE(match("asset_id = \"veh-42\""));
  EXPECT_FALSE(match("asset_id = \"veh-4\""));
  EXPECT_TRUE(match("asset_id != \"veh-4\""));
  EXPECT_FALSE(match("asset_id != \"veh-42\""));
  EXPECT_TRUE(match("asset_id < \"veh-5\""));
  EXPECT_FALSE(match("asset_id < \"veh-42\""));
  EXPECT_TRUE(match("asset_id <= \"veh-42\""));
  EXPECT_FALSE(match("asset_id <= \"veh-41\""));
  EXPECT_TRUE(match("asset_id > \"veh-41\""));
  EXPECT_FALSE(match("asset_id > \"veh-42\""));
  EXPECT_TRUE(match("asset_id >= \"veh-42\""));
  EXPECT_FALSE(match("asset_id >= \"veh-43\""));
  EXPECT_TRUE(match("asset_id : \"veh-42\""));
  EXPECT_FALSE(match("asset_id : \"veh\""));

  EXPECT_TRUE(match("kind = vehicle"));
  EXPECT_FALSE(match("kind = Vehicle"));  // case-sensitive values
  EXPECT_TRUE(match("kind != turbine"));
  EXPECT_TRUE(match("kind > turbine"));
  EXPECT_TRUE(match("kind >= vehicle"));
  EXPECT_FALSE(match("kind < vehicle"));
  EXPECT_TRUE(match("kind <= vehicle"));
  EXPECT_TRUE(match("kind:vehicle"));

  EXPECT_TRUE(match("tenant = acme"));
  EXPECT_FALSE(match("tenant = acm"));
  EXPECT_TRUE(match("tenant != other"));
  EXPECT_TRUE(match("tenant < b"));
  EXPECT_FALSE(match("tenant > b"));
  EXPECT_TRUE(match("tenant >= acme"));
  EXPECT_FALSE(match("tenant <= acm"));
  EXPECT_TRUE(match("tenant:acme"));
}

TEST_F(FilterTest, StringComparisonIsBytewise) {
  tw.kind = "\xc3\xa9t\xc3\xa9";  // "été" in UTF-8: bytes >= 0x80 sort after ASCII
  EXPECT_TRUE(match("kind > zzz"));
  EXPECT_TRUE(match("kind = \"\xc3\xa9t\xc3\xa9\""));
  tw.kind = "";
  EXPECT_TRUE(match("kind = \"\""));
  EXPECT_TRUE(match("kind < a"));
}

TEST_F(FilterTest, AttributesEveryOperator) {
  EXPECT_TRUE(match("attributes.fleet = north"));
  EXPECT_FALSE(match("attributes.fleet = south"));
  EXPECT_TRUE(match("attributes.fleet != south"));
  EXPECT_FALSE(match("attributes.fleet != north"));
  EXPECT_TRUE(match("attributes.fleet < south"));
  EXPECT_TRUE(match("attributes.fleet <= north"));
  EXPECT_FALSE(match("attributes.fleet > north"));
  EXPECT_TRUE(match("attributes.fleet >= north"));
  EXPECT_TRUE(match("attributes.fleet:north"));
  EXPECT_FALSE(match("attributes.fleet:south"));
  EXPECT_TRUE(match("attributes.blank = \"\""));
  EXPECT_TRUE(match("attributes.make = 'volvo'"));
}

// -- prefix match ------------------------------------------------------------------

TEST_F(FilterTest, TrailingStarIsPrefixMatch) {
  EXPECT_TRUE(match("kind = \"veh*\""));
  EXPECT_TRUE(match("kind = veh*"));
  EXPECT_TRUE(match("kind = 'v*'"));
  EXPECT_TRUE(match("kind = \"vehicle*\""));
  EXPECT_FALSE(match("kind = \"vehicles*\""));
  EXPECT_FALSE(match("kind = \"truck*\""));
  EXPECT_TRUE(match("kind:\"veh*\""));
  EXPECT_TRUE(match("asset_id = veh-*"));
  EXPECT_TRUE(match("attributes.fleet = no*"));
  EXPECT_TRUE(match("reported.gear = \"D*\""));
  EXPECT_TRUE(match("desired.mode = e*"));
  // An empty prefix matches any string value.
  EXPECT_TRUE(match("kind = \"*\""));
  EXPECT_TRUE(match("kind = *"));
}

TEST_F(FilterTest, NotEqualPrefixIsTheNegation) {
  EXPECT_FALSE(match("kind != \"veh*\""));
  EXPECT_TRUE(match("kind != \"truck*\""));
}

TEST_F(FilterTest, EscapedStarIsLiteral) {
  EXPECT_FALSE(match("kind = \"veh\\*\""));
  tw.kind = "veh*";
  EXPECT_TRUE(match("kind = \"veh\\*\""));
  tw.kind = "vehicle*";
  EXPECT_FALSE(match("kind = \"veh\\*\""));
}

TEST_F(FilterTest, StarOnlyMeansPrefixForEquality) {
  // For ordering operators the star is an ordinary character.
  EXPECT_TRUE(match("kind > \"veh*\""));  // "vehicle" > "veh*"
  EXPECT_FALSE(match("kind < \"veh*\""));
  tw.kind = "veh*";
  EXPECT_TRUE(match("kind >= \"veh*\""));
  EXPECT_TRUE(match("kind <= \"veh*\""));
}

TEST_F(FilterTest, StarInsideIsLiteral) {
  EXPECT_FALSE(match("kind = \"v*hicle\""));
  tw.kind = "v*hicle";
  EXPECT_TRUE(match("kind = \"v*hicle\""));
}

// -- numeric fields ----------------------------------------------------------------

TEST_F(FilterTest, VersionEveryOperator) {
  EXPECT_TRUE(match("version = 7"));
  EXPECT_FALSE(match("version = 8"));
  EXPECT_TRUE(match("version != 8"));
  EXPECT_FALSE(match("version != 7"));
  EXPECT_TRUE(match("version < 8"));
  EXPECT_FALSE(match("version < 7"));
  EXPECT_TRUE(match("version <= 7"));
  EXPECT_FALSE(match("version <= 6"));
  EXPECT_TRUE(match("version > 6"));
  EXPECT_FALSE(match("version > 7"));
  EXPECT_TRUE(match("version >= 7"));
  EXPECT_FALSE(match("version >= 8"));
  EXPECT_TRUE(match("version:7"));
  EXPECT_FALSE(match("version:8"));
}

TEST_F(FilterTest, AppliedRecordsEveryOperator) {
  EXPECT_TRUE(match("applied_records = 12"));
  EXPECT_TRUE(match("applied_records != 11"));
  EXPECT_TRUE(match("applied_records < 13"));
  EXPECT_TRUE(match("applied_records <= 12"));
  EXPECT_TRUE(match("applied_records > 11"));
  EXPECT_TRUE(match("applied_records >= 12"));
  EXPECT_TRUE(match("applied_records:12"));
  EXPECT_FALSE(match("applied_records > 12"));
  EXPECT_FALSE(match("applied_records < 12"));
}

TEST_F(FilterTest, NumberLiteralForms) {
  EXPECT_TRUE(match("version = 7.0"));
  EXPECT_TRUE(match("version = +7"));
  EXPECT_TRUE(match("version = 7."));
  EXPECT_TRUE(match("version = 0.7e1"));
  EXPECT_TRUE(match("version = 70E-1"));
  EXPECT_TRUE(match("version < 7.5"));
  EXPECT_TRUE(match("version > 6.99"));
  EXPECT_TRUE(match("version > -1"));
  EXPECT_TRUE(match("version > -1e3"));
  EXPECT_TRUE(match("reported.speed = 725e-1"));
  EXPECT_TRUE(match("reported.speed < .8e2"));
  EXPECT_TRUE(match("reported.neg = -5"));
  EXPECT_TRUE(match("reported.neg < -4.5"));
  EXPECT_TRUE(match("reported.neg>=-5"));
}

TEST_F(FilterTest, CountersBeyondInt64) {
  tw.version = std::numeric_limits<uint64_t>::max();
  EXPECT_TRUE(match("version > 9223372036854775807"));
  EXPECT_TRUE(match("version > 1e19"));
  EXPECT_TRUE(match("version = 18446744073709551615"));
  tw.version = 0;
  EXPECT_TRUE(match("version = 0"));
  EXPECT_TRUE(match("version < 18446744073709551615"));
}

TEST_F(FilterTest, IntegersCompareExactly) {
  // 2^53 + 1 is not representable as a double; int64 compares stay exact.
  set_reported("big", int64_t{9'007'199'254'740'993});
  EXPECT_TRUE(match("reported.big = 9007199254740993"));
  EXPECT_FALSE(match("reported.big = 9007199254740992"));
  EXPECT_TRUE(match("reported.big > 9007199254740992"));
  set_reported("min", std::numeric_limits<int64_t>::min());
  EXPECT_TRUE(match("reported.min = -9223372036854775808"));
  EXPECT_TRUE(match("reported.min < -9223372036854775807"));
}

// -- reported and desired, every value type ------------------------------------------

TEST_F(FilterTest, ReportedDoubleEveryOperator) {
  EXPECT_TRUE(match("reported.speed = 72.5"));
  EXPECT_FALSE(match("reported.speed = 72"));
  EXPECT_TRUE(match("reported.speed != 72"));
  EXPECT_TRUE(match("reported.speed < 80"));
  EXPECT_TRUE(match("reported.speed <= 72.5"));
  EXPECT_TRUE(match("reported.speed > 50"));
  EXPECT_TRUE(match("reported.speed >= 72.5"));
  EXPECT_FALSE(match("reported.speed > 72.5"));
  EXPECT_FALSE(match("reported.speed < 72.5"));
  EXPECT_TRUE(match("reported.speed:72.5"));
}

TEST_F(FilterTest, ReportedIntegerEveryOperator) {
  EXPECT_TRUE(match("reported.odometer = 120000"));
  EXPECT_TRUE(match("reported.odometer = 120000.0"));
  EXPECT_TRUE(match("reported.odometer != 1"));
  EXPECT_TRUE(match("reported.odometer < 120000.5"));
  EXPECT_TRUE(match("reported.odometer <= 120000"));
  EXPECT_TRUE(match("reported.odometer > 119999"));
  EXPECT_TRUE(match("reported.odometer >= 1.2e5"));
  EXPECT_FALSE(match("reported.odometer > 120000"));
  EXPECT_TRUE(match("reported.odometer:120000"));
}

TEST_F(FilterTest, ReportedBoolEveryOperator) {
  EXPECT_TRUE(match("reported.ignition = true"));
  EXPECT_FALSE(match("reported.ignition = false"));
  EXPECT_TRUE(match("reported.ignition != false"));
  EXPECT_TRUE(match("reported.parked = false"));
  EXPECT_TRUE(match("reported.ignition:true"));
  // bools compare as 0/1 against numbers and each other
  EXPECT_TRUE(match("reported.ignition = 1"));
  EXPECT_TRUE(match("reported.parked = 0"));
  EXPECT_TRUE(match("reported.ignition > false"));
  EXPECT_TRUE(match("reported.ignition >= true"));
  EXPECT_TRUE(match("reported.parked < true"));
  EXPECT_TRUE(match("reported.parked <= 0.5"));
  EXPECT_TRUE(match("reported.ignition > 0.5"));
  EXPECT_FALSE(match("reported.ignition < 1"));
}

TEST_F(FilterTest, BoolLiteralAgainstNumbers) {
  EXPECT_TRUE(match("version > true"));
  EXPECT_FALSE(match("version = true"));
  set_reported("one", int64_t{1});
  EXPECT_TRUE(match("reported.one = true"));
  EXPECT_TRUE(match("reported.one != false"));
}

TEST_F(FilterTest, ReportedStringEveryOperator) {
  EXPECT_TRUE(match("reported.gear = D"));
  EXPECT_TRUE(match("reported.gear = \"D\""));
  EXPECT_FALSE(match("reported.gear = R"));
  EXPECT_TRUE(match("reported.gear != R"));
  EXPECT_TRUE(match("reported.gear < R"));
  EXPECT_TRUE(match("reported.gear <= D"));
  EXPECT_TRUE(match("reported.gear > C"));
  EXPECT_TRUE(match("reported.gear >= D"));
  EXPECT_FALSE(match("reported.gear > D"));
  EXPECT_TRUE(match("reported.gear:D"));
}

TEST_F(FilterTest, DesiredEveryType) {
  EXPECT_TRUE(match("desired.speed = 60"));
  // The right side is always a literal: `reported.speed` here is the bare word.
  EXPECT_FALSE(match("desired.speed < reported.speed"));
  EXPECT_TRUE(match("desired.speed != 72.5"));
  EXPECT_TRUE(match("desired.speed <= 60"));
  EXPECT_TRUE(match("desired.speed >= 60"));
  EXPECT_TRUE(match("desired.speed > 59.9"));
  EXPECT_TRUE(match("desired.speed < 60.1"));
  EXPECT_TRUE(match("desired.mode = eco"));
  EXPECT_TRUE(match("desired.mode > eca"));
  EXPECT_TRUE(match("desired.mode:eco"));
  EXPECT_TRUE(match("desired.lights = false"));
  EXPECT_TRUE(match("desired.lights != true"));
  // reported and desired are separate maps
  EXPECT_FALSE(match("desired.gear = D"));
  EXPECT_FALSE(match("reported.mode = eco"));
}

TEST_F(FilterTest, NaNOnlySatisfiesNotEqual) {
  EXPECT_FALSE(match("reported.nan = 0"));
  EXPECT_TRUE(match("reported.nan != 0"));
  EXPECT_FALSE(match("reported.nan < 0"));
  EXPECT_FALSE(match("reported.nan <= 0"));
  EXPECT_FALSE(match("reported.nan > 0"));
  EXPECT_FALSE(match("reported.nan >= 0"));
  EXPECT_TRUE(match("reported.nan:*"));
}

TEST_F(FilterTest, QuotedKeySegment) {
  EXPECT_TRUE(match("reported.\"ns:temp\" = 21"));
  EXPECT_TRUE(match("reported.'battery level' < 0.9"));
  EXPECT_TRUE(match("reported.\"ns:temp\":*"));
  EXPECT_TRUE(match("-reported.\"ns:temp\" > 30"));
}

TEST_F(FilterTest, KeysWithDotsSlashesAndDashes) {
  set_reported("engine.oil/temp-c", 90.0);
  tw.attributes["site.eu/west-1"] = "x";
  EXPECT_TRUE(match("reported.engine.oil/temp-c > 80"));
  EXPECT_TRUE(match("attributes.site.eu/west-1 = x"));
}

// -- type mismatches -------------------------------------------------------------

TEST_F(FilterTest, StringFieldAgainstNumberUsesStringForm) {
  EXPECT_TRUE(match("attributes.slot = 3"));
  EXPECT_TRUE(match("attributes.slot:3"));
  EXPECT_FALSE(match("attributes.slot != 3"));
  EXPECT_TRUE(match("attributes.slot != 4"));
  // The literal's text as written is compared, not its numeric value.
  EXPECT_FALSE(match("attributes.slot = 3.0"));
  EXPECT_FALSE(match("attributes.slot = +3"));
  // Ordering across types never matches.
  EXPECT_FALSE(match("attributes.slot > 2"));
  EXPECT_FALSE(match("attributes.slot < 4"));
  EXPECT_FALSE(match("attributes.slot >= 3"));
  EXPECT_FALSE(match("attributes.slot <= 3"));
  EXPECT_FALSE(match("kind = 3"));
  EXPECT_TRUE(match("kind != 3"));
  EXPECT_FALSE(match("kind > 3"));
}

TEST_F(FilterTest, StringFieldAgainstBool) {
  EXPECT_TRUE(match("attributes.electric = true"));
  EXPECT_FALSE(match("attributes.electric = false"));
  EXPECT_TRUE(match("attributes.electric != false"));
  EXPECT_FALSE(match("attributes.electric > false"));
  EXPECT_TRUE(match("reported.gear != true"));
  // A quoted "true" is a string.
  EXPECT_TRUE(match("attributes.electric = \"true\""));
  EXPECT_TRUE(match("attributes.electric < \"z\""));
}

TEST_F(FilterTest, NumericFieldAgainstString) {
  EXPECT_TRUE(match("reported.speed = \"72.5\""));
  EXPECT_FALSE(match("reported.speed = \"72.50\""));
  EXPECT_TRUE(match("reported.speed != \"72.50\""));
  EXPECT_FALSE(match("reported.speed < \"80\""));
  EXPECT_FALSE(match("reported.speed > \"1\""));
  EXPECT_TRUE(match("reported.odometer = \"120000\""));
  EXPECT_TRUE(match("reported.odometer = \"120*\""));
  EXPECT_FALSE(match("reported.odometer = \"13*\""));
  EXPECT_TRUE(match("reported.neg = \"-5\""));
  EXPECT_TRUE(match("reported.ignition = \"true\""));
  EXPECT_TRUE(match("reported.parked = \"false\""));
  EXPECT_FALSE(match("reported.parked = \"0\""));
  EXPECT_TRUE(match("version = \"7\""));
  EXPECT_TRUE(match("version != \"8\""));
  EXPECT_FALSE(match("version >= \"7\""));
  EXPECT_FALSE(match("reported.code = fast"));
  EXPECT_TRUE(match("reported.code != fast"));
  EXPECT_FALSE(match("reported.code < fast"));
  set_reported("whole", 50.0);
  EXPECT_TRUE(match("reported.whole = \"50\""));
}

// -- missing fields ----------------------------------------------------------------

TEST_F(FilterTest, MissingFieldMatchesOnlyNotEqual) {
  for (std::string field : {"attributes.nope", "reported.nope", "desired.nope"}) {
    EXPECT_FALSE(match(field + " = 1")) << field;
    EXPECT_FALSE(match(field + " = x")) << field;
    EXPECT_FALSE(match(field + " = \"x*\"")) << field;
    EXPECT_FALSE(match(field + " = true")) << field;
    EXPECT_TRUE(match(field + " != 1")) << field;
    EXPECT_TRUE(match(field + " != x")) << field;
    EXPECT_TRUE(match(field + " != \"x*\"")) << field;
    EXPECT_FALSE(match(field + " < 1")) << field;
    EXPECT_FALSE(match(field + " <= 1")) << field;
    EXPECT_FALSE(match(field + " > 1")) << field;
    EXPECT_FALSE(match(field + " >= 1")) << field;
    EXPECT_FALSE(match(field + " > \"\"")) << field;
    EXPECT_FALSE(match(field + ":1")) << field;
    EXPECT_FALSE(match(field + ":*")) << field;
    EXPECT_TRUE(match("NOT " + field + " = 1")) << field;
    EXPECT_TRUE(match("NOT " + field + " < 1")) << field;
    EXPECT_TRUE(match("-" + field + ":*")) << field;
  }
}

TEST_F(FilterTest, EmptyTwin) {
  tw = twin{};
  EXPECT_TRUE(match("kind = \"\""));
  EXPECT_TRUE(match("version = 0"));
  EXPECT_TRUE(match("connectivity = stale"));
  EXPECT_FALSE(match("kind:*"));
  EXPECT_FALSE(match("attributes:*"));
  EXPECT_FALSE(match("reported.speed > 0"));
}

// -- presence ---------------------------------------------------------------------

TEST_F(FilterTest, PresenceOfMapEntries) {
  EXPECT_TRUE(match("attributes.fleet:*"));
  EXPECT_TRUE(match("attributes.blank:*"));  // present though empty
  EXPECT_FALSE(match("attributes.site:*"));
  EXPECT_TRUE(match("reported.speed:*"));
  EXPECT_TRUE(match("reported.gear : *"));
  EXPECT_FALSE(match("reported.mode:*"));
  EXPECT_TRUE(match("desired.mode:*"));
  EXPECT_FALSE(match("desired.gear:*"));
}

TEST_F(FilterTest, PresenceOfScalarFields) {
  EXPECT_TRUE(match("asset_id:*"));
  EXPECT_TRUE(match("kind:*"));
  EXPECT_TRUE(match("tenant:*"));
  EXPECT_TRUE(match("version:*"));
  EXPECT_TRUE(match("applied_records:*"));
  EXPECT_TRUE(match("connectivity:*"));
  tw.tenant.clear();
  EXPECT_FALSE(match("tenant:*"));  // an empty string is absent
  EXPECT_TRUE(match("NOT tenant:*"));
  tw.version = 0;
  EXPECT_TRUE(match("version:*"));
}

TEST_F(FilterTest, MapHasKey) {
  EXPECT_TRUE(match("attributes:fleet"));
  EXPECT_TRUE(match("attributes:\"fleet\""));
  EXPECT_FALSE(match("attributes:site"));
  EXPECT_TRUE(match("reported:speed"));
  EXPECT_TRUE(match("reported:\"ns:temp\""));
  EXPECT_FALSE(match("reported:mode"));
  EXPECT_TRUE(match("desired:mode"));
  EXPECT_FALSE(match("desired:gear"));
  EXPECT_TRUE(match("attributes:*"));
  EXPECT_TRUE(match("reported:*"));
  EXPECT_TRUE(match("desired:*"));
  tw.desired.clear();
  EXPECT_FALSE(match("desired:*"));
  EXPECT_FALSE(match("desired:mode"));
}

TEST_F(FilterTest, QuotedStarIsNotPresence) {
  // Only a bare `*` after ":" tests presence; `:"*"` is an empty prefix match,
  // true for any existing value, even an empty string.
  EXPECT_TRUE(match("kind:\"*\""));
  EXPECT_FALSE(match("attributes.site:\"*\""));
  tw.kind.clear();
  EXPECT_FALSE(match("kind:*"));
  EXPECT_TRUE(match("kind:\"*\""));
}

// -- connectivity -------------------------------------------------------------------

TEST_F(FilterTest, ConnectivityOnlineAndStale) {
  EXPECT_TRUE(match("connectivity = online"));
  EXPECT_FALSE(match("connectivity = stale"));
  EXPECT_TRUE(match("connectivity != stale"));
  EXPECT_TRUE(match("connectivity:online"));
  EXPECT_TRUE(match("connectivity = \"online\""));
  EXPECT_TRUE(match("connectivity = 'online'"));
  // judged at the given time
  EXPECT_TRUE(match("connectivity = stale", now_ms + stale_after_ms));
  EXPECT_TRUE(match("connectivity = online", tw.last_seen_ms + stale_after_ms));
  EXPECT_TRUE(match("connectivity = stale", tw.last_seen_ms + stale_after_ms + 1));
  tw.last_seen_ms = 0;  // never seen
  EXPECT_TRUE(match("connectivity = stale"));
}

TEST_F(FilterTest, ConnectivityIsCaseInsensitive) {
  EXPECT_TRUE(match("connectivity = ONLINE"));
  EXPECT_TRUE(match("connectivity = \"Online\""));
  EXPECT_TRUE(match("connectivity != STALE"));
  EXPECT_FALSE(match("connectivity = sTaLe"));
}

TEST_F(FilterTest, ConnectivityOrdersAsStrings) {
  EXPECT_TRUE(match("connectivity < stale"));  // "online" < "stale"
  EXPECT_TRUE(match("connectivity <= online"));
  EXPECT_FALSE(match("connectivity > online"));
  EXPECT_TRUE(match("connectivity >= online"));
  tw.last_seen_ms = 1;
  EXPECT_TRUE(match("connectivity > online"));
}

TEST_F(FilterTest, ConnectivityRejectsOtherValues) {
  auto e = error("connectivity = offline");
  EXPECT_EQ(e.position, 15u);
  EXPECT_EQ(e.message, "invalid connectivity \"offline\" at 15: expected online or stale");
  EXPECT_EQ(error("connectivity = 1").position, 15u);
  EXPECT_EQ(error("connectivity = true").position, 15u);
  EXPECT_EQ(error("connectivity = \"on*\"").position, 15u);
  EXPECT_EQ(error("connectivity = ''").position, 15u);
}

// -- boolean structure ---------------------------------------------------------------

TEST_F(FilterTest, AndOrBasics) {
  EXPECT_TRUE(match("kind = vehicle AND tenant = acme"));
  EXPECT_FALSE(match("kind = vehicle AND tenant = other"));
  EXPECT_TRUE(match("kind = truck OR tenant = acme"));
  EXPECT_FALSE(match("kind = truck OR tenant = other"));
  EXPECT_TRUE(match("kind = truck OR kind = bus OR kind = vehicle"));
  EXPECT_TRUE(match("version > 1 AND version < 10 AND version != 5"));
}

TEST_F(FilterTest, JuxtapositionIsAnd) {
  EXPECT_TRUE(match("kind = vehicle tenant = acme"));
  EXPECT_FALSE(match("kind = vehicle tenant = other"));
  EXPECT_TRUE(match("kind=vehicle tenant=acme version>1"));
  // juxtaposition binds like AND: tighter than OR
  EXPECT_TRUE(match("kind = truck tenant = x OR version = 7"));
  EXPECT_FALSE(match("kind = truck tenant = acme OR version = 8"));
}

TEST_F(FilterTest, AndBindsTighterThanOr) {
  // true OR (false AND false) = true; (true OR false) AND false would be false
  EXPECT_TRUE(match("kind = vehicle OR kind = truck AND tenant = other"));
  // (false AND x) OR true
  EXPECT_TRUE(match("kind = truck AND tenant = acme OR version = 7"));
  // (true AND false) OR false
  EXPECT_FALSE(match("kind = vehicle AND tenant = other OR version = 8"));
  // false OR (true AND true)
  EXPECT_TRUE(match("kind = truck OR tenant = acme AND version = 7"));
}

TEST_F(FilterTest, ParenthesesOverridePrecedence) {
  EXPECT_FALSE(match("(kind = vehicle OR kind = truck) AND tenant = other"));
  EXPECT_TRUE(match("(kind = vehicle OR kind = truck) AND tenant = acme"));
  EXPECT_TRUE(match("kind = vehicle AND (tenant = other OR version = 7)"));
  EXPECT_TRUE(match("((kind = vehicle))"));
  EXPECT_TRUE(match("(kind=vehicle)(tenant=acme)"));
  EXPECT_TRUE(match("( ( kind = truck ) OR ( ( version = 7 ) ) )"));
}

TEST_F(FilterTest, NotAndMinusNegate) {
  EXPECT_FALSE(match("NOT kind = vehicle"));
  EXPECT_TRUE(match("NOT kind = truck"));
  EXPECT_FALSE(match("-kind = vehicle"));
  EXPECT_TRUE(match("-kind = truck"));
  EXPECT_TRUE(match("- kind = truck"));
  EXPECT_TRUE(match("-(kind = truck OR tenant = other)"));
  EXPECT_FALSE(match("NOT (kind = truck OR tenant = acme)"));
  EXPECT_TRUE(match("NOT NOT kind = vehicle"));
  EXPECT_TRUE(match("--kind = vehicle"));
  EXPECT_TRUE(match("NOT -kind = vehicle"));
  EXPECT_FALSE(match("NOT NOT NOT kind = vehicle"));
}

TEST_F(FilterTest, NotBindsTighterThanAndOr) {
  // (NOT false) AND true
  EXPECT_TRUE(match("NOT kind = truck AND tenant = acme"));
  // (NOT true) OR true
  EXPECT_TRUE(match("NOT kind = vehicle OR tenant = acme"));
  // (NOT true) AND true
  EXPECT_FALSE(match("NOT kind = vehicle AND tenant = acme"));
  EXPECT_TRUE(match("kind = vehicle -tenant = other"));
  EXPECT_FALSE(match("kind = vehicle -tenant = acme"));
}

TEST_F(FilterTest, DashInsideWordsIsNotNegation) {
  EXPECT_TRUE(match("asset_id = veh-42"));
  EXPECT_TRUE(match("asset_id=veh-42 kind=vehicle"));
  EXPECT_TRUE(match("reported.neg = -5"));
}

TEST_F(FilterTest, KeywordsAreCaseSensitive) {
  // lowercase keywords are field names, which do not exist
  auto e = error("kind = vehicle and tenant = acme");
  EXPECT_EQ(e.position, 15u);
  EXPECT_EQ(e.message, "unknown field \"and\" at 15: keywords AND, OR and NOT are uppercase");
  EXPECT_EQ(error("kind = vehicle or tenant = acme").position, 15u);
  EXPECT_EQ(error("not kind = vehicle").position, 0u);
  EXPECT_EQ(error("Not kind = vehicle").position, 0u);
  // a lowercase keyword quoted as a value is fine
  EXPECT_FALSE(match("kind = and"));
  tw.kind = "AND";
  EXPECT_TRUE(match("kind = \"AND\""));
}

// -- literals -----------------------------------------------------------------------

TEST_F(FilterTest, QuotedStringsAndEscapes) {
  tw.attributes["q"] = "say \"hi\"";
  EXPECT_TRUE(match("attributes.q = \"say \\\"hi\\\"\""));
  EXPECT_TRUE(match("attributes.q = 'say \"hi\"'"));
  tw.attributes["q"] = "it's";
  EXPECT_TRUE(match("attributes.q = 'it\\'s'"));
  EXPECT_TRUE(match("attributes.q = \"it's\""));
  tw.attributes["q"] = "a\\b";
  EXPECT_TRUE(match("attributes.q = \"a\\\\b\""));
  tw.attributes["q"] = "line\nnext\ttab\r";
  EXPECT_TRUE(match("attributes.q = \"line\\nnext\\ttab\\r\""));
  tw.attributes["q"] = "a b (c) = d OR e";
  EXPECT_TRUE(match("attributes.q = \"a b (c) = d OR e\""));
  tw.attributes["q"] = "x";
  EXPECT_TRUE(match("attributes.q = \"\\x\""));  // unknown escapes keep the character
}

TEST_F(FilterTest, BareWords) {
  tw.attributes["q"] = "1.2.3";
  EXPECT_TRUE(match("attributes.q = 1.2.3"));
  tw.attributes["q"] = "12abc";
  EXPECT_TRUE(match("attributes.q = 12abc"));
  tw.attributes["q"] = "inf";
  EXPECT_TRUE(match("attributes.q = inf"));
  tw.attributes["q"] = "1e";
  EXPECT_TRUE(match("attributes.q = 1e"));
  tw.attributes["q"] = "a/b,c.d@e";
  EXPECT_TRUE(match("attributes.q = a/b,c.d@e"));
  tw.attributes["q"] = "True";
  EXPECT_TRUE(match("attributes.q = True"));  // only lowercase true/false are bools
}

TEST_F(FilterTest, WhitespaceIsFlexible) {
  EXPECT_TRUE(match("kind=vehicle"));
  EXPECT_TRUE(match("  kind\t=\n vehicle  "));
  EXPECT_TRUE(match("version>=7"));
  EXPECT_TRUE(match("version<=7"));
  EXPECT_TRUE(match("version!=8"));
  EXPECT_TRUE(match("(kind=vehicle)AND(version=7)"));
}

// -- errors -----------------------------------------------------------------------

TEST_F(FilterTest, ErrorUnknownField) {
  auto e = error("foo = 1");
  EXPECT_EQ(e.position, 0u);
  EXPECT_EQ(e.message,
            "unknown field \"foo\" at 0: expected asset_id, kind, tenant, version, connectivity, "
            "applied_records, attributes.<key>, reported.<property>, desired.<property>, "
            "anomaly.<property>, quality.score, quality.<property>, health (and for alerts state, "
            "severity, property, detector)");
  EXPECT_EQ(error("kind = a AND speed > 3").position, 13u);
  EXPECT_EQ(error("Kind = a").position, 0u);
  EXPECT_EQ(error("attribute.fleet = a").position, 0u);
  EXPECT_EQ(error("(NOT  stats.speed > 1)").position, 6u);
  EXPECT_EQ(error("-foo = 1").position, 1u);
  EXPECT_EQ(error("- foo = 1").position, 2u);
}

TEST_F(FilterTest, ErrorMissingKey) {
  auto e = error("attributes. = x");
  EXPECT_EQ(e.position, 11u);
  EXPECT_EQ(e.message, "expected a key after \"attributes.\" at 11");
  EXPECT_EQ(error("reported.:*").position, 9u);
  EXPECT_EQ(error("desired. = 1").position, 8u);
}

TEST_F(FilterTest, ErrorMapWithoutKey) {
  auto e = error("attributes = north");
  EXPECT_EQ(e.position, 11u);
  EXPECT_EQ(e.message,
            "\"attributes\" needs a key at 11: use attributes.<key> = value, or attributes:<key>");
  EXPECT_EQ(error("reported > 1").position, 9u);
  EXPECT_EQ(error("desired != 1").position, 8u);
}

TEST_F(FilterTest, ErrorMissingValue) {
  auto e = error("kind = vehicle AND tenant =");
  EXPECT_EQ(e.position, 27u);
  EXPECT_EQ(e.message, "expected a value after \"=\" at 27");
  EXPECT_EQ(error("kind = ").position, 7u);
  EXPECT_EQ(error("version >= )").position, 11u);
  EXPECT_EQ(error("(version < )").position, 11u);
  EXPECT_EQ(error("version != ( 3 )").position, 11u);
  EXPECT_EQ(error("kind : ").message, "expected a value after \":\" at 7");
  EXPECT_EQ(error("kind <= ").message, "expected a value after \"<=\" at 8");
  EXPECT_EQ(error("kind > = 3").message, "expected a value after \">\" at 7");
  auto k = error("kind = AND");
  EXPECT_EQ(k.position, 7u);
  EXPECT_EQ(k.message, "expected a value after \"=\" at 7: quote \"AND\" to compare with the word");
  EXPECT_EQ(error("kind = NOT x").position, 7u);
  EXPECT_EQ(error("kind = OR").position, 7u);
}

TEST_F(FilterTest, ErrorMissingOperator) {
  auto e = error("kind \"vehicle\"");
  EXPECT_EQ(e.position, 5u);
  EXPECT_EQ(e.message, "expected an operator (=, !=, <, <=, >, >= or :) after \"kind\" at 5");
  EXPECT_EQ(error("kind").position, 4u);
  EXPECT_EQ(error("kind vehicle").position, 5u);
  EXPECT_EQ(error("(kind)").position, 5u);
  EXPECT_EQ(error("reported.speed AND kind = a").position, 15u);
}

TEST_F(FilterTest, ErrorUnbalancedParentheses) {
  auto open = error("(kind = vehicle");
  EXPECT_EQ(open.position, 0u);
  EXPECT_EQ(open.message, "unbalanced parenthesis at 0: this \"(\" is never closed");
  EXPECT_EQ(error("kind = a AND ((tenant = b)").position, 13u);
  auto close = error("kind = vehicle)");
  EXPECT_EQ(close.position, 14u);
  EXPECT_EQ(close.message, "unbalanced parenthesis at 14: no \"(\" matches this \")\"");
  EXPECT_EQ(error("(kind = a))").position, 10u);
  EXPECT_EQ(error(")").position, 0u);
  EXPECT_EQ(error("NOT )").position, 4u);
  auto empty = error("kind = a AND ()");
  EXPECT_EQ(empty.position, 14u);
  EXPECT_EQ(empty.message, "empty parentheses at 14: expected an expression inside \"()\"");
}

TEST_F(FilterTest, ErrorUnterminatedString) {
  auto e = error("kind = \"vehicle");
  EXPECT_EQ(e.position, 7u);
  EXPECT_EQ(e.message, "unterminated string at 7: add the closing \"");
  EXPECT_EQ(error("kind = 'vehicle").message, "unterminated string at 7: add the closing '");
  EXPECT_EQ(error("kind = \"vehicle'").position, 7u);
  EXPECT_EQ(error("kind = 'a\\'").position, 7u);  // the quote is escaped
  EXPECT_EQ(error("kind = \"a\\").position, 7u);  // a trailing backslash
  EXPECT_EQ(error("reported.\"speed = 1").position, 9u);
  EXPECT_EQ(error("kind = a \"").position, 9u);
}

TEST_F(FilterTest, ErrorDanglingKeywords) {
  auto e = error("kind = vehicle AND");
  EXPECT_EQ(e.position, 18u);
  EXPECT_EQ(e.message, "expected an expression after \"AND\" at 18");
  EXPECT_EQ(error("kind = vehicle OR").message, "expected an expression after \"OR\" at 17");
  EXPECT_EQ(error("NOT").message, "expected an expression after \"NOT\" at 3");
  EXPECT_EQ(error("-").message, "expected an expression after \"-\" at 1");
  EXPECT_EQ(error("kind = a AND OR tenant = b").position, 13u);
  EXPECT_EQ(error("kind = a OR AND tenant = b").position, 12u);
  EXPECT_EQ(error("(kind = a AND)").position, 13u);
  EXPECT_EQ(error("NOT = 3").position, 4u);
  EXPECT_EQ(error("NOT OR kind = a").position, 4u);
}

TEST_F(FilterTest, ErrorLeadingKeyword) {
  auto e = error("AND kind = vehicle");
  EXPECT_EQ(e.position, 0u);
  EXPECT_EQ(e.message, "unexpected \"AND\" at 0: expected a field, \"(\" or NOT");
  EXPECT_EQ(error("OR kind = vehicle").position, 0u);
  EXPECT_EQ(error("(AND kind = a)").position, 1u);
}

TEST_F(FilterTest, ErrorStrayTokens) {
  auto bare = error("\"vehicle\"");
  EXPECT_EQ(bare.position, 0u);
  EXPECT_EQ(bare.message, "unexpected string \"vehicle\" at 0: expected a field, \"(\" or NOT");
  EXPECT_EQ(error("kind = a \"b\"").position, 9u);
  auto op = error("= vehicle");
  EXPECT_EQ(op.position, 0u);
  EXPECT_EQ(op.message, "unexpected \"=\" at 0: expected a field, \"(\" or NOT");
  auto chained = error("kind = a = b");
  EXPECT_EQ(chained.position, 9u);
  EXPECT_EQ(chained.message, "unexpected \"=\" at 9: expected AND, OR or the end of the filter");
  auto in_parens = error("(kind = a = b)");
  EXPECT_EQ(in_parens.position, 10u);
  EXPECT_EQ(in_parens.message, "unexpected \"=\" at 10: expected AND, OR or \")\"");
  EXPECT_EQ(error("version < 3 < 4").position, 12u);
}

TEST_F(FilterTest, ErrorBadOperators) {
  auto eq = error("kind == vehicle");
  EXPECT_EQ(eq.position, 5u);
  EXPECT_EQ(eq.message, "unexpected \"==\" at 5: use \"=\" for equality");
  auto bang = error("kind ! vehicle");
  EXPECT_EQ(bang.position, 5u);
  EXPECT_EQ(bang.message,
            "unexpected \"!\" at 5: use NOT or \"-\" to negate, \"!=\" for inequality");
  EXPECT_EQ(error("!kind = vehicle").position, 0u);
  EXPECT_EQ(error("kind =! vehicle").position, 6u);
  EXPECT_EQ(error("kind !").position, 5u);
}

TEST_F(FilterTest, ErrorControlCharacter) {
  auto e = error(std::string_view{"kind = a\x01", 9});
  EXPECT_EQ(e.position, 8u);
  EXPECT_EQ(e.message, "unexpected control character 0x01 at 8");
  EXPECT_EQ(error(std::string_view{"kind = \0", 8}).position, 7u);
  // inside a quoted string any byte is fine
  tw.kind = std::string{"a\x01", 2};
  EXPECT_TRUE(match(std::string_view{"kind = \"a\x01\"", 11}));
}

TEST_F(FilterTest, ErrorNumberOutOfRange) {
  auto e = error("version > 1e999");
  EXPECT_EQ(e.position, 10u);
  EXPECT_EQ(e.message, "number \"1e999\" out of range at 10");
  EXPECT_EQ(error("reported.speed < -1e400").position, 17u);
}

TEST_F(FilterTest, ErrorEchoIsTruncated) {
  const std::string name(500, 'x');
  auto e = error(name + " = 1");
  EXPECT_EQ(e.position, 0u);
  EXPECT_LT(e.message.size(), 400u);
  EXPECT_NE(e.message.find("...\""), std::string::npos);
}

// -- limits ------------------------------------------------------------------------

TEST_F(FilterTest, LengthLimit) {
  const std::string head = "kind = \"";
  std::string ok = head + std::string(4096 - head.size() - 1, 'v') + "\"";
  ASSERT_EQ(ok.size(), 4096u);
  filter f;
  EXPECT_FALSE(filter::parse(ok, f).has_value());
  EXPECT_FALSE(f.matches(tw, now_ms, stale_after_ms));

  std::string too_long = head + std::string(4096 - head.size(), 'v') + "\"";
  ASSERT_EQ(too_long.size(), 4097u);
  auto e = error(too_long);
  EXPECT_EQ(e.position, 4096u);
  EXPECT_EQ(e.message, "filter too long at 4096: it has 4097 bytes, the limit is 4096");
  // even blank text over the limit is rejected
  EXPECT_EQ(error(std::string(5000, ' ')).position, 4096u);
}

std::string nested(size_t depth, std::string_view inner) {
  return std::string(depth, '(') + std::string{inner} + std::string(depth, ')');
}

TEST_F(FilterTest, DepthLimit) {
  EXPECT_TRUE(match(nested(32, "kind = vehicle")));
  auto e = error(nested(33, "kind = vehicle"));
  EXPECT_EQ(e.position, 32u);
  EXPECT_EQ(e.message, "parentheses nested deeper than 32 at 32");
  // far deeper nesting fails the same way, without exhausting the stack
  EXPECT_EQ(error(nested(2000, "kind = vehicle")).position, 32u);
  EXPECT_EQ(error(std::string(4096, '(')).position, 32u);
  // depth is nesting, not the number of groups
  std::string many;
  for (int i = 0; i < 100; ++i)
    many += "(version > 1) ";
  EXPECT_TRUE(match(many));
  // NOT between parentheses does not count as a level
  std::string with_not;
  for (int i = 0; i < 32; ++i)
    with_not += "NOT (";
  with_not += "kind = vehicle" + std::string(32, ')');
  EXPECT_TRUE(match(with_not));
}

TEST_F(FilterTest, LongChainsAreFlat) {
  std::string ors = "kind = x0";
  for (int i = 1; i < 250; ++i)
    ors += " OR kind = x" + std::to_string(i);
  ASSERT_LE(ors.size(), 4096u);
  EXPECT_FALSE(match(ors));
  EXPECT_TRUE(match(ors + " OR kind = vehicle"));

  std::string nots;
  for (int i = 0; i < 1001; ++i)
    nots += "NOT ";
  EXPECT_TRUE(match(nots + "kind = truck"));
  EXPECT_TRUE(match(std::string(2000, '-') + "kind = vehicle"));
}

// -- realistic filters ----------------------------------------------------------------

TEST_F(FilterTest, RealisticFleetQueries) {
  EXPECT_TRUE(match("kind = \"vehicle\" AND attributes.fleet = \"north\" AND reported.speed > 50"));
  EXPECT_FALSE(
      match("kind = \"vehicle\" AND attributes.fleet = \"south\" AND reported.speed > 50"));
  EXPECT_FALSE(
      match("kind = \"vehicle\" AND attributes.fleet = \"north\" AND reported.speed > 80"));
  EXPECT_TRUE(match("tenant = acme connectivity = online reported.speed >= 70"));
  EXPECT_TRUE(
      match("kind = veh* AND (attributes.make = volvo OR attributes.make = scania) "
            "AND NOT reported.gear = R"));
  EXPECT_TRUE(match("connectivity = online AND desired.speed < 70 AND reported.speed > 70"));
  EXPECT_TRUE(match("attributes:fleet -attributes.decommissioned:* version > 0"));
  EXPECT_FALSE(match("connectivity = stale OR reported.ignition = false"));
  EXPECT_TRUE(match("connectivity = stale OR reported.ignition = false", now_ms + 60'000));
  EXPECT_TRUE(
      match("(reported.odometer > 100000 OR applied_records > 1000) AND asset_id = \"veh-*\""));
  EXPECT_TRUE(match("desired.mode:* AND NOT reported.mode:*"));
}

TEST_F(FilterTest, RealisticFilterOverAFleet) {
  std::vector<twin> fleet(10);
  for (size_t i = 0; i < fleet.size(); ++i) {
    twin& t = fleet[i];
    t.asset_id = "veh-" + std::to_string(i);
    t.kind = i % 3 == 0 ? "charger" : "vehicle";
    t.version = i + 1;
    t.last_seen_ms = i % 2 == 0 ? now_ms : now_ms - 2 * stale_after_ms;
    t.attributes["fleet"] = i < 5 ? "north" : "south";
    reported_property p;
    p.val = static_cast<double>(i * 10);
    t.reported["speed"] = p;
  }
  filter f;
  ASSERT_FALSE(filter::parse("kind = \"vehicle\" AND attributes.fleet = \"north\" AND "
                             "reported.speed > 15 AND connectivity = online",
                             f)
                   .has_value());
  std::vector<std::string> hits;
  for (const auto& t : fleet)
    if (f.matches(t, now_ms, stale_after_ms))
      hits.push_back(t.asset_id);
  // vehicles (not i%3==0) in the north (i<5), speed>15 (i>=2), online (even i)
  EXPECT_EQ(hits, (std::vector<std::string>{"veh-2", "veh-4"}));
}

}  // namespace

// -- analytics: anomaly scores and alerts ------------------------------------

TEST_F(FilterTest, AnomalyReadsTheScoreAndPresenceMeansAnomalous) {
  tw.analysis["speed"].score = 0.7;
  tw.analysis["odometer"].score = 0.1;
  EXPECT_TRUE(match("anomaly.speed > 0.6"));
  EXPECT_TRUE(match("anomaly.odometer < 0.2"));
  EXPECT_FALSE(match("anomaly.gear < 1"));  // not analysed: absent
  EXPECT_TRUE(match("anomaly.speed:*"));
  EXPECT_TRUE(match("anomaly:speed"));
  EXPECT_FALSE(match("anomaly:odometer"));
  EXPECT_TRUE(match("anomaly:*"));
  tw.analysis["speed"].score = 0.2;
  EXPECT_FALSE(match("anomaly:*"));
  // A raised alert keeps the property anomalous while its score dips.
  tw.analysis["odometer"].alert.active = true;
  EXPECT_TRUE(match("anomaly:odometer"));
  EXPECT_TRUE(match("anomaly:*"));
  EXPECT_TRUE(match("NOT anomaly:speed"));
}

TEST_F(FilterTest, AlertFieldsAreReadFromTheAlertAndAbsentForTwins) {
  alert_state a;
  a.active = true;
  a.severity = alert_severity::critical;
  a.kind = static_cast<uint8_t>(anomaly_kind::drift);
  a.raised_count = 1;
  alert_view v{&tw, "speed", &a};
  auto alert_match = [&](std::string_view text) {
    filter f;
    EXPECT_FALSE(filter::parse(text, f).has_value()) << text;
    return f.matches(v, now_ms, stale_after_ms);
  };
  EXPECT_TRUE(alert_match("state = \"open\" AND severity = \"critical\""));
  EXPECT_TRUE(alert_match("property = \"speed\" AND detector = \"drift\""));
  // Twin fields still apply.
  EXPECT_TRUE(alert_match("kind = \"vehicle\" AND attributes.fleet = \"north\" AND state:*"));
  a.acknowledged = true;
  EXPECT_TRUE(alert_match("state = \"acknowledged\""));
  a.active = false;
  EXPECT_TRUE(alert_match("state = \"cleared\""));
  EXPECT_FALSE(alert_match("severity = \"warning\""));
  // A twin has no alert fields.
  EXPECT_FALSE(match("state = \"open\""));
  EXPECT_FALSE(match("state:*"));
  EXPECT_TRUE(match("state != \"open\""));
  EXPECT_NE(error("states = 1").message.find("anomaly.<property>"), std::string::npos);
}

// Command-line text -> request fields, and the human renderings, without a server.

#include <gtest/gtest.h>

#include "tools/cli/format.hpp"
#include "tools/cli/parse.hpp"
#include "tools/cli/run.hpp"

namespace fleettwin::cli {
namespace {

constexpr int64_t nov24_10h = 1795514400000;  // 2026-11-24T10:00:00Z
constexpr int64_t nov24 = 1795478400000;      // 2026-11-24T00:00:00Z

TEST(twin_name, adds_the_prefix_once) {
  EXPECT_EQ(twin_name("veh-1"), "twins/veh-1");
  EXPECT_EQ(twin_name("twins/veh-1"), "twins/veh-1");
  EXPECT_THROW(twin_name(""), usage_error);
  EXPECT_THROW(twin_name("twins/"), usage_error);
}

TEST(infer_value, booleans) {
  EXPECT_TRUE(infer_value("true").bool_value());
  EXPECT_EQ(infer_value("false").kind_case(), v1::Value::kBoolValue);
  EXPECT_FALSE(infer_value("false").bool_value());
  EXPECT_EQ(infer_value("True").string_value(), "True");
}

TEST(infer_value, integers) {
  EXPECT_EQ(infer_value("42").int_value(), 42);
  EXPECT_EQ(infer_value("-7").int_value(), -7);
  EXPECT_EQ(infer_value("+3").int_value(), 3);
  EXPECT_EQ(infer_value("0").kind_case(), v1::Value::kIntValue);
  EXPECT_EQ(infer_value("9223372036854775807").int_value(), INT64_MAX);
}

TEST(infer_value, doubles) {
  EXPECT_DOUBLE_EQ(infer_value("3.25").double_value(), 3.25);
  EXPECT_DOUBLE_EQ(infer_value("1e3").double_value(), 1000);
  EXPECT_DOUBLE_EQ(infer_value("-2.5E-3").double_value(), -0.0025);
  EXPECT_DOUBLE_EQ(infer_value(".5").double_value(), 0.5);
  EXPECT_DOUBLE_EQ(infer_value("5.").double_value(), 5);
  EXPECT_EQ(infer_value("50.0").kind_case(), v1::Value::kDoubleValue);
  // Too large for int64: still a number.
  EXPECT_DOUBLE_EQ(infer_value("99999999999999999999").double_value(), 1e20);
}

TEST(infer_value, strings) {
  EXPECT_EQ(infer_value("\"42\"").string_value(), "42");
  EXPECT_EQ(infer_value("\"true\"").string_value(), "true");
  EXPECT_EQ(infer_value("eco").string_value(), "eco");
  EXPECT_EQ(infer_value("").kind_case(), v1::Value::kStringValue);
  EXPECT_EQ(infer_value("1.2.3").string_value(), "1.2.3");
  EXPECT_EQ(infer_value("1e").string_value(), "1e");
  EXPECT_EQ(infer_value("0x10").string_value(), "0x10");
  EXPECT_EQ(infer_value("nan").string_value(), "nan");
  EXPECT_EQ(infer_value("-").string_value(), "-");
  EXPECT_EQ(infer_value("\"").string_value(), "\"");
}

TEST(parse_assignment, splits_at_the_first_equals_sign) {
  auto [key, value] = parse_assignment("mode=a=b");
  EXPECT_EQ(key, "mode");
  EXPECT_EQ(value.string_value(), "a=b");
  EXPECT_EQ(parse_assignment("empty=").second.string_value(), "");
  EXPECT_THROW(parse_assignment("=5"), usage_error);
  EXPECT_THROW(parse_assignment("novalue"), usage_error);
}

TEST(parse_time, unix_ms) {
  EXPECT_EQ(parse_time("1795514400000", 0), nov24_10h);
  EXPECT_EQ(parse_time("0", 0), 0);
}

TEST(parse_time, iso8601) {
  EXPECT_EQ(parse_time("2026-11-24T10:00:00Z", 0), nov24_10h);
  EXPECT_EQ(parse_time("2026-11-24T10:00:00.123Z", 0), nov24_10h + 123);
  EXPECT_EQ(parse_time("2026-11-24T10:00:00.5Z", 0), nov24_10h + 500);
  EXPECT_EQ(parse_time("2026-11-24T10:00:00.123456Z", 0), nov24_10h + 123);
  EXPECT_EQ(parse_time("2026-11-24T10:00:00", 0), nov24_10h);
  EXPECT_EQ(parse_time("2026-11-24 10:00", 0), nov24_10h);
  EXPECT_EQ(parse_time("2026-11-24T12:00:00+02:00", 0), nov24_10h);
  EXPECT_EQ(parse_time("2026-11-24T07:30:00-0230", 0), nov24_10h);
  EXPECT_EQ(parse_time("2026-11-24", 0), nov24);
  EXPECT_EQ(parse_time("1970-01-01T00:00:00Z", 0), 0);
}

TEST(parse_time, relative_to_now) {
  const int64_t now = nov24_10h;
  EXPECT_EQ(parse_time("now", now), now);
  EXPECT_EQ(parse_time("-15m", now), now - 15 * 60'000);
  EXPECT_EQ(parse_time("-2h", now), now - 2 * 3'600'000);
  EXPECT_EQ(parse_time("-30s", now), now - 30'000);
  EXPECT_EQ(parse_time("-500ms", now), now - 500);
  EXPECT_EQ(parse_time("-1d", now), now - 86'400'000);
  EXPECT_EQ(parse_time("-1w", now), now - 7 * 86'400'000LL);
  EXPECT_EQ(parse_time("-1h30m", now), now - 90 * 60'000);
  EXPECT_EQ(parse_time("+10s", now), now + 10'000);
}

TEST(parse_time, rejects_what_it_cannot_read) {
  for (const char* text :
       {"", "-", "-15", "-15x", "-m", "15m", "yesterday", "2026-13-01", "2026-02-30T00:00:00Z",
        "2026-11-24T24:00:00Z", "2026-11-24T10", "2026-11-24T10:00:00ZZ", "2026-11-24T10:00:00+2",
        "10:00", "2026-1-5", "-1.5h"}) {
    EXPECT_THROW(parse_time(text, nov24_10h), usage_error) << text;
  }
}

TEST(format_time, iso8601_utc_with_milliseconds) {
  EXPECT_EQ(format_time(nov24_10h + 123), "2026-11-24T10:00:00.123Z");
  EXPECT_EQ(format_time(0), "-");
  EXPECT_EQ(format_time(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(parse_time(format_time(nov24_10h + 45'678), 0), nov24_10h + 45'678);
}

TEST(format_value, shows_the_type) {
  v1::Value value;
  value.set_double_value(50);
  EXPECT_EQ(format_value(value), "50.0");
  value.set_double_value(52.5);
  EXPECT_EQ(format_value(value), "52.5");
  value.set_double_value(1e21);
  EXPECT_EQ(format_value(value), "1e+21");
  value.set_int_value(50);
  EXPECT_EQ(format_value(value), "50");
  value.set_bool_value(true);
  EXPECT_EQ(format_value(value), "true");
  value.set_string_value("eco");
  EXPECT_EQ(format_value(value), "\"eco\"");
  EXPECT_EQ(format_value(v1::Value{}), "null");
}

TEST(format_change, names_the_versions_a_merged_change_covers) {
  v1::TwinChange change;
  change.set_asset_id("veh-1");
  change.set_time_ms(nov24_10h);
  change.set_type(v1::REPORTED);
  change.set_version(7);
  change.set_first_version(7);
  (*change.mutable_reported())["speed"].mutable_value()->set_double_value(52.5);
  change.set_sequence(7);
  EXPECT_EQ(format_change(change), "2026-11-24T10:00:00.000Z veh-1 v7 REPORTED speed=52.5 seq=7");
  change.set_first_version(5);
  EXPECT_EQ(format_change(change), "2026-11-24T10:00:00.000Z veh-1 v5-7 REPORTED speed=52.5 seq=7");
  change.set_first_version(0);  // a node before first_version
  EXPECT_EQ(format_change(change), "2026-11-24T10:00:00.000Z veh-1 v7 REPORTED speed=52.5 seq=7");
}

TEST(format_value, round_trips_through_inference) {
  for (const char* text : {"true", "42", "-7", "52.5", "50.0", "\"eco\"", "\"42\""}) {
    EXPECT_EQ(format_value(infer_value(text)), text);
  }
}

TEST(exit_code_for, maps_status_codes) {
  EXPECT_EQ(exit_code_for(grpc::StatusCode::OK), 0);
  EXPECT_EQ(exit_code_for(grpc::StatusCode::NOT_FOUND), 3);
  EXPECT_EQ(exit_code_for(grpc::StatusCode::INVALID_ARGUMENT), 4);
  EXPECT_EQ(exit_code_for(grpc::StatusCode::ABORTED), 5);
  EXPECT_EQ(exit_code_for(grpc::StatusCode::UNAVAILABLE), 6);
  EXPECT_EQ(exit_code_for(grpc::StatusCode::DEADLINE_EXCEEDED), 6);
  EXPECT_EQ(exit_code_for(grpc::StatusCode::INTERNAL), 1);
  EXPECT_EQ(exit_code_for(grpc::StatusCode::PERMISSION_DENIED), 1);
}

TEST(table, pads_columns_and_keeps_widths_across_pages) {
  table rows({"A", "BB", "C"});
  rows.add({"long", "x", "last"});
  std::ostringstream out;
  rows.print(out);
  rows.add({"y", "z", "w"});
  rows.print(out);
  EXPECT_EQ(out.str(),
            "A     BB  C\n"
            "long  x   last\n"
            "y     z   w\n");
}

}  // namespace
}  // namespace fleettwin::cli

// The telemetry payload decoder: protobuf and JSON, content types, keys, every
// rejection with its reason, and buffer reuse across records.

#include <bit>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>
#include <simdjson.h>

#include "fleettwin/v1/telemetry.pb.h"
#include "services/kafka/telemetry_decoder.hpp"

namespace fleettwin::kafka {
namespace {

using core::telemetry;
using core::value;
using error = std::pair<std::string, std::string>;

constexpr std::string_view json_type = "application/json";
constexpr std::string_view proto_type = "application/x-protobuf";

const value* find_metric(const telemetry& t, std::string_view name) {
  for (const auto& [n, v] : t.metrics)
    if (n == name)
      return &v;
  return nullptr;
}

std::optional<std::string> find_attribute(const telemetry& t, std::string_view name) {
  for (const auto& [n, v] : t.attributes)
    if (n == name)
      return v;
  return std::nullopt;
}

std::vector<std::string> metric_names(const telemetry& t) {
  std::vector<std::string> names;
  for (const auto& m : t.metrics)
    names.push_back(m.first);
  return names;
}

std::string invalid_json(simdjson::error_code e) {
  return std::string{"invalid JSON: "} + simdjson::error_message(e);
}

v1::Telemetry sample_proto() {
  v1::Telemetry t;
  t.set_asset_id("veh-000001");
  t.set_kind("vehicle");
  t.set_tenant("demo");
  t.set_sequence(17);
  t.set_source_time_ms(1732435200000);
  (*t.mutable_attributes())["fleet"] = "north";
  (*t.mutable_attributes())["make"] = "volvo";
  auto& m = *t.mutable_metrics();
  m["speed"].set_double_value(52.4);
  m["odometer"].set_int_value(12034);
  m["ignition"].set_bool_value(true);
  m["gear"].set_string_value("D");
  return t;
}

constexpr std::string_view readme_json =
    R"({"asset_id": "veh-000001", "kind": "vehicle", "tenant": "demo", "sequence": 17,
 "source_time_ms": 1732435200000, "attributes": {"fleet": "north", "make": "volvo"},
 "metrics": {"speed": 52.4, "battery": 81.5, "odometer": 12034, "ignition": true, "gear": "D"}})";

class TelemetryDecoderTest : public ::testing::Test {
protected:
  std::optional<error> decode(std::string_view payload, std::string_view content_type,
                              std::string_view key = "") {
    runtime::raw_record r;
    r.key = key;
    r.payload = payload;
    r.content_type = content_type;
    return codec.decode(r, out);
  }

  void expect_error(std::string_view payload, std::string_view content_type, std::string_view code,
                    std::string_view reason, std::string_view key = "") {
    auto err = decode(payload, content_type, key);
    ASSERT_TRUE(err.has_value()) << payload;
    EXPECT_EQ(err->first, code) << payload;
    EXPECT_EQ(err->second, reason) << payload;
  }

  void expect_json_error(std::string_view payload, std::string_view reason) {
    expect_error(payload, json_type, "malformed", reason);
  }

  telemetry_codec codec;
  telemetry out;
};

// --- protobuf ----------------------------------------------------------------

TEST_F(TelemetryDecoderTest, ProtobufDecodesEveryFieldAndValueType) {
  auto err = decode(sample_proto().SerializeAsString(), proto_type, "veh-000001");
  ASSERT_FALSE(err) << err->second;
  EXPECT_EQ(out.asset_id, "veh-000001");
  EXPECT_EQ(out.kind, "vehicle");
  EXPECT_EQ(out.tenant, "demo");
  EXPECT_EQ(out.sequence, 17u);
  EXPECT_EQ(out.source_time_ms, 1732435200000);
  ASSERT_EQ(out.attributes.size(), 2u);
  EXPECT_EQ(find_attribute(out, "fleet"), "north");
  EXPECT_EQ(find_attribute(out, "make"), "volvo");
  ASSERT_EQ(out.metrics.size(), 4u);
  EXPECT_EQ(*find_metric(out, "speed"), value{52.4});
  EXPECT_EQ(*find_metric(out, "odometer"), value{int64_t{12034}});
  EXPECT_EQ(*find_metric(out, "ignition"), value{true});
  EXPECT_EQ(*find_metric(out, "gear"), value{std::string{"D"}});
}

TEST_F(TelemetryDecoderTest, ProtobufKeepsTheOrderOfThePayload) {
  std::string payload;
  for (const char* name : {"zeta", "alpha", "mid"}) {
    v1::Telemetry one;  // one entry per message: concatenated, they merge
    (*one.mutable_metrics())[name].set_int_value(1);
    (*one.mutable_attributes())[name] = name;
    payload += one.SerializeAsString();
  }
  ASSERT_FALSE(decode(payload, proto_type, "a"));
  EXPECT_EQ(metric_names(out), (std::vector<std::string>{"zeta", "alpha", "mid"}));
  EXPECT_EQ(out.attributes, (std::vector<std::pair<std::string, std::string>>{
                                {"zeta", "zeta"}, {"alpha", "alpha"}, {"mid", "mid"}}));
}

TEST_F(TelemetryDecoderTest, ProtobufKeyFillsAnEmptyAssetId) {
  auto t = sample_proto();
  t.clear_asset_id();
  ASSERT_FALSE(decode(t.SerializeAsString(), proto_type, "veh-000042"));
  EXPECT_EQ(out.asset_id, "veh-000042");
}

TEST_F(TelemetryDecoderTest, ProtobufEmptyKeyKeepsThePayloadAssetId) {
  ASSERT_FALSE(decode(sample_proto().SerializeAsString(), proto_type, ""));
  EXPECT_EQ(out.asset_id, "veh-000001");
}

TEST_F(TelemetryDecoderTest, EmptyKeyAndEmptyAssetIdAreLeftToValidation) {
  auto t = sample_proto();
  t.clear_asset_id();
  ASSERT_FALSE(decode(t.SerializeAsString(), proto_type, ""));
  EXPECT_EQ(out.asset_id, "");
  ASSERT_FALSE(decode(R"({"metrics": {"a": 1}})", json_type, ""));
  EXPECT_EQ(out.asset_id, "");
}

TEST_F(TelemetryDecoderTest, ProtobufKeyMismatch) {
  expect_error(sample_proto().SerializeAsString(), proto_type, "key_mismatch",
               R"(record key "veh-000002" differs from payload asset_id "veh-000001")",
               "veh-000002");
}

TEST_F(TelemetryDecoderTest, EmptyProtobufPayloadIsAnEmptyRecord) {
  ASSERT_FALSE(decode("", "", "veh-1"));
  EXPECT_EQ(out.asset_id, "veh-1");
  EXPECT_TRUE(out.metrics.empty());
  EXPECT_TRUE(out.attributes.empty());
  EXPECT_EQ(out.sequence, 0u);
}

TEST_F(TelemetryDecoderTest, ProtobufParseFailureIsMalformed) {
  const std::string reason = "payload is not a valid fleettwin.v1.Telemetry protobuf";
  expect_error("\xff\xff\xff", proto_type, "malformed", reason);
  const auto full = sample_proto().SerializeAsString();
  expect_error(std::string_view{full}.substr(0, 5), proto_type, "malformed", reason);
  // Field 1 (asset_id) holding a byte that is not UTF-8: proto3 strings must be.
  expect_error(std::string_view{"\x0a\x01\xff", 3}, proto_type, "malformed", reason);
  // JSON sent without a content-type is read as protobuf.
  expect_error(readme_json, "", "malformed", reason);
}

TEST_F(TelemetryDecoderTest, ProtobufValueWithoutKindIsMalformed) {
  auto t = sample_proto();
  (*t.mutable_metrics())["rpm"];  // a Value with nothing set
  expect_error(t.SerializeAsString(), proto_type, "malformed", R"(metric "rpm" has no value)");
}

TEST_F(TelemetryDecoderTest, ProtobufContentTypes) {
  const auto payload = sample_proto().SerializeAsString();
  for (std::string_view type :
       {"", "  ", "application/x-protobuf", "application/protobuf",
        "application/vnd.google.protobuf", "APPLICATION/X-PROTOBUF", "Application/Protobuf",
        "application/x-protobuf; messageType=fleettwin.v1.Telemetry",
        " application/vnd.google.protobuf ;proto=fleettwin.v1.Telemetry"}) {
    auto err = decode(payload, type, "veh-000001");
    EXPECT_FALSE(err) << "content-type \"" << type << "\": " << err->second;
    EXPECT_EQ(out.metrics.size(), 4u) << type;
  }
}

// Hand-written wire format, for what the generated serializer never emits.
std::string varint(uint64_t v) {
  std::string out;
  do {
    out += static_cast<char>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
    v >>= 7;
  } while (v != 0);
  return out;
}

std::string tag(uint32_t field, uint32_t wire_type) {
  return varint(uint64_t{field} << 3 | wire_type);
}

std::string bytes_field(uint32_t field, std::string_view bytes) {
  return tag(field, 2) + varint(bytes.size()) + std::string{bytes};
}

std::string metric_entry(std::string_view name, std::string_view value_message) {
  return bytes_field(7, bytes_field(1, name) + bytes_field(2, value_message));
}

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// What the generated parser makes of `payload`, as a decoded record would be.
void expect_same_as_generated(const v1::Telemetry& m, const telemetry& t) {
  EXPECT_EQ(t.asset_id, m.asset_id());
  EXPECT_EQ(t.kind, m.kind());
  EXPECT_EQ(t.tenant, m.tenant());
  EXPECT_EQ(t.sequence, m.sequence());
  EXPECT_EQ(t.source_time_ms, m.source_time_ms());
  std::map<std::string, std::string> attributes(t.attributes.begin(), t.attributes.end());
  EXPECT_EQ(attributes.size(), t.attributes.size()) << "repeated attribute names";
  EXPECT_EQ(attributes,
            (std::map<std::string, std::string>(m.attributes().begin(), m.attributes().end())));
  ASSERT_EQ(t.metrics.size(), static_cast<size_t>(m.metrics().size()));
  for (const auto& [name, v] : t.metrics) {
    auto it = m.metrics().find(name);
    ASSERT_NE(it, m.metrics().end()) << name;
    const auto& expected = it->second;
    switch (expected.kind_case()) {
      case v1::Value::kDoubleValue:
        ASSERT_TRUE(std::holds_alternative<double>(v)) << name;
        EXPECT_EQ(std::bit_cast<uint64_t>(std::get<double>(v)),
                  std::bit_cast<uint64_t>(expected.double_value()))
            << name;
        break;
      case v1::Value::kIntValue:
        EXPECT_EQ(v, value{expected.int_value()}) << name;
        break;
      case v1::Value::kBoolValue:
        EXPECT_EQ(v, value{expected.bool_value()}) << name;
        break;
      case v1::Value::kStringValue:
        EXPECT_EQ(v, value{expected.string_value()}) << name;
        break;
      case v1::Value::KIND_NOT_SET:
        ADD_FAILURE() << "metric " << name << " decoded without a value";
    }
  }
}

TEST_F(TelemetryDecoderTest, ProtobufMergesRepeatedFieldsLikeTheGeneratedParser) {
  v1::Telemetry first = sample_proto();
  v1::Telemetry second;
  second.set_kind("machine");
  second.set_sequence(18);
  (*second.mutable_metrics())["speed"].set_string_value("fast");
  (*second.mutable_metrics())["new"].set_bool_value(false);
  (*second.mutable_attributes())["fleet"] = "south";
  const auto payload = first.SerializeAsString() + second.SerializeAsString();
  ASSERT_FALSE(decode(payload, proto_type));
  EXPECT_EQ(*find_metric(out, "speed"), value{std::string{"fast"}});
  EXPECT_EQ(find_attribute(out, "fleet"), "south");
  EXPECT_EQ(out.kind, "machine");
  v1::Telemetry generated;
  ASSERT_TRUE(generated.ParseFromString(payload));
  expect_same_as_generated(generated, out);

  // Within one Value the last kind set wins.
  const auto both = tag(1, 1) + std::string(8, '\0') + tag(2, 0) + varint(7);
  ASSERT_FALSE(decode(metric_entry("m", both), proto_type));
  EXPECT_EQ(out.metrics, (std::vector<std::pair<std::string, value>>{{"m", int64_t{7}}}));
}

TEST_F(TelemetryDecoderTest, ProtobufSkipsUnknownFieldsLikeTheGeneratedParser) {
  std::string payload = sample_proto().SerializeAsString();
  payload += tag(99, 0) + varint(123456789);                    // unknown varint
  payload += tag(100, 5) + "abcd";                              // unknown fixed32
  payload += tag(101, 1) + "abcdefgh";                          // unknown fixed64
  payload += bytes_field(102, "whatever");                      // unknown bytes
  payload += tag(103, 3) + tag(1, 0) + varint(1) + tag(2, 3) +  // unknown group,
             bytes_field(5, "x") + tag(2, 4) + tag(103, 4);     // with a nested one
  payload += bytes_field(4, "not a varint");                    // sequence, wrong type
  payload += tag(1, 0) + varint(5);                             // asset_id, wrong type
  payload += metric_entry("extra", tag(9, 0) + varint(1) + tag(2, 0) + varint(3));
  payload += bytes_field(6, bytes_field(1, "site") + tag(3, 0) + varint(1) + bytes_field(2, "b"));
  auto err = decode(payload, proto_type);
  ASSERT_FALSE(err) << err->second;
  EXPECT_EQ(out.sequence, 17u);
  EXPECT_EQ(out.asset_id, "veh-000001");
  EXPECT_EQ(*find_metric(out, "extra"), value{int64_t{3}});
  EXPECT_EQ(find_attribute(out, "site"), "b");
  v1::Telemetry generated;
  ASSERT_TRUE(generated.ParseFromString(payload));
  expect_same_as_generated(generated, out);
}

TEST_F(TelemetryDecoderTest, ProtobufWireErrorsAreMalformed) {
  const std::string reason = "payload is not a valid fleettwin.v1.Telemetry protobuf";
  for (const std::string& bad : {
           tag(0, 0) + varint(1),                        // field number 0
           tag(9, 4),                                    // stray end-group
           tag(9, 6) + varint(1),                        // wire type 6
           tag(9, 3) + tag(1, 0) + varint(1),            // unterminated group
           tag(9, 3) + tag(10, 4),                       // group closed by another field
           tag(4, 0) + std::string(11, '\x80'),          // varint longer than 10 bytes
           tag(9, 1) + "abc",                            // truncated fixed64
           tag(1, 2) + varint(100) + "short",            // length beyond the payload
           bytes_field(7, tag(1, 2) + varint(9) + "a"),  // truncated inside a map entry
           bytes_field(6, bytes_field(2, "\xc3\x28")),   // attribute value not UTF-8
           metric_entry("m", bytes_field(4, "\xff")),    // string value not UTF-8
           bytes_field(2, "\xed\xa0\x80"),               // kind: an encoded surrogate
       }) {
    v1::Telemetry generated;
    EXPECT_FALSE(generated.ParseFromString(bad));  // the reference agrees
    expect_error(bad, proto_type, "malformed", reason);
  }
}

// Random records, cut and corrupted: the decoder must accept exactly what the
// generated parser accepts, with the same content.
TEST_F(TelemetryDecoderTest, ProtobufMatchesTheGeneratedParserOnRandomPayloads) {
  auto* previous = google::protobuf::SetLogHandler(nullptr);  // invalid UTF-8 is logged
  std::mt19937_64 rng{20241124};
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const std::vector<std::string> names{"speed", "a", "b", "x.y", "", "temp:c", "\xc3\xa9t\xc3\xa9"};
  size_t accepted = 0;
  size_t valueless = 0;
  for (int round = 0; round < 50000; ++round) {
    std::string payload;
    for (size_t part = pick(3) + 1; part > 0; --part) {
      v1::Telemetry m;
      if (pick(2))
        m.set_asset_id(names[pick(names.size())]);
      if (pick(2))
        m.set_kind("vehicle");
      if (pick(2))
        m.set_sequence(rng() >> pick(64));
      if (pick(2))
        m.set_source_time_ms(static_cast<int64_t>(rng()));
      for (size_t i = pick(4); i > 0; --i)
        (*m.mutable_attributes())[names[pick(names.size())]] = names[pick(names.size())];
      for (size_t i = pick(5); i > 0; --i) {
        auto& v = (*m.mutable_metrics())[names[pick(names.size())]];
        switch (pick(9)) {
          case 0:
            break;  // no value
          case 1:
          case 2:
            v.set_double_value(std::bit_cast<double>(rng()));
            break;
          case 3:
          case 4:
            v.set_int_value(static_cast<int64_t>(rng()));
            break;
          case 5:
            v.set_bool_value(pick(2));
            break;
          default:
            v.set_string_value(names[pick(names.size())]);
        }
      }
      payload += m.SerializeAsString();
    }
    for (size_t mutations = pick(4); mutations > 0 && !payload.empty(); --mutations) {
      const size_t at = pick(payload.size());
      switch (pick(4)) {
        case 0:
          payload[at] = static_cast<char>(rng());
          break;
        case 1:
          payload.resize(at);
          break;
        case 2:
          payload.insert(at, 1, static_cast<char>(rng()));
          break;
        default:
          payload.erase(at, 1);
      }
    }
    v1::Telemetry generated;
    const bool generated_ok = generated.ParseFromString(payload);
    auto err = decode(payload, proto_type);
    if (err && err->second.ends_with("has no value")) {
      ++valueless;
      ASSERT_TRUE(generated_ok) << "round " << round;
      continue;
    }
    ASSERT_EQ(!err, generated_ok) << "round " << round << ": " << (err ? err->second : "")
                                  << "\npayload: " << hex(payload);
    if (generated_ok) {
      ++accepted;
      expect_same_as_generated(generated, out);
      if (HasFailure())
        FAIL() << "round " << round;
    }
  }
  google::protobuf::SetLogHandler(previous);
  EXPECT_GT(accepted, 8000u);
  EXPECT_GT(valueless, 1000u);
}

// --- JSON --------------------------------------------------------------------

TEST_F(TelemetryDecoderTest, JsonDecodesTheDocumentedFormWithExactTypes) {
  auto err = decode(readme_json, json_type, "veh-000001");
  ASSERT_FALSE(err) << err->second;
  EXPECT_EQ(out.asset_id, "veh-000001");
  EXPECT_EQ(out.kind, "vehicle");
  EXPECT_EQ(out.tenant, "demo");
  EXPECT_EQ(out.sequence, 17u);
  EXPECT_EQ(out.source_time_ms, 1732435200000);
  EXPECT_EQ(out.attributes, (std::vector<std::pair<std::string, std::string>>{{"fleet", "north"},
                                                                              {"make", "volvo"}}));
  // Document order is kept.
  ASSERT_EQ(metric_names(out),
            (std::vector<std::string>{"speed", "battery", "odometer", "ignition", "gear"}));
  EXPECT_EQ(out.metrics[0].second, value{52.4});
  EXPECT_EQ(out.metrics[1].second, value{81.5});
  EXPECT_EQ(out.metrics[2].second, value{int64_t{12034}});
  EXPECT_EQ(out.metrics[3].second, value{true});
  EXPECT_EQ(out.metrics[4].second, value{std::string{"D"}});
}

TEST_F(TelemetryDecoderTest, JsonIntegersBecomeInt64AndOtherNumbersDouble) {
  auto err = decode(R"({"metrics": {"i": 12034, "d": 12034.0, "e": 1e3, "neg": -5, "zero": -0,
    "negd": -0.5, "max": 9223372036854775807, "min": -9223372036854775808, "big": 1.8e19,
    "f": false}})",
                    json_type);
  ASSERT_FALSE(err) << err->second;
  EXPECT_EQ(*find_metric(out, "i"), value{int64_t{12034}});
  EXPECT_EQ(*find_metric(out, "d"), value{12034.0});
  EXPECT_EQ(*find_metric(out, "e"), value{1000.0});
  EXPECT_EQ(*find_metric(out, "neg"), value{int64_t{-5}});
  EXPECT_EQ(*find_metric(out, "zero"), value{int64_t{0}});
  EXPECT_EQ(*find_metric(out, "negd"), value{-0.5});
  EXPECT_EQ(*find_metric(out, "max"), value{std::numeric_limits<int64_t>::max()});
  EXPECT_EQ(*find_metric(out, "min"), value{std::numeric_limits<int64_t>::min()});
  EXPECT_EQ(*find_metric(out, "big"), value{1.8e19});
  EXPECT_EQ(*find_metric(out, "f"), value{false});
}

TEST_F(TelemetryDecoderTest, JsonIntegersBeyondInt64AreRejected) {
  const std::string reason =
      R"(metric "odo" is an integer outside the int64 range: add a decimal point to send it as a double)";
  for (std::string_view n : {"9223372036854775808", "18446744073709551615", "18446744073709551616",
                             "-9223372036854775809"})
    expect_json_error(R"({"metrics": {"odo": )" + std::string{n} + "}}", reason);
}

TEST_F(TelemetryDecoderTest, JsonUnknownFieldsAreIgnored) {
  auto err = decode(R"({"schema": 2, "future": {"nested": [1, {"x": null}], "y": "z"},
    "asset_id": "a", "labels": ["p", "q"], "metrics": {"m": 1}, "zzz": null, "last": true})",
                    json_type);
  ASSERT_FALSE(err) << err->second;
  EXPECT_EQ(out.asset_id, "a");
  ASSERT_EQ(out.metrics.size(), 1u);
  EXPECT_EQ(out.metrics[0], (std::pair<std::string, value>{"m", int64_t{1}}));
}

TEST_F(TelemetryDecoderTest, JsonFieldsAreOptionalAndNullMeansAbsent) {
  ASSERT_FALSE(decode("{}", json_type, "k"));
  EXPECT_EQ(out.asset_id, "k");
  EXPECT_TRUE(out.metrics.empty());
  auto err = decode(R"({"asset_id": null, "kind": null, "tenant": null, "sequence": null,
    "source_time_ms": null, "attributes": null, "metrics": {"m": "x"}})",
                    json_type, "k");
  ASSERT_FALSE(err) << err->second;
  EXPECT_EQ(out.asset_id, "k");
  EXPECT_EQ(out.kind, "");
  EXPECT_EQ(out.sequence, 0u);
  EXPECT_EQ(out.source_time_ms, 0);
  EXPECT_TRUE(out.attributes.empty());
  EXPECT_EQ(out.metrics.size(), 1u);
}

TEST_F(TelemetryDecoderTest, JsonStringsAreUnescaped) {
  auto err = decode(R"({"asset_id": "veh-\u00e9\/1", "metrics": {"na\u006de": "a\"b\\c\n"},
    "attributes": {"site": "K\u00f6ln \ud83d\ude80"}})",
                    json_type);
  ASSERT_FALSE(err) << err->second;
  EXPECT_EQ(out.asset_id, "veh-\xc3\xa9/1");
  EXPECT_EQ(*find_metric(out, "name"), value{std::string{"a\"b\\c\n"}});
  EXPECT_EQ(find_attribute(out, "site"), "K\xc3\xb6ln \xf0\x9f\x9a\x80");
}

TEST_F(TelemetryDecoderTest, JsonAttributeNumbersAreKeptAsWritten) {
  auto err = decode(R"({"attributes": {"year": 2019, "ratio": 1.50 , "exp": -3E+2, "s": "x"}})",
                    json_type);
  ASSERT_FALSE(err) << err->second;
  EXPECT_EQ(out.attributes,
            (std::vector<std::pair<std::string, std::string>>{
                {"year", "2019"}, {"ratio", "1.50"}, {"exp", "-3E+2"}, {"s", "x"}}));
}

TEST_F(TelemetryDecoderTest, JsonAttributeValuesOtherThanTextOrNumbersAreRejected) {
  const std::string reason = R"(attribute "fleet" must be a string or a number)";
  for (std::string_view v : {"true", "null", "[\"north\"]", "{\"name\": \"north\"}"})
    expect_json_error(R"({"attributes": {"fleet": )" + std::string{v} + "}}", reason);
}

TEST_F(TelemetryDecoderTest, JsonMetricValuesMustBeScalars) {
  const std::string reason = R"(metric "x" must be a number, boolean or string)";
  for (std::string_view v : {"null", "[1, 2]", "{\"v\": 1}", "[]", "{}"})
    expect_json_error(R"({"metrics": {"ok": 1, "x": )" + std::string{v} + "}}", reason);
}

TEST_F(TelemetryDecoderTest, JsonWrongFieldTypesAreMalformed) {
  expect_json_error(R"({"metrics": "speed=5"})", R"(field "metrics" must be an object)");
  expect_json_error(R"({"metrics": [1, 2]})", R"(field "metrics" must be an object)");
  expect_json_error(R"({"attributes": ["north"]})", R"(field "attributes" must be an object)");
  expect_json_error(R"({"attributes": "north"})", R"(field "attributes" must be an object)");
  expect_json_error(R"({"asset_id": 42})", R"(field "asset_id" must be a string)");
  expect_json_error(R"({"kind": ["vehicle"]})", R"(field "kind" must be a string)");
  expect_json_error(R"({"tenant": {"id": 1}})", R"(field "tenant" must be a string)");
  expect_json_error(R"({"tenant": true})", R"(field "tenant" must be a string)");
}

TEST_F(TelemetryDecoderTest, JsonSequenceMustBeANonNegativeInteger) {
  const std::string reason = R"(field "sequence" must be a non-negative integer)";
  for (std::string_view v : {"-1", "1.5", "1e3", "\"17\"", "true", "18446744073709551616", "[]"})
    expect_json_error(R"({"sequence": )" + std::string{v} + "}", reason);
  ASSERT_FALSE(decode(R"({"sequence": 18446744073709551615})", json_type));
  EXPECT_EQ(out.sequence, std::numeric_limits<uint64_t>::max());
  ASSERT_FALSE(decode(R"({"sequence": 9223372036854775807})", json_type));
  EXPECT_EQ(out.sequence, uint64_t{9223372036854775807});
  ASSERT_FALSE(decode(R"({"sequence": 0})", json_type));
  EXPECT_EQ(out.sequence, 0u);
}

TEST_F(TelemetryDecoderTest, JsonSourceTimeMustBeAnInteger) {
  const std::string reason = R"(field "source_time_ms" must be an integer)";
  for (std::string_view v : {"1.5", "1732435200000.0", "\"1732435200000\"", "9223372036854775808"})
    expect_json_error(R"({"source_time_ms": )" + std::string{v} + "}", reason);
  // Negative values are copied faithfully; core::validate rejects them.
  ASSERT_FALSE(decode(R"({"source_time_ms": -5})", json_type));
  EXPECT_EQ(out.source_time_ms, -5);
}

TEST_F(TelemetryDecoderTest, InvalidJsonCarriesTheParserMessage) {
  expect_json_error("", invalid_json(simdjson::EMPTY));
  expect_json_error("   ", invalid_json(simdjson::EMPTY));
  expect_json_error(R"({"asset_id": "veh-1)", invalid_json(simdjson::UNCLOSED_STRING));
  expect_json_error("{\"asset_id\": \"\xff\"}", invalid_json(simdjson::UTF8_ERROR));
  expect_json_error("nul", invalid_json(simdjson::N_ATOM_ERROR));
  expect_json_error(R"({"metrics": {"on": tru}})", invalid_json(simdjson::T_ATOM_ERROR));
  expect_json_error(R"({"metrics": {"on": fals}})", invalid_json(simdjson::F_ATOM_ERROR));
  for (std::string_view bad : {"hello", "{\"metrics\": {\"a\": 1,}}", "{\"metrics\": {\"a\" 1}}",
                               "{\"metrics\": {\"a\": 1}", "{\"a\": 1} xyz", "{\"a\": [}"}) {
    auto err = decode(bad, json_type);
    ASSERT_TRUE(err) << bad;
    EXPECT_EQ(err->first, "malformed") << bad;
    EXPECT_TRUE(err->second.starts_with("invalid JSON: ")) << bad << ": " << err->second;
    EXPECT_GT(err->second.size(), 14u) << bad;
  }
}

TEST_F(TelemetryDecoderTest, ContentAfterTheTopLevelObjectIsInvalid) {
  const std::string reason = "invalid JSON: unexpected content after the top-level object";
  expect_json_error(R"({"asset_id": "a"} {"asset_id": "b"})", reason);
  expect_json_error(R"({"metrics": {"a": 1}}})", reason);
  ASSERT_FALSE(decode("{\"metrics\": {\"a\": 1}} \n\t ", json_type));
}

TEST_F(TelemetryDecoderTest, JsonRootMustBeAnObject) {
  expect_json_error("[1, 2]", "payload must be a JSON object, not an array");
  expect_json_error("42", "payload must be a JSON object, not a number");
  expect_json_error(R"("veh-1")", "payload must be a JSON object, not a string");
  expect_json_error("true", "payload must be a JSON object, not a boolean");
  expect_json_error("null", "payload must be a JSON object, not null");
}

TEST_F(TelemetryDecoderTest, JsonInvalidNumbersAreMalformed) {
  auto err = decode(R"({"metrics": {"a": 1e400}})", json_type);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->first, "malformed");
  EXPECT_TRUE(err->second.starts_with(R"(metric "a" is not a valid number: )")) << err->second;
  err = decode(R"({"attributes": {"a": 01}})", json_type);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->second, invalid_json(simdjson::NUMBER_ERROR));
}

TEST_F(TelemetryDecoderTest, JsonRepeatedNamesKeepTheLastValue) {
  ASSERT_FALSE(decode(R"({"metrics": {"a": 1, "b": 2, "a": "three"},
    "attributes": {"x": "1", "x": "2"}})",
                      json_type));
  EXPECT_EQ(out.metrics, (std::vector<std::pair<std::string, value>>{{"a", std::string{"three"}},
                                                                     {"b", int64_t{2}}}));
  EXPECT_EQ(out.attributes, (std::vector<std::pair<std::string, std::string>>{{"x", "2"}}));

  // Many names (the sorting path), each given twice.
  std::string json = R"({"metrics": {)";
  for (int round = 0; round < 2; ++round)
    for (int i = 0; i < 40; ++i)
      json += (round + i > 0 ? ", \"m" : "\"m") + std::to_string(i) +
              "\": " + std::to_string(round * 100 + i);
  json += "}}";
  ASSERT_FALSE(decode(json, json_type));
  ASSERT_EQ(out.metrics.size(), 40u);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(out.metrics[i].first, "m" + std::to_string(i));
    EXPECT_EQ(out.metrics[i].second, value{int64_t{100 + i}});
  }

  // A repeated "metrics" object replaces the earlier one.
  ASSERT_FALSE(decode(R"({"metrics": {"a": 1, "b": 2}, "metrics": {"c": 3}})", json_type));
  EXPECT_EQ(metric_names(out), (std::vector<std::string>{"c"}));
}

TEST_F(TelemetryDecoderTest, JsonKeyHandling) {
  ASSERT_FALSE(decode(R"({"metrics": {"a": 1}})", json_type, "veh-7"));
  EXPECT_EQ(out.asset_id, "veh-7");
  ASSERT_FALSE(decode(R"({"asset_id": "veh-7", "metrics": {"a": 1}})", json_type, "veh-7"));
  EXPECT_EQ(out.asset_id, "veh-7");
  ASSERT_FALSE(decode(R"({"asset_id": "veh-8", "metrics": {"a": 1}})", json_type, ""));
  EXPECT_EQ(out.asset_id, "veh-8");
  expect_error(R"({"asset_id": "veh-8"})", json_type, "key_mismatch",
               R"(record key "veh-7" differs from payload asset_id "veh-8")", "veh-7");
}

TEST_F(TelemetryDecoderTest, LongIdsAreCutInReasons) {
  const std::string key(300, 'k');
  auto err = decode(R"({"asset_id": "p"})", json_type, key);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->second,
            "record key \"" + std::string(128, 'k') + "...\" differs from payload asset_id \"p\"");
  // A cut never splits a UTF-8 sequence.
  const std::string accented = std::string(127, 'k') + "\xc3\xa9" + "tail";
  err = decode(R"({"asset_id": "p"})", json_type, accented);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->second,
            "record key \"" + std::string(127, 'k') + "...\" differs from payload asset_id \"p\"");
}

TEST_F(TelemetryDecoderTest, JsonContentTypeParametersAndCase) {
  for (std::string_view type :
       {"application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8",
        " APPLICATION/JSON ", "application/json ; charset=\"utf-8\""}) {
    auto err = decode(readme_json, type, "veh-000001");
    EXPECT_FALSE(err) << "content-type \"" << type << "\": " << err->second;
    EXPECT_EQ(out.metrics.size(), 5u) << type;
  }
}

TEST_F(TelemetryDecoderTest, UnsupportedContentType) {
  for (std::string_view type : {"text/csv", "application/jsonl", "json", "application/x-protobuf2",
                                "text/plain; charset=utf-8", "application/cbor"})
    expect_error(readme_json, type, "unsupported_content_type",
                 "content-type \"" + std::string{type} +
                     "\" is not supported: use application/x-protobuf or application/json");
}

TEST_F(TelemetryDecoderTest, OversizedRecordsAreRejectedBeforeAnythingElse) {
  telemetry_codec small{100};
  runtime::raw_record r;
  const std::string payload(101, '{');
  r.payload = payload;
  r.content_type = "text/csv";
  auto err = small.decode(r, out);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->first, "oversized");
  EXPECT_EQ(err->second, "record of 101 bytes exceeds the limit of 100 bytes (--max-record-bytes)");

  // Exactly at the limit is fine.
  std::string json = R"({"asset_id": "a", "metrics": {"m": 1}})";
  json.resize(100, ' ');
  r.payload = json;
  r.content_type = json_type;
  err = small.decode(r, out);
  EXPECT_FALSE(err) << err->second;
  EXPECT_EQ(out.asset_id, "a");
}

TEST_F(TelemetryDecoderTest, DefaultLimitIsOneMebibyte) {
  const std::string payload((size_t{1} << 20) + 1, ' ');
  auto err = decode(payload, json_type);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->first, "oversized");
  EXPECT_EQ(err->second,
            "record of 1048577 bytes exceeds the limit of 1048576 bytes (--max-record-bytes)");
}

// --- buffer reuse ------------------------------------------------------------

std::string big_json(int metrics, int attributes, std::string_view asset) {
  std::string json = "{\"asset_id\": \"" + std::string{asset} +
                     "\", \"kind\": \"machine\", \"tenant\": \"t\", \"sequence\": 99, "
                     "\"source_time_ms\": 5, \"metrics\": {";
  for (int i = 0; i < metrics; ++i)
    json += (i ? ", \"m" : "\"m") + std::to_string(i) + "\": \"a value long enough to allocate " +
            std::to_string(i) + "\"";
  json += "}, \"attributes\": {";
  for (int i = 0; i < attributes; ++i)
    json += (i ? ", \"a" : "\"a") + std::to_string(i) + "\": \"v\"";
  return json + "}}";
}

v1::Telemetry big_proto(int metrics, int attributes) {
  v1::Telemetry t;
  t.set_asset_id("big");
  t.set_kind("machine");
  t.set_sequence(99);
  for (int i = 0; i < metrics; ++i)
    (*t.mutable_metrics())["m" + std::to_string(i)].set_string_value(std::string(40, 'x'));
  for (int i = 0; i < attributes; ++i)
    (*t.mutable_attributes())["a" + std::to_string(i)] = "v";
  return t;
}

void expect_small(const telemetry& t) {
  EXPECT_EQ(t.asset_id, "small");
  EXPECT_EQ(t.kind, "");
  EXPECT_EQ(t.tenant, "");
  EXPECT_EQ(t.sequence, 0u);
  EXPECT_EQ(t.source_time_ms, 0);
  EXPECT_EQ(t.attributes, (std::vector<std::pair<std::string, std::string>>{{"fleet", "n"}}));
  ASSERT_EQ(t.metrics.size(), 2u);
  EXPECT_EQ(*find_metric(t, "m0"), value{int64_t{7}});
  EXPECT_EQ(*find_metric(t, "speed"), value{1.5});
}

constexpr std::string_view small_json =
    R"({"asset_id": "small", "attributes": {"fleet": "n"}, "metrics": {"m0": 7, "speed": 1.5}})";

v1::Telemetry small_proto() {
  v1::Telemetry t;
  t.set_asset_id("small");
  (*t.mutable_attributes())["fleet"] = "n";
  (*t.mutable_metrics())["m0"].set_int_value(7);
  (*t.mutable_metrics())["speed"].set_double_value(1.5);
  return t;
}

TEST_F(TelemetryDecoderTest, BigThenSmallJsonLeavesNothingBehind) {
  ASSERT_FALSE(decode(big_json(100, 50, "big"), json_type));
  ASSERT_EQ(out.metrics.size(), 100u);
  ASSERT_EQ(out.attributes.size(), 50u);
  ASSERT_FALSE(decode(small_json, json_type));
  expect_small(out);
  // Capacity is kept for the next record.
  EXPECT_GE(out.metrics.capacity(), 100u);
  EXPECT_GE(out.attributes.capacity(), 50u);
}

TEST_F(TelemetryDecoderTest, BigThenSmallAcrossFormats) {
  ASSERT_FALSE(decode(big_proto(100, 50).SerializeAsString(), proto_type));
  ASSERT_EQ(out.metrics.size(), 100u);
  ASSERT_FALSE(decode(small_json, json_type));
  expect_small(out);

  ASSERT_FALSE(decode(big_json(100, 50, "big"), json_type));
  ASSERT_FALSE(decode(small_proto().SerializeAsString(), proto_type));
  expect_small(out);

  ASSERT_FALSE(decode(big_proto(100, 50).SerializeAsString(), proto_type));
  ASSERT_FALSE(decode(small_proto().SerializeAsString(), proto_type));
  expect_small(out);
}

TEST_F(TelemetryDecoderTest, AFailedRecordDoesNotLeakIntoTheNext) {
  ASSERT_FALSE(decode(big_json(20, 5, "big"), json_type));
  ASSERT_TRUE(decode(R"({"asset_id": "x", "metrics": {"a": 1, "b": null}})", json_type));
  ASSERT_TRUE(decode("\xff\xff", proto_type));
  ASSERT_FALSE(decode(small_json, json_type));
  expect_small(out);
}

TEST_F(TelemetryDecoderTest, AReusedSlotChangesItsValueType) {
  ASSERT_FALSE(
      decode(R"({"metrics": {"m0": "a long string value that needs the heap"}})", json_type));
  ASSERT_FALSE(decode(R"({"metrics": {"m0": 3}})", json_type));
  EXPECT_EQ(out.metrics, (std::vector<std::pair<std::string, value>>{{"m0", int64_t{3}}}));
  ASSERT_FALSE(decode(R"({"metrics": {"m0": "short"}})", json_type));
  EXPECT_EQ(out.metrics[0].second, value{std::string{"short"}});
}

TEST_F(TelemetryDecoderTest, RecordsLargerThanTheRetainedBuffersDecode) {
  // ~300 KiB: above what the decoder keeps between records.
  auto json = big_json(6000, 10, "huge");
  ASSERT_GT(json.size(), 256u * 1024);
  auto err = decode(json, json_type);
  ASSERT_FALSE(err) << err->second;
  EXPECT_EQ(out.metrics.size(), 6000u);
  EXPECT_EQ(*find_metric(out, "m5999"), value{std::string{"a value long enough to allocate 5999"}});
  ASSERT_FALSE(decode(small_json, json_type));
  expect_small(out);
  auto proto = big_proto(5000, 10).SerializeAsString();
  err = decode(proto, proto_type);
  ASSERT_FALSE(err) << err->second;
  EXPECT_EQ(out.metrics.size(), 5000u);
  ASSERT_FALSE(decode(small_json, json_type));
  expect_small(out);
}

TEST_F(TelemetryDecoderTest, ManyRecordsInARowStayCorrect) {
  for (int i = 0; i < 2000; ++i) {
    const std::string id = "veh-" + std::to_string(i);
    if (i % 2 == 0) {
      auto json = R"({"asset_id": ")" + id + R"(", "sequence": )" + std::to_string(i) +
                  R"(, "metrics": {"n": )" + std::to_string(i) + "}}";
      ASSERT_FALSE(decode(json, json_type, id));
    } else {
      v1::Telemetry t;
      t.set_sequence(static_cast<uint64_t>(i));
      (*t.mutable_metrics())["n"].set_int_value(i);
      ASSERT_FALSE(decode(t.SerializeAsString(), proto_type, id));
    }
    ASSERT_EQ(out.asset_id, id);
    ASSERT_EQ(out.sequence, static_cast<uint64_t>(i));
    ASSERT_EQ(out.metrics, (std::vector<std::pair<std::string, value>>{{"n", int64_t{i}}}));
  }
}

TEST(TelemetryDecoderFactoryTest, MakesAWorkingDecoder) {
  auto decoder = make_telemetry_decoder(1 << 20);
  ASSERT_NE(decoder, nullptr);
  runtime::raw_record r;
  r.key = "veh-000001";
  r.payload = readme_json;
  r.content_type = json_type;
  telemetry out;
  EXPECT_FALSE(decoder->decode(r, out));
  EXPECT_EQ(out.metrics.size(), 5u);

  auto tiny = make_telemetry_decoder(10);
  auto err = tiny->decode(r, out);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->first, "oversized");
}

}  // namespace
}  // namespace fleettwin::kafka

// Writes the fuzzers' seed corpora: valid inputs of every kind, made by the project's own
// encoders (so they follow the formats as they are today), in the input layout each
// fuzz target reads. libFuzzer mutates from these.
//   fleettwin_fuzz_seeds DIR    -> DIR/<target>/<seed>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "actors/core/aggregate_codec.hpp"
#include "actors/core/codec.hpp"
#include "actors/core/twin.hpp"
#include "fleettwin/v1/aggregate.pb.h"
#include "fleettwin/v1/telemetry.pb.h"
#include "services/storage/rocksdb_store.hpp"

using namespace fleettwin;
namespace fs = std::filesystem;

namespace {

std::string piece(std::string_view s) {
  return std::string(1, static_cast<char>(s.size() > 255 ? 255 : s.size())) +
         std::string(s.substr(0, 255));
}

void write(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream{dir / name, std::ios::binary} << bytes;
}

core::twin sample_twin() {
  core::telemetry t;
  t.asset_id = "veh-000001";
  t.kind = "vehicle";
  t.tenant = "demo";
  t.sequence = 7;
  t.source_time_ms = 1'700'000'000'000;
  t.attributes = {{"fleet", "north"}, {"depot", "depot-1"}};
  t.metrics = {{"speed", 52.5},
               {"odometer", int64_t{120'345}},
               {"ignition", true},
               {"mode", std::string{"eco"}}};
  core::twin tw;
  tw.asset_id = t.asset_id;
  core::apply_result result;
  core::apply_telemetry(tw, t, t.source_time_ms + 20, core::limits{}, result);
  core::desired_update desired;
  desired.set = {{"speed_limit", 80.0}};
  core::apply_desired(tw, tw.asset_id, desired, t.source_time_ms + 30, core::limits{});
  return tw;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fleettwin_fuzz_seeds DIR\n";
    return 2;
  }
  const fs::path root = argv[1];

  // --- telemetry: selector (content type, relations bit), key piece, payload ---------
  const std::array<std::string, 3> json = {
      R"({"asset_id":"veh-000001","kind":"vehicle","tenant":"demo","sequence":1,)"
      R"("source_time_ms":1700000000000,"attributes":{"fleet":"north"},)"
      R"("metrics":{"speed":52.5,"odometer":120345,"ignition":true,"mode":"eco"}})",
      R"({"asset_id":"mtr-000002","sequence":18446744073709551615,"metrics":{"power_kw":-1e308}})",
      R"({"asset_id":"mch-000003","metrics":{"temp":{"double":21.5},"count":{"int":3}}})"};
  for (size_t i = 0; i < json.size(); ++i) {
    const auto key = i == 0 ? "veh-000001" : i == 1 ? "mtr-000002" : "mch-000003";
    write(root / "telemetry", "json-" + std::to_string(i), "\x01" + piece(key) + json[i]);
  }
  v1::Telemetry proto;
  proto.set_asset_id("veh-000001");
  proto.set_kind("vehicle");
  proto.set_tenant("demo");
  proto.set_sequence(2);
  proto.set_source_time_ms(1'700'000'000'000);
  (*proto.mutable_attributes())["fleet"] = "north";
  (*proto.mutable_metrics())["speed"].set_double_value(52.5);
  (*proto.mutable_metrics())["odometer"].set_int_value(120'345);
  (*proto.mutable_metrics())["ignition"].set_bool_value(true);
  (*proto.mutable_metrics())["mode"].set_string_value("eco");
  write(root / "telemetry", "protobuf-0",
        std::string("\x00", 1) + piece("veh-000001") + proto.SerializeAsString());
  v1::RelationRecord relation;
  relation.set_child("veh-000001");
  auto* set = relation.add_set();
  set->set_type("charging_at");
  set->set_parent("chargers/depot-1-c1");
  relation.add_remove("chargers/depot-1-c2");
  write(root / "telemetry", "relations-protobuf-0",
        "\x04" + piece("veh-000001") + relation.SerializeAsString());
  write(root / "telemetry", "relations-json-0",
        "\x05" + piece("veh-000001") +
            R"({"child":"veh-000001","set":[{"type":"member_of","parent":"fleets/north"}]})");

  // --- filter: a piece of values, then the filter text ---------------------------------
  const std::array<std::string, 6> filters = {
      R"(attributes.fleet = "north")",
      R"(kind = "meter" AND reported.voltage < 207)",
      R"(connectivity = stale OR (reported.battery < 20 AND NOT reported.ignition = true))",
      R"(reported:* AND desired.speed_limit >= 80.5 AND version > 3)",
      R"(alert.severity = "critical" AND alert.state = "open")",
      R"(reported.mode = "eco" OR attributes.depot != "depot-1")"};
  for (size_t i = 0; i < filters.size(); ++i) {
    write(root / "filter", "filter-" + std::to_string(i), piece("\x01\x02\x03\x04") + filters[i]);
  }

  // --- codec: selector, encoded bytes; changelog: key piece, value -------------------
  const auto tw = sample_twin();
  std::string twin_bytes;
  core::encode_twin(tw, twin_bytes);
  std::string point_bytes;
  core::encode_history_point({52.5, 1'700'000'000'000, 7}, point_bytes);
  std::string segment;
  core::begin_history_segment(segment);
  core::append_history_sample(segment, "speed", 52.5, 1'700'000'000'000, 7);
  core::append_history_sample(segment, "mode", std::string{"eco"}, 1'700'000'000'000, 7);
  core::aggregate_header header;
  header.id = "fleets/north";
  header.kind = "fleet";
  header.version = 4;
  header.updated_ms = 1'700'000'000'100;
  header.members = 2;
  header.twins = 2;
  header.measures = {{"count", 2.0}, {"mean_speed", 41.25}, {"min_battery", std::nullopt}};
  header.kind_revision = 1;
  std::string header_bytes;
  core::encode_aggregate_header(header, header_bytes);
  core::member_entry entry;
  entry.twin = true;
  entry.paths = {{"", 1, "member_of"}};
  entry.values.kind = "vehicle";
  entry.values.tenant = "demo";
  entry.values.version = 3;
  entry.values.reported = {{"speed", 52.5}, {"battery", int64_t{80}}};
  entry.values.attributes = {{"fleet", "north"}};
  std::string entry_bytes;
  core::encode_member_entry(entry, entry_bytes);
  core::contribution c;
  c.child = "veh-000001";
  c.parent = "fleets/north";
  c.type = "member_of";
  core::member_delta delta;
  delta.id = "veh-000001";
  delta.twin = true;
  delta.depth = 1;
  delta.values = entry.values;
  c.deltas = {delta};
  c.origin_ms = 1'700'000'000'000;
  std::string contribution_bytes;
  core::encode_contributions(std::vector<core::contribution>{c}, contribution_bytes);

  const std::array<std::string, 6> encoded = {twin_bytes,   point_bytes, segment,
                                              header_bytes, entry_bytes, contribution_bytes};
  for (size_t i = 0; i < encoded.size(); ++i) {
    write(root / "codec", "codec-" + std::to_string(i),
          std::string(1, static_cast<char>(i)) + encoded[i]);
  }

  const std::string slot("\0\0\0\1", 4);
  const std::string offset("\0\0\0\0\0\0\0\x2a", 8);
  const std::vector<std::pair<std::string, std::string>> changelog = {
      {"veh-000001", twin_bytes},
      {"veh-000001" + std::string(1, '\0') + slot, segment},
      {std::string(1, storage::changelog_aggregate_marker) + "fleets/north", header_bytes},
      {std::string(1, storage::changelog_member_marker) + "fleets/north" + std::string(1, '\0') +
           "veh-000001",
       entry_bytes},
      {std::string(storage::changelog_checkpoint_key), offset},
      {"veh-000002", ""}};
  for (size_t i = 0; i < changelog.size(); ++i) {
    write(root / "changelog", "changelog-" + std::to_string(i),
          piece(changelog[i].first) + changelog[i].second);
  }
  // Tokens (token_fuzz.cpp): a raw token (alg none, and a signed-looking one), a JWKS, and
  // header/payload pairs the harness signs.
  const std::vector<std::string> tokens{
      std::string("\x00") + "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwiZXhwIjoxOTAwMDAwMDAwfQ.",
      std::string("\x00") +
          "eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjLTEifQ.eyJzdWIiOiJhIiwiZXhwIjoxOTAwMDAwMDAwfQ.AAAA",
      std::string("\x01") +
          R"({"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"GXEQofItMFynTih--AKYAAnOC0rPXpsUWpZylWEg5vE","y":"5E9FMt_IFQPpAvV3Y6uuaMrQUDJI2iiqDRy6zuNd5Us"},{"kty":"RSA","n":"AQAB","e":"AQAB"}]})",
      std::string("\x02") + piece(R"({"alg":"HS256","typ":"JWT"})") +
          R"({"sub":"alice","roles":["viewer"],"exp":1900000000,"nbf":1700000000,"iss":"fuzz","aud":["x","fleettwin"],"tenant":"acme"})",
      std::string("\x02") + piece(R"({"alg":"HS256"})") +
          R"({"sub":"bob","roles":"viewer admin","exp":1900000000.5,"iss":"fuzz","aud":"fleettwin"})",
  };
  for (size_t i = 0; i < tokens.size(); ++i)
    write(root / "token", "token-" + std::to_string(i), tokens[i]);
  std::cout << "fuzz seeds written to " << root.string() << '\n';
  return 0;
}

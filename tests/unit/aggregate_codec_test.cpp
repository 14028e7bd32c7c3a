#include "actors/core/aggregate_codec.hpp"

#include <gtest/gtest.h>

#include "actors/core/codec.hpp"

using namespace fleettwin::core;

namespace {

member_values some_values() {
  member_values v;
  v.kind = "meter";
  v.tenant = "acme";
  v.version = 42;
  v.last_seen_ms = 1'700'000'000'000;
  v.reported = {{"power", 3.5}, {"state", std::string{"on"}}, {"tap", int64_t{-3}}, {"ok", true}};
  v.attributes = {{"tariff", "night"}};
  return v;
}

TEST(AggregateCodec, HeaderRoundTrips) {
  aggregate_header h{"transformers/T1",
                     "transformer",
                     17,
                     123,
                     1000,
                     990,
                     2,
                     {{"power", 12.5}, {"mean", std::nullopt}},
                     3,
                     "acme"};
  std::string bytes;
  encode_aggregate_header(h, bytes);
  aggregate_header back;
  ASSERT_FALSE(decode_aggregate_header(bytes, back));
  EXPECT_EQ(back, h);
  EXPECT_TRUE(decode_aggregate_header(bytes.substr(0, bytes.size() - 1), back));
  EXPECT_TRUE(decode_aggregate_header(bytes + "x", back));
  EXPECT_TRUE(decode_aggregate_header("", back));

  // Headers stored before the tenant (format 2) and the kind's revision (format 1) were
  // kept still read.
  std::string v2 = bytes.substr(0, bytes.size() - 5);  // "acme" and its length
  v2[0] = 2;
  ASSERT_FALSE(decode_aggregate_header(v2, back));
  h.tenant.clear();
  EXPECT_EQ(back, h);
  std::string v1 = v2.substr(0, v2.size() - 1);
  v1[0] = 1;
  ASSERT_FALSE(decode_aggregate_header(v1, back));
  h.kind_revision = 0;
  EXPECT_EQ(back, h);
}

TEST(AggregateCodec, MemberEntryRoundTrips) {
  member_entry e;
  e.twin = true;
  e.depth = 2;
  e.held_until = 99;
  e.paths = {{"feeders/a", 2, "feeds"}, {"m1", 1, "feeds"}};
  e.moving_to = {"feeders/b"};
  e.values = some_values();
  std::string bytes;
  encode_member_entry(e, bytes);
  member_entry back;
  ASSERT_FALSE(decode_member_entry(bytes, back));
  EXPECT_TRUE(back.same_state(e));
  for (size_t cut = 0; cut < bytes.size(); ++cut)
    EXPECT_TRUE(decode_member_entry(bytes.substr(0, cut), back)) << cut;
}

TEST(AggregateCodec, ContributionsRoundTrip) {
  std::vector<contribution> items(2);
  items[0].child = "m1";
  items[0].parent = "transformers/T1";
  items[0].type = "feeds";
  items[0].deltas.push_back({"m1", true, true, 0, some_values(), {}});
  items[1].child = "feeders/x";
  items[1].parent = "transformers/T1";
  items[1].type = "feeds";
  member_delta gone{"m7", false, true, 3, {}, {"feeders/y", "feeders/z"}};
  gone.values.version = 9;
  items[1].deltas.push_back(gone);
  items[1].deltas.push_back({"feeders/x", true, false, 0, {}, {}});
  items[1].origin_ms = 1'700'000'000'123;
  items[1].hops = 3;
  std::string bytes;
  encode_contributions(items, bytes);
  std::vector<contribution> back;
  ASSERT_FALSE(decode_contributions(bytes, "transformers/T1", back));
  ASSERT_EQ(back.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back[i].child, items[i].child);
    EXPECT_EQ(back[i].parent, items[i].parent);
    EXPECT_EQ(back[i].type, items[i].type);
    EXPECT_EQ(back[i].deltas, items[i].deltas);
    EXPECT_EQ(back[i].origin_ms, items[i].origin_ms);
    EXPECT_EQ(back[i].hops, items[i].hops);
  }
  for (size_t cut = 1; cut < bytes.size(); ++cut) {
    back.clear();
    EXPECT_TRUE(decode_contributions(bytes.substr(0, cut), "p", back)) << cut;
  }
}

TEST(AggregateCodec, TwinRelationsRoundTripAndOldRecordsStillRead) {
  twin tw;
  tw.asset_id = "veh-1";
  tw.version = 3;
  tw.relations = {{"member_of", "fleets/north", relation_origin::rule},
                  {"charging_at", "chargers/c1", relation_origin::topic}};
  std::string bytes;
  encode_twin(tw, bytes);
  twin back;
  ASSERT_FALSE(decode_twin(bytes, back));
  EXPECT_EQ(back.relations, tw.relations);
  // A record of format 2 (before analytics) is the same bytes without the
  // analytics, and one of format 1 (before relations) without the relation
  // list either.
  encode_twin(tw, bytes);
  bytes[0] = 3;
  bytes.pop_back();  // the empty open history segment (its length: one byte)
  bytes.pop_back();  // erased_ms (0: one byte)
  bytes.pop_back();  // newest_source_ms (0: one byte)
  bytes.pop_back();  // the empty analytics count
  ASSERT_FALSE(decode_twin(bytes, back));
  EXPECT_EQ(back.relations, tw.relations);
  EXPECT_TRUE(back.analysis.empty());
  tw.relations.clear();
  encode_twin(tw, bytes);
  bytes[0] = 1;
  bytes.pop_back();  // the empty open history segment
  bytes.pop_back();  // erased_ms
  bytes.pop_back();  // newest_source_ms
  bytes.pop_back();  // the empty analytics count
  bytes.pop_back();  // the empty relation count
  ASSERT_FALSE(decode_twin(bytes, back));
  EXPECT_EQ(back.asset_id, "veh-1");
  EXPECT_TRUE(back.relations.empty());
}

TEST(AggregateCodec, NewestSourceTimeRoundTripsAndIsEstimatedForOlderRecords) {
  twin tw;
  tw.asset_id = "veh-1";
  tw.version = 2;
  tw.reported["x"] = reported_property{1.0, 5000, 5100, 2};
  tw.newest_source_ms = 9000;  // an attributes-only record came later
  std::string bytes;
  encode_twin(tw, bytes);
  twin back;
  ASSERT_FALSE(decode_twin(bytes, back));
  EXPECT_EQ(back.newest_source_ms, 9000);
  // Format 4 had no such field: the newest stored sample stands in for it. That twin
  // without newest_source_ms in format 4 (byte 5), as the code of 2026-11-29 wrote it.
  const std::string v4(
      "\x05\x05\x76\x65\x68\x2d\x31\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00"
      "\x00\x00\x01\x01\x78\x00\x00\x00\x00\x00\x00\x00\xf0\x3f\x90\x4e\xd8\x4f\x02\x00\x00\x00\x00"
      "\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00"
      "\x00",
      73);
  ASSERT_FALSE(decode_twin(v4, back));
  EXPECT_EQ(back.newest_source_ms, 5000);
}

}  // namespace

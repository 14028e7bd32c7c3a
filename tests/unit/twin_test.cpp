#include "actors/core/twin.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <set>

#include "actors/core/codec.hpp"
#include "actors/core/partitioning.hpp"
#include "actors/core/wire.hpp"

using namespace fleettwin::core;

namespace {

telemetry make(std::string id, uint64_t seq, int64_t ts,
               std::vector<std::pair<std::string, value>> metrics) {
  telemetry t;
  t.asset_id = std::move(id);
  t.kind = "vehicle";
  t.tenant = "demo";
  t.sequence = seq;
  t.source_time_ms = ts;
  t.metrics = std::move(metrics);
  return t;
}

struct TwinTest : ::testing::Test {
  twin tw;
  limits lim;
  apply_result res;

  apply_status apply(const telemetry& t, int64_t now = 1'000'000) {
    apply_telemetry(tw, t, now, lim, res);
    return res.status;
  }
};

}  // namespace

TEST_F(TwinTest, FirstRecordCreatesTwin) {
  EXPECT_TRUE(tw.empty());
  auto t = make("veh-1", 1, 1000, {{"speed", 50.0}, {"gear", std::string{"D"}}});
  t.attributes = {{"fleet", "north"}};
  EXPECT_EQ(apply(t, 2000), apply_status::applied);
  EXPECT_EQ(tw.asset_id, "veh-1");
  EXPECT_EQ(tw.kind, "vehicle");
  EXPECT_EQ(tw.tenant, "demo");
  EXPECT_EQ(tw.version, 1u);
  EXPECT_EQ(tw.applied_records, 1u);
  EXPECT_EQ(tw.last_seen_ms, 2000);
  EXPECT_EQ(tw.attributes.at("fleet"), "north");
  ASSERT_EQ(tw.reported.size(), 2u);
  const auto& speed = tw.reported.at("speed");
  EXPECT_EQ(std::get<double>(speed.val), 50.0);
  EXPECT_EQ(speed.source_time_ms, 1000);
  EXPECT_EQ(speed.ingest_time_ms, 2000);
  EXPECT_EQ(speed.sequence, 1u);
  EXPECT_EQ(res.applied_metrics.size(), 2u);
}

TEST_F(TwinTest, TheFirstRecordNamingATenantFixesIt) {
  auto untenanted = make("a", 1, 1000, {{"x", 1.0}});
  untenanted.tenant.clear();
  EXPECT_EQ(apply(untenanted), apply_status::applied);
  EXPECT_EQ(tw.tenant, "");
  EXPECT_EQ(apply(make("a", 2, 2000, {{"x", 2.0}})), apply_status::applied);
  EXPECT_EQ(tw.tenant, "demo");
  // Another tenant: refused whole (nothing applied, the sequence not marked).
  auto other = make("a", 3, 3000, {{"x", 3.0}, {"y", 1.0}});
  other.tenant = "rival";
  EXPECT_EQ(apply(other), apply_status::tenant_conflict);
  EXPECT_EQ(tw.tenant, "demo");
  EXPECT_EQ(tw.version, 2u);
  EXPECT_EQ(std::get<double>(tw.reported.at("x").val), 2.0);
  EXPECT_FALSE(tw.reported.contains("y"));
  // Records without a tenant keep the twin's; the refused sequence is still free.
  untenanted = make("a", 3, 3000, {{"x", 4.0}});
  untenanted.tenant.clear();
  EXPECT_EQ(apply(untenanted), apply_status::applied);
  EXPECT_EQ(tw.tenant, "demo");
}

TEST_F(TwinTest, ATenantIsANameLikeAnyOther) {
  auto t = make("a", 1, 1000, {{"x", 1.0}});
  t.tenant = "acme*";
  auto err = validate(t, lim);
  ASSERT_TRUE(err.has_value());
  EXPECT_NE(err->find("tenant name"), std::string::npos) << *err;
  t.tenant = "acme-eu.1";
  EXPECT_FALSE(validate(t, lim).has_value());
}

TEST_F(TwinTest, AnErasedTwinIsATombstoneThatOldRecordsDoNotBringBack) {
  auto t = make("a", 1, 1000, {{"x", 1.0}});
  t.attributes = {{"fleet", "north"}};
  apply(t);
  apply(make("a", 2, 2000, {{"x", 2.0}}));
  tw.relations.push_back(relation{"member_of", "fleets/north", relation_origin::rule});
  tw.history_segments = 300;
  auto gone = erase_twin(tw, 5000, 256);
  EXPECT_EQ(gone.history_slots, 256u);  // every slot of the ring was written
  ASSERT_EQ(gone.relations.size(), 1u);
  EXPECT_TRUE(tw.empty());
  EXPECT_EQ(tw.asset_id, "a");
  EXPECT_EQ(tw.erased_ms, 5000);
  EXPECT_TRUE(tw.reported.empty());
  EXPECT_TRUE(tw.attributes.empty());
  EXPECT_TRUE(tw.relations.empty());
  EXPECT_EQ(tw.tenant, "");
  // It survives encoding (the store and the changelog hold it).
  std::string bytes;
  encode_twin(tw, bytes);
  twin back;
  ASSERT_FALSE(decode_twin(bytes, back).has_value());
  EXPECT_EQ(back.erased_ms, 5000);
  EXPECT_TRUE(back.empty());
  tw = back;
  // Replayed records (source time up to the erasure) are ignored, whatever their sequence.
  EXPECT_EQ(apply(make("a", 1, 1000, {{"x", 1.0}})), apply_status::erased);
  EXPECT_EQ(apply(make("a", 99, 5000, {{"x", 1.0}})), apply_status::erased);
  EXPECT_TRUE(tw.empty());
  // A newer record starts a new twin; older ones still cannot add to it.
  EXPECT_EQ(apply(make("a", 3, 6000, {{"x", 3.0}})), apply_status::applied);
  EXPECT_EQ(tw.version, 1u);
  EXPECT_EQ(tw.applied_records, 1u);
  EXPECT_EQ(apply(make("a", 4, 4000, {{"y", 3.0}})), apply_status::erased);
  EXPECT_FALSE(tw.reported.contains("y"));
  // A desired update on a tombstone finds no twin.
  twin tomb;
  tomb.asset_id = "b";
  tomb.erased_ms = 1;
  desired_update u;
  u.set.emplace_back("x", value{1.0});
  EXPECT_EQ(apply_desired(tomb, "b", u, 10, lim).status, desired_status::not_found);
}

TEST_F(TwinTest, DuplicateSequenceIgnoredAndCounted) {
  apply(make("a", 5, 1000, {{"x", 1.0}}));
  EXPECT_EQ(apply(make("a", 5, 1000, {{"x", 2.0}})), apply_status::duplicate);
  EXPECT_EQ(tw.duplicates, 1u);
  EXPECT_EQ(tw.version, 1u);
  EXPECT_EQ(std::get<double>(tw.reported.at("x").val), 1.0);
}

TEST_F(TwinTest, LateButNewSequenceWithinWindowApplies) {
  apply(make("a", 10, 2000, {{"x", 1.0}}));
  // Sequence 8 was never seen, arrives late with an older timestamp for x but
  // a new property y: y applies, x does not overwrite.
  EXPECT_EQ(apply(make("a", 8, 1000, {{"x", 9.0}, {"y", 3.0}})), apply_status::applied);
  EXPECT_EQ(std::get<double>(tw.reported.at("x").val), 1.0);
  EXPECT_EQ(std::get<double>(tw.reported.at("y").val), 3.0);
  EXPECT_EQ(res.stale_samples, 1u);
  EXPECT_EQ(tw.out_of_order, 1u);
  EXPECT_EQ(tw.version, 2u);
  // And 8 is now a duplicate.
  EXPECT_EQ(apply(make("a", 8, 1000, {{"y", 3.0}})), apply_status::duplicate);
}

TEST_F(TwinTest, OlderSampleNeverOverwritesNewer) {
  apply(make("a", 1, 5000, {{"x", 1.0}}));
  EXPECT_EQ(apply(make("a", 2, 4000, {{"x", 2.0}})), apply_status::out_of_order);
  EXPECT_EQ(std::get<double>(tw.reported.at("x").val), 1.0);
  EXPECT_EQ(tw.version, 1u);
  EXPECT_EQ(tw.applied_records, 1u);
  EXPECT_EQ(tw.out_of_order, 1u);
  // Sequence 2 was still recorded: a replay is a duplicate.
  EXPECT_EQ(apply(make("a", 2, 4000, {{"x", 2.0}})), apply_status::duplicate);
}

TEST_F(TwinTest, EqualTimestampHigherSequenceWins) {
  apply(make("a", 3, 5000, {{"x", 1.0}}));
  EXPECT_EQ(apply(make("a", 2, 5000, {{"x", 2.0}})), apply_status::out_of_order);
  EXPECT_EQ(apply(make("a", 4, 5000, {{"x", 3.0}})), apply_status::applied);
  EXPECT_EQ(std::get<double>(tw.reported.at("x").val), 3.0);
}

TEST_F(TwinTest, SequenceBelowWindowIsTooOld) {
  apply(make("a", 1000, 5000, {{"x", 1.0}}));
  EXPECT_EQ(apply(make("a", 900, 4000, {{"x", 2.0}})), apply_status::sequence_too_old);
  // Not newer than every sample either (equal time): still too old.
  EXPECT_EQ(apply(make("a", 901, 5000, {{"x", 2.0}})), apply_status::sequence_too_old);
  EXPECT_EQ(tw.out_of_order, 2u);
  EXPECT_EQ(tw.version, 1u);
  EXPECT_FALSE(res.sequence_restarted);
}

TEST_F(TwinTest, SourceThatRestartsItsSequenceIsAppliedNotDropped) {
  // A device (or a simulator run) numbered 1..5000, then started again at 1
  // after a reboot: its records are newer than anything the twin has.
  for (uint64_t seq = 4990; seq <= 5000; ++seq)
    apply(make("a", seq, 1000 + int64_t(seq), {{"x", double(seq)}}));
  ASSERT_EQ(tw.version, 11u);
  EXPECT_EQ(apply(make("a", 1, 100'000, {{"x", -1.0}})), apply_status::applied);
  EXPECT_TRUE(res.sequence_restarted);
  EXPECT_EQ(std::get<double>(tw.reported.at("x").val), -1.0);
  EXPECT_EQ(tw.window.highest(), 1u);
  // Within the old window too (distance < 64 from 5000 would be a duplicate
  // check): sequence 2 is fresh in the new numbering.
  EXPECT_EQ(apply(make("a", 2, 100'001, {{"x", -2.0}})), apply_status::applied);
  EXPECT_FALSE(res.sequence_restarted);
  // A replay of the new records is still a duplicate, and a replay of an
  // old one (older source time) is still rejected.
  EXPECT_EQ(apply(make("a", 2, 100'001, {{"x", -2.0}})), apply_status::duplicate);
  EXPECT_EQ(apply(make("a", 4999, 5999, {{"x", 4999.0}})), apply_status::out_of_order);
  EXPECT_EQ(tw.version, 13u);
  EXPECT_EQ(tw.applied_records, 13u);
}

TEST_F(TwinTest, RestartWithinTheWindowIsNotADuplicate) {
  for (uint64_t seq = 1; seq <= 30; ++seq)
    apply(make("a", seq, 1000 + int64_t(seq), {{"x", double(seq)}}));
  // Sequence 5 again, but newer than every sample: a restarted source.
  EXPECT_EQ(apply(make("a", 5, 2000, {{"x", 5.5}})), apply_status::applied);
  EXPECT_TRUE(res.sequence_restarted);
  EXPECT_EQ(tw.duplicates, 0u);
  // Without a source time the rule cannot tell a replay apart: duplicate.
  EXPECT_EQ(apply(make("a", 5, 0, {{"x", 5.5}})), apply_status::duplicate);
}

TEST_F(TwinTest, ARedeliveredAttributesOnlyRecordIsADuplicateAndRevertsNothing) {
  // Found by the telemetry fuzzer: attributes-only records (an aggregate's parent and
  // capacity, say) leave no samples, so a redelivery used to pass for a restarted source.
  auto attrs = [](uint64_t seq, int64_t ts, std::string parent) {
    auto t = make("tr-1", seq, ts, {});
    t.attributes = {{"parent", std::move(parent)}};
    return t;
  };
  EXPECT_EQ(apply(attrs(1, 1000, "fd-1")), apply_status::applied);
  EXPECT_EQ(apply(attrs(2, 2000, "fd-2")), apply_status::applied);
  EXPECT_EQ(apply(attrs(3, 3000, "fd-3")), apply_status::applied);
  // At-least-once redelivery of 1 and 2 after 3.
  EXPECT_EQ(apply(attrs(1, 1000, "fd-1")), apply_status::duplicate);
  EXPECT_FALSE(res.sequence_restarted);
  EXPECT_EQ(apply(attrs(2, 2000, "fd-2")), apply_status::duplicate);
  EXPECT_EQ(tw.attributes.at("parent"), "fd-3");
  EXPECT_EQ(tw.duplicates, 2u);
  EXPECT_EQ(tw.version, 3u);
  // A source that really restarted (newer than every record) is still applied.
  EXPECT_EQ(apply(attrs(1, 4000, "fd-4")), apply_status::applied);
  EXPECT_TRUE(res.sequence_restarted);
  EXPECT_EQ(tw.attributes.at("parent"), "fd-4");
}

TEST_F(TwinTest, SequenceZeroDisablesDuplicateDetection) {
  apply(make("a", 0, 1000, {{"x", 1.0}}));
  EXPECT_EQ(apply(make("a", 0, 1000, {{"x", 1.0}})), apply_status::applied);
  EXPECT_EQ(tw.applied_records, 2u);
}

TEST_F(TwinTest, MissingSourceTimeUsesIngestTime) {
  apply(make("a", 1, 0, {{"x", 1.0}}), 7777);
  EXPECT_EQ(tw.reported.at("x").source_time_ms, 7777);
}

TEST_F(TwinTest, StatisticsTrackCountMinMaxMeanAndLastChange) {
  apply(make("a", 1, 1000, {{"x", 10.0}}));
  apply(make("a", 2, 2000, {{"x", int64_t{20}}}));
  apply(make("a", 3, 3000, {{"x", int64_t{20}}}));
  apply(make("a", 4, 4000, {{"x", 0.0}}));
  const auto& st = tw.reported.at("x").stats;
  EXPECT_EQ(st.count, 4u);
  EXPECT_EQ(st.min, 0.0);
  EXPECT_EQ(st.max, 20.0);
  EXPECT_DOUBLE_EQ(st.mean, 12.5);
  EXPECT_EQ(st.last_change_ms, 4000);
  apply(make("a", 5, 5000, {{"x", 0.0}}));
  EXPECT_EQ(tw.reported.at("x").stats.last_change_ms, 4000);  // same value: no change
}

TEST_F(TwinTest, StringStatisticsOnlyCount) {
  apply(make("a", 1, 1000, {{"s", std::string{"on"}}}));
  apply(make("a", 2, 2000, {{"s", std::string{"off"}}}));
  EXPECT_EQ(tw.reported.at("s").stats.count, 2u);
  EXPECT_EQ(tw.reported.at("s").stats.numeric_count, 0u);
  EXPECT_EQ(tw.reported.at("s").stats.last_change_ms, 2000);
}

TEST_F(TwinTest, BoolCountsAsNumberInStats) {
  apply(make("a", 1, 1000, {{"b", true}}));
  apply(make("a", 2, 2000, {{"b", false}}));
  EXPECT_DOUBLE_EQ(tw.reported.at("b").stats.mean, 0.5);
}

TEST_F(TwinTest, AttributeOnlyRecordIsAChange) {
  apply(make("a", 1, 1000, {{"x", 1.0}}));
  telemetry t = make("a", 2, 2000, {});
  t.attributes = {{"site", "depot"}};
  EXPECT_EQ(apply(t), apply_status::applied);
  EXPECT_TRUE(res.attributes_changed);
  EXPECT_EQ(tw.version, 2u);
  // The same attributes again with no metrics change nothing, and are not
  // out of order either.
  t.sequence = 3;
  EXPECT_EQ(apply(t), apply_status::unchanged);
  EXPECT_EQ(tw.version, 2u);
  EXPECT_EQ(tw.out_of_order, 0u);
  // Samples all older than the stored ones are out of order, attributes or not.
  telemetry old = make("a", 4, 500, {{"x", 0.5}});
  old.attributes = {{"site", "depot"}};
  EXPECT_EQ(apply(old), apply_status::out_of_order);
}

TEST_F(TwinTest, PropertyLimitBoundsTwin) {
  lim.max_properties_per_twin = 2;
  apply(make("a", 1, 1000, {{"x", 1.0}, {"y", 1.0}, {"z", 1.0}}));
  EXPECT_EQ(tw.reported.size(), 2u);
  EXPECT_EQ(res.stale_samples, 1u);
}

TEST(TwinValidate, AcceptsGoodRecord) {
  limits lim;
  EXPECT_FALSE(validate(make("veh-1", 1, 1, {{"speed", 1.0}}), lim));
}

TEST(TwinValidate, RejectsBadRecords) {
  limits lim;
  EXPECT_TRUE(validate(make("", 1, 1, {{"x", 1.0}}), lim));
  EXPECT_TRUE(validate(make(std::string(300, 'a'), 1, 1, {{"x", 1.0}}), lim));
  EXPECT_TRUE(validate(make("a\nb", 1, 1, {{"x", 1.0}}), lim));
  EXPECT_TRUE(validate(make("a", 1, 1, {}), lim));
  EXPECT_TRUE(validate(make("a", 1, -5, {{"x", 1.0}}), lim));
  EXPECT_TRUE(validate(make("a", 1, 1, {{"", 1.0}}), lim));
  EXPECT_TRUE(validate(make("a", 1, 1, {{"bad name", 1.0}}), lim));
  EXPECT_TRUE(validate(make("a", 1, 1, {{"x", std::numeric_limits<double>::quiet_NaN()}}), lim));
  EXPECT_TRUE(validate(make("a", 1, 1, {{"x", std::numeric_limits<double>::infinity()}}), lim));
  EXPECT_TRUE(validate(make("a", 1, 1, {{"x", std::string(5000, 'v')}}), lim));
  auto err = validate(make("a", 1, 1, {{"x", std::numeric_limits<double>::quiet_NaN()}}), lim);
  EXPECT_NE(err->find("\"x\""), std::string::npos) << *err;
  telemetry many = make("a", 1, 1, {});
  for (int i = 0; i < 300; ++i)
    many.metrics.emplace_back("m" + std::to_string(i), 1.0);
  EXPECT_TRUE(validate(many, lim));
}

TEST(TwinDesired, SetRemoveDeltaAndVersion) {
  twin tw;
  limits lim;
  apply_result res;
  apply_telemetry(tw, make("a", 1, 1000, {{"speed_limit", int64_t{80}}}), 1000, lim, res);
  desired_update u;
  u.set = {{"speed_limit", 80.0}, {"mode", std::string{"eco"}}};
  auto r = apply_desired(tw, "a", u, 5000, lim);
  EXPECT_EQ(r.status, desired_status::applied);
  EXPECT_EQ(tw.version, 2u);
  EXPECT_EQ(tw.desired_updated_ms, 5000);
  auto d = delta(tw);
  EXPECT_EQ(d.size(), 1u);  // 80 == 80.0 numerically; mode not reported
  EXPECT_TRUE(d.contains("mode"));
  // Same values again: unchanged, version stays.
  EXPECT_EQ(apply_desired(tw, "a", u, 6000, lim).status, desired_status::unchanged);
  EXPECT_EQ(tw.version, 2u);
  desired_update rm;
  rm.remove = {"mode"};
  EXPECT_EQ(apply_desired(tw, "a", rm, 7000, lim).status, desired_status::applied);
  EXPECT_TRUE(delta(tw).empty());
}

TEST(TwinDesired, ExpectedVersionMismatchAborts) {
  twin tw;
  limits lim;
  desired_update u;
  u.set = {{"x", 1.0}};
  u.expected_version = 0;
  EXPECT_EQ(apply_desired(tw, "a", u, 1, lim).status, desired_status::applied);
  u.set = {{"x", 2.0}};
  u.expected_version = 0;
  auto r = apply_desired(tw, "a", u, 2, lim);
  EXPECT_EQ(r.status, desired_status::version_mismatch);
  EXPECT_NE(r.error.find("version 1"), std::string::npos) << r.error;
  u.expected_version = 1;
  EXPECT_EQ(apply_desired(tw, "a", u, 3, lim).status, desired_status::applied);
  EXPECT_EQ(tw.version, 2u);
}

TEST(TwinDesired, ATenantConfinedUpdateSeesOnlyItsTenantsTwins) {
  twin tw;
  limits lim;
  apply_result res;
  auto t = make("a", 1, 1000, {{"speed", 1.0}});
  t.tenant = "acme";
  apply_telemetry(tw, t, 1000, lim, res);
  desired_update u;
  u.set = {{"mode", std::string{"eco"}}};
  u.only_tenant = "globex";
  auto r = apply_desired(tw, "a", u, 2000, lim);
  EXPECT_EQ(r.status, desired_status::not_found);
  EXPECT_EQ(r.error, "twin \"a\" not found");
  EXPECT_TRUE(tw.desired.empty());
  u.only_tenant = "acme";
  EXPECT_EQ(apply_desired(tw, "a", u, 2000, lim).status, desired_status::applied);
  twin fresh;  // no tenant yet: not the caller's
  EXPECT_EQ(apply_desired(fresh, "b", u, 2000, lim).status, desired_status::not_found);
}

TEST(TwinDesired, InvalidUpdates) {
  twin tw;
  limits lim;
  EXPECT_EQ(apply_desired(tw, "a", {}, 1, lim).status, desired_status::invalid);
  desired_update u;
  u.set = {{"bad name", 1.0}};
  EXPECT_EQ(apply_desired(tw, "a", u, 1, lim).status, desired_status::invalid);
  u.set = {{"x", std::numeric_limits<double>::infinity()}};
  EXPECT_EQ(apply_desired(tw, "a", u, 1, lim).status, desired_status::invalid);
  EXPECT_EQ(tw.version, 0u);
}

TEST(TwinConnectivity, OnlineWithinWindow) {
  twin tw;
  EXPECT_EQ(connectivity_of(tw, 100, 10), connectivity::stale);
  tw.last_seen_ms = 95;
  EXPECT_EQ(connectivity_of(tw, 100, 10), connectivity::online);
  EXPECT_EQ(connectivity_of(tw, 106, 10), connectivity::stale);
}

TEST(SequenceWindow, Exhaustive) {
  sequence_window w;
  EXPECT_EQ(w.check(1), sequence_window::verdict::fresh);
  w.mark(1);
  EXPECT_EQ(w.check(1), sequence_window::verdict::duplicate);
  w.mark(100);
  EXPECT_EQ(w.check(1), sequence_window::verdict::too_old);
  EXPECT_EQ(w.check(36), sequence_window::verdict::too_old);
  EXPECT_EQ(w.check(37), sequence_window::verdict::fresh);
  EXPECT_EQ(w.check(99), sequence_window::verdict::fresh);
  w.mark(99);
  EXPECT_EQ(w.check(99), sequence_window::verdict::duplicate);
  EXPECT_EQ(w.check(100), sequence_window::verdict::duplicate);
  EXPECT_EQ(w.check(0), sequence_window::verdict::fresh);
  w.mark(164);  // shifts 99 and 100 out of the window
  EXPECT_EQ(w.check(100), sequence_window::verdict::too_old);
  EXPECT_EQ(w.check(101), sequence_window::verdict::fresh);
}

TEST(HistorySlot, RingWraps) {
  EXPECT_EQ(history_slot(1, 4), 0u);
  EXPECT_EQ(history_slot(4, 4), 3u);
  EXPECT_EQ(history_slot(5, 4), 0u);
}

TEST(Codec, TwinRoundTrip) {
  twin tw;
  limits lim;
  apply_result res;
  auto t = make("veh-1", 7, 1000,
                {{"d", 1.5}, {"i", int64_t{-42}}, {"b", true}, {"s", std::string{"hello"}}});
  t.attributes = {{"fleet", "north"}};
  apply_telemetry(tw, t, 2000, lim, res);
  desired_update u;
  u.set = {{"mode", std::string{"eco"}}};
  apply_desired(tw, "veh-1", u, 3000, lim);
  tw.duplicates = 3;
  tw.history_segments = 12;
  begin_history_segment(tw.open_history);
  append_history_sample(tw.open_history, "d", value{1.5}, 1000, 7);
  std::string bytes;
  encode_twin(tw, bytes);
  twin back;
  ASSERT_FALSE(decode_twin(bytes, back));
  EXPECT_EQ(back.open_history, tw.open_history);
  EXPECT_EQ(back.asset_id, tw.asset_id);
  EXPECT_EQ(back.kind, tw.kind);
  EXPECT_EQ(back.tenant, tw.tenant);
  EXPECT_EQ(back.version, tw.version);
  EXPECT_EQ(back.last_seen_ms, tw.last_seen_ms);
  EXPECT_EQ(back.desired_updated_ms, 3000);
  EXPECT_EQ(back.duplicates, 3u);
  EXPECT_EQ(back.history_segments, 12u);
  EXPECT_EQ(back.window, tw.window);
  EXPECT_EQ(back.attributes, tw.attributes);
  EXPECT_EQ(back.desired, tw.desired);
  ASSERT_EQ(back.reported.size(), 4u);
  for (const auto& [name, rp] : tw.reported) {
    EXPECT_EQ(back.reported.at(name).val, rp.val) << name;
    EXPECT_EQ(back.reported.at(name).sequence, 7u);
    EXPECT_EQ(back.reported.at(name).stats.count, 1u);
    EXPECT_EQ(back.reported.at(name).stats.mean, tw.reported.at(name).stats.mean);
  }
}

/// Every reported property the same: value, times and sequence.
void expect_same_reported(const reported_map& got, const reported_map& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, rp] : want) {
    ASSERT_TRUE(got.contains(name)) << name;
    const auto& g = got.at(name);
    EXPECT_EQ(g.val, rp.val) << name;
    EXPECT_EQ(g.source_time_ms, rp.source_time_ms) << name;
    EXPECT_EQ(g.ingest_time_ms, rp.ingest_time_ms) << name;
    EXPECT_EQ(g.sequence, rp.sequence) << name;
  }
}

TEST(Codec, ATwinStoredBeforeTheOpenHistorySegmentDecodes) {
  twin tw;
  limits lim;
  apply_result res;
  apply_telemetry(tw, make("veh-1", 1, 1000, {{"d", 1.5}}), 2000, lim, res);
  // That twin as a node wrote it in format 6 (byte 7), which ends before the open segment:
  // the bytes of the code of 2026-11-29 (format 7 with its last byte, the empty open
  // segment's length, dropped and the format byte set back).
  const std::string bytes(
      "\x07\x05\x76\x65\x68\x2d\x31\x00\x00\x01\xa0\x1f\x00\x01\x00\x00\x01\x01\x00\x00\x00\x00\x00"
      "\x00"
      "\x00\x00\x00\x01\x01\x64\x00\x00\x00\x00\x00\x00\x00\xf8\x3f\xd0\x0f\xa0\x1f\x01\x01\x01\x00"
      "\x00"
      "\x00\x00\x00\x00\xf8\x3f\x00\x00\x00\x00\x00\x00\xf8\x3f\x00\x00\x00\x00\x00\x00\xf8\x3f\xd0"
      "\x0f"
      "\x00\x00\x00\xd0\x0f\x00",
      78);
  twin back;
  ASSERT_FALSE(decode_twin(bytes, back));
  EXPECT_EQ(back.version, tw.version);
  expect_same_reported(back.reported, tw.reported);
  EXPECT_EQ(back.reported.at("d").stats.mean, 1.5);
  EXPECT_TRUE(back.open_history.empty());
}

// A twin with every part of its state set (analytics, statistics, desired, history).
twin legacy_fixture_twin() {
  twin tw;
  tw.asset_id = "veh-7";
  tw.kind = "vehicle";
  tw.tenant = "acme";
  tw.version = 12;
  tw.last_seen_ms = 1'700'000'005'000;
  tw.applied_records = 12;
  tw.duplicates = 1;
  tw.attributes["fleet"] = "north";
  tw.reported["speed"] = reported_property{54.3, 1'700'000'004'000, 1'700'000'005'000, 12};
  tw.reported["lat"] = reported_property{52.520008, 1'700'000'004'000, 1'700'000'005'000, 12};
  tw.reported["gear"] =
      reported_property{std::string{"D"}, 1'700'000'004'000, 1'700'000'005'000, 12};
  tw.reported["odometer"] =
      reported_property{int64_t{123456}, 1'700'000'004'000, 1'700'000'005'000, 12};
  auto& st = tw.reported["speed"].stats;
  st.count = 12;
  st.numeric_count = 12;
  st.min = 0;
  st.max = 61.2;
  st.mean = 48.716666666666669;
  st.last_change_ms = 1'700'000'004'000;
  tw.reported["lat"].stats = property_stats{12, 12, 52.5, 52.520008, 52.51, 1'700'000'004'000};
  tw.desired["mode"] = value{2.5};
  auto& a = tw.analysis["speed"];
  a.state.forecast.level = 53.91;
  a.state.forecast.trend = -0.0125;
  a.state.forecast.error_var = 4.5;
  a.state.forecast.interval_ms = 1000;
  a.state.forecast.naive_abs_error_sum = 17.25;
  a.state.forecast.last_value = 54.3;
  a.state.forecast.smooth_error = 0.37;
  a.state.forecast.last_time_ms = 1'700'000'004'000;
  a.state.forecast.samples = 12;
  a.state.forecast.season[3] = 0.25f;
  a.state.detector.spread = 1.5;
  a.state.detector.var_long = 2.25;
  a.state.detector.base_level = 50.125;
  a.state.detector.samples = 12;
  a.state.detector.quantum = 0.1;
  a.score = 0.83;
  a.next = 54.1;
  a.alert.peak = 3.2;
  a.alert.raised_count = 1;
  a.quality.bad_rate = 0.05;
  a.quality.expected_interval_ms = 1000;
  tw.newest_source_ms = 1'700'000'004'000;
  begin_history_segment(tw.open_history);
  append_history_sample(tw.open_history, "speed", 54.3, 1'700'000'004'000, 12);
  append_history_sample(tw.open_history, "lat", 52.520008, 1'700'000'004'000, 12);
  return tw;
}

TEST(Codec, ATwinOfTheSeventhFormatDecodesAndTheEighthIsSmaller) {
  // Format 7 (byte 8) wrote every double in 8 bytes and history samples with their times:
  // what the code of 2026-11-29 wrote for legacy_fixture_twin().
  const std::string v7(
      "\x08\x05\x76\x65\x68\x2d\x37\x07\x76\x65\x68\x69\x63\x6c\x65\x04\x61\x63\x6d\x65\x0c\x90\xee"
      "\xab"
      "\xfe\xf9\x62\x00\x0c\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x05\x66\x6c\x65\x65"
      "\x74"
      "\x05\x6e\x6f\x72\x74\x68\x04\x04\x67\x65\x61\x72\x03\x01\x44\xc0\xde\xab\xfe\xf9\x62\x90\xee"
      "\xab"
      "\xfe\xf9\x62\x0c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x03\x6c\x61\x74\x00\x45\xd4\x44\x9f\x8f\x42\x4a\x40\xc0\xde\xab"
      "\xfe"
      "\xf9\x62\x90\xee\xab\xfe\xf9\x62\x0c\x0c\x0c\x00\x00\x00\x00\x00\x40\x4a\x40\x45\xd4\x44\x9f"
      "\x8f"
      "\x42\x4a\x40\xe1\x7a\x14\xae\x47\x41\x4a\x40\xc0\xde\xab\xfe\xf9\x62\x08\x6f\x64\x6f\x6d\x65"
      "\x74"
      "\x65\x72\x01\x80\x89\x0f\xc0\xde\xab\xfe\xf9\x62\x90\xee\xab\xfe\xf9\x62\x0c\x00\x00\x00\x00"
      "\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05"
      "\x73"
      "\x70\x65\x65\x64\x00\x66\x66\x66\x66\x66\x26\x4b\x40\xc0\xde\xab\xfe\xf9\x62\x90\xee\xab\xfe"
      "\xf9"
      "\x62\x0c\x0c\x0c\x00\x00\x00\x00\x00\x00\x00\x00\x9a\x99\x99\x99\x99\x99\x4e\x40\xbc\xbb\xbb"
      "\xbb"
      "\xbb\x5b\x48\x40\xc0\xde\xab\xfe\xf9\x62\x01\x04\x6d\x6f\x64\x65\x00\x00\x00\x00\x00\x00\x00"
      "\x04"
      "\x40\x00\x01\x05\x73\x70\x65\x65\x64\x02\x14\xae\x47\xe1\x7a\xf4\x4a\x40\x9a\x99\x99\x99\x99"
      "\x99"
      "\x89\xbf\x00\x00\x00\x00\x00\x00\x12\x40\x00\x00\x00\x00\x00\x40\x8f\x40\x00\x00\x00\x00\x00"
      "\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x40\x31\x40\x66\x66\x66\x66\x66\x26\x4b\x40\xae\x47\xe1\x7a\x14"
      "\xae"
      "\xd7\x3f\x00\x00\x00\x00\x00\x00\x00\x00\xc0\xde\xab\xfe\xf9\x62\x0c\x18\x00\x00\x00\x80\x80"
      "\x80"
      "\xf4\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03"
      "\x00"
      "\x00\x00\x00\x00\x00\xf8\x3f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x40"
      "\x00"
      "\x00\x00\x00\x00\x10\x49\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00"
      "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00"
      "\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x9a\x99\x99\x99\x99\x99\xb9\x3f\x8f\xc2\xf5\x28\x5c"
      "\x8f"
      "\xea\x3f\xcd\xcc\xcc\xcc\xcc\x0c\x4b\x40\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x9a\x99"
      "\x99"
      "\x99\x99\x99\x09\x40\x00\x9a\x99\x99\x99\x99\x99\xa9\x3f\x00\x00\x00\x00\x00\x00\x00\x00\x00"
      "\x00"
      "\x00\xd0\x0f\x00\xc0\xde\xab\xfe\xf9\x62\x00\x2b\x02\x05\x73\x70\x65\x65\x64\x00\x66\x66\x66"
      "\x66"
      "\x66\x26\x4b\x40\xc0\xde\xab\xfe\xf9\x62\x0c\x03\x6c\x61\x74\x00\x45\xd4\x44\x9f\x8f\x42\x4a"
      "\x40"
      "\xc0\xde\xab\xfe\xf9\x62\x0c",
      631);
  const auto tw = legacy_fixture_twin();
  twin back;
  ASSERT_FALSE(decode_twin(v7, back));
  EXPECT_EQ(back.asset_id, tw.asset_id);
  EXPECT_EQ(back.version, tw.version);
  EXPECT_EQ(back.attributes, tw.attributes);
  expect_same_reported(back.reported, tw.reported);
  EXPECT_EQ(back.reported.at("speed").stats.mean, tw.reported.at("speed").stats.mean);
  EXPECT_EQ(back.reported.at("lat").stats.max, tw.reported.at("lat").stats.max);
  EXPECT_EQ(back.desired, tw.desired);
  EXPECT_EQ(back.analysis, tw.analysis);
  EXPECT_EQ(back.newest_source_ms, tw.newest_source_ms);
  // Its open segment is still of the first segment format, and stays so while it fills.
  append_history_sample(back.open_history, "gear", std::string{"N"}, 1'700'000'006'000, 13);
  std::vector<std::pair<std::string, history_point>> samples;
  ASSERT_FALSE(
      decode_history_segment(back.open_history, [&](std::string_view name, history_point& p) {
        samples.emplace_back(std::string{name}, p);
      }));
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_EQ(samples[1].first, "lat");
  EXPECT_EQ(samples[1].second.val, value{52.520008});
  EXPECT_EQ(samples[1].second.sequence, 12u);
  EXPECT_EQ(samples[2].second.val, value{std::string{"N"}});
  EXPECT_EQ(samples[2].second.source_time_ms, 1'700'000'006'000);
  // Written again it takes the current format, a quarter smaller, and reads back the same.
  std::string v8;
  encode_twin(tw, v8);
  EXPECT_LT(v8.size(), v7.size() * 4 / 5);
  twin again;
  ASSERT_FALSE(decode_twin(v8, again));
  expect_same_reported(again.reported, tw.reported);
  EXPECT_EQ(again.desired, tw.desired);
  EXPECT_EQ(again.analysis, tw.analysis);
  EXPECT_EQ(again.reported.at("speed").stats.mean, tw.reported.at("speed").stats.mean);
  EXPECT_EQ(again.open_history, tw.open_history);
}

TEST(Codec, CorruptInputIsRejectedNotCrashing) {
  twin tw;
  tw.asset_id = "a";
  tw.reported["x"] = reported_property{std::string{"value"}, 1, 2, 3};
  std::string bytes;
  encode_twin(tw, bytes);
  twin back;
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_TRUE(decode_twin(std::string_view{bytes}.substr(0, n), back)) << n;
  std::string junk = bytes + "x";
  EXPECT_TRUE(decode_twin(junk, back));
  bytes[0] = 0x7f;  // no such format
  EXPECT_TRUE(decode_twin(bytes, back));
  std::string huge_count =
      "\x01\x01"
      "a";
  huge_count += std::string(20, '\xff');
  EXPECT_TRUE(decode_twin(huge_count, back));
}

TEST(Codec, HistorySegmentRoundTrip) {
  std::string seg;
  begin_history_segment(seg);
  std::set<size_t> boundaries{seg.size()};
  append_history_sample(seg, "speed", 1.5, 100, 7);
  boundaries.insert(seg.size());
  append_history_sample(seg, "gear", std::string{"D"}, 100, 7);
  boundaries.insert(seg.size());
  append_history_sample(seg, "odo", int64_t{-3}, 200, 8);
  std::vector<std::pair<std::string, history_point>> got;
  ASSERT_FALSE(decode_history_segment(
      seg, [&](std::string_view n, history_point& p) { got.emplace_back(std::string{n}, p); }));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].first, "speed");
  EXPECT_EQ(got[1].second.val, value{std::string{"D"}});
  EXPECT_EQ(got[2].second.source_time_ms, 200);
  EXPECT_EQ(got[2].second.sequence, 8u);
  for (size_t n = 1; n < seg.size(); ++n) {
    auto err = decode_history_segment(std::string_view{seg}.substr(0, n),
                                      [](std::string_view, history_point&) {});
    // A cut at a sample boundary is a shorter valid segment; anything else is corrupt.
    EXPECT_EQ(static_cast<bool>(err), !boundaries.contains(n)) << n;
  }
  EXPECT_TRUE(decode_history_segment("x", [](std::string_view, history_point&) {}));
}

TEST(Codec, SamplesOfOneRecordShareTheirTimeInTheSegment) {
  std::string seg;
  begin_history_segment(seg);
  append_history_sample(seg, "speed", 54.3, 1'700'000'004'000, 12);
  const auto one = seg.size();
  append_history_sample(seg, "lat", 52.520008, 1'700'000'004'000, 12, true);
  append_history_sample(seg, "gear", std::string{"D"}, 1'700'000'004'000, 12, true);
  append_history_sample(seg, "speed", 55.0, 1'700'000'005'000, 13);
  // The second sample: its name (4 bytes), a decimal (tag, 4-byte varint), no time.
  EXPECT_LE(seg.size() - one, 9u + 4 + 3 + one);
  std::vector<std::pair<std::string, history_point>> got;
  ASSERT_FALSE(decode_history_segment(
      seg, [&](std::string_view n, history_point& p) { got.emplace_back(std::string{n}, p); }));
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[1].first, "lat");
  EXPECT_EQ(got[1].second.val, value{52.520008});
  EXPECT_EQ(got[1].second.source_time_ms, 1'700'000'004'000);
  EXPECT_EQ(got[2].second.sequence, 12u);
  EXPECT_EQ(got[3].second.val, value{55.0});
  EXPECT_EQ(got[3].second.source_time_ms, 1'700'000'005'000);
  EXPECT_EQ(got[3].second.sequence, 13u);
  // A segment whose first sample claims a previous one is corrupt.
  std::string bad;
  begin_history_segment(bad);
  append_history_sample(bad, "x", 1.5, 1000, 1, true);
  EXPECT_TRUE(decode_history_segment(bad, [](std::string_view, history_point&) {}));
}

TEST(Codec, CompactDoublesReadBackBitExactly) {
  std::mt19937_64 rng{7};
  std::vector<double> xs{0.0,
                         -0.0,
                         1.0,
                         -1.0,
                         12.3,
                         -12.3,
                         52.520008,
                         13.404954,
                         0.1,
                         0.3,
                         1e-7,
                         123456.789,
                         999999999999.0,
                         1e12,
                         -1e12,
                         9007199254740992.0,
                         9007199254740993.0,
                         1e300,
                         5e-324,
                         std::numeric_limits<double>::infinity(),
                         -std::numeric_limits<double>::infinity(),
                         std::numeric_limits<double>::quiet_NaN(),
                         std::numeric_limits<double>::max(),
                         std::numeric_limits<double>::lowest()};
  std::uniform_real_distribution<double> u{-1e6, 1e6};
  for (int i = 0; i < 2000; ++i) {
    xs.push_back(u(rng));
    // Sensor readings: a whole number of tenths, hundredths ... millionths.
    const double scale = std::pow(10.0, static_cast<double>(i % 7));
    xs.push_back(std::round(u(rng) * scale) / scale);
  }
  for (uint64_t bits : {uint64_t{1}, uint64_t{0x7ff0000000000001}, uint64_t{0xfff8000000000000}})
    xs.push_back(std::bit_cast<double>(bits));
  size_t short_decimals = 0;
  for (double x : xs) {
    std::string out;
    wire::put_real(out, x);
    const auto real_bytes = out.size();
    wire::put_compact_value(out, value{x});
    const auto value_bytes = out.size() - real_bytes;
    wire::reader r{out};
    EXPECT_EQ(std::bit_cast<uint64_t>(r.compact_real()), std::bit_cast<uint64_t>(x)) << x;
    const auto v = r.val();
    ASSERT_TRUE(r.ok) << x;
    EXPECT_TRUE(r.in.empty()) << x;
    ASSERT_TRUE(std::holds_alternative<double>(v)) << x;
    EXPECT_EQ(std::bit_cast<uint64_t>(std::get<double>(v)), std::bit_cast<uint64_t>(x)) << x;
    EXPECT_LE(real_bytes, 9u);
    EXPECT_LE(value_bytes, 9u);
    short_decimals += value_bytes < 9 ? 1 : 0;
  }
  // The rounded half are decimals of at most 6 digits: all but a few take the short form.
  EXPECT_GT(short_decimals, 1900u);
  // Truncated: refused, never read past.
  std::string out;
  wire::put_compact_value(out, value{52.520008});
  for (size_t n = 0; n < out.size(); ++n) {
    wire::reader r{std::string_view{out}.substr(0, n)};
    r.val();
    EXPECT_FALSE(r.ok) << n;
  }
}

TEST(Codec, HistoryPointRoundTrip) {
  history_point p{int64_t{-7}, 123456789, 42};
  std::string bytes;
  encode_history_point(p, bytes);
  history_point back;
  ASSERT_FALSE(decode_history_point(bytes, back));
  EXPECT_EQ(back.val, p.val);
  EXPECT_EQ(back.source_time_ms, p.source_time_ms);
  EXPECT_EQ(back.sequence, 42u);
  EXPECT_TRUE(decode_history_point(bytes.substr(0, 3), back));
}

TEST(Partitioning, MatchesKafkaJavaClient) {
  // Reference values of org.apache.kafka.common.utils.Utils.murmur2.
  EXPECT_EQ(static_cast<int32_t>(kafka_murmur2("21")), -973932308);
  EXPECT_EQ(static_cast<int32_t>(kafka_murmur2("foobar")), -790332482);
  EXPECT_EQ(static_cast<int32_t>(kafka_murmur2("a-little-bit-long-string")), -985981536);
  EXPECT_EQ(static_cast<int32_t>(kafka_murmur2("")), 275646681);
  for (int i = 0; i < 1000; ++i) {
    auto p = kafka_partition("veh-" + std::to_string(i), 8);
    EXPECT_GE(p, 0);
    EXPECT_LT(p, 8);
  }
}

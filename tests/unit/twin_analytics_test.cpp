// Analytics in the twin: numeric samples applied to a twin feed its
// properties' forecasters, detectors and alerts, which are stored with it.

#include <gtest/gtest.h>

#include <random>

#include "actors/core/codec.hpp"
#include "actors/core/twin_analytics.hpp"

using namespace fleettwin::core;

namespace {

constexpr int64_t t0 = 1'700'000'000'000;

class TwinAnalyticsTest : public ::testing::Test {
protected:
  /// A meter model whose one property, voltage, has the settings of `v`.
  static asset_model meter_model(property_model v) {
    asset_model m;
    m.kind = "meter";
    v.name = "voltage";
    m.properties.push_back(std::move(v));
    return m;
  }

  /// Applies a meter reading (sequence = i + 1, one a second) and runs the
  /// analytics; returns the alerts that changed.
  std::vector<alert_change> read(int i, double voltage, const asset_model* model = nullptr,
                                 bool on = true) {
    telemetry t;
    t.asset_id = "mtr-1";
    t.kind = "meter";
    t.sequence = static_cast<uint64_t>(i + 1);
    t.source_time_ms = t0 + i * 1000;
    t.metrics = {{"voltage", voltage}, {"on", on}, {"phase", std::string{"L1"}}};
    apply_telemetry(tw, t, t.source_time_ms + 5, lim, res);
    analysis_output out;
    analyze_applied(tw, t, res, model, t.source_time_ms + 5, out);
    anomalies += out.anomalies[static_cast<size_t>(anomaly_kind::level_shift)];
    return out.alerts;
  }

  twin tw;
  limits lim;
  apply_result res;
  /// Samples scored a level shift so far.
  uint32_t anomalies = 0;
  std::mt19937 gen{17};
  std::normal_distribution<double> noise{0, 1};
};

}  // namespace

TEST_F(TwinAnalyticsTest, OnlyNumericPropertiesAreAnalysed) {
  for (int i = 0; i < 5; ++i)
    read(i, 230 + noise(gen));
  ASSERT_EQ(tw.analysis.size(), 1u);
  EXPECT_EQ(tw.analysis.begin()->first, "voltage");
  EXPECT_EQ(tw.analysis.at("voltage").state.forecast.samples, 5u);
}

TEST_F(TwinAnalyticsTest, ALevelShiftRaisesAnAlertThatClearsOnceItIsTheNewNormal) {
  std::vector<alert_change> seen;
  for (int i = 0; i < 400; ++i) {
    auto a = read(i, 230 + noise(gen) + (i >= 200 ? 8 : 0));
    seen.insert(seen.end(), a.begin(), a.end());
  }
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[0].event, alert_event::raised);
  EXPECT_EQ(seen[0].property, "voltage");
  EXPECT_EQ(seen[0].number, 1u);
  EXPECT_GE(seen[0].time_ms, t0 + 200'000);
  EXPECT_LE(seen[0].time_ms, t0 + 206'000);
  EXPECT_EQ(seen.back().event, alert_event::cleared);
  EXPECT_FALSE(tw.analysis.at("voltage").alert.active);
  // A level shift, critical at its peak.
  bool level_shift = false;
  bool critical = false;
  for (const auto& a : seen) {
    level_shift |= a.kind == anomaly_kind::level_shift;
    critical |= a.severity == alert_severity::critical;
  }
  EXPECT_TRUE(level_shift);
  EXPECT_TRUE(critical);
  EXPECT_GT(anomalies, 0u);
}

TEST_F(TwinAnalyticsTest, TheModelOfThePropertySetsItsDetectors) {
  property_model v;
  v.stuck_after_ms = 20'000;
  auto m = meter_model(v);
  ASSERT_FALSE(validate(m));
  std::vector<alert_change> seen;
  for (int i = 0; i < 200; ++i) {
    auto a = read(i, i < 100 ? 230 + noise(gen) : 231.5, &m);
    seen.insert(seen.end(), a.begin(), a.end());
  }
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen[0].event, alert_event::raised);
  EXPECT_EQ(seen[0].kind, anomaly_kind::stuck);
  // 231.5 from sample 100 on: unchanged for 20 s at sample 120, raised one
  // sample later (two samples at the level).
  EXPECT_EQ(seen[0].time_ms, t0 + 121'000);
}

TEST_F(TwinAnalyticsTest, OutsideItsOperatingStatesAPropertyIsNeitherScoredNorLearntFrom) {
  // The meter's voltage is analysed while it is on; it falls to 0 when off
  // and takes 5 s to settle when switched on again.
  property_model v;
  v.analyse_in = {"on"};
  v.settle_ms = 5'000;
  auto m = meter_model(v);
  m.states.push_back({"on", "reported.on = true", {}});
  ASSERT_FALSE(validate(m));
  ASSERT_EQ(m.properties[0].analyse_mask, 1u);
  // The same readings without states: the stop is stuck at 0 after a spike.
  auto plain = meter_model(property_model{});
  auto voltage = [](int i, double noise) {
    if (i >= 200 && i < 260)
      return 0.0;                                          // off
    return (i >= 260 && i < 262 ? 150.0 : 230.0) + noise;  // two samples ramping up
  };
  std::vector<alert_change> seen;
  uint32_t scored_off = 0;
  for (int i = 0; i < 400; ++i) {
    const double n = noise(gen);
    auto a = read(i, voltage(i, n), &m, i < 200 || i >= 260);
    seen.insert(seen.end(), a.begin(), a.end());
    const auto& an = tw.analysis.at("voltage");
    if (i >= 200 && i < 265)
      scored_off += an.score > 0;
    if (i == 230) {
      EXPECT_TRUE(an.state.detector.paused);
      // The pause is stored with the twin.
      std::string bytes;
      encode_twin(tw, bytes);
      twin back;
      ASSERT_FALSE(decode_twin(bytes, back));
      EXPECT_EQ(back.analysis, tw.analysis);
    }
  }
  EXPECT_TRUE(seen.empty()) << to_string(seen[0].kind) << " at " << seen[0].time_ms - t0;
  EXPECT_EQ(scored_off, 0u);
  // Off, its samples were not learnt from, nor the first back (it
  // re-anchors the forecaster) and those settling (until 265 s): 335 of 400.
  EXPECT_EQ(tw.analysis.at("voltage").state.forecast.samples, 335u);
  // The same readings judged without the states raise alerts.
  tw = twin{};
  gen = std::mt19937{17};
  seen.clear();
  for (int i = 0; i < 400; ++i) {
    auto a = read(i, voltage(i, noise(gen)), &plain, i < 200 || i >= 260);
    seen.insert(seen.end(), a.begin(), a.end());
  }
  EXPECT_FALSE(seen.empty());
}

TEST_F(TwinAnalyticsTest, ASeriesBackAtItsOldNormalGoesOnAgainstItOneBackElsewhereStartsANewOne) {
  property_model v;
  v.analyse_in = {"on"};
  auto m = meter_model(v);
  m.states.push_back({"on", "reported.on = true", {}});
  ASSERT_FALSE(validate(m));
  std::vector<alert_change> seen;
  // On at 230, off for 20 s, on again at 250 (twenty spreads away, beyond
  // the eight of a new normal): no alert.
  for (int i = 0; i < 300; ++i) {
    const bool on = i < 150 || i >= 170;
    auto a = read(i, (i < 150 ? 230 : 250) + noise(gen), &m, on);
    seen.insert(seen.end(), a.begin(), a.end());
  }
  EXPECT_TRUE(seen.empty()) << to_string(seen[0].kind) << " at " << seen[0].time_ms - t0;
  // Off again; back at 250 but shifted 6 spreads 10 s later: the baseline
  // from before the pause still holds, and the shift is found.
  for (int i = 300; i < 400; ++i) {
    const bool on = i < 310 || i >= 320;
    auto a = read(i, 250 + noise(gen) + (i >= 330 ? 6 : 0), &m, on);
    seen.insert(seen.end(), a.begin(), a.end());
  }
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen[0].event, alert_event::raised);
  EXPECT_GE(seen[0].time_ms, t0 + 330'000);
  EXPECT_LE(seen[0].time_ms, t0 + 340'000);
}

TEST_F(TwinAnalyticsTest, AfterASilenceASeriesResumesFromWhereItIs) {
  property_model v;
  v.expected_interval_ms = 1'000;
  auto m = meter_model(v);
  ASSERT_FALSE(validate(m));
  std::vector<alert_change> seen;
  // Silent from 100 s to 160 s; it comes back 10 spreads higher and stays.
  for (int i = 0; i < 300; ++i) {
    if (i >= 100 && i < 160)
      continue;
    auto a = read(i, (i < 100 ? 230 : 240) + noise(gen), &m);
    seen.insert(seen.end(), a.begin(), a.end());
    if (i == 160) {
      // The silence is data quality's: a gap, not an anomaly.
      EXPECT_EQ(tw.analysis.at("voltage").score, 0);
      EXPECT_NE(tw.analysis.at("voltage").quality.flags & quality_gap, 0);
    }
  }
  EXPECT_TRUE(seen.empty()) << to_string(seen[0].kind) << " at " << seen[0].time_ms - t0;
}

TEST_F(TwinAnalyticsTest, AnalyticsAreStoredWithTheTwinBitExactly) {
  for (int i = 0; i < 300; ++i)
    read(i, 230 + noise(gen) + (i >= 290 ? 8 : 0));
  ASSERT_TRUE(tw.analysis.at("voltage").alert.active);
  std::string bytes;
  encode_twin(tw, bytes);
  twin back;
  ASSERT_FALSE(decode_twin(bytes, back));
  EXPECT_EQ(back.analysis, tw.analysis);
  // The restored twin goes on exactly as the original.
  for (int i = 300; i < 330; ++i) {
    const double v = 238 + noise(gen);
    read(i, v);
    std::swap(tw, back);
    read(i, v);
    std::swap(tw, back);
    ASSERT_EQ(back.analysis, tw.analysis) << i;
  }
  // Truncated analytics are refused, not misread.
  for (size_t n = bytes.size() - 40; n < bytes.size(); ++n)
    EXPECT_TRUE(decode_twin(std::string_view{bytes}.substr(0, n), back)) << n;
}

TEST_F(TwinAnalyticsTest, AnOperatorAcknowledgesTheOpenAlertOnce) {
  analysis_output out;
  EXPECT_EQ(acknowledge_alert(tw, "voltage", 1, t0, out), ack_status::not_found);
  std::vector<alert_change> seen;
  for (int i = 0; i < 206; ++i) {
    auto a = read(i, 230 + noise(gen) + (i >= 200 ? 8 : 0));
    seen.insert(seen.end(), a.begin(), a.end());
  }
  ASSERT_FALSE(seen.empty());
  ASSERT_EQ(seen.front().event, alert_event::raised);
  EXPECT_TRUE(seen.front().state.active);
  EXPECT_EQ(seen.front().state.raised_count, 1u);
  EXPECT_EQ(acknowledge_alert(tw, "voltage", 2, t0 + 300'000, out), ack_status::not_found);
  EXPECT_EQ(acknowledge_alert(tw, "current", 1, t0 + 300'000, out), ack_status::not_found);
  EXPECT_TRUE(out.alerts.empty());
  EXPECT_EQ(acknowledge_alert(tw, "voltage", 1, t0 + 300'000, out), ack_status::acknowledged);
  ASSERT_EQ(out.alerts.size(), 1u);
  EXPECT_EQ(out.alerts[0].event, alert_event::acknowledged);
  EXPECT_EQ(out.alerts[0].number, 1u);
  EXPECT_EQ(out.alerts[0].time_ms, t0 + 300'000);
  EXPECT_TRUE(out.alerts[0].state.acknowledged);
  EXPECT_TRUE(tw.analysis.at("voltage").alert.acknowledged);
  EXPECT_EQ(acknowledge_alert(tw, "voltage", 1, t0 + 301'000, out), ack_status::not_open);
  EXPECT_EQ(out.alerts.size(), 1u);
  // Stored with the twin.
  std::string bytes;
  encode_twin(tw, bytes);
  twin back;
  ASSERT_FALSE(decode_twin(bytes, back).has_value());
  EXPECT_TRUE(back.analysis.at("voltage").alert.acknowledged);
}

TEST_F(TwinAnalyticsTest, DataQualityFlagsCountsAndScore) {
  property_model v;
  v.min = 200;
  v.max = 250;
  v.expected_interval_ms = 1'000;
  auto m = meter_model(v);
  ASSERT_FALSE(validate(m));
  for (int i = 0; i < 50; ++i)
    read(i, 230 + noise(gen) * 0.1, &m);
  const auto& q = tw.analysis.at("voltage").quality;
  EXPECT_EQ(q.flags, 0);
  EXPECT_EQ(q.bad_rate, 0);
  EXPECT_EQ(quality_score(tw, tw.reported.at("voltage").ingest_time_ms), 1.0);
  // Out of range: applied and flagged.
  read(50, 260, &m);
  EXPECT_EQ(q.flags & quality_out_of_range, quality_out_of_range);
  EXPECT_EQ(q.out_of_range_samples, 1u);
  EXPECT_DOUBLE_EQ(q.bad_rate, 0.05);
  // Three reports missing between samples 51 and 55.
  read(51, 230, &m);
  read(55, 230, &m);
  EXPECT_EQ(q.flags & quality_gap, quality_gap);
  EXPECT_EQ(q.missing_reports, 3u);
  EXPECT_GT(q.missing_rate, 0);
  const int64_t last = tw.reported.at("voltage").ingest_time_ms;
  const double score = quality_score(tw, last);
  EXPECT_LT(score, 1.0);
  EXPECT_GT(score, 0.8);
  // Silence lowers the score (and flags a gap) as time passes.
  EXPECT_EQ(quality_flags(q, last, last + 1'500) & quality_gap, quality_gap);  // last sample's
  read(56, 230, &m);
  EXPECT_EQ(quality_flags(q, last + 1'000, last + 1'500) & quality_gap, 0);
  EXPECT_EQ(quality_flags(q, last + 1'000, last + 5'000) & quality_gap, quality_gap);
  EXPECT_LT(quality_score(tw, last + 60'000), 0.1);
  // Duplicates count against the twin's quality.
  tw.duplicates = tw.applied_records;
  EXPECT_NEAR(quality_score(tw, last + 1'000), score * 0.5, 0.05);
}

TEST_F(TwinAnalyticsTest, TimeToFailureAndHealth) {
  property_model v;
  v.failure = threshold{200, false};  // below 200 V
  auto m = meter_model(v);
  ASSERT_FALSE(validate(m));
  // Down 0.1 V a second from 230: 200 V is 300 s after the start.
  for (int i = 0; i < 100; ++i)
    read(i, 230 - 0.1 * i, &m);
  const auto& q = tw.analysis.at("voltage").quality;
  ASSERT_GT(q.failure_eta_ms, 0);
  EXPECT_NEAR(static_cast<double>(q.failure_eta_ms - t0), 300'000, 10'000);
  EXPECT_FALSE(q.failed);
  EXPECT_EQ(earliest_failure(tw), q.failure_eta_ms);
  // Within a day: health 0.5.
  EXPECT_DOUBLE_EQ(health_score(tw, t0 + 100'000), 0.5);
  // Past it.
  read(100, 199, &m);
  EXPECT_TRUE(q.failed);
  EXPECT_NEAR(health_score(tw, t0 + 101'000), 0.2, 1e-9);
  // A steady series heads nowhere.
  twin other;
  std::swap(tw, other);
  for (int i = 0; i < 100; ++i)
    read(i, 230 + noise(gen) * 0.01, &m);
  EXPECT_EQ(tw.analysis.at("voltage").quality.failure_eta_ms, 0);
  EXPECT_EQ(health_score(tw, t0 + 100'000), 1.0);
}

TEST_F(TwinAnalyticsTest, TheModelsAlertPolicyDelaysTheAlert) {
  property_model v;
  v.alert_after_samples = 5;
  auto m = meter_model(v);
  ASSERT_FALSE(validate(m));
  // The same series as without a model, where the alert comes within 6
  // samples of the shift: five anomalous samples are needed now.
  std::vector<alert_change> with, without;
  twin other;
  for (int i = 0; i < 230; ++i) {
    const double x = 230 + noise(gen) + (i >= 200 ? 8 : 0);
    auto a = read(i, x, &m);
    with.insert(with.end(), a.begin(), a.end());
    std::swap(tw, other);
    a = read(i, x);
    without.insert(without.end(), a.begin(), a.end());
    std::swap(tw, other);
  }
  ASSERT_FALSE(with.empty());
  ASSERT_FALSE(without.empty());
  EXPECT_EQ(with[0].event, alert_event::raised);
  EXPECT_EQ(with[0].time_ms - without[0].time_ms, 3'000);  // 5 samples instead of 2
}

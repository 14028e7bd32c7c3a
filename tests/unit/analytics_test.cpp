// Forecasters and anomaly detectors on synthetic series with known answers.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numbers>
#include <random>
#include <vector>

#include "actors/core/property_analytics.hpp"
#include "actors/core/wire.hpp"

#include <string>

using namespace fleettwin::core;

namespace {

constexpr int64_t t0 = 1'700'000'000'000;
constexpr int64_t second = 1000;
constexpr int64_t hour = 3'600'000;

/// Gaussian noise, the same on every run.
std::vector<double> noise(size_t n, double sigma, unsigned seed = 7) {
  std::mt19937 gen{seed};
  std::normal_distribution<double> d{0, sigma};
  std::vector<double> out(n);
  for (auto& x : out)
    x = d(gen);
  return out;
}

/// Scores every sample of `xs` (one per second).
std::vector<anomaly_result> run(const std::vector<double>& xs,
                                const property_analytics_params& p = {}) {
  property_analytics a;
  std::vector<anomaly_result> out;
  for (size_t i = 0; i < xs.size(); ++i)
    out.push_back(analyze(a, p, xs[i], t0 + static_cast<int64_t>(i) * second));
  return out;
}

/// The first index at or after `from` whose score is at least 0.5 (-1: none).
int first_alarm(const std::vector<anomaly_result>& rs, size_t from = 0) {
  for (size_t i = from; i < rs.size(); ++i)
    if (rs[i].score >= 0.5)
      return static_cast<int>(i);
  return -1;
}

}  // namespace

TEST(ForecastTest, ALinearTrendIsForecastExactly) {
  forecast_params p;
  p.phi = 1;  // undamped: a line stays a line
  forecaster_state s;
  for (int i = 0; i < 400; ++i)
    update_forecaster(s, p, 5 + 2.0 * i, t0 + i * second);
  auto points = forecast(s, p, 10 * second);
  ASSERT_EQ(points.size(), 10u);
  for (size_t k = 0; k < points.size(); ++k) {
    const double want = 5 + 2.0 * (399 + static_cast<double>(k + 1));
    EXPECT_NEAR(points[k].value, want, 1e-6) << k;
    EXPECT_EQ(points[k].time_ms, t0 + (399 + static_cast<int64_t>(k + 1)) * second);
    EXPECT_LE(points[k].lower95, points[k].lower80);
    EXPECT_LE(points[k].lower80, points[k].value);
    EXPECT_GE(points[k].upper95, points[k].upper80);
  }
  // Better than repeating the last value.
  ASSERT_TRUE(mase(s));
  EXPECT_LT(*mase(s), 0.2);
}

TEST(ForecastTest, TheDampedTrendLevelsOffAndIntervalsWidenWithTheHorizon) {
  forecast_params p;  // phi 0.98
  forecaster_state s;
  auto e = noise(300, 0.5);
  for (int i = 0; i < 300; ++i)
    update_forecaster(s, p, 10 + 0.1 * i + e[static_cast<size_t>(i)], t0 + i * second);
  auto points = forecast(s, p, 500 * second, 100 * second);
  ASSERT_EQ(points.size(), 5u);
  for (size_t k = 1; k < points.size(); ++k) {
    EXPECT_GT(points[k].value, points[k - 1].value);  // still rising...
    EXPECT_GT(points[k].upper95 - points[k].lower95, points[k - 1].upper95 - points[k - 1].lower95);
  }
  // ...but by less than the undamped line would (0.1 per step).
  EXPECT_LT(points[4].value - points[0].value, 0.1 * 400 / 4);
}

TEST(ForecastTest, ADailySeasonIsLearntAndForecast) {
  auto p = forecast_params::seasonal(24 * hour);
  forecaster_state s;
  auto truth = [](int64_t h) {
    return 10 + 5 * std::sin(2 * std::numbers::pi * static_cast<double>(h % 24) / 24);
  };
  auto e = noise(24 * 40, 0.2);
  for (int64_t h = 0; h < 24 * 40; ++h)
    update_forecaster(s, p, truth(h) + e[static_cast<size_t>(h)], t0 + h * hour);
  auto points = forecast(s, p, 24 * hour);
  ASSERT_EQ(points.size(), 24u);
  for (size_t k = 0; k < points.size(); ++k)
    EXPECT_NEAR(points[k].value, truth(24 * 40 - 1 + static_cast<int64_t>(k + 1)), 0.5) << k;
  // Far better than repeating the last value.
  ASSERT_TRUE(mase(s));
  EXPECT_LT(*mase(s), 0.6);
}

TEST(ForecastTest, TimeToThresholdOfALinearDecline) {
  // A battery losing 0.1 % a minute from 100 %: below 10 % at minute 900.
  forecast_params p;
  forecaster_state s;
  const int64_t minute = 60 * second;
  for (int64_t m = 0; m < 300; ++m)
    update_forecaster(s, p, 100 - 0.1 * static_cast<double>(m), t0 + m * minute);
  auto c = time_to_threshold(s, p, 10, false, 24 * hour);
  ASSERT_TRUE(c.expected_ms);
  EXPECT_NEAR(static_cast<double>(*c.expected_ms - t0) / minute, 900, 2);
  ASSERT_TRUE(c.earliest_ms);
  EXPECT_LE(*c.earliest_ms, *c.expected_ms);
  if (c.latest_ms) {  // the band's far edge may never cross within the horizon
    EXPECT_GE(*c.latest_ms, *c.expected_ms);
  }
  // A threshold the trend moves away from is never reached by the forecast.
  auto up = time_to_threshold(s, p, 150, true, 24 * hour);
  EXPECT_FALSE(up.expected_ms);
  // Nor one beyond the horizon.
  EXPECT_FALSE(time_to_threshold(s, p, 10, false, 60 * minute).expected_ms);
}

/// A forecaster's state in the formats before 3 (every double in 8 bytes); format 1
/// without the errors of the two starting points.
std::string legacy_forecaster_bytes(const forecaster_state& s, int format) {
  std::string out(1, static_cast<char>(format));
  for (double d : {s.level, s.trend, s.error_var, s.interval_ms, s.abs_error_sum,
                   s.naive_abs_error_sum, s.last_value})
    wire::put_double(out, d);
  if (format == 2)
    for (double d : {s.smooth_error, s.persist_error})
      wire::put_double(out, d);
  wire::put_signed(out, s.last_time_ms);
  wire::put_varint(out, s.samples);
  wire::put_varint(out, season_buckets);
  for (float f : s.season) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    wire::put_varint(out, bits);
  }
  return out;
}

/// A detector's state in the formats before 4 (every double in 8 bytes); format 2
/// without the pause and the quantum, format 1 also without the baseline's scale.
std::string legacy_detector_bytes(const detector_state& s, int format) {
  std::string out(1, static_cast<char>(format));
  for (double d : {s.spread, s.var_short, s.var_long, s.base_level, s.base_trend, s.cusum_up,
                   s.cusum_down, s.run_value})
    wire::put_double(out, d);
  if (format >= 2)
    for (double d : {s.base_spread, s.base_last_z, s.base_lag_product, s.base_square})
      wire::put_double(out, d);
  wire::put_signed(out, s.run_since_ms);
  wire::put_signed(out, s.last_time_ms);
  for (uint64_t n : {uint64_t{s.run_length}, uint64_t{s.samples}, uint64_t{s.cusum_steps},
                     uint64_t{s.shifted_for}, uint64_t{s.base_samples}})
    wire::put_varint(out, n);
  out.push_back(static_cast<char>(s.shift));
  out.push_back(s.varied ? 1 : 0);
  if (format >= 3) {
    out.push_back(static_cast<char>((s.paused ? 1 : 0) | (s.resuming ? 2 : 0)));
    wire::put_signed(out, s.settle_until_ms);
    wire::put_double(out, s.quantum);
  }
  return out;
}

TEST(ForecastTest, StateRoundTripsBitExactly) {
  forecast_params p;
  p.period_ms = hour;
  forecaster_state s;
  auto e = noise(500, 1.0);
  for (int64_t i = 0; i < 500; ++i)
    update_forecaster(s, p, 3 * std::sin(static_cast<double>(i) / 7) + e[static_cast<size_t>(i)],
                      t0 + i * 17 * second);
  std::string bytes;
  encode_forecaster(s, bytes);
  std::string_view in = bytes;
  forecaster_state back;
  ASSERT_TRUE(decode_forecaster(in, back));
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(back, s);
  // Truncated input is refused, never read past.
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::string_view cut{bytes.data(), n};
    forecaster_state x;
    EXPECT_FALSE(decode_forecaster(cut, x)) << n;
  }
  // Format 2 wrote every double in 8 bytes; format 1, without the errors of the
  // forecast's two starting points, reads as a state that has yet to learn them (the
  // smoothed level alone).
  std::string v2 = legacy_forecaster_bytes(s, 2);
  in = v2;
  ASSERT_TRUE(decode_forecaster(in, back));
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(back, s);
  // (A learned state's doubles are fractions: a tag byte each more than format 2; the
  // savings are in the zeros and whole numbers of young and quiet states.)
  EXPECT_LE(bytes.size(), v2.size() + 9);
  std::string v1 = legacy_forecaster_bytes(s, 1);
  in = v1;
  ASSERT_TRUE(decode_forecaster(in, back));
  EXPECT_TRUE(in.empty());
  auto old = s;
  old.smooth_error = old.persist_error = 0;
  EXPECT_EQ(back, old);
  EXPECT_EQ(forecast_origin(back, p), back.level);
}

TEST(ForecastTest, AWanderingSeriesLeansOnItsLastValueANoisyOneOnItsLevel) {
  // A random walk: the last value is the best start; white noise around a
  // level: the smoothed level is. Either way the one-step forecast about
  // matches the naive one or beats it (the smoothed level alone would be
  // 1.3 times as far off on the walk).
  std::mt19937 gen{5};
  std::normal_distribution<double> step{0, 1};
  forecast_params p;
  forecaster_state walk, noisy;
  double x = 100;
  for (int64_t i = 0; i < 3000; ++i) {
    x += step(gen);
    update_forecaster(walk, p, x, t0 + i * second);
    update_forecaster(noisy, p, 100 + step(gen), t0 + i * second);
  }
  EXPECT_GT(walk.smooth_error, walk.persist_error);
  EXPECT_LT(noisy.smooth_error, noisy.persist_error);
  EXPECT_LT(*mase(walk), 1.1);
  EXPECT_LT(*mase(noisy), 0.9);
}

TEST(AnomalyTest, ASeriesReportedInStepsOfItsResolutionDoesNotSpikeByOneStep) {
  // A battery draining 0.006 % a sample, reported to 0.1 %: long flat runs,
  // then one step (its model lets it keep a value for 30 minutes). Only
  // the 2 % drop at sample 1500 is a spike.
  property_analytics_params p;
  p.detector.stuck_after_ms = 30 * 60 * second;
  p.detector.stuck_samples = 0;
  std::vector<double> xs;
  for (int i = 0; i < 2000; ++i)
    xs.push_back(std::round((80 - 0.006 * i) * 10) / 10 - (i == 1500 ? 2 : 0));
  auto rs = run(xs, p);
  EXPECT_EQ(first_alarm(rs), 1500);
  EXPECT_EQ(rs[1500].kind, anomaly_kind::spike);
  EXPECT_EQ(first_alarm(rs, 1510), -1);
}

TEST(AnomalyTest, ASpikeIsFoundAtItsIndexAndNowhereElse) {
  auto xs = noise(600, 1.0);
  for (auto& x : xs)
    x += 50;
  xs[300] += 12;
  auto rs = run(xs);
  EXPECT_GE(rs[300].score, 0.5);
  EXPECT_EQ(rs[300].kind, anomaly_kind::spike);
  for (size_t i = 0; i < rs.size(); ++i) {
    if (i != 300) {
      EXPECT_LT(rs[i].score, 0.5) << i << " " << to_string(rs[i].kind);
    }
  }
}

TEST(AnomalyTest, ALevelShiftIsFoundWithinFiveSamples) {
  // Five standard deviations up from sample 300 on.
  auto xs = noise(600, 1.0, 11);
  for (size_t i = 300; i < xs.size(); ++i)
    xs[i] += 5;
  auto rs = run(xs);
  EXPECT_EQ(first_alarm(rs), first_alarm(rs, 300)) << "no alarm before the shift";
  const int at = first_alarm(rs, 300);
  ASSERT_GE(at, 300);
  EXPECT_LE(at, 304);
  // Named a level shift once the CUSUM says so.
  bool named = false;
  for (int i = at; i < at + 10; ++i)
    named |= rs[static_cast<size_t>(i)].kind == anomaly_kind::level_shift;
  EXPECT_TRUE(named);
  // A shift that persists becomes the new normal: the alarm clears.
  EXPECT_LT(rs.back().score, 0.5);
}

TEST(AnomalyTest, ASlowDriftIsADrift) {
  auto xs = noise(900, 1.0, 5);
  for (size_t i = 400; i < xs.size(); ++i)
    xs[i] += 0.05 * static_cast<double>(i - 400);
  auto rs = run(xs);
  EXPECT_EQ(first_alarm(rs), first_alarm(rs, 400)) << "no alarm before the drift";
  const int at = first_alarm(rs, 400);
  ASSERT_GE(at, 400);
  EXPECT_LE(at, 480);
  EXPECT_EQ(rs[static_cast<size_t>(at)].kind, anomaly_kind::drift);
}

TEST(AnomalyTest, ASeriesThatAlwaysTrendsIsNotDrifting) {
  auto xs = noise(900, 1.0, 9);
  for (size_t i = 0; i < xs.size(); ++i)
    xs[i] += 100 - 0.2 * static_cast<double>(i);
  EXPECT_EQ(first_alarm(run(xs)), -1);
}

TEST(AnomalyTest, AStuckSensorIsFlaggedAtTheModelsLimit) {
  auto xs = noise(400, 1.0, 3);
  for (size_t i = 200; i < xs.size(); ++i)
    xs[i] = 42.5;
  property_analytics_params p;
  p.detector.stuck_samples = 10;
  auto rs = run(xs, p);
  // The run of 42.5 starts at 200: its tenth sample is 209.
  for (size_t i = 200; i < 209; ++i)
    EXPECT_NE(rs[i].kind, anomaly_kind::stuck) << i;
  EXPECT_EQ(rs[209].kind, anomaly_kind::stuck);
  EXPECT_EQ(rs.back().kind, anomaly_kind::stuck);
  // By time: 30 s unchanged at one sample a second.
  property_analytics_params by_time;
  by_time.detector.stuck_samples = 0;
  by_time.detector.stuck_after_ms = 30 * second;
  auto rt = run(xs, by_time);
  EXPECT_NE(rt[229].kind, anomaly_kind::stuck);
  EXPECT_EQ(rt[230].kind, anomaly_kind::stuck);
  // A property that never varied (a constant setting) is not stuck.
  EXPECT_EQ(first_alarm(run(std::vector<double>(100, 7.0), p)), -1);
}

TEST(AnomalyTest, AVarianceIncreaseIsFound) {
  auto xs = noise(700, 1.0, 21);
  auto loud = noise(700, 3.0, 22);
  for (size_t i = 400; i < xs.size(); ++i)
    xs[i] = loud[i];
  auto rs = run(xs);
  bool variance = false;
  for (size_t i = 400; i < 450; ++i)
    variance |= rs[i].variance >= 0.5;
  EXPECT_TRUE(variance);
  for (size_t i = 0; i < 400; ++i)
    EXPECT_LT(rs[i].variance, 0.5) << i;
}

TEST(AnomalyTest, ARateOfChangeAboveTheModelsIsASpike) {
  std::vector<double> xs;
  for (int i = 0; i < 50; ++i)
    xs.push_back(20 + 0.5 * (i % 2));  // wobbling by 0.5 a second
  xs.push_back(xs.back() + 3);         // 3 units in one second
  property_analytics_params p;
  p.detector.max_rate_per_s = 1;
  auto rs = run(xs, p);
  EXPECT_EQ(rs.back().kind, anomaly_kind::spike);
  EXPECT_EQ(first_alarm(rs), 50);
}

TEST(AnomalyTest, AValueWrongForItsSeasonIsASpike) {
  // Daily load, hourly: 10 at night, 30 by day; 30 at 3 am is anomalous
  // although 30 is a normal value.
  property_analytics_params p;
  p.forecast = forecast_params::seasonal(24 * hour);
  property_analytics a;
  auto e = noise(24 * 30, 0.5, 4);
  auto load = [](int64_t h) { return (h % 24) >= 8 && (h % 24) < 20 ? 30.0 : 10.0; };
  int alarms = 0;
  for (int64_t h = 0; h < 24 * 30; ++h) {
    auto r = analyze(a, p, load(h) + e[static_cast<size_t>(h)], t0 + h * hour);
    if (h > 24 * 20 && r.score >= 0.5)
      ++alarms;
  }
  EXPECT_EQ(alarms, 0);
  const int64_t three_am = 24 * 30 + 3;
  auto r = analyze(a, p, 30, t0 + three_am * hour);
  EXPECT_GE(r.score, 0.5);
  EXPECT_EQ(r.kind, anomaly_kind::spike);
}

TEST(AnomalyTest, StateRoundTripsBitExactlyAndContinuesIdentically) {
  auto xs = noise(800, 2.0, 13);
  for (size_t i = 500; i < xs.size(); ++i)
    xs[i] += 0.03 * static_cast<double>(i - 500);
  property_analytics_params p;
  p.forecast.period_ms = 60 * second;
  property_analytics a;
  for (size_t i = 0; i < 600; ++i)
    analyze(a, p, xs[i], t0 + static_cast<int64_t>(i) * second);
  std::string bytes;
  encode_property_analytics(a, bytes);
  std::string_view in = bytes;
  property_analytics b;
  ASSERT_TRUE(decode_property_analytics(in, b));
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(a, b);
  for (size_t i = 600; i < xs.size(); ++i) {
    const auto t = t0 + static_cast<int64_t>(i) * second;
    auto ra = analyze(a, p, xs[i], t);
    auto rb = analyze(b, p, xs[i], t);
    ASSERT_EQ(ra.score, rb.score) << i;  // bit-identical, not merely close
    ASSERT_EQ(ra.kind, rb.kind) << i;
  }
  EXPECT_EQ(a, b);
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::string_view cut{bytes.data(), n};
    property_analytics x;
    EXPECT_FALSE(decode_property_analytics(cut, x)) << n;
  }
}

TEST(AnomalyTest, OlderAndNonFiniteSamplesAreNotFoldedIn) {
  property_analytics a;
  property_analytics_params p;
  analyze(a, p, 1, t0 + 10 * second);
  auto before = a;
  EXPECT_EQ(analyze(a, p, 100, t0).score, 0);
  EXPECT_EQ(analyze(a, p, std::nan(""), t0 + 20 * second).score, 0);
  EXPECT_EQ(a, before);
}

TEST(AnomalyTest, AWanderingSeriesIsNotAShiftButAJumpInItIs) {
  // A slow mean-reverting process (AR(1), 0.95 per sample): it strays far
  // from any slow baseline for long stretches, which is its normal.
  std::mt19937 gen{11};
  std::normal_distribution<double> d{0, 1};
  std::vector<double> xs(6000);
  double x = 0;
  for (auto& v : xs) {
    x = 0.95 * x + d(gen);
    v = 100 + x;
  }
  auto rs = run(xs);
  size_t shifted = 0;
  for (size_t i = 0; i < 5000; ++i)
    shifted += rs[i].shift >= 0.5;
  EXPECT_LT(shifted, 50u) << "samples scored a shift or drift out of 5000";
  // A jump of 12 spreads of its steps in it is still found at once.
  for (size_t i = 5000; i < xs.size(); ++i)
    xs[i] += 12;
  rs = run(xs);
  const int at = first_alarm(rs, 5000);
  ASSERT_GE(at, 5000);
  EXPECT_LE(at, 5002);
}

TEST(AnomalyTest, StateOfTheFirstFormatIsStillRead) {
  detector_state s;
  s.spread = 1.5;
  s.samples = 42;
  s.varied = true;
  std::string bytes;
  encode_detector(s, bytes);
  ASSERT_EQ(bytes[0], 4);
  EXPECT_LT(bytes.size(), legacy_detector_bytes(s, 3).size() / 2);
  for (const auto& old :
       {legacy_detector_bytes(s, 1), legacy_detector_bytes(s, 2), legacy_detector_bytes(s, 3)}) {
    std::string_view in = old;
    detector_state back;
    ASSERT_TRUE(decode_detector(in, back));
    EXPECT_TRUE(in.empty());
    EXPECT_EQ(back, s);
  }
  // A paused, settling state round-trips.
  s.paused = true;
  s.resuming = true;
  s.settle_until_ms = 1'700'000'030'000;
  bytes.clear();
  encode_detector(s, bytes);
  std::string_view in = bytes;
  detector_state back;
  ASSERT_TRUE(decode_detector(in, back));
  EXPECT_EQ(back, s);
}

// fleettwin-analytics: reading series, scoring them with the twins' own
// analytics, and the evaluation's arithmetic on series with known answers.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "tools/analytics/corpus.hpp"
#include "tools/analytics/evaluate.hpp"
#include "tools/analytics/run.hpp"
#include "tools/analytics/series.hpp"

using namespace fleettwin;
using namespace fleettwin::analytics;

TEST(AnalyticsToolTest, TimestampsInUnixMsAndIso8601) {
  EXPECT_EQ(parse_timestamp("1404172800000"), 1'404'172'800'000);
  EXPECT_EQ(parse_timestamp("2014-07-01 00:00:00"), 1'404'172'800'000);
  EXPECT_EQ(parse_timestamp("2014-07-01T00:00:00Z"), 1'404'172'800'000);
  EXPECT_EQ(parse_timestamp("2014-07-01T02:00:00+02:00"), 1'404'172'800'000);
  EXPECT_EQ(parse_timestamp("2014-07-01T00:00:00.250"), 1'404'172'800'250);
  EXPECT_EQ(parse_timestamp("\"2014-07-01\""), 1'404'172'800'000);
  EXPECT_EQ(parse_timestamp("1969-12-31T23:59:59Z"), -1000);
  EXPECT_FALSE(parse_timestamp("timestamp"));
  EXPECT_FALSE(parse_timestamp("2014-13-01"));
  EXPECT_FALSE(parse_timestamp("2014-07-01 25:00"));
  EXPECT_FALSE(parse_timestamp("2014-07-01T00:00:00 CET"));
}

TEST(AnalyticsToolTest, ReadsCsvWithHeaderAndLabelsAndSaysWhatIsWrong) {
  const auto dir = std::filesystem::temp_directory_path() / "fleettwin-analytics-tool-test";
  std::filesystem::create_directories(dir / "meter");
  const auto good = dir / "meter" / "m1.voltage.csv";
  std::ofstream{good} << "timestamp,value,label\n"
                         "2014-07-01 00:00:10,231,0\n"
                         "2014-07-01 00:00:00,230,drift\n"
                         "2014-07-01 00:00:20,,0\n";
  series s;
  std::string error;
  ASSERT_TRUE(read_series(good.string(), s, error)) << error;
  ASSERT_EQ(s.rows.size(), 2u);     // the empty value is a missing reading
  EXPECT_EQ(s.rows[0].value, 230);  // sorted by time
  EXPECT_EQ(s.rows[0].label, 1);
  EXPECT_EQ(s.rows[0].label_type, "drift");
  EXPECT_EQ(s.rows[1].label, 0);
  const auto bad = dir / "bad.csv";
  std::ofstream{bad} << "1000,1\n2000,one\n";
  series b;
  EXPECT_FALSE(read_series(bad.string(), b, error));
  EXPECT_NE(error.find("bad.csv:2: \"one\" is not a number"), std::string::npos) << error;
  auto files = csv_files(dir.string(), error);
  EXPECT_EQ(files.size(), 2u);
  std::filesystem::remove_all(dir);
}

TEST(AnalyticsToolTest, RunScoresAsTheTwinsDoAndEvaluationCountsEvents) {
  // Noise, then a 6-sigma level shift for 100 rows; a clean copy beside it.
  std::mt19937 gen{3};
  std::normal_distribution<double> noise{0, 1};
  series shifted, clean;
  shifted.property = clean.property = "x";
  for (int i = 0; i < 1000; ++i) {
    const bool in = i >= 500 && i < 600;
    shifted.rows.push_back(
        {i * 1000LL, 100 + noise(gen) + (in ? 6 : 0), in ? 1 : 0, in ? "level_shift" : ""});
    clean.rows.push_back({i * 1000LL, 100 + noise(gen), 0, ""});
  }
  const auto r = run(shifted, nullptr, 0);
  ASSERT_EQ(r.rows.size(), shifted.rows.size());
  EXPECT_FALSE(r.rows[0].has_forecast);
  EXPECT_TRUE(r.rows[1].has_forecast);
  // Found within a few rows of the shift's start, with an alert.
  size_t first = 0;
  for (size_t i = 500; i < 600 && !first; ++i)
    if (r.rows[i].score >= 0.5)
      first = i;
  ASSERT_GT(first, 0u);
  EXPECT_LE(first, 505u);
  bool raised = false;
  for (size_t i = 500; i < 610; ++i)
    raised |= r.rows[i].alert == core::alert_event::raised;
  EXPECT_TRUE(raised);
  evaluation e;
  e.add(shifted, r, 10);
  e.add(clean, run(clean, nullptr, 0), 10);
  ASSERT_EQ(e.by_type.count("level_shift"), 1u);
  EXPECT_EQ(e.by_type["level_shift"].events, 1u);
  EXPECT_EQ(e.by_type["level_shift"].detected, 1u);
  EXPECT_EQ(e.by_type["level_shift"].delays.at(0), static_cast<double>(first - 500));
  EXPECT_EQ(e.labelled_rows, 100u);
  EXPECT_EQ(e.clean_rows, 1000u);
  EXPECT_GE(e.true_alarms, 1u);
  // White noise: the forecasts beat repeating the last value.
  ASSERT_EQ(e.mase_naive.size(), 2u);
  EXPECT_LT(median(e.mase_naive), 1.0);
  std::ostringstream table, json;
  print_table(table, e);
  print_json(json, e);
  EXPECT_NE(table.str().find("level_shift"), std::string::npos) << table.str();
  EXPECT_NE(json.str().find("\"event_recall\":1"), std::string::npos) << json.str();
}

TEST(AnalyticsToolTest, TheCorpusIsLabelledAndReproducible) {
  const auto dir = std::filesystem::temp_directory_path() / "fleettwin-corpus-test";
  std::filesystem::remove_all(dir);
  corpus_options o;
  o.dir = (dir / "a").string();
  o.assets = 6;
  o.hours = 1;
  std::string summary, error;
  ASSERT_TRUE(write_corpus(o, summary, error)) << error;
  o.dir = (dir / "b").string();
  ASSERT_TRUE(write_corpus(o, summary, error)) << error;
  auto a = csv_files((dir / "a").string(), error);
  auto b = csv_files((dir / "b").string(), error);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  std::set<std::string> types;
  for (size_t i = 0; i < a.size(); ++i) {
    std::ifstream fa{a[i]}, fb{b[i]};
    std::stringstream sa, sb;
    sa << fa.rdbuf();
    sb << fb.rdbuf();
    EXPECT_EQ(sa.str(), sb.str()) << a[i];
    series s;
    ASSERT_TRUE(read_series(a[i], s, error)) << error;
    for (const auto& r : s.rows)
      if (r.label == 1)
        types.insert(r.label_type);
  }
  // Six assets: one fault of each type.
  EXPECT_EQ(types, (std::set<std::string>{"drift", "dropout", "level_shift", "spike", "stuck",
                                          "variance"}));
  std::filesystem::remove_all(dir);
}

TEST(AnalyticsToolTest, AnAssetsSeriesReplayTogetherAndItsStatesAreJudged) {
  // A machine's rpm with its `running` state: it stops twice. Replayed
  // together under a model that analyses rpm while running, the stops pass
  // unflagged; replayed alone (no state to judge by) they alarm.
  core::asset_model m;
  m.kind = "machine";
  m.states.push_back({"running", "reported.running = true", {}});
  core::property_model rpm;
  rpm.name = "rpm";
  rpm.analyse_in = {"running"};
  rpm.settle_ms = 10'000;
  m.properties.push_back(rpm);
  ASSERT_FALSE(core::validate(m));
  std::mt19937 gen{9};
  std::normal_distribution<double> noise{0, 10};
  series speed, running;
  speed.kind = running.kind = "machine";
  speed.property = "rpm";
  running.property = "running";
  running.boolean = true;
  for (int i = 0; i < 1000; ++i) {
    const bool on = !(i >= 300 && i < 320) && !(i >= 700 && i < 705);
    const int64_t t = i * 5'000LL;
    speed.rows.push_back({t, on ? 1500 + noise(gen) : 0.0, 0, ""});
    running.rows.push_back({t, on ? 1.0 : 0.0, 0, ""});
  }
  auto flagged = [](const run_result& r) {
    size_t n = 0;
    for (const auto& row : r.rows)
      n += row.score >= 0.5;
    return n;
  };
  const auto together = run_asset({&speed, &running}, &m, 0);
  ASSERT_EQ(together.size(), 2u);
  ASSERT_EQ(together[0].rows.size(), speed.rows.size());
  EXPECT_EQ(flagged(together[0]), 0u);
  EXPECT_EQ(flagged(together[1]), 0u);  // a state: applied, never scored
  EXPECT_GT(flagged(run(speed, m.find("rpm"), 0)), 0u);
  // The forecast error counts only the rows the forecaster learnt from.
  EXPECT_LT(together[0].scored, speed.rows.size() - 25);
}

TEST(AnalyticsToolTest, BooleanSeriesReadAsStates) {
  const auto dir = std::filesystem::temp_directory_path() / "fleettwin-boolean-test";
  std::filesystem::create_directories(dir);
  std::ofstream{dir / "ok.csv"} << "timestamp,value\n1000,true\n2000,false\n";
  std::ofstream{dir / "mixed.csv"} << "timestamp,value\n1000,true\n2000,3.5\n";
  series s;
  std::string error;
  ASSERT_TRUE(read_series((dir / "ok.csv").string(), s, error)) << error;
  EXPECT_TRUE(s.boolean);
  ASSERT_EQ(s.rows.size(), 2u);
  EXPECT_EQ(s.rows[0].value, 1);
  EXPECT_EQ(s.rows[1].value, 0);
  series bad;
  EXPECT_FALSE(read_series((dir / "mixed.csv").string(), bad, error));
  EXPECT_NE(error.find("\"3.5\" in a series of true and false"), std::string::npos) << error;
  std::filesystem::remove_all(dir);
}

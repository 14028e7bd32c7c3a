// A scenario kept across restarts reads back as it was written: definition,
// inputs (through the parser), parts, and the results of its last run and sweep.

#include <gtest/gtest.h>

#include "services/scenario/scenario_codec.hpp"

namespace fleettwin::scenario {
namespace {

scenario sample() {
  scenario s;
  s.id = "heat";
  s.description = "a heat wave";
  s.owner = "ops";
  s.tenant = "acme";
  s.created_ms = 1'700'000'000'000;
  s.fork.below = "feeders/F0";
  s.fork.at_ms = 1'699'999'000'000;
  s.partitions = {0, 2};
  s.partition_count = 4;
  s.parts = {remote_part{"127.0.0.1:4252", {1, 3}, 1'700'000'000'005}};
  s.part_id = "heat.0001";
  s.forward_as = "x-fleettwin-caller=...";
  s.raw_inputs = {"first", "second"};
  s.state = run_state::done;
  auto last = std::make_shared<run_outcome>();
  last->options.horizon_ms = 3'600'000;
  last->options.kpis = {{"feeders/F0", "power"}};
  last->baseline.times = {1, 2};
  last->baseline.kpis = {{{"feeders/F0", "power"}, {1.5, std::nullopt}}};
  last->scenario = last->baseline;
  last->scenario.alerts = {
      {"m-1", "power", 2, core::alert_severity::critical, core::anomaly_kind::spike, 0.9}};
  last->scenario.failures = {{"m-2", "power", 0, 7}};
  last->scenario.alerts_total = 3;
  last->scenario.samples = 40;
  last->wall_s = 0.25;
  last->finished_ms = 1'700'000'100'000;
  s.last = last;
  auto sweep = std::make_shared<sweep_outcome>();
  sweep->sweep.parameters = {{2, "max", {0, 11}}};
  sweep->sweep.objective_parameter = 0;
  sweep->sweep.maximize = true;
  sweep->sweep.constraints = {{{{"feeders/F0", "utilisation"}, core::kpi_stat::peak, 0}, 0.9, {}}};
  sweep->sweep.method = core::sweep_method::cobyla;
  sweep->result.points = {{{4.5}, 4.5, {0.89}, true, 0}, {{6}, 6, {0.95}, false, 0.05}};
  sweep->result.best = 0;
  sweep->result.found = true;
  s.last_sweep = sweep;
  return s;
}

input_parser parser() {
  return [](const std::string& raw, std::string& error) -> std::optional<core::scenario_input> {
    if (raw == "broken") {
      error = "not an input";
      return std::nullopt;
    }
    return core::scenario_input{core::move_input{{}, "feeders/" + raw, "feeds"}};
  };
}

TEST(scenario_codec, a_scenario_reads_back_as_written) {
  const auto s = sample();
  std::string bytes;
  encode_scenario(s, bytes);
  scenario back;
  ASSERT_FALSE(decode_scenario(bytes, parser(), back));
  EXPECT_EQ(back.id, s.id);
  EXPECT_EQ(back.description, s.description);
  EXPECT_EQ(back.tenant, "acme");
  EXPECT_EQ(back.fork.below, "feeders/F0");
  EXPECT_EQ(back.fork.at_ms, s.fork.at_ms);
  EXPECT_EQ(back.partitions, s.partitions);
  ASSERT_EQ(back.parts.size(), 1u);
  EXPECT_EQ(back.parts[0].partitions, (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(back.part_id, s.part_id);
  EXPECT_EQ(back.raw_inputs, s.raw_inputs);
  ASSERT_EQ(back.inputs.size(), 2u);
  EXPECT_EQ(std::get<core::move_input>(back.inputs[1]).parent, "feeders/second");
  EXPECT_EQ(back.state, run_state::done);
  EXPECT_EQ(back.snapshot, nullptr);
  ASSERT_TRUE(back.last);
  EXPECT_EQ(back.last->options.kpis, s.last->options.kpis);
  EXPECT_EQ(back.last->baseline.kpis[0].values, s.last->baseline.kpis[0].values);
  EXPECT_EQ(back.last->scenario.alerts, s.last->scenario.alerts);
  EXPECT_EQ(back.last->scenario.failures, s.last->scenario.failures);
  EXPECT_EQ(back.last->scenario.samples, 40u);
  EXPECT_EQ(back.last->finished_ms, s.last->finished_ms);
  ASSERT_TRUE(back.last_sweep);
  EXPECT_EQ(back.last_sweep->sweep.method, core::sweep_method::cobyla);
  EXPECT_EQ(back.last_sweep->sweep.constraints[0].max, 0.9);
  ASSERT_EQ(back.last_sweep->result.points.size(), 2u);
  EXPECT_EQ(back.last_sweep->result.points[1].constraint_values[0], 0.95);
  EXPECT_EQ(back.last_sweep->result.best, 0u);
  // Written again, the same bytes.
  std::string again;
  encode_scenario(back, again);
  EXPECT_EQ(again, bytes);
}

TEST(scenario_codec, a_running_scenario_is_kept_as_before_its_run) {
  auto s = sample();
  s.state = run_state::running;
  std::string bytes;
  encode_scenario(s, bytes);
  scenario back;
  ASSERT_FALSE(decode_scenario(bytes, parser(), back));
  EXPECT_EQ(back.state, run_state::created);
}

TEST(scenario_codec, corrupt_or_unparsable_records_say_why) {
  auto s = sample();
  std::string bytes;
  encode_scenario(s, bytes);
  scenario back;
  for (size_t cut : {size_t{0}, size_t{1}, bytes.size() / 2, bytes.size() - 1}) {
    const auto err = decode_scenario(std::string_view{bytes}.substr(0, cut), parser(), back);
    ASSERT_TRUE(err) << cut;
  }
  s.raw_inputs = {"broken"};
  encode_scenario(s, bytes);
  const auto err = decode_scenario(bytes, parser(), back);
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("input 1 no longer parses: not an input"), std::string::npos) << *err;
}

}  // namespace
}  // namespace fleettwin::scenario

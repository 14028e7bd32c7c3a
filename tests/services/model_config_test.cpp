// Asset models from TOML: the shipped file, and errors that say where and
// what to fix.

#include <gtest/gtest.h>

#include "services/node/model_config.hpp"

using namespace fleettwin;

namespace {

std::vector<core::asset_model> parse(const std::string& text, std::string& error) {
  return node::parse_model_config(text, "models.toml", error);
}

}  // namespace

TEST(ModelConfigTest, TheShippedModelsCoverTheSimulatorsKinds) {
  std::string error;
  auto models = node::load_model_config(FLEETTWIN_SOURCE_DIR "/deploy/models.toml", error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_EQ(models.size(), 3u);
  std::map<std::string, std::vector<std::string>> sim_metrics{
      {"vehicle", {"speed", "battery", "position.lat", "position.lon", "odometer"}},
      {"machine", {"temperature", "vibration", "rpm", "running"}},
      {"meter", {"voltage", "current", "power"}}};
  for (const auto& m : models) {
    ASSERT_TRUE(sim_metrics.contains(m.kind)) << m.kind;
    for (const auto& name : sim_metrics[m.kind])
      EXPECT_NE(m.find(name), nullptr) << m.kind << " has no model of " << name;
  }
  const auto& vehicle = *std::find_if(models.begin(), models.end(),
                                      [](const auto& m) { return m.kind == "vehicle"; });
  const auto* battery = vehicle.find("battery");
  ASSERT_NE(battery, nullptr);
  EXPECT_EQ(battery->unit, "%");
  EXPECT_EQ(battery->min, 0);
  EXPECT_EQ(battery->max, 100);
  EXPECT_EQ(battery->expected_interval_ms, 30'000);
  EXPECT_EQ(battery->stuck_after_ms, 30 * 60'000);
  ASSERT_TRUE(battery->failure);
  EXPECT_EQ(*battery->failure, (core::threshold{10, false}));
  EXPECT_TRUE(vehicle.find("position.lat")->sensitive);
  EXPECT_FALSE(battery->sensitive);
  const auto& meter =
      *std::find_if(models.begin(), models.end(), [](const auto& m) { return m.kind == "meter"; });
  EXPECT_EQ(meter.find("voltage")->period_ms, 24 * 3'600'000);
  EXPECT_EQ(meter.find("voltage")->warning, (core::threshold{207, false}));
}

TEST(ModelConfigTest, ErrorsSayWhereAndWhatToFix) {
  struct bad {
    std::string text;
    std::string says;
  };
  const bad cases[] = {
      {"[[model]]\nkind = \"v\"\n[model.properties.b]\nrange = [100, 0]\n",
       "models.toml:1: model \"v\", property \"b\": the range's minimum (100) must be below its "
       "maximum (0)"},
      {"[[model]]\nkind = \"v\"\n[model.properties.b]\nunits = \"%\"\n",
       "models.toml:4: property \"b\" has no setting \"units\""},
      {"[[model]]\nkind = \"v\"\n[model.properties.b]\nexpected_interval = \"soon\"\n",
       "models.toml:4: property \"b\": expected_interval must be a duration"},
      {"[[model]]\nkind = \"v\"\n[model.properties.b]\nwarning = \"20\"\n",
       "models.toml:4: property \"b\": warning: a threshold reads \"< 20\" or \"> 7.1\", not "
       "\"20\""},
      {"[[model]]\nkind = \"v\"\n[model.properties.b]\ntype = \"text\"\nrange = [0, 1]\n",
       "ranges, rates, thresholds and periods need a number or integer type, not text"},
      {"[[model]]\nkind = \"v\"\n[model.properties.b]\nwarning = \"< 10\"\ncritical = \"< 20\"\n",
       "the critical threshold (< 20) must lie beyond the warning one (< 10)"},
      {"[[model]]\nkind = \"v\"\n[[model]]\nkind = \"v\"\n", "model \"v\" is declared twice"},
      {"[[model]]\ndescription = \"no kind\"\n", "a model needs the kind it describes"},
      {"[[models]]\nkind = \"v\"\n", "unknown section \"models\""},
      {"[[model]]\nkind = \"v\"\n[model.properties.b]\nsensitivity = 0\n",
       "sensitivity must be above 0"},
      {"[[model]\n", "models.toml:1:"},
      {"[[model]]\nkind = \"v\"\n[model.properties.b]\nalert_after_samples = 0\n",
       "models.toml:4: property \"b\": alert_after_samples must be a whole number from 1 to 1000"},
      {"[[model]]\nkind = \"v\"\n[model.properties.b]\nanalyse_in = [\"moving\"]\n",
       "property \"b\": analyse_in names \"moving\", which is not a state of the model (it "
       "declares none)"},
      {"[[model]]\nkind = \"v\"\n[model.states]\nmoving = \"reported.speed >\"\n",
       "model \"v\", state \"moving\": condition at offset"},
      {"[[model]]\nkind = \"v\"\n[model.states]\nup = \"connectivity = online\"\n",
       "model \"v\", state \"up\": a condition cannot read connectivity"},
      {"[[model]]\nkind = \"v\"\n[model.states]\nmoving = 1\n",
       "models.toml:4: state \"moving\" must be a condition in quotes"},
      {"[[model]]\nkind = \"v\"\n[model.properties.b]\nanalyse_in = \"moving\"\n",
       "analyse_in must be a list of the model's states"},
      {"[[model]]\nkind = \"v\"\n[model.properties.b]\nsettle = \"1m\"\n",
       "settle applies after the twin enters a state of analyse_in; name them"},
  };
  for (const auto& c : cases) {
    std::string error;
    auto models = parse(c.text, error);
    EXPECT_TRUE(models.empty()) << c.text;
    EXPECT_NE(error.find(c.says), std::string::npos) << c.text << "\n  said: " << error;
  }
}

TEST(ModelConfigTest, DurationsReadAsStringsOrMilliseconds) {
  std::string error;
  auto models = parse(
      "[[model]]\nkind = \"m\"\n[model.properties.a]\nexpected_interval = 1500\nperiod = \"7d\"\n"
      "stuck_after = \"2.5s\"\n",
      error);
  ASSERT_EQ(models.size(), 1u) << error;
  const auto* a = models[0].find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->expected_interval_ms, 1500);
  EXPECT_EQ(a->period_ms, 7 * 86'400'000LL);
  EXPECT_EQ(a->stuck_after_ms, 2500);
}

TEST(ModelConfigTest, AlertPoliciesAreRead) {
  std::string error;
  auto models = parse(
      "[[model]]\nkind = \"m\"\n[model.properties.a]\nalert_after_samples = 4\n"
      "alert_after = \"1m\"\nclear_after_samples = 6\nclear_after = \"10m\"\n"
      "[model.properties.b]\n",
      error);
  ASSERT_EQ(models.size(), 1u) << error;
  const auto* a = models[0].find("a");
  ASSERT_NE(a, nullptr);
  const auto p = core::alert_policy_of(a);
  EXPECT_EQ(p.raise_after_samples, 4u);
  EXPECT_EQ(p.raise_after_ms, 60'000);
  EXPECT_EQ(p.clear_after_samples, 6u);
  EXPECT_EQ(p.clear_after_ms, 600'000);
  // The defaults without a setting, and without a model.
  const auto d = core::alert_policy_of(models[0].find("b"));
  EXPECT_EQ(d.raise_after_samples, 2u);
  EXPECT_EQ(d.clear_after_samples, 3u);
  EXPECT_EQ(core::alert_policy_of(nullptr).raise_after_samples, 2u);
}

TEST(ModelConfigTest, OperatingStatesAndWhereAPropertyIsAnalysed) {
  std::string error;
  auto models = parse(
      "[[model]]\nkind = \"machine\"\n[model.states]\nrunning = \"reported.running = true\"\n"
      "hot = \"reported.temperature > 80\"\n"
      "[model.properties.rpm]\nanalyse_in = [\"running\"]\nsettle = \"30s\"\n"
      "[model.properties.temperature]\nanalyse_in = [\"running\", \"hot\"]\n"
      "[model.properties.load]\n",
      error);
  ASSERT_EQ(models.size(), 1u) << error;
  const auto& m = models[0];
  ASSERT_EQ(m.states.size(), 2u);
  // The states as TOML keeps them (by name), each bit of a mask.
  EXPECT_EQ(m.states[0].name, "hot");
  EXPECT_EQ(m.states[1].name, "running");
  EXPECT_EQ(m.find("rpm")->analyse_mask, 2u);
  EXPECT_EQ(m.find("rpm")->settle_ms, 30'000);
  EXPECT_EQ(m.find("temperature")->analyse_mask, 3u);
  EXPECT_EQ(m.find("load")->analyse_mask, 0u);
  // Judged on a twin.
  core::twin tw;
  tw.reported["running"].val = true;
  tw.reported["temperature"].val = 85.0;
  EXPECT_EQ(m.states_of(tw, 0), 3u);
  tw.reported["running"].val = false;
  tw.reported["temperature"].val = 60.0;
  EXPECT_EQ(m.states_of(tw, 0), 0u);
}

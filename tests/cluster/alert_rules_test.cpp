// The Prometheus alert rules in deploy/prometheus and the Grafana dashboards
// in deploy/grafana name only metrics a node exports: a node on a real broker
// (exactly-once, changelog: every metric a cluster has) takes telemetry, a
// malformed record and a query, and its /metrics must hold every fleettwin_*
// name they use (queries, and the metrics descriptions tell the on-call to
// check). promtool checks and tests the rules and parses the dashboards'
// queries (tests/deploy).

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "cluster_harness.hpp"
#include "support/kafka_io.hpp"
#include "support/metrics_scrape.hpp"
#include "support/twin_calls.hpp"

namespace fleettwin::test {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The metric families of a text exposition (# TYPE lines).
std::set<std::string> families(const std::string& exposition) {
  std::set<std::string> out;
  static const std::regex type_line{R"(^# TYPE (\S+) )", std::regex::multiline};
  for (std::sregex_iterator it{exposition.begin(), exposition.end(), type_line}, end; it != end;
       ++it)
    out.insert((*it)[1]);
  return out;
}

struct AlertRulesTest : cluster_fixture {
  void SetUp() override {
    c_ = std::make_unique<cluster>();
  }
};

TEST_F(AlertRulesTest, EveryMetricTheRulesAndDashboardsNameIsOneANodeExports) {
  std::map<std::string, std::string> files;  // path -> text
  files[FLEETTWIN_ALERT_RULES] = read_file(FLEETTWIN_ALERT_RULES);
  for (const auto& e : std::filesystem::directory_iterator{FLEETTWIN_DASHBOARDS_DIR})
    if (e.path().extension() == ".json")
      files[e.path().string()] = read_file(e.path().string());
  ASSERT_GE(files.size(), 3u) << "the rules and at least two dashboards";
  for (const auto& [path, text] : files)
    ASSERT_FALSE(text.empty()) << "cannot read " << path;
  auto& c = *c_;
  c.start_nodes(1);
  std::string why;
  ASSERT_TRUE(c.wait_until_all_partitions_served(60s, &why)) << why;
  telemetry_source src{c.bootstrap(), c.topics().telemetry, 12};
  ASSERT_TRUE(src.produce(2)) << src.first_error();
  {
    producer p{c.bootstrap()};
    p.send(c.topics().telemetry, "veh-0000", "not a telemetry record", "application/json");
    ASSERT_EQ(p.flush(), 0);
  }
  ASSERT_TRUE(wait_until_applied(c.node(0), src.acked(), 60s, &why)) << why;
  v1::Twin t;
  ASSERT_TRUE(get_twin(c.node(0).twins(), src.assets()[0], t).ok());

  const auto exported = families(scrape(c.node(0).metrics_port()));
  ASSERT_FALSE(exported.empty()) << "nothing scraped";
  static const std::regex name{R"(\bfleettwin_[a-z0-9_]+)"};
  static const std::regex histogram_series{R"((.*)_(bucket|sum|count)$)"};
  for (const auto& [path, text] : files) {
    std::set<std::string> named;
    for (std::sregex_iterator it{text.begin(), text.end(), name}, end; it != end; ++it)
      named.insert(it->str());
    EXPECT_GT(named.size(), 10u) << path << " names too few metrics";
    std::string missing;
    for (const auto& n : named) {
      std::smatch m;
      const bool found = exported.contains(n) || (std::regex_match(n, m, histogram_series) &&
                                                  exported.contains(m[1].str()));
      if (!found)
        missing += n + " ";
    }
    EXPECT_EQ(missing, "") << "named by " << path << " but not exported by a node";
  }
}

}  // namespace
}  // namespace fleettwin::test

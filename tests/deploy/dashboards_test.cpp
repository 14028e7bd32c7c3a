// The Grafana dashboards in deploy/grafana/dashboards, checked like code:
// well-formed (unique ids, panels inside the 24-column grid, every panel
// titled, described and fed by the dashboard's data source variable), and
// every query valid PromQL as promtool parses it (Grafana's variables
// replaced by what Grafana would put there). That the metrics they name are
// exported is checked against a running node (tests/cluster, AlertRulesTest).

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <simdjson.h>

namespace {

namespace fs = std::filesystem;

struct query {
  std::string dashboard;
  std::string panel;
  std::string expr;
};

std::vector<fs::path> dashboards() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator{FLEETTWIN_DASHBOARDS_DIR})
    if (e.path().extension() == ".json")
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string str(simdjson::dom::element e, const char* key) {
  std::string_view v;
  if (e[key].get(v) != simdjson::SUCCESS)
    return {};
  return std::string{v};
}

/// Grafana's variables as Grafana expands them in a query.
std::string expand(std::string expr) {
  const std::pair<std::string, std::string> vars[] = {
      {"$__rate_interval", "5m"}, {"$__interval", "1m"}, {"$__range", "6h"},
      {"${instance}", ".*"},      {"$instance", ".*"},
  };
  for (const auto& [from, to] : vars)
    for (size_t at = expr.find(from); at != std::string::npos; at = expr.find(from, at))
      expr.replace(at, from.size(), to);
  return expr;
}

/// Checks a panel (and the panels of a row) and collects its queries.
void check_panel(simdjson::dom::element p, const std::string& dashboard, std::set<int64_t>& ids,
                 std::vector<query>& queries, std::string& problems) {
  const auto title = str(p, "title");
  const auto type = str(p, "type");
  const std::string where = dashboard + ": panel \"" + title + "\"";
  int64_t id = 0;
  if (p["id"].get(id) != simdjson::SUCCESS || !ids.insert(id).second)
    problems += where + " has no id or one used before\n";
  if (title.empty())
    problems += dashboard + ": a panel without a title\n";
  simdjson::dom::element grid;
  int64_t x = 0, w = 0;
  if (p["gridPos"].get(grid) != simdjson::SUCCESS || grid["x"].get(x) != simdjson::SUCCESS ||
      grid["w"].get(w) != simdjson::SUCCESS || x < 0 || w <= 0 || x + w > 24)
    problems += where + " lies outside the 24-column grid\n";
  if (type == "row") {
    simdjson::dom::array inner;
    if (p["panels"].get(inner) == simdjson::SUCCESS)
      for (auto q : inner)
        check_panel(q, dashboard, ids, queries, problems);
    return;
  }
  if (str(p, "description").empty())
    problems += where + " has no description\n";
  simdjson::dom::element ds;
  if (p["datasource"].get(ds) != simdjson::SUCCESS || str(ds, "uid") != "${datasource}")
    problems += where + " does not use the ${datasource} variable\n";
  simdjson::dom::array targets;
  if (p["targets"].get(targets) != simdjson::SUCCESS || targets.size() == 0) {
    problems += where + " has no query\n";
    return;
  }
  for (auto t : targets) {
    const auto expr = str(t, "expr");
    if (expr.empty())
      problems += where + " has a target without expr\n";
    else
      queries.push_back({dashboard, title, expr});
  }
}

std::vector<query> load_all(std::string& problems) {
  std::vector<query> queries;
  simdjson::dom::parser parser;
  for (const auto& path : dashboards()) {
    const auto name = path.filename().string();
    simdjson::dom::element doc;
    if (auto err = parser.load(path.string()).get(doc)) {
      problems += name + ": " + simdjson::error_message(err) + "\n";
      continue;
    }
    if (str(doc, "uid").empty() || str(doc, "title").empty())
      problems += name + ": no uid or title\n";
    bool has_datasource = false;
    simdjson::dom::array vars;
    if (doc["templating"]["list"].get(vars) == simdjson::SUCCESS)
      for (auto v : vars)
        has_datasource |= str(v, "name") == "datasource" && str(v, "type") == "datasource";
    if (!has_datasource)
      problems += name + ": no datasource variable (the dashboard would be bound to one Grafana)\n";
    std::set<int64_t> ids;
    simdjson::dom::array panels;
    if (doc["panels"].get(panels) != simdjson::SUCCESS) {
      problems += name + ": no panels\n";
      continue;
    }
    for (auto p : panels)
      check_panel(p, name, ids, queries, problems);
  }
  return queries;
}

TEST(DashboardsTest, EveryDashboardIsWellFormed) {
  ASSERT_GE(dashboards().size(), 2u)
      << "an SRE and an operator dashboard in " << FLEETTWIN_DASHBOARDS_DIR;
  std::string problems;
  auto queries = load_all(problems);
  EXPECT_EQ(problems, "");
  EXPECT_GT(queries.size(), 20u);
}

TEST(DashboardsTest, EveryPanelQueryIsValidPromQL) {
  std::string problems;
  auto queries = load_all(problems);
  ASSERT_EQ(problems, "");
  ASSERT_FALSE(queries.empty());
  // promtool parses rules files: each query becomes a recording rule.
  const auto file = fs::temp_directory_path() /
                    ("fleettwin-dashboard-queries-" + std::to_string(::getpid()) + ".yml");
  {
    std::ofstream out{file};
    out << "groups:\n  - name: dashboard-queries\n    rules:\n";
    for (size_t i = 0; i < queries.size(); ++i) {
      std::string expr = expand(queries[i].expr);
      std::string quoted;
      for (char c : expr)
        quoted += c == '\'' ? std::string{"''"} : std::string(1, c);
      out << "      - record: dashboard:query_" << i << "\n        expr: '" << quoted << "'\n";
    }
  }
  const std::string command =
      std::string{FLEETTWIN_PROMTOOL} + " check rules " + file.string() + " 2>&1";
  std::string output;
  if (auto* pipe = ::popen(command.c_str(), "r")) {
    char buf[4096];
    while (size_t n = std::fread(buf, 1, sizeof buf, pipe))
      output.append(buf, n);
    const int status = ::pclose(pipe);
    EXPECT_EQ(status, 0) << output;
  } else {
    FAIL() << "cannot run " << command;
  }
  fs::remove(file);
  // promtool names a failing rule by its index: say which panel it is.
  for (size_t i = 0; i < queries.size(); ++i)
    if (output.find("dashboard:query_" + std::to_string(i) + "\"") != std::string::npos)
      ADD_FAILURE() << queries[i].dashboard << ", panel \"" << queries[i].panel
                    << "\": " << queries[i].expr;
}

}  // namespace

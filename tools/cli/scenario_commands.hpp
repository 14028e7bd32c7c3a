#pragma once

// fleettwin scenario create|list|get|apply-input|run|result|sweep|apply|export|delete:
// what-if scenarios (ScenarioService).

#include <cstdint>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace fleettwin::cli {

class session;

struct scenario_options {
  std::string id;
  // create: what to fork (one of them).
  std::string below;
  std::string at;  // create: a past point to fork from (parse_time)
  std::string filter;
  std::vector<std::string> assets;
  std::string description;
  // apply-input: inputs as JSON (ScenarioInput), a file of them, or shorthands.
  std::vector<std::string> inputs;
  std::string file;
  bool replace = false;
  std::string profile;               // PROPERTY=FACTOR
  std::string limit;                 // PROPERTY<=MAX or PROPERTY>=MIN
  std::string series;                // PROPERTY=VALUE[@OFFSET],...
  std::vector<std::string> desired;  // KEY=VALUE
  std::string where;                 // the shorthand inputs' twins: a filter,
  std::vector<std::string> twins;    // or asset ids
  std::string from;                  // window of profile and limit (durations after the start)
  std::string to;
  std::string setting;  // limit: the desired property that carries it live
  uint32_t add = 0;     // add_twins: how many copies
  std::string template_twin;
  std::string parent;
  std::string relation_type;
  std::string prefix;
  std::vector<std::string> attributes;  // KEY=VALUE for added twins or an added aggregate
  std::string add_aggregate;            // add_aggregate: its id (with parent, relation_type)
  std::string move_to;                  // move: the twins' new parent (with relation_type)
  // run, sweep
  std::string horizon = "24h";
  std::string step = "15m";
  double noise = 0;
  uint64_t seed = 0;
  std::vector<std::string> kpis;  // AGGREGATE:MEASURE
  // result
  std::string compare_with;
  bool show_series = false;
  // sweep
  std::vector<std::string> parameters;  // INPUT.FIELD=FROM:TO:STEP or =V1,V2,...
  std::string maximize;                 // param:N or AGGREGATE:MEASURE[:STAT]
  std::string minimize;
  std::vector<std::string> constraints;  // AGGREGATE:MEASURE[:STAT]<=X or >=X
  std::string method;
  int32_t max_runs = 0;
  // apply
  bool dry_run = false;
  bool if_unchanged = false;
};

/// Adds the `scenario` command and its subcommands to `app`.
void add_scenario(CLI::App& app, scenario_options& options);

/// Runs subcommand `sub` of `scenario`.
int run_scenario(session& s, const std::string& sub, const scenario_options& options);

}  // namespace fleettwin::cli

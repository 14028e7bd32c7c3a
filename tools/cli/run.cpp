#include "tools/cli/run.hpp"

#include <chrono>
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "tools/cli/commands.hpp"
#include "tools/cli/interrupter.hpp"
#include "tools/cli/parse.hpp"
#include "tools/cli/scenario_commands.hpp"

namespace fleettwin::cli {

namespace {

constexpr const char* default_server = "127.0.0.1:50051";

constexpr const char* footer = R"(Assets are given by id ("veh-1"); the "twins/" prefix is added.
Times (--from, --to): Unix ms, ISO-8601 (2026-11-24T10:00:00Z; UTC when no zone),
"now", or relative to now (-15m, -2h, -30s, -1d, -1h30m).
--json prints one compact JSON document per line: a twin per asset (get), a page
(list), the twin (set-desired), a progress message (bulk-desired, scenario run and
sweep), the scenario (scenario create/get/apply-input), the result, the points
(history), a change (watch), the status.

Exit codes:
  0    success (also watch ended by --count or Ctrl-C)
  1    any other error (health: the node answered, but is not SERVING)
  2    usage error (bad arguments or options)
  3    NOT_FOUND
  4    INVALID_ARGUMENT
  5    ABORTED (expected version did not match; bulk-desired: some twins did not)
  6    UNAVAILABLE or DEADLINE_EXCEEDED (node down, unreachable or too slow)
  130  interrupted (Ctrl-C) before a call finished)";

int64_t system_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

/// The parsed command line: the options of every subcommand and which one ran.
struct command_line {
  global_options global;
  get_options get;
  list_options list;
  set_desired_options set_desired;
  bulk_desired_options bulk_desired;
  scenario_options scenario;
  delete_options erase;
  audit_options audit;
  uint64_t expected_version = 0;
  history_options history;
  watch_options watch;
  list_options agg_list;
  agg_get_options agg_get;
  agg_members_options agg_members;
  agg_watch_options agg_watch;
  agg_history_options agg_history;
  relations_options relations;
  traverse_options traverse;
  alerts_list_options alerts_list;
  alerts_watch_options alerts_watch;
  alerts_ack_options alerts_ack;
  models_options models;
  forecast_options forecast;
  std::string health_service;
};

void add_forecast(CLI::App& app, command_line& cl) {
  auto* f = app.add_subcommand(
      "forecast", "Forecast a numeric property, with intervals and its time to failure");
  f->add_option("asset", cl.forecast.asset, "Asset id")->required();
  f->add_option("property", cl.forecast.property, "Numeric reported property")->required();
  f->add_option("--horizon", cl.forecast.horizon, "How far ahead: 30m, 1h, 2d (at most 366d)")
      ->capture_default_str();
  f->add_option("--step", cl.forecast.step, "Between points (default: the reporting interval)");
}

void add_models(CLI::App& app, command_line& cl) {
  auto* models = app.add_subcommand("models", "Asset models: what each kind's properties are");
  models->add_subcommand("list", "Show every model (the default)");
  auto* get = models->add_subcommand("get", "Show the model of a kind");
  get->add_option("kind", cl.models.argument, "Twin kind, e.g. vehicle")->required();
  auto* put = models->add_subcommand("put", "Create or replace a model for the whole cluster");
  put->add_option("file", cl.models.argument,
                  "A fleettwin.v1.AssetModel as JSON, e.g. {\"kind\": \"pump\", \"properties\": "
                  "[{\"name\": \"flow\", \"unit\": \"l/s\", \"min\": 0}]}")
      ->required()
      ->check(CLI::ExistingFile);
}

void add_alerts(CLI::App& app, command_line& cl) {
  auto* alerts = app.add_subcommand("alerts", "Alerts raised by the twins' anomaly detectors");
  alerts->require_subcommand(1);
  auto* list = alerts->add_subcommand("list", "List open alerts (every node's), by twin");
  list->add_option("--filter", cl.alerts_list.filter,
                   "e.g. 'severity = \"critical\" AND kind = \"machine\"' (fields: state, "
                   "severity, property, detector and every twin field)");
  list->add_flag("--cleared", cl.alerts_list.cleared, "Also each property's last cleared alert");
  list->add_option("--page-size", cl.alerts_list.page_size, "Twins per page (1..1000)")
      ->check(CLI::Range(0, 1000));
  list->add_option("--page-token", cl.alerts_list.page_token, "Continue from a previous page");
  list->add_flag("--all", cl.alerts_list.all, "Follow page tokens to the last page");
  auto* watch = alerts->add_subcommand("watch", "Print alert events as they commit (any node's)");
  watch->add_option("asset", cl.alerts_watch.asset, "Only this twin's alerts");
  watch->add_flag("--critical", cl.alerts_watch.critical, "Only critical alerts");
  watch
      ->add_option("--count", cl.alerts_watch.count,
                   "Exit after this many events (0: run until Ctrl-C)")
      ->check(CLI::NonNegativeNumber);
  auto* ack = alerts->add_subcommand("ack", "Acknowledge an open alert");
  ack->add_option("alert", cl.alerts_ack.alert,
                  "The alert's name (twins/ASSET/alerts/PROPERTY/N), or ASSET PROPERTY N")
      ->required()
      ->expected(1, 3);
}

void add_aggregates(CLI::App& app, command_line& cl) {
  auto* agg = app.add_subcommand("agg", "Aggregates: fleets, depots, feeders, substations ...");
  agg->require_subcommand(1);
  auto* list = agg->add_subcommand("list", "List aggregates ordered by id, a page at a time");
  list->add_option("--filter", cl.agg_list.filter,
                   "e.g. 'kind = \"feeder\" AND measures.utilisation > 0.8'");
  list->add_option("--page-size", cl.agg_list.page_size, "Aggregates per page (1..1000)")
      ->check(CLI::Range(0, 1000));
  list->add_option("--page-token", cl.agg_list.page_token, "Continue from a previous page");
  list->add_flag("--all", cl.agg_list.all, "Follow page tokens to the last page");
  auto* get = agg->add_subcommand("get", "Show aggregates (e.g. fleets/north)");
  get->add_option("aggregate", cl.agg_get.aggregates, "Aggregate ids")->required();
  auto* members = agg->add_subcommand("members", "List an aggregate's members, a page at a time");
  members->add_option("aggregate", cl.agg_members.aggregate, "Aggregate id")->required();
  members->add_option("--depth", cl.agg_members.depth, "1: direct members; up to 32 levels")
      ->check(CLI::Range(1, 32));
  members->add_option("--filter", cl.agg_members.filter,
                      "Filter over what the aggregate holds of a member, e.g. "
                      "'reported.voltage < 207'");
  members->add_flag("--twins-only", cl.agg_members.twins_only, "Only twins");
  members->add_flag("--aggregates-only", cl.agg_members.aggregates_only, "Only aggregates");
  members->add_option("--page-size", cl.agg_members.page_size, "Members per page (1..1000)")
      ->check(CLI::Range(0, 1000));
  members->add_option("--page-token", cl.agg_members.page_token, "Continue from a previous page");
  members->add_flag("--all", cl.agg_members.all, "Follow page tokens to the last page");
  agg->add_subcommand("kinds", "Show the aggregate kinds and relation rules");
  auto* watch = agg->add_subcommand("watch", "Print committed changes of aggregates (any node's)");
  watch->add_option("aggregate", cl.agg_watch.aggregate, "Aggregate id (default: all, or --kind)");
  watch->add_option("--kind", cl.agg_watch.kind, "Only aggregates of this kind");
  watch
      ->add_option("--count", cl.agg_watch.count,
                   "Exit after this many changes (0: run until Ctrl-C)")
      ->check(CLI::NonNegativeNumber);
  auto* history = agg->add_subcommand("history", "Show an aggregate's recorded measures");
  history->add_option("aggregate", cl.agg_history.aggregate, "Aggregate id")->required();
  history->add_option("--measure", cl.agg_history.measures, "Only this measure (repeatable)");
  history->add_option("--from", cl.agg_history.from, "Start of the range (inclusive)");
  history->add_option("--to", cl.agg_history.to, "End of the range (exclusive)");
  history->add_option("--page-size", cl.agg_history.page_size, "Versions per page (1..10000)")
      ->check(CLI::Range(0, 10000));
  history->add_option("--page-token", cl.agg_history.page_token, "Continue from a previous page");
  history->add_flag("--all", cl.agg_history.all, "Follow page tokens to the last page");
  auto* rel = app.add_subcommand(
      "relations", "Show a twin's or aggregate's parents (and an aggregate's members)");
  rel->add_option("name", cl.relations.name, "Asset id, aggregate id, twins/... or aggregates/...")
      ->required();
  rel->add_option("--type", cl.relations.types, "Only this relation type (repeatable)");
  auto* trav = app.add_subcommand(
      "traverse", "Walk the relation graph from a twin or aggregate, down (members) or up");
  trav->add_option("start", cl.traverse.start,
                   "Asset id, aggregate id, twins/... or aggregates/...")
      ->required();
  trav->add_flag("--up", cl.traverse.up, "Towards parents (default: down, towards members)");
  trav->add_option("--type", cl.traverse.types, "Follow only this relation type (repeatable)");
  trav->add_option("--hops", cl.traverse.hops, "Hops to walk (1..32)")->check(CLI::Range(1, 32));
  trav->add_option("--filter", cl.traverse.filter,
                   "ListTwins filter over what is reached, e.g. 'reported.voltage < 207'");
  trav->add_flag("--aggregates", cl.traverse.aggregates, "Return aggregates reached too");
  trav->add_option("--page-size", cl.traverse.page_size, "Hits per page (1..1000)")
      ->check(CLI::Range(0, 1000));
  trav->add_option("--page-token", cl.traverse.page_token, "Continue from a previous page");
  trav->add_flag("--all", cl.traverse.all, "Follow page tokens to the last page");
}

void add_get(CLI::App& app, command_line& cl) {
  auto* get = app.add_subcommand("get", "Show twins (GetTwin, or BatchGetTwins for several)");
  get->add_option("asset", cl.get.assets, "Asset ids")->required();
}

void add_list(CLI::App& app, command_line& cl) {
  auto* list = app.add_subcommand("list", "List twins ordered by asset id, a page at a time");
  list->add_option("--filter", cl.list.filter,
                   "AIP-160 filter, e.g. 'kind = \"vehicle\" AND reported.speed > 50'");
  list->add_option("--page-size", cl.list.page_size, "Twins per page (1..1000; 0: server default)")
      ->check(CLI::Range(0, 1000));
  list->add_option("--page-token", cl.list.page_token, "Continue from a previous page");
  list->add_flag("--all", cl.list.all, "Follow page tokens to the last page");
}

void add_set_desired(CLI::App& app, command_line& cl) {
  auto* set = app.add_subcommand("set-desired", "Set or remove desired properties");
  set->add_option("asset", cl.set_desired.asset, "Asset id")->required();
  set->add_option("assignments", cl.set_desired.assignments,
                  "key=value; value true/false -> bool, 42 -> int, 4.2 or 1e3 -> double, "
                  "\"quoted\" or anything else -> string");
  set->add_option("--remove", cl.set_desired.remove, "Remove a desired property (repeatable)")
      ->allow_extra_args(false);
  set->add_option("--expected-version", cl.expected_version,
                  "Apply only if the twin is at this version (else ABORTED)")
      ->check(CLI::NonNegativeNumber);
}

void add_bulk_desired(CLI::App& app, command_line& cl) {
  auto* bulk = app.add_subcommand(
      "bulk-desired",
      "Set or remove desired properties of many twins (by --filter or --asset), with "
      "progress and each twin's outcome");
  bulk->add_option("assignments", cl.bulk_desired.assignments,
                   "key=value, as set-desired takes them");
  bulk->add_option("--filter", cl.bulk_desired.filter,
                   "The twins to change, e.g. 'attributes.fleet = \"north\"'");
  bulk->add_option("--asset", cl.bulk_desired.assets, "An asset to change (repeatable)")
      ->allow_extra_args(false);
  bulk->add_option("--remove", cl.bulk_desired.remove, "Remove a desired property (repeatable)")
      ->allow_extra_args(false);
  bulk->add_flag("--if-unchanged", cl.bulk_desired.if_unchanged,
                 "Change a twin only if it is still at the version it had when the filter "
                 "selected it (else ABORTED)");
  bulk->add_flag("--dry-run", cl.bulk_desired.dry_run,
                 "Report what would happen to each twin; change nothing");
  bulk->add_option("--max-twins", cl.bulk_desired.max_twins,
                   "Refuse (changing nothing) when more twins are selected (0: 10,000)")
      ->check(CLI::Range(int64_t{0}, int64_t{1'000'000}));
  bulk->add_flag("--verbose", cl.bulk_desired.verbose,
                 "Print every twin's outcome (default: those not changed as asked)");
}

void add_delete(CLI::App& app, command_line& cl) {
  auto* erase = app.add_subcommand(
      "delete", "Erase a twin: its state, history and analytics (admin; cannot be undone)");
  erase->add_option("asset", cl.erase.asset, "Asset id")->required();
  erase
      ->add_option("--expected-version", cl.expected_version,
                   "Erase only if the twin is at this version (else ABORTED)")
      ->check(CLI::PositiveNumber);
  erase->add_flag("--yes", cl.erase.yes, "Confirm the erasure");
}

void add_audit(CLI::App& app, command_line& cl) {
  auto* audit = app.add_subcommand(
      "audit",
      "Show the audit trail of a twin (its writes, alerts acknowledged, erasure, "
      "sensitive reads) or of another target (admin)");
  audit
      ->add_option("target", cl.audit.target,
                   "Asset id, or an audited target: models/KIND, aggregate-kinds/KIND, cluster")
      ->required();
  audit->add_option("--since", cl.audit.since, "Only events from this time on (e.g. -1d)");
  audit->add_option("--limit", cl.audit.limit, "At most this many of the newest events (100)")
      ->check(CLI::Range(1, 1000));
}

void add_history(CLI::App& app, command_line& cl) {
  auto* history = app.add_subcommand("history", "Show the recorded samples of a property");
  history->add_option("asset", cl.history.asset, "Asset id")->required();
  history->add_option("property", cl.history.property, "Reported property")->required();
  history->add_option("--from", cl.history.from, "Start of the range (inclusive)");
  history->add_option("--to", cl.history.to, "End of the range (exclusive)");
  history->add_option("--limit", cl.history.limit, "At most this many of the newest points")
      ->check(CLI::NonNegativeNumber);
}

void add_watch(CLI::App& app, command_line& cl) {
  auto* watch = app.add_subcommand("watch", "Print changes of one twin, or of matching twins");
  watch->add_option("asset", cl.watch.asset, "Asset id (default: every twin the filter matches)");
  watch->add_option("--filter", cl.watch.filter, "ListTwins filter");
  watch->add_option("--count", cl.watch.count, "Exit after this many changes (0: run until Ctrl-C)")
      ->check(CLI::NonNegativeNumber);
}

int dispatch(CLI::App& app, command_line& cl, session& s) {
  auto* command = app.get_subcommands().front();
  const auto& name = command->get_name();
  if (name == "get") {
    return run_get(s, cl.get);
  }
  if (name == "list") {
    return run_list(s, cl.list);
  }
  if (name == "set-desired") {
    if (command->count("--expected-version") > 0) {
      cl.set_desired.expected_version = cl.expected_version;
    }
    return run_set_desired(s, cl.set_desired);
  }
  if (name == "bulk-desired") {
    return run_bulk_desired(s, cl.bulk_desired);
  }
  if (name == "delete") {
    if (command->count("--expected-version") > 0)
      cl.erase.expected_version = cl.expected_version;
    return run_delete(s, cl.erase);
  }
  if (name == "audit") {
    return run_audit(s, cl.audit);
  }
  if (name == "history") {
    return run_history(s, cl.history);
  }
  if (name == "watch") {
    return run_watch(s, cl.watch);
  }
  if (name == "status") {
    return run_status(s);
  }
  if (name == "health") {
    return run_health(s, cl.health_service);
  }
  if (name == "agg") {
    const auto& sub = command->get_subcommands().front()->get_name();
    if (sub == "list")
      return run_agg_list(s, cl.agg_list);
    if (sub == "get")
      return run_agg_get(s, cl.agg_get);
    if (sub == "members")
      return run_agg_members(s, cl.agg_members);
    if (sub == "watch")
      return run_agg_watch(s, cl.agg_watch);
    if (sub == "history")
      return run_agg_history(s, cl.agg_history);
    return run_agg_kinds(s);
  }
  if (name == "forecast") {
    return run_forecast(s, cl.forecast);
  }
  if (name == "models") {
    const auto& subs = command->get_subcommands();
    cl.models.action = subs.empty() ? "list" : subs.front()->get_name();
    return run_models(s, cl.models);
  }
  if (name == "alerts") {
    const auto& sub = command->get_subcommands().front()->get_name();
    if (sub == "list")
      return run_alerts_list(s, cl.alerts_list);
    if (sub == "watch")
      return run_alerts_watch(s, cl.alerts_watch);
    return run_alerts_ack(s, cl.alerts_ack);
  }
  if (name == "scenario") {
    return run_scenario(s, command->get_subcommands().front()->get_name(), cl.scenario);
  }
  if (name == "relations") {
    return run_relations(s, cl.relations);
  }
  if (name == "traverse") {
    return run_traverse(s, cl.traverse);
  }
  return run_ping(s);
}

}  // namespace

int exit_code_for(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return exit_ok;
    case grpc::StatusCode::NOT_FOUND:
      return exit_not_found;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return exit_invalid_argument;
    case grpc::StatusCode::ABORTED:
      return exit_aborted;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return exit_unavailable;
    default:
      return exit_failure;
  }
}

int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err,
            const run_options& options) {
  command_line cl;
  CLI::App app{"fleettwin: query and change FleetTwin digital twins", "fleettwin"};
  app.set_version_flag("--version", FLEETTWIN_VERSION);
  app.footer(footer);
  app.require_subcommand(1);
  // Global options are accepted after the subcommand too.
  app.fallthrough();
  cl.global.server = default_server;
  app.add_option("--server", cl.global.server, "Node address host:port")
      ->envname("FLEETTWIN_SERVER")
      ->capture_default_str();
  app.add_option("--tls-ca", cl.global.tls.ca_file,
                 "PEM CA bundle to verify the node's certificate with: talk TLS")
      ->envname("FLEETTWIN_TLS_CA");
  app.add_option("--tls-cert", cl.global.tls.cert_file,
                 "PEM client certificate for mutual TLS (with --tls-key)")
      ->envname("FLEETTWIN_TLS_CERT");
  app.add_option("--tls-key", cl.global.tls.key_file, "PEM private key of --tls-cert")
      ->envname("FLEETTWIN_TLS_KEY");
  app.add_option("--tls-server-name", cl.global.tls.server_name,
                 "Name the node's certificate must carry, when it is not the --server host")
      ->envname("FLEETTWIN_TLS_SERVER_NAME");
  app.add_option("--token", cl.global.token, "Bearer token (JWT) for the node (needs TLS)")
      ->envname("FLEETTWIN_TOKEN");
  app.add_option("--token-file", cl.global.token_file, "File holding the bearer token")
      ->envname("FLEETTWIN_TOKEN_FILE");
  app.add_flag("--json", cl.global.json, "Machine-readable output (JSON, one document per line)");
  app.add_option("--timeout", cl.global.timeout_s, "Deadline of each call in seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_get(app, cl);
  add_list(app, cl);
  add_set_desired(app, cl);
  add_bulk_desired(app, cl);
  add_delete(app, cl);
  add_audit(app, cl);
  add_history(app, cl);
  add_watch(app, cl);
  add_aggregates(app, cl);
  add_alerts(app, cl);
  add_models(app, cl);
  add_forecast(app, cl);
  add_scenario(app, cl.scenario);
  app.add_subcommand("status", "Show the node, its Kafka connection and partitions");
  app.add_subcommand("ping", "Measure the round-trip time to the node");
  auto* health =
      app.add_subcommand("health", "grpc.health.v1 status of the node (exit 0 only when SERVING)");
  health
      ->add_option("--service", cl.health_service,
                   "Service to check: \"\" is readiness (every partition served), "
                   "fleettwin.v1.NodeService is liveness")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      // --help or --version.
      return app.exit(e, out, err);
    }
    err << "error: " << e.what() << "\nRun with --help for more information.\n";
    return exit_usage;
  }

  auto& interrupt = options.interrupt != nullptr ? *options.interrupt : default_interrupter();
  auto clock = options.clock ? options.clock : system_now_ms;
  try {
    session s{cl.global, out, err, interrupt, clock};
    return dispatch(app, cl, s);
  } catch (const usage_error& e) {
    err << "error: " << e.what() << "\nRun with --help for more information.\n";
    return exit_usage;
  }
}

}  // namespace fleettwin::cli

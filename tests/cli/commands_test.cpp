// Every subcommand run in-process against a fake node: argument parsing -> request
// fields, human and JSON output, exit codes.

#include <cstdlib>
#include <future>
#include <sstream>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "tests/cli/fake_node.hpp"
#include "tools/cli/format.hpp"
#include "tools/cli/interrupter.hpp"
#include "tools/cli/run.hpp"

namespace fleettwin::cli::test {
namespace {

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "\"" << part << "\" not in:\n" << text;
}

::testing::AssertionResult starts_with(const std::string& text, const std::string& prefix) {
  if (text.starts_with(prefix)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "\"" << prefix << "\" does not start:\n" << text;
}

template <class Repeated>
std::vector<std::string> strings(const Repeated& repeated) {
  return {repeated.begin(), repeated.end()};
}

constexpr int64_t nov24_10h = 1795514400000;  // 2026-11-24T10:00:00Z
constexpr int64_t now_ms = nov24_10h + 3'600'000;

struct result {
  int code = -1;
  std::string out;
  std::string err;
};

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> all;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);) {
    all.push_back(line);
  }
  return all;
}

template <class Message>
Message from_json(const std::string& json) {
  Message message;
  auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in " << json;
  return message;
}

v1::TwinChange make_change(const std::string& asset, uint64_t version, double speed) {
  v1::TwinChange change;
  change.set_asset_id(asset);
  change.set_version(version);
  change.set_type(v1::REPORTED);
  change.set_time_ms(nov24_10h + static_cast<int64_t>(version));
  change.set_sequence(version);
  (*change.mutable_reported())["speed"].mutable_value()->set_double_value(speed);
  return change;
}

class cli_test : public ::testing::Test {
protected:
  /// Runs fleettwin with --server pointing at the fake node, then `args`.
  result run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", node.address()});
    return run_bare(std::move(args));
  }

  result run_bare(std::vector<std::string> args) {
    args.insert(args.begin(), "fleettwin");
    std::vector<const char*> argv;
    for (const auto& arg : args) {
      argv.push_back(arg.c_str());
    }
    std::ostringstream out;
    std::ostringstream err;
    run_options options;
    options.interrupt = &interrupt;
    options.clock = [] { return now_ms; };
    result r;
    r.code = run_cli(static_cast<int>(argv.size()), argv.data(), out, err, options);
    r.out = out.str();
    r.err = err.str();
    return r;
  }

  void put_twins(int n) {
    for (int i = 1; i <= n; ++i) {
      node.put_twin(make_twin("veh-" + std::to_string(i), i));
    }
  }

  fake_node node;
  interrupter interrupt;
};

// --- get ------------------------------------------------------------------------

TEST_F(cli_test, get_prints_a_readable_block) {
  auto twin = make_twin("veh-1", 42);
  (*twin.mutable_desired())["target_speed"].set_int_value(50);
  (*twin.mutable_delta())["target_speed"].set_int_value(50);
  node.put_twin(twin);
  auto r = run({"get", "veh-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out,
            "name          twins/veh-1\n"
            "kind          vehicle\n"
            "tenant        acme\n"
            "version       42\n"
            "connectivity  ONLINE\n"
            "last seen     2026-11-24T10:00:00.123Z\n"
            "records       7 applied, 0 duplicates, 0 out of order, last sequence 7\n"
            "attributes\n"
            "  KEY    VALUE\n"
            "  fleet  north\n"
            "reported\n"
            "  PROPERTY  VALUE  SOURCE TIME               SEQUENCE\n"
            "  speed     52.5   2026-11-24T10:00:00.000Z  7\n"
            "desired\n"
            "  PROPERTY      VALUE\n"
            "  target_speed  50\n"
            "delta\n"
            "  PROPERTY      VALUE\n"
            "  target_speed  50\n"
            "stats\n"
            "  PROPERTY  COUNT  MIN  MAX  MEAN\n"
            "  speed     3      40   60   50\n");
  auto requests = node.requests();
  ASSERT_EQ(requests.get.size(), 1u);
  EXPECT_EQ(requests.get[0].name(), "twins/veh-1");
}

TEST_F(cli_test, get_keeps_a_full_resource_name) {
  put_twins(1);
  ASSERT_EQ(run({"get", "twins/veh-1"}).code, 0);
  EXPECT_EQ(node.requests().get.at(0).name(), "twins/veh-1");
}

TEST_F(cli_test, get_of_several_assets_uses_batch_get_in_order) {
  put_twins(3);
  auto r = run({"get", "veh-3", "veh-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto requests = node.requests();
  EXPECT_TRUE(requests.get.empty());
  ASSERT_EQ(requests.batch_get.size(), 1u);
  EXPECT_EQ(strings(requests.batch_get[0].names()),
            (std::vector<std::string>{"twins/veh-3", "twins/veh-1"}));
  auto first = r.out.find("name          twins/veh-3");
  auto second = r.out.find("\n\nname          twins/veh-1");
  EXPECT_NE(first, std::string::npos);
  EXPECT_NE(second, std::string::npos);
  EXPECT_LT(first, second);
}

TEST_F(cli_test, get_json_prints_one_twin_per_line_with_proto_field_names) {
  put_twins(2);
  auto r = run({"get", "veh-1", "veh-2", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto docs = lines(r.out);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_TRUE(contains(docs[0], "\"asset_id\":\"veh-1\""));
  EXPECT_TRUE(contains(docs[0], "\"last_seen_ms\""));
  EXPECT_TRUE(contains(docs[0], "\"connectivity\":\"ONLINE\""));
  // Defaults are printed too, so scripts always find the keys.
  EXPECT_TRUE(contains(docs[0], "\"duplicates\":\"0\""));
  auto twin = from_json<v1::Twin>(docs[1]);
  EXPECT_EQ(twin.asset_id(), "veh-2");
  EXPECT_EQ(twin.reported().at("speed").value().double_value(), 52.5);
}

TEST_F(cli_test, get_of_a_missing_twin_exits_3) {
  auto r = run({"get", "veh-9"});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "error: NOT_FOUND: twin \"veh-9\" not found\n");
}

TEST_F(cli_test, batch_get_with_a_missing_twin_exits_3) {
  put_twins(1);
  auto r = run({"get", "veh-1", "veh-9"});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "error: NOT_FOUND: twin \"veh-9\" not found\n");
}

// --- errors and global options --------------------------------------------------

struct status_case {
  grpc::StatusCode code;
  const char* name;
  int exit_code;
};

void PrintTo(const status_case& c, std::ostream* os) {
  *os << c.name;
}

class cli_status_test : public cli_test, public ::testing::WithParamInterface<status_case> {};

TEST_P(cli_status_test, every_command_maps_the_status_to_its_exit_code) {
  const auto& param = GetParam();
  node.fail_with({param.code, "it went wrong"});
  auto expected_err = std::string{"error: "} + param.name + ": it went wrong\n";
  const std::vector<std::vector<std::string>> commands = {{"get", "veh-1"},
                                                          {"get", "veh-1", "veh-2"},
                                                          {"list"},
                                                          {"set-desired", "veh-1", "a=1"},
                                                          {"history", "veh-1", "speed"},
                                                          {"watch", "veh-1"},
                                                          {"status"},
                                                          {"ping"}};
  for (const auto& command : commands) {
    auto r = run(command);
    EXPECT_EQ(r.code, param.exit_code) << command[0];
    EXPECT_EQ(r.err, expected_err) << command[0];
    EXPECT_EQ(r.out, "") << command[0];
  }
}

INSTANTIATE_TEST_SUITE_P(
    codes, cli_status_test,
    ::testing::Values(status_case{grpc::StatusCode::NOT_FOUND, "NOT_FOUND", 3},
                      status_case{grpc::StatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT", 4},
                      status_case{grpc::StatusCode::ABORTED, "ABORTED", 5},
                      status_case{grpc::StatusCode::UNAVAILABLE, "UNAVAILABLE", 6},
                      status_case{grpc::StatusCode::DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", 6},
                      status_case{grpc::StatusCode::INTERNAL, "INTERNAL", 1},
                      status_case{grpc::StatusCode::PERMISSION_DENIED, "PERMISSION_DENIED", 1},
                      status_case{grpc::StatusCode::FAILED_PRECONDITION, "FAILED_PRECONDITION", 1}),
    [](const auto& info) { return std::string{info.param.name}; });

TEST_F(cli_test, an_unreachable_node_exits_6) {
  std::string address;
  {
    // A port that was just free and has no listener now.
    fake_node gone;
    address = gone.address();
  }
  for (const auto& command : {"get", "status", "ping", "health"}) {
    std::vector<std::string> args{"--server", address, command};
    if (std::string{command} == "get") {
      args.push_back("veh-1");
    }
    auto r = run_bare(args);
    EXPECT_EQ(r.code, 6) << command;
    EXPECT_TRUE(starts_with(r.err, "error: UNAVAILABLE: ")) << command;
  }
}

TEST_F(cli_test, timeout_sets_the_deadline_of_each_call) {
  put_twins(1);
  ASSERT_EQ(run({"--timeout", "2.5", "get", "veh-1"}).code, 0);
  auto deadline = node.requests().get_deadline_s;
  EXPECT_GT(deadline, 1.0);
  // grpc-timeout travels with limited precision, rounded up.
  EXPECT_LE(deadline, 3.0);
  ASSERT_EQ(run({"get", "veh-1"}).code, 0);
  deadline = node.requests().get_deadline_s;
  EXPECT_GT(deadline, 8.0);
  EXPECT_LE(deadline, 10.5);
}

TEST_F(cli_test, global_options_may_follow_the_subcommand) {
  put_twins(1);
  auto r = run_bare({"get", "veh-1", "--server", node.address(), "--json", "--timeout", "5"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(from_json<v1::Twin>(r.out).asset_id(), "veh-1");
}

TEST_F(cli_test, server_defaults_to_the_environment) {
  put_twins(1);
  ::setenv("FLEETTWIN_SERVER", node.address().c_str(), 1);
  auto r = run_bare({"get", "veh-1"});
  ::unsetenv("FLEETTWIN_SERVER");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(node.requests().get.size(), 1u);
}

TEST_F(cli_test, usage_errors_exit_2_without_calling_the_node) {
  const std::vector<std::vector<std::string>> commands = {
      {},
      {"frobnicate"},
      {"get"},
      {"get", "veh-1", "--bogus"},
      {"get", ""},
      {"--timeout", "0", "get", "veh-1"},
      {"--timeout", "soon", "get", "veh-1"},
      {"list", "--page-size", "many"},
      {"list", "--page-size", "1001"},
      {"list", "--page-size", "-1"},
      {"set-desired", "veh-1"},
      {"set-desired", "veh-1", "=5"},
      {"set-desired", "veh-1", "speed"},
      {"set-desired", "veh-1", "a=1", "--expected-version", "x"},
      {"set-desired", "veh-1", "a=1", "--expected-version", "-1"},
      {"history", "veh-1"},
      {"history", "veh-1", "speed", "--from", "yesterday"},
      {"history", "veh-1", "speed", "--to", "2026-13-01"},
      {"history", "veh-1", "speed", "--limit", "-3"},
      {"watch", "--count", "-1"},
      {"status", "extra"}};
  for (const auto& command : commands) {
    auto r = run(command);
    EXPECT_EQ(r.code, 2) << ::testing::PrintToString(command) << r.err;
    EXPECT_TRUE(starts_with(r.err, "error: ")) << ::testing::PrintToString(command);
    EXPECT_EQ(r.out, "");
  }
  EXPECT_EQ(node.requests().calls(), 0u);
}

TEST_F(cli_test, help_documents_the_exit_codes) {
  auto r = run_bare({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(contains(r.out, "Exit codes:"));
  EXPECT_TRUE(contains(r.out, "3    NOT_FOUND"));
  EXPECT_TRUE(contains(r.out, "6    UNAVAILABLE or DEADLINE_EXCEEDED"));
  auto sub = run_bare({"history", "--help"});
  EXPECT_EQ(sub.code, 0);
  EXPECT_TRUE(contains(sub.out, "--from"));
  EXPECT_EQ(run_bare({"--version"}).code, 0);
}

// --- list -----------------------------------------------------------------------

TEST_F(cli_test, list_passes_filter_and_paging_and_prints_a_table) {
  put_twins(5);
  auto r = run({"list", "--filter", "kind = \"vehicle\" AND reported.speed > 50", "--page-size",
                "2", "--page-token", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto requests = node.requests();
  ASSERT_EQ(requests.list.size(), 1u);
  EXPECT_EQ(requests.list[0].filter(), "kind = \"vehicle\" AND reported.speed > 50");
  EXPECT_EQ(requests.list[0].page_size(), 2);
  EXPECT_EQ(requests.list[0].page_token(), "2");
  EXPECT_EQ(r.out,
            "ASSET  KIND     VERSION  CONNECTIVITY  LAST SEEN                 REPORTED\n"
            "veh-3  vehicle  3        ONLINE        2026-11-24T10:00:00.123Z  speed=52.5\n"
            "veh-4  vehicle  4        ONLINE        2026-11-24T10:00:00.123Z  speed=52.5\n");
  EXPECT_EQ(r.err, "next page token: 4\n");
}

TEST_F(cli_test, list_defaults_send_empty_fields) {
  auto r = run({"list"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto request = node.requests().list.at(0);
  EXPECT_EQ(request.filter(), "");
  EXPECT_EQ(request.page_size(), 0);
  EXPECT_EQ(request.page_token(), "");
  EXPECT_EQ(r.err, "no twins\n");
}

TEST_F(cli_test, list_shows_a_few_reported_values) {
  auto twin = make_twin("veh-1", 1);
  for (const char* name : {"a", "b", "c", "d"}) {
    (*twin.mutable_reported())[name].mutable_value()->set_bool_value(true);
  }
  node.put_twin(twin);
  auto r = run({"list"});
  EXPECT_TRUE(contains(r.out, "a=true b=true c=true (+2 more)\n"));
}

TEST_F(cli_test, list_all_follows_page_tokens_to_the_end) {
  put_twins(5);
  auto r = run({"list", "--all", "--page-size", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto requests = node.requests();
  ASSERT_EQ(requests.list.size(), 3u);
  EXPECT_EQ(requests.list[0].page_token(), "");
  EXPECT_EQ(requests.list[1].page_token(), "2");
  EXPECT_EQ(requests.list[2].page_token(), "4");
  for (const auto& request : requests.list) {
    EXPECT_EQ(request.page_size(), 2);
  }
  auto rows = lines(r.out);
  ASSERT_EQ(rows.size(), 6u);  // one header, five twins
  EXPECT_TRUE(starts_with(rows[0], "ASSET"));
  for (int i = 1; i <= 5; ++i) {
    EXPECT_TRUE(starts_with(rows[i], "veh-" + std::to_string(i) + " "));
  }
  EXPECT_EQ(r.err, "");
}

TEST_F(cli_test, list_json_prints_one_page_per_line) {
  put_twins(3);
  auto r = run({"list", "--json", "--page-size", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto docs = lines(r.out);
  ASSERT_EQ(docs.size(), 1u);
  auto page = from_json<v1::ListTwinsResponse>(docs[0]);
  EXPECT_EQ(page.twins_size(), 2);
  EXPECT_EQ(page.next_page_token(), "2");
  EXPECT_TRUE(contains(docs[0], "\"next_page_token\":\"2\""));
  EXPECT_EQ(r.err, "");

  auto all = run({"list", "--json", "--all", "--page-size", "2"});
  ASSERT_EQ(all.code, 0) << all.err;
  docs = lines(all.out);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(from_json<v1::ListTwinsResponse>(docs[1]).twins(0).asset_id(), "veh-3");
  EXPECT_EQ(from_json<v1::ListTwinsResponse>(docs[1]).next_page_token(), "");
}

TEST_F(cli_test, list_all_stops_when_a_later_page_fails) {
  put_twins(3);
  auto r = run({"list", "--all", "--page-size", "2", "--page-token", "x"});
  EXPECT_EQ(r.code, 4);
  EXPECT_EQ(r.err, "error: INVALID_ARGUMENT: bad page token\n");
}

// --- set-desired ----------------------------------------------------------------

TEST_F(cli_test, set_desired_infers_value_types) {
  node.put_twin(make_twin("veh-1", 3));
  auto r =
      run({"set-desired", "veh-1", "target=50", "limit=80.5", "scale=1e3", "eco=true", "mode=sport",
           "code=\"42\"", "--remove", "old", "--remove", "older", "--expected-version", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto requests = node.requests();
  ASSERT_EQ(requests.update_desired.size(), 1u);
  const auto& request = requests.update_desired[0];
  EXPECT_EQ(request.name(), "twins/veh-1");
  const auto& desired = request.desired();
  ASSERT_EQ(desired.size(), 6u);
  EXPECT_EQ(desired.at("target").int_value(), 50);
  EXPECT_EQ(desired.at("limit").double_value(), 80.5);
  EXPECT_EQ(desired.at("scale").double_value(), 1000);
  EXPECT_EQ(desired.at("eco").kind_case(), v1::Value::kBoolValue);
  EXPECT_TRUE(desired.at("eco").bool_value());
  EXPECT_EQ(desired.at("mode").string_value(), "sport");
  EXPECT_EQ(desired.at("code").string_value(), "42");
  EXPECT_EQ(strings(request.remove()), (std::vector<std::string>{"old", "older"}));
  ASSERT_TRUE(request.has_expected_version());
  EXPECT_EQ(request.expected_version(), 3u);
  EXPECT_TRUE(starts_with(r.out,
                          "name          twins/veh-1\n"
                          "version       4\n"
                          "desired\n"
                          "  PROPERTY  VALUE\n"
                          "  code      \"42\"\n"));
  EXPECT_TRUE(contains(r.out, "  target    50\n"));
}

TEST_F(cli_test, set_desired_without_expected_version_leaves_it_unset) {
  auto r = run({"set-desired", "veh-1", "--remove", "old", "a=1"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto request = node.requests().update_desired.at(0);
  EXPECT_FALSE(request.has_expected_version());
  EXPECT_EQ(strings(request.remove()), (std::vector<std::string>{"old"}));
  EXPECT_EQ(request.desired().at("a").int_value(), 1);
}

TEST_F(cli_test, set_desired_with_only_removals) {
  auto r = run({"set-desired", "veh-1", "--remove", "old"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(node.requests().update_desired.at(0).desired().empty());
  EXPECT_TRUE(contains(r.out, "desired       (none)\n"));
}

TEST_F(cli_test, set_desired_version_conflict_exits_5) {
  node.put_twin(make_twin("veh-1", 7));
  auto r = run({"set-desired", "veh-1", "a=1", "--expected-version", "3"});
  EXPECT_EQ(r.code, 5);
  EXPECT_EQ(r.err, "error: ABORTED: twin \"veh-1\" is at version 7, not 3\n");
}

TEST_F(cli_test, set_desired_json_prints_the_twin) {
  node.put_twin(make_twin("veh-1", 1));
  auto r = run({"--json", "set-desired", "veh-1", "target=60"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto twin = from_json<v1::Twin>(r.out);
  EXPECT_EQ(twin.version(), 2u);
  EXPECT_EQ(twin.desired().at("target").int_value(), 60);
  EXPECT_EQ(twin.delta().at("target").int_value(), 60);
}

// --- history --------------------------------------------------------------------

TEST_F(cli_test, history_parses_times_and_prints_points) {
  std::vector<v1::HistoryPoint> points(2);
  points[0].mutable_value()->set_double_value(50);
  points[0].set_source_time_ms(nov24_10h);
  points[0].set_sequence(6);
  points[1].mutable_value()->set_double_value(52.5);
  points[1].set_source_time_ms(nov24_10h + 1500);
  points[1].set_sequence(7);
  node.set_history(points);
  auto r = run({"history", "veh-1", "speed", "--from", "-15m", "--to", "2026-11-24T10:00:00Z",
                "--limit", "5"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto request = node.requests().history.at(0);
  EXPECT_EQ(request.name(), "twins/veh-1");
  EXPECT_EQ(request.property(), "speed");
  EXPECT_EQ(request.start_time_ms(), now_ms - 15 * 60'000);
  EXPECT_EQ(request.end_time_ms(), nov24_10h);
  EXPECT_EQ(request.limit(), 5);
  EXPECT_EQ(r.out,
            "TIME                      VALUE  SEQUENCE\n"
            "2026-11-24T10:00:00.000Z  50.0   6\n"
            "2026-11-24T10:00:01.500Z  52.5   7\n");
}

TEST_F(cli_test, history_accepts_unix_ms_and_equals_forms) {
  ASSERT_EQ(run({"history", "veh-1", "speed", "--from=-2h", "--to", "1795514400000"}).code, 0);
  auto request = node.requests().history.at(0);
  EXPECT_EQ(request.start_time_ms(), now_ms - 2 * 3'600'000);
  EXPECT_EQ(request.end_time_ms(), nov24_10h);
}

TEST_F(cli_test, history_defaults_are_unbounded) {
  auto r = run({"history", "veh-1", "speed"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto request = node.requests().history.at(0);
  EXPECT_EQ(request.start_time_ms(), 0);
  EXPECT_EQ(request.end_time_ms(), 0);
  EXPECT_EQ(request.limit(), 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "no samples of \"speed\" in the range\n");
}

TEST_F(cli_test, history_json) {
  std::vector<v1::HistoryPoint> points(1);
  points[0].mutable_value()->set_int_value(3);
  points[0].set_source_time_ms(nov24_10h);
  node.set_history(points);
  auto r = run({"history", "veh-1", "gear", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto response = from_json<v1::GetHistoryResponse>(r.out);
  ASSERT_EQ(response.points_size(), 1);
  EXPECT_EQ(response.points(0).value().int_value(), 3);
  EXPECT_TRUE(contains(r.out, "\"source_time_ms\""));
}

// --- watch ----------------------------------------------------------------------

TEST_F(cli_test, watch_count_exits_after_n_changes_of_an_open_stream) {
  std::vector<v1::TwinChange> changes;
  for (int v = 1; v <= 5; ++v) {
    changes.push_back(make_change("veh-1", v, 50 + v));
  }
  node.set_changes(changes, /*hold_open=*/true);
  auto r = run({"watch", "veh-1", "--count", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "2026-11-24T10:00:00.001Z veh-1 v1 REPORTED speed=51.0 seq=1\n"
            "2026-11-24T10:00:00.002Z veh-1 v2 REPORTED speed=52.0 seq=2\n");
  EXPECT_EQ(r.err, "");
  auto request = node.requests().watch.at(0);
  EXPECT_EQ(request.name(), "twins/veh-1");
  EXPECT_EQ(request.filter(), "");
}

TEST_F(cli_test, watch_with_a_filter_prints_until_the_stream_ends) {
  auto desired = make_change("veh-2", 9, 0);
  desired.set_type(v1::DESIRED);
  desired.clear_reported();
  desired.set_sequence(0);
  (*desired.mutable_desired())["target"].set_int_value(50);
  desired.add_removed("old");
  node.set_changes({make_change("veh-1", 1, 51), make_change("veh-3", 2, 52), desired},
                   /*hold_open=*/false);
  auto r = run({"watch", "--filter", "kind = \"vehicle\""});
  ASSERT_EQ(r.code, 0) << r.err;
  auto printed = lines(r.out);
  ASSERT_EQ(printed.size(), 3u);
  EXPECT_EQ(printed[2], "2026-11-24T10:00:00.009Z veh-2 v9 DESIRED target=50 removed=old");
  auto request = node.requests().watch.at(0);
  EXPECT_EQ(request.name(), "");
  EXPECT_EQ(request.filter(), "kind = \"vehicle\"");
}

TEST_F(cli_test, watch_json_prints_one_change_per_line) {
  node.set_changes({make_change("veh-1", 1, 51), make_change("veh-1", 2, 52)}, true);
  auto r = run({"watch", "veh-1", "--json", "--count", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto docs = lines(r.out);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(from_json<v1::TwinChange>(docs[1]).version(), 2u);
  EXPECT_TRUE(contains(docs[0], "\"asset_id\":\"veh-1\""));
  EXPECT_TRUE(contains(docs[0], "\"type\":\"REPORTED\""));
}

TEST_F(cli_test, watch_ends_cleanly_when_interrupted) {
  node.set_changes({make_change("veh-1", 1, 51)}, /*hold_open=*/true);
  auto holding = node.watch_holding();
  auto watch = std::async(std::launch::async, [this] { return run({"watch", "veh-1"}); });
  ASSERT_EQ(holding.wait_for(std::chrono::seconds{30}), std::future_status::ready);
  EXPECT_TRUE(interrupt.interrupt());
  auto r = watch.get();
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_LE(lines(r.out).size(), 1u);
}

TEST_F(cli_test, an_interrupt_before_the_watch_starts_cancels_it_at_once) {
  node.set_changes({make_change("veh-1", 1, 51)}, /*hold_open=*/true);
  EXPECT_FALSE(interrupt.interrupt());
  auto r = run({"watch", "veh-1"});
  EXPECT_EQ(r.code, 0) << r.err;
}

// --- status and ping ------------------------------------------------------------

v1::NodeStatus make_status() {
  v1::NodeStatus status;
  status.set_node_id("node-a");
  status.set_version("0.1.0");
  status.set_started_ms(now_ms - 3'723'000);
  status.set_kafka_bootstrap("127.0.0.1:39092");
  status.set_kafka_embedded(true);
  status.set_telemetry_topic("fleettwin.telemetry");
  status.set_data_dir("./data");
  status.set_active_twins(12);
  status.set_stored_twins(40);
  status.set_records_applied(1000);
  status.set_records_rejected(2);
  status.set_ready(true);
  for (int p = 0; p < 2; ++p) {
    auto* partition = status.add_partitions();
    partition->set_partition(p);
    partition->set_committed_offset(100 + p);
    partition->set_high_watermark(110 + p * 5);
    partition->set_lag(10 + p * 4);
    partition->set_active_twins(5 + p * 2);
  }
  return status;
}

TEST_F(cli_test, status_prints_node_and_partitions) {
  node.set_status(make_status());
  auto r = run({"status"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "node          node-a\n"
            "ready         yes\n"
            "version       0.1.0\n"
            "started       2026-11-24T09:57:57.000Z (up 1h2m)\n"
            "data dir      ./data\n"
            "kafka         127.0.0.1:39092 (embedded)\n"
            "topic         fleettwin.telemetry\n"
            "twins         12 active, 40 stored\n"
            "records       1000 applied, 2 rejected\n"
            "partitions\n"
            "  PARTITION  COMMITTED  HIGH WATERMARK  LAG  ACTIVE TWINS\n"
            "  0          100        110             10   5\n"
            "  1          101        115             14   7\n"
            "  total (2)                             24   12\n");
}

TEST_F(cli_test, status_says_why_a_node_is_not_ready_and_when_lag_is_unknown) {
  auto status = make_status();
  status.set_ready(false);
  status.set_not_ready_reason("restoring partitions 1 from the changelog");
  status.mutable_partitions(1)->set_high_watermark(-1);
  status.mutable_partitions(1)->set_lag(-1);
  node.set_status(status);
  auto r = run({"status"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "ready         no (restoring partitions 1 from the changelog)\n"))
      << r.out;
  EXPECT_TRUE(contains(r.out, "  1          101        ?               ?      7\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "  total (2)                             >= 10  12\n")) << r.out;
}

TEST_F(cli_test, status_json) {
  node.set_status(make_status());
  auto r = run({"status", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto status = from_json<v1::NodeStatus>(r.out);
  EXPECT_EQ(status.node_id(), "node-a");
  EXPECT_EQ(status.partitions_size(), 2);
  EXPECT_TRUE(contains(r.out, "\"kafka_embedded\":true"));
}

TEST_F(cli_test, ping_prints_the_round_trip_time) {
  auto r = run({"ping"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(starts_with(r.out, "pong from " + node.address() + ": time="));
  EXPECT_TRUE(contains(r.out, " ms"));
  EXPECT_EQ(node.requests().ping, 2);

  auto json = run({"ping", "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_TRUE(starts_with(json.out, "{\"server\":\"" + node.address() + "\",\"rtt_ms\":"));
  google::protobuf::Value parsed;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json.out, &parsed).ok());
}

TEST_F(cli_test, health_exits_0_only_while_the_service_is_serving) {
  auto r = run({"health"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, node.address() + ": SERVING\n");

  node.set_serving("", false);
  r = run({"health"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, node.address() + ": NOT_SERVING\n");
  EXPECT_EQ(r.err, "");

  node.set_serving("fleettwin.v1.NodeService", true);
  r = run({"health", "--service", "fleettwin.v1.NodeService", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"server\":\"" + node.address() +
                       "\",\"service\":\"fleettwin.v1.NodeService\",\"status\":\"SERVING\"}\n");

  r = run({"health", "--service", "fleettwin.v1.Unknown"});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(r.err, "error: NOT_FOUND: service name unknown\n");
}

TEST(cli_format, cluster_table_groups_partitions_by_role_and_flags_unserved_ones) {
  v1::ClusterStatus cluster;
  cluster.set_group_id("fleettwin");
  cluster.set_partitions(8);
  cluster.set_guarantee("exactly-once");
  cluster.set_answered_by("n1");
  auto add_node = [&](const std::string& id, bool alive,
                      std::vector<std::pair<int, v1::PartitionRole>> parts) {
    auto* n = cluster.add_nodes();
    n->set_alive(alive);
    n->set_age_ms(1500);
    n->mutable_member()->set_node_id(id);
    n->mutable_member()->set_grpc_endpoint("127.0.0.1:1");
    for (auto [p, role] : parts) {
      auto* ps = n->mutable_member()->add_partitions();
      ps->set_partition(p);
      ps->set_role(role);
      ps->set_lag(role == v1::PARTITION_ROLE_ACTIVE ? 2 : 100);
      ps->set_stored_twins(10);
    }
  };
  add_node("n1", true,
           {{0, v1::PARTITION_ROLE_ACTIVE},
            {1, v1::PARTITION_ROLE_ACTIVE},
            {2, v1::PARTITION_ROLE_ACTIVE},
            {5, v1::PARTITION_ROLE_ACTIVE},
            {3, v1::PARTITION_ROLE_STANDBY}});
  add_node("n2", false, {{3, v1::PARTITION_ROLE_ACTIVE}, {4, v1::PARTITION_ROLE_RESTORING}});
  cluster.add_unserved_partitions(6);
  cluster.add_unserved_partitions(7);
  std::ostringstream out;
  print_cluster(out, cluster);
  auto text = out.str();
  EXPECT_NE(text.find("cluster (group fleettwin, 8 partitions, exactly-once, answered by n1)"),
            std::string::npos)
      << text;
  // n1: partitions 0-2 and 5 active (lag 2 each, 10 twins each), 3 standby.
  EXPECT_NE(text.find("n1    up     127.0.0.1:1  0-2,5   -          3        8    40"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("n2    gone   127.0.0.1:1  3       4          -        2    10"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("6-7 (rebalance or restore in progress)"), std::string::npos) << text;
}

}  // namespace
}  // namespace fleettwin::cli::test

// End to end through the real interfaces: Kafka in, gRPC and metrics out.

#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include "harness.hpp"
#include "services/kafka/kafka_config.hpp"

using namespace fleettwin;
using namespace fleettwin::test;
using grpc::StatusCode;

namespace {

std::string temp_dir(const std::string& name) {
  auto dir =
      std::filesystem::temp_directory_path() /
      ("fleettwin-" + name + "-" + std::to_string(getpid()) + "-" + std::to_string(free_port()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

struct NodeTest : ::testing::Test {
  kafka::topic_names topics;
  std::unique_ptr<kafka::embedded_kafka> kafka;
  std::string dir;
  std::unique_ptr<node_process> node;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::TwinService::Stub> twins;
  std::unique_ptr<v1::NodeService::Stub> admin;

  void SetUp() override {
    std::string error;
    kafka = kafka::embedded_kafka::start(1, 4, topics, error);
    ASSERT_TRUE(kafka) << error;
    dir = temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    start_node();
  }

  void start_node() {
    node = std::make_unique<node_process>(kafka->bootstrap(), dir + "/data");
    node->start();
    channel = grpc::CreateChannel(node->grpc_address(), grpc::InsecureChannelCredentials());
    twins = v1::TwinService::NewStub(channel);
    admin = v1::NodeService::NewStub(channel);
  }

  void TearDown() override {
    node.reset();
    if (HasFailure()) {
      // The node's log explains most failures; the dir goes away below.
      std::ifstream log{dir + "/data.log"};
      std::cerr << "--- fleettwin-node log ---\n" << log.rdbuf() << "--- end of log ---\n";
    }
    std::filesystem::remove_all(dir);
  }

  grpc::Status get(const std::string& id, v1::Twin& out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{5});
    v1::GetTwinRequest req;
    req.set_name("twins/" + id);
    return twins->GetTwin(&ctx, req, &out);
  }

  /// Waits until the twin has applied `n` records.
  bool applied(const std::string& id, uint64_t n) {
    return eventually([&] {
      v1::Twin tw;
      return get(id, tw).ok() && tw.applied_records() >= n;
    });
  }
};

}  // namespace

TEST_F(NodeTest, TelemetryToQueriesEndToEnd) {
  producer p{kafka->bootstrap()};
  const int assets = 30;
  const int per_asset = 20;
  const int64_t t0 = 1'700'000'000'000;
  for (int s = 1; s <= per_asset; ++s)
    for (int a = 0; a < assets; ++a) {
      auto id = "veh-" + std::to_string(100 + a);
      p.send(topics.telemetry, id,
             telemetry(id, s, t0 + s * 1000, {{"speed", a * 10.0 + s}, {"battery", 100.0 - s}},
                       {{"fleet", a % 2 ? "south" : "north"}}, a % 3 ? "vehicle" : "machine"));
    }
  ASSERT_EQ(p.flush(), 0);
  for (int a = 0; a < assets; ++a)
    ASSERT_TRUE(applied("veh-" + std::to_string(100 + a), per_asset));

  // GetTwin
  v1::Twin tw;
  ASSERT_TRUE(get("veh-103", tw).ok());
  EXPECT_EQ(tw.name(), "twins/veh-103");
  EXPECT_EQ(tw.version(), static_cast<uint64_t>(per_asset));
  EXPECT_EQ(tw.applied_records(), static_cast<uint64_t>(per_asset));
  EXPECT_EQ(tw.duplicates(), 0u);
  EXPECT_EQ(tw.attributes().at("fleet"), "south");
  EXPECT_EQ(tw.kind(), "machine");
  EXPECT_DOUBLE_EQ(tw.reported().at("speed").value().double_value(), 30.0 + per_asset);
  EXPECT_EQ(tw.reported().at("speed").sequence(), static_cast<uint64_t>(per_asset));
  EXPECT_EQ(tw.stats().at("battery").count(), static_cast<uint64_t>(per_asset));
  EXPECT_DOUBLE_EQ(tw.stats().at("battery").min(), 100.0 - per_asset);
  EXPECT_EQ(tw.connectivity(), v1::ONLINE);

  // A replayed record is a counted duplicate, not a change.
  p.send(topics.telemetry, "veh-103", telemetry("veh-103", 5, t0 + 5000, {{"speed", 1.0}}));
  ASSERT_EQ(p.flush(), 0);
  ASSERT_TRUE(eventually([&] { return get("veh-103", tw).ok() && tw.duplicates() == 1; }));
  EXPECT_EQ(tw.version(), static_cast<uint64_t>(per_asset));

  // ListTwins: filter and paging in asset-id order.
  std::set<std::string> expected;
  for (int a = 0; a < assets; ++a)
    if (a % 3 && a % 2 == 0)
      expected.insert("veh-" + std::to_string(100 + a));
  std::vector<std::string> seen;
  int pages = 0;
  auto list_all = [&] {
    seen.clear();
    pages = 0;
    std::string token;
    do {
      grpc::ClientContext ctx;
      v1::ListTwinsRequest req;
      req.set_filter(R"(kind = "vehicle" AND attributes.fleet = "north" AND reported.speed > 0)");
      req.set_page_size(3);
      req.set_page_token(token);
      v1::ListTwinsResponse resp;
      auto st = twins->ListTwins(&ctx, req, &resp);
      if (!st.ok()) {
        ADD_FAILURE() << st.error_message();
        return false;
      }
      for (const auto& t : resp.twins())
        seen.push_back(t.asset_id());
      token = resp.next_page_token();
      ++pages;
    } while (!token.empty() && pages < 100);
    return std::set<std::string>(seen.begin(), seen.end()) == expected;
  };
  // ListTwins reads committed state, which may trail GetTwin by one commit.
  EXPECT_TRUE(eventually(list_all));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), expected);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(seen.size(), expected.size());
  EXPECT_GE(pages, 3);

  // GetStatus counts the stored twins exactly.
  EXPECT_TRUE(eventually([&] {
    grpc::ClientContext ctx;
    v1::NodeStatus status;
    return admin->GetStatus(&ctx, {}, &status).ok() &&
           status.stored_twins() == static_cast<uint64_t>(assets) && status.partitions_size() == 4;
  }));

  // GetHistory: every sample, and a time range.
  {
    grpc::ClientContext ctx;
    v1::GetHistoryRequest req;
    req.set_name("twins/veh-101");
    req.set_property("speed");
    v1::GetHistoryResponse resp;
    ASSERT_TRUE(twins->GetHistory(&ctx, req, &resp).ok());
    ASSERT_TRUE(eventually([&] {  // committed state, like ListTwins
      grpc::ClientContext again;
      resp.Clear();
      return twins->GetHistory(&again, req, &resp).ok() && resp.points_size() == per_asset;
    }));
    EXPECT_EQ(resp.points(0).sequence(), 1u);
    EXPECT_DOUBLE_EQ(resp.points(per_asset - 1).value().double_value(), 10.0 + per_asset);
    grpc::ClientContext ctx2;
    req.set_start_time_ms(t0 + 5000);
    req.set_end_time_ms(t0 + 10000);
    ASSERT_TRUE(twins->GetHistory(&ctx2, req, &resp).ok());
    EXPECT_EQ(resp.points_size(), 5);
  }

  // UpdateDesired with optimistic concurrency.
  {
    grpc::ClientContext ctx;
    v1::UpdateDesiredRequest req;
    req.set_name("twins/veh-101");
    (*req.mutable_desired())["speed_limit"].set_double_value(80);
    req.set_expected_version(per_asset);
    v1::Twin out;
    auto st = twins->UpdateDesired(&ctx, req, &out);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(out.version(), static_cast<uint64_t>(per_asset + 1));
    EXPECT_EQ(out.delta().at("speed_limit").double_value(), 80);
    grpc::ClientContext ctx2;
    st = twins->UpdateDesired(&ctx2, req, &out);  // stale expected version
    EXPECT_EQ(st.error_code(), StatusCode::ABORTED);
    EXPECT_NE(st.error_message().find("version"), std::string::npos);
    ASSERT_TRUE(get("veh-101", tw).ok());
    EXPECT_EQ(tw.desired().at("speed_limit").double_value(), 80);
  }

  // WatchTwins: a change committed after the watch starts is streamed.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{30});
    v1::WatchTwinsRequest req;
    req.set_filter(R"(attributes.fleet = "north")");
    auto reader = twins->WatchTwins(&ctx, req);
    reader->WaitForInitialMetadata();  // the watch is registered once headers arrive
    p.send(topics.telemetry, "veh-102", telemetry("veh-102", 100, t0 + 100'000, {{"speed", 42.0}}));
    ASSERT_EQ(p.flush(), 0);
    v1::TwinChange change;
    ASSERT_TRUE(reader->Read(&change));
    EXPECT_EQ(change.asset_id(), "veh-102");
    EXPECT_EQ(change.type(), v1::REPORTED);
    EXPECT_EQ(change.sequence(), 100u);
    EXPECT_DOUBLE_EQ(change.reported().at("speed").value().double_value(), 42.0);
    ctx.TryCancel();
  }

  // The twin-changes topic carries CloudEvents headers.
  auto changes = read_topic(kafka->bootstrap(), topics.changes, 1, std::chrono::seconds{20});
  ASSERT_FALSE(changes.empty());
  EXPECT_EQ(changes[0].headers["ce_specversion"], "1.0");
  EXPECT_FALSE(changes[0].headers["ce_id"].empty());
  EXPECT_EQ(changes[0].headers["content-type"], "application/x-protobuf");

  // Metrics are exposed.
  auto text = scrape(node->metrics_port());
  EXPECT_GE(metric_value(text, "fleettwin_records_applied_total"), assets * per_asset);
  EXPECT_GE(metric_value(text, "fleettwin_duplicates_total"), 1);
  EXPECT_NE(text.find("fleettwin_batch_commit_duration_seconds_bucket"), std::string::npos);
  // Every committed item went through both phases.
  EXPECT_GE(metric_value(text, "fleettwin_work_item_phase_seconds_count{phase=\"apply\"}"), 1);
  EXPECT_EQ(metric_value(text, "fleettwin_work_item_phase_seconds_count{phase=\"apply\"}"),
            metric_value(text, "fleettwin_work_item_phase_seconds_count{phase=\"publish\"}"));
  EXPECT_NE(text.find("fleettwin_consumer_lag_records{partition="), std::string::npos);
  EXPECT_NE(text.find("fleettwin_grpc_requests_total{code=\"OK\",method=\"GetTwin\"}"),
            std::string::npos);

  // SIGTERM: clean exit.
  EXPECT_EQ(node->terminate(), 0);
}

namespace {

/// A BulkUpdateDesired call read to its end: every progress message, and the status.
struct bulk_run {
  grpc::Status status;
  std::vector<v1::BulkUpdateDesiredProgress> messages;
  std::map<std::string, v1::TwinUpdateOutcome> outcomes;  // by name
  const v1::BulkUpdateDesiredProgress& last() const {
    return messages.back();
  }
};

bulk_run run_bulk(v1::TwinService::Stub& twins, const v1::BulkUpdateDesiredRequest& req) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{60});
  auto reader = twins.BulkUpdateDesired(&ctx, req);
  bulk_run run;
  v1::BulkUpdateDesiredProgress m;
  while (reader->Read(&m)) {
    for (const auto& o : m.outcomes())
      EXPECT_TRUE(run.outcomes.emplace(o.name(), o).second) << o.name() << " reported twice";
    run.messages.push_back(m);
  }
  run.status = reader->Finish();
  return run;
}

}  // namespace

TEST_F(NodeTest, BulkDesiredUpdatesSelectChangeAndReportEveryTwin) {
  producer p{kafka->bootstrap()};
  const int assets = 40;
  const int64_t t0 = 1'700'000'000'000;
  for (int a = 0; a < assets; ++a) {
    auto id = "veh-" + std::to_string(100 + a);
    p.send(topics.telemetry, id,
           telemetry(id, 1, t0, {{"speed", 10.0}}, {{"fleet", a % 2 ? "south" : "north"}}));
  }
  ASSERT_EQ(p.flush(), 0);
  for (int a = 0; a < assets; ++a)
    ASSERT_TRUE(applied("veh-" + std::to_string(100 + a), 1));
  const std::string north = R"(attributes.fleet = "north")";
  // ListTwins (and so a selection by filter) reads committed state: wait until it shows all.
  ASSERT_TRUE(eventually([&] {
    grpc::ClientContext ctx;
    v1::ListTwinsRequest req;
    req.set_filter(north);
    req.set_page_size(100);
    v1::ListTwinsResponse resp;
    return twins->ListTwins(&ctx, req, &resp).ok() && resp.twins_size() == assets / 2;
  }));

  // A dry run says what would happen and changes nothing.
  v1::BulkUpdateDesiredRequest req;
  req.set_filter(north);
  (*req.mutable_desired())["speed_limit"].set_double_value(60);
  req.set_dry_run(true);
  auto dry = run_bulk(*twins, req);
  ASSERT_TRUE(dry.status.ok()) << dry.status.error_message();
  ASSERT_FALSE(dry.messages.empty());
  EXPECT_TRUE(dry.last().done());
  EXPECT_TRUE(dry.last().dry_run());
  EXPECT_EQ(dry.last().selected(), assets / 2);
  EXPECT_EQ(dry.last().changed(), assets / 2);
  ASSERT_EQ(dry.outcomes.size(), static_cast<size_t>(assets / 2));
  EXPECT_EQ(dry.outcomes.at("twins/veh-100").code(), "OK");
  EXPECT_EQ(dry.outcomes.at("twins/veh-100").version(), 2u);
  EXPECT_TRUE(dry.outcomes.at("twins/veh-100").changed());
  v1::Twin tw;
  ASSERT_TRUE(get("veh-100", tw).ok());
  EXPECT_EQ(tw.version(), 1u);
  EXPECT_TRUE(tw.desired().empty());

  // The change, with a stale expected version for one twin: that one conflicts, the
  // others change; the south fleet is not touched.
  req.set_dry_run(false);
  (*req.mutable_expected_versions())["twins/veh-102"] = 7;
  auto bulk = run_bulk(*twins, req);
  ASSERT_TRUE(bulk.status.ok()) << bulk.status.error_message();
  EXPECT_TRUE(bulk.last().done());
  EXPECT_TRUE(bulk.last().selection_complete());
  EXPECT_EQ(bulk.last().changed(), assets / 2 - 1);
  EXPECT_EQ(bulk.last().conflicts(), 1);
  EXPECT_EQ(bulk.last().failed() + bulk.last().not_found() + bulk.last().unchanged(), 0);
  EXPECT_EQ(bulk.outcomes.at("twins/veh-102").code(), "ABORTED");
  EXPECT_NE(bulk.outcomes.at("twins/veh-102").message().find("expected version 7"),
            std::string::npos)
      << bulk.outcomes.at("twins/veh-102").message();
  EXPECT_EQ(bulk.outcomes.at("twins/veh-104").version(), 2u);
  for (int a = 0; a < assets; ++a) {
    auto id = "veh-" + std::to_string(100 + a);
    ASSERT_TRUE(get(id, tw).ok());
    const bool changed = a % 2 == 0 && a != 2;
    EXPECT_EQ(tw.desired().contains("speed_limit"), changed) << id;
    EXPECT_EQ(tw.version(), changed ? 2u : 1u) << id;
  }

  // Again, without the stale version: only the twin that conflicted changes.
  req.clear_expected_versions();
  req.set_if_unchanged(true);
  bulk = run_bulk(*twins, req);
  ASSERT_TRUE(bulk.status.ok()) << bulk.status.error_message();
  EXPECT_EQ(bulk.last().changed(), 1);
  EXPECT_EQ(bulk.last().unchanged(), assets / 2 - 1);
  EXPECT_TRUE(bulk.outcomes.at("twins/veh-102").changed());
  EXPECT_FALSE(bulk.outcomes.at("twins/veh-104").changed());

  // More twins than max_twins: refused before anything changes.
  req.set_max_twins(5);
  (*req.mutable_desired())["mode"].set_string_value("eco");
  bulk = run_bulk(*twins, req);
  EXPECT_EQ(bulk.status.error_code(), StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(bulk.status.error_message().find("max_twins (5)"), std::string::npos)
      << bulk.status.error_message();
  ASSERT_TRUE(get("veh-100", tw).ok());
  EXPECT_FALSE(tw.desired().contains("mode"));

  // By names: a twin that does not exist is NOT_FOUND, the others change.
  v1::BulkUpdateDesiredRequest named;
  named.add_names("twins/veh-101");
  named.add_names("twins/ghost");
  named.add_names("twins/veh-103");
  named.add_remove("speed_limit");
  (*named.mutable_desired())["mode"].set_string_value("eco");
  bulk = run_bulk(*twins, named);
  ASSERT_TRUE(bulk.status.ok()) << bulk.status.error_message();
  EXPECT_EQ(bulk.last().selected(), 3);
  EXPECT_EQ(bulk.last().changed(), 2);
  EXPECT_EQ(bulk.last().not_found(), 1);
  EXPECT_EQ(bulk.outcomes.at("twins/ghost").code(), "NOT_FOUND");
  ASSERT_TRUE(get("veh-103", tw).ok());
  EXPECT_EQ(tw.desired().at("mode").string_value(), "eco");

  // BatchUpdateDesired: outcomes in request order.
  {
    grpc::ClientContext ctx;
    v1::BatchUpdateDesiredRequest batch;
    batch.add_names("twins/veh-105");
    batch.add_names("twins/veh-107");
    (*batch.mutable_desired())["mode"].set_string_value("sport");
    (*batch.mutable_expected_versions())["twins/veh-107"] = 1;
    (*batch.mutable_expected_versions())["twins/veh-105"] = 9;
    v1::BatchUpdateDesiredResponse resp;
    auto st = twins->BatchUpdateDesired(&ctx, batch, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_EQ(resp.outcomes_size(), 2);
    EXPECT_EQ(resp.outcomes(0).name(), "twins/veh-105");
    EXPECT_EQ(resp.outcomes(0).code(), "ABORTED");
    EXPECT_EQ(resp.outcomes(1).code(), "OK");
    EXPECT_EQ(resp.outcomes(1).version(), 2u);
  }

  // Requests that cannot run are refused whole, precisely.
  auto refused = [&](v1::BulkUpdateDesiredRequest r, const std::string& says) {
    auto run = run_bulk(*twins, r);
    EXPECT_EQ(run.status.error_code(), StatusCode::INVALID_ARGUMENT) << says;
    EXPECT_NE(run.status.error_message().find(says), std::string::npos)
        << run.status.error_message();
    EXPECT_TRUE(run.messages.empty());
  };
  auto both = named;
  both.set_filter(north);
  refused(both, "not both");
  auto neither = named;
  neither.clear_names();
  refused(neither, "names or a filter");
  auto nothing = named;
  nothing.clear_desired();
  nothing.clear_remove();
  refused(nothing, "nothing to change");
  auto twice = named;
  twice.add_names("twins/veh-101");
  refused(twice, "named twice");
  auto bad_filter = req;
  bad_filter.set_filter("fleet ===");
  refused(bad_filter, "filter:");

  // The calls are counted by method and code.
  auto text = scrape(node->metrics_port());
  EXPECT_EQ(
      metric_value(text, "fleettwin_grpc_requests_total{code=\"OK\",method=\"BulkUpdateDesired\"}"),
      4);
  EXPECT_EQ(metric_value(text,
                         "fleettwin_grpc_requests_total{code=\"FAILED_PRECONDITION\",method="
                         "\"BulkUpdateDesired\"}"),
            1);
  // And the twins by outcome (dry runs apart).
  auto twins_counted = [&](const char* dry, const char* outcome) {
    return metric_value(text, std::string{"fleettwin_bulk_desired_twins_total{dry_run=\""} + dry +
                                  "\",outcome=\"" + outcome + "\"}");
  };
  EXPECT_EQ(twins_counted("true", "changed"), assets / 2);
  EXPECT_EQ(twins_counted("false", "changed"), assets / 2 - 1 + 1 + 2 + 1);
  EXPECT_EQ(twins_counted("false", "unchanged"), assets / 2 - 1);
  EXPECT_EQ(twins_counted("false", "conflict"), 2);
  EXPECT_EQ(twins_counted("false", "not_found"), 1);

  // A client that gives up midway: the call ends, the node goes on.
  req.set_max_twins(0);
  req.set_dry_run(true);
  for (int i = 0; i < 5; ++i) {
    grpc::ClientContext ctx;
    auto reader = twins->BulkUpdateDesired(&ctx, req);
    ctx.TryCancel();
    v1::BulkUpdateDesiredProgress m;
    while (reader->Read(&m)) {
    }
    auto st = reader->Finish();
    EXPECT_TRUE(st.error_code() == StatusCode::CANCELLED || st.ok()) << st.error_message();
  }
  ASSERT_TRUE(get("veh-100", tw).ok());
}

TEST_F(NodeTest, MalformedRecordsGoToTheDeadLetterTopic) {
  producer p{kafka->bootstrap()};
  p.send(topics.telemetry, "veh-1", "this is not protobuf \xff\xff\xff");
  p.send(topics.telemetry, "veh-2", R"({"metrics": "nope"})", "application/json");
  p.send(topics.telemetry, "veh-3", std::string(1'200'000, 'x'));
  p.send(topics.telemetry, "veh-4", telemetry("someone-else", 1, 1, {{"x", 1.0}}));
  p.send(topics.telemetry, "veh-5", "<xml/>", "text/xml");
  p.send(topics.telemetry, "veh-6", R"({"sequence":1,"metrics":{"speed":12.5,"on":true}})",
         "application/json");
  ASSERT_EQ(p.flush(), 0);
  ASSERT_TRUE(applied("veh-6", 1));
  auto dlq = read_topic(kafka->bootstrap(), topics.dlq, 5, std::chrono::seconds{30});
  ASSERT_EQ(dlq.size(), 5u);
  std::map<std::string, std::string> codes;
  for (auto r : dlq) {
    codes[r.key] = r.headers["fleettwin-dlq-code"];
    EXPECT_FALSE(r.headers["fleettwin-dlq-reason"].empty()) << r.key;
    EXPECT_FALSE(r.headers["fleettwin-dlq-offset"].empty());
  }
  EXPECT_EQ(codes["veh-1"], "malformed");
  EXPECT_EQ(codes["veh-2"], "malformed");
  EXPECT_EQ(codes["veh-3"], "oversized");
  EXPECT_EQ(codes["veh-4"], "key_mismatch");
  EXPECT_EQ(codes["veh-5"], "unsupported_content_type");
  for (const auto& r : dlq) {
    if (r.key == "veh-1") {
      EXPECT_EQ(r.value, "this is not protobuf \xff\xff\xff");  // original bytes kept
    }
  }
  auto text = scrape(node->metrics_port());
  EXPECT_EQ(metric_value(text, "fleettwin_records_rejected_total{reason=\"malformed\"}"), 2);
  EXPECT_TRUE(node->running());
  v1::Twin tw;
  ASSERT_TRUE(get("veh-6", tw).ok());
  EXPECT_TRUE(tw.reported().at("on").value().bool_value());
}

TEST_F(NodeTest, HealthServiceReportsServing) {
  // grpc.health.v1.Health/Check with an empty request; SERVING is field 1 = 1.
  grpc::GenericStub stub{channel};
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{5});
  grpc::Slice empty{std::string{}};
  grpc::ByteBuffer request{&empty, 1};
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", {}, &request, &response,
                 [&](grpc::Status st) { done.set_value(st); });
  auto st = done.get_future().get();
  ASSERT_TRUE(st.ok()) << st.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& sl : slices)
    bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

TEST_F(NodeTest, BadRequestsGetPreciseErrors) {
  v1::Twin tw;
  auto st = get("", tw);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  {
    grpc::ClientContext ctx;
    v1::GetTwinRequest req;
    req.set_name("assets/x");
    EXPECT_EQ(twins->GetTwin(&ctx, req, &tw).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  st = get("never-reported", tw);
  EXPECT_EQ(st.error_code(), StatusCode::NOT_FOUND);
  EXPECT_NE(st.error_message().find("never-reported"), std::string::npos);
  {
    grpc::ClientContext ctx;
    v1::ListTwinsRequest req;
    req.set_filter("kind = ");
    v1::ListTwinsResponse resp;
    st = twins->ListTwins(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("filter"), std::string::npos);
  }
  {
    grpc::ClientContext ctx;
    v1::ListTwinsRequest req;
    req.set_page_token("garbage!");
    v1::ListTwinsResponse resp;
    EXPECT_EQ(twins->ListTwins(&ctx, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::ListTwinsRequest req;
    req.set_page_size(-1);
    v1::ListTwinsResponse resp;
    EXPECT_EQ(twins->ListTwins(&ctx, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::UpdateDesiredRequest req;
    req.set_name("twins/x");
    (*req.mutable_desired())["mode"];  // no value set
    EXPECT_EQ(twins->UpdateDesired(&ctx, req, &tw).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::UpdateDesiredRequest req;
    req.set_name("twins/nobody");
    (*req.mutable_desired())["mode"].set_string_value("eco");
    EXPECT_EQ(twins->UpdateDesired(&ctx, req, &tw).error_code(), StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    v1::GetHistoryRequest req;
    req.set_name("twins/x");
    req.set_property("bad property");
    v1::GetHistoryResponse resp;
    EXPECT_EQ(twins->GetHistory(&ctx, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    v1::BatchGetTwinsRequest req;
    v1::BatchGetTwinsResponse resp;
    EXPECT_EQ(twins->BatchGetTwins(&ctx, req, &resp).error_code(), StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_TRUE(node->running());
}

TEST_F(NodeTest, KillNineAndRestartAppliesEveryRecordExactlyOnce) {
  producer p{kafka->bootstrap()};
  const int assets = 40;
  const int per_asset = 600;
  auto send_range = [&](int from, int to) {
    for (int s = from; s <= to; ++s)
      for (int a = 0; a < assets; ++a) {
        auto id = "m-" + std::to_string(a);
        p.send(topics.telemetry, id, telemetry(id, s, 1'700'000'000'000 + s, {{"v", s * 1.0}}));
      }
    ASSERT_EQ(p.flush(), 0);
  };
  send_range(1, 300);
  // Kill while the node is applying: after some, before all records.
  ASSERT_TRUE(eventually([&] {
    v1::Twin tw;
    return get("m-0", tw).ok() && tw.applied_records() >= 1;
  }));
  send_range(301, 450);
  node->kill9();
  send_range(451, per_asset);
  start_node();
  for (int a = 0; a < assets; ++a) {
    auto id = "m-" + std::to_string(a);
    ASSERT_TRUE(applied(id, per_asset)) << id;
  }
  for (int a = 0; a < assets; ++a) {
    v1::Twin tw;
    auto id = "m-" + std::to_string(a);
    ASSERT_TRUE(get(id, tw).ok());
    EXPECT_EQ(tw.applied_records(), static_cast<uint64_t>(per_asset)) << id;
    EXPECT_EQ(tw.version(), static_cast<uint64_t>(per_asset)) << id;
    EXPECT_EQ(tw.duplicates(), 0u) << id;  // nothing was applied twice
    EXPECT_EQ(tw.last_sequence(), static_cast<uint64_t>(per_asset)) << id;
    EXPECT_EQ(tw.stats().at("v").count(), static_cast<uint64_t>(per_asset)) << id;
  }
  // A graceful restart resumes after the last committed record: nothing is
  // applied again, and new records continue the count.
  EXPECT_EQ(node->terminate(), 0);
  start_node();
  p.send(topics.telemetry, "m-0",
         telemetry("m-0", per_asset + 1, 1'700'000'000'000 + per_asset + 1, {{"v", 1.0}}));
  ASSERT_EQ(p.flush(), 0);
  ASSERT_TRUE(applied("m-0", per_asset + 1));
  for (int a = 0; a < assets; ++a) {
    v1::Twin tw;
    auto id = "m-" + std::to_string(a);
    ASSERT_TRUE(get(id, tw).ok());
    EXPECT_EQ(tw.applied_records(), static_cast<uint64_t>(per_asset + (a == 0 ? 1 : 0))) << id;
    EXPECT_EQ(tw.duplicates(), 0u) << id;
  }
  EXPECT_EQ(node->terminate(), 0);
}

#ifdef FLEETTWIN_CLI_BINARY
namespace {

/// Runs the CLI; returns {exit code, stdout}.
std::pair<int, std::string> cli(const std::string& args) {
  return run_command(std::string{FLEETTWIN_CLI_BINARY} + " " + args + " 2>/dev/null");
}

}  // namespace

TEST_F(NodeTest, CliAgainstARealNode) {
  producer p{kafka->bootstrap()};
  p.send(topics.telemetry, "veh-cli",
         telemetry("veh-cli", 1, 1'700'000'000'000, {{"speed", 33.5}}, {{"fleet", "north"}}));
  ASSERT_EQ(p.flush(), 0);
  ASSERT_TRUE(applied("veh-cli", 1));
  auto server = "--server " + node->grpc_address();
  auto [code, out] = cli(server + " get veh-cli");
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("veh-cli"), std::string::npos) << out;
  EXPECT_NE(out.find("33.5"), std::string::npos) << out;
  // ListTwins reads committed state, which may trail GetTwin by one commit.
  EXPECT_TRUE(eventually([&] {
    std::tie(code, out) = cli(server + " --json list --filter 'attributes.fleet = \"north\"'");
    return code == 0 && out.find("\"asset_id\":\"veh-cli\"") != std::string::npos;
  })) << code
      << " " << out;
  std::tie(code, out) = cli(server + " set-desired veh-cli speed_limit=80 --expected-version 1");
  EXPECT_EQ(code, 0) << out;
  std::tie(code, out) = cli(server + " set-desired veh-cli speed_limit=90 --expected-version 1");
  EXPECT_EQ(code, 5);  // ABORTED
  // bulk-desired: a dry run, the change, and a twin that does not exist.
  const std::string north = " --filter 'attributes.fleet = \"north\"'";
  std::tie(code, out) = cli(server + " bulk-desired mode=eco --dry-run" + north);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("dry run, nothing changed; would change: 1 twins: 1 changed"),
            std::string::npos)
      << out;
  std::tie(code, out) = cli(server + " bulk-desired mode=eco" + north);
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out, "1 twins: 1 changed, 0 unchanged, 0 conflicts, 0 not found, 0 failed\n");
  std::tie(code, out) = cli(server + " bulk-desired mode=eco --asset veh-cli --asset nobody");
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("twins/nobody  NOT_FOUND: twin \"nobody\" not found\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("2 twins: 0 changed, 1 unchanged, 0 conflicts, 1 not found"),
            std::string::npos)
      << out;
  std::tie(code, out) = cli(server + " --json bulk-desired --remove mode --asset veh-cli");
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("\"done\":true"), std::string::npos) << out;
  std::tie(code, out) = cli(server + " bulk-desired mode=eco");
  EXPECT_EQ(code, 2) << out;  // usage: no twins selected
  std::tie(code, out) = cli(server + " get nobody");
  EXPECT_EQ(code, 3);  // NOT_FOUND
  std::tie(code, out) = cli(server + " history veh-cli speed");
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("33.5"), std::string::npos) << out;
  std::tie(code, out) = cli(server + " --json status");
  EXPECT_EQ(code, 0);
  EXPECT_NE(out.find("\"partitions\""), std::string::npos) << out;
  // The container image's health check: readiness, liveness, and an unknown service.
  std::tie(code, out) = cli(server + " health");
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out, node->grpc_address() + ": SERVING\n");
  std::tie(code, out) = cli(server + " --json health --service fleettwin.v1.NodeService");
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("\"status\":\"SERVING\""), std::string::npos) << out;
  std::tie(code, out) = cli(server + " health --service fleettwin.v1.NoSuchService");
  EXPECT_EQ(code, 3) << out;  // NOT_FOUND
}
#endif

TEST_F(NodeTest, RecordsDeletedBeforeTheyWereReadAreCountedNotSilentlySkipped) {
  // The node is down while the log moves on beyond what the broker keeps
  // (the mock keeps about 5 MiB per partition, like a retention limit): the
  // records between the stored offset and the log's new start can never be
  // read. The node says so, counts them, and applies everything still there.
  producer p{kafka->bootstrap()};
  const std::string id = "r-1";
  for (int s = 1; s <= 100; ++s)
    p.send(topics.telemetry, id, telemetry(id, s, 1'700'000'000'000 + s, {{"v", s * 1.0}}));
  ASSERT_EQ(p.flush(), 0);
  ASSERT_TRUE(applied(id, 100));
  ASSERT_EQ(node->terminate(), 0);
  const std::string filler(1000, 'f');
  const int more = 9000;  // about 9 MB: the oldest batches go
  for (int s = 101; s <= 100 + more; ++s) {
    p.send(topics.telemetry, id,
           telemetry(id, s, 1'700'000'000'000 + s, {{"v", s * 1.0}}, {{"pad", filler}}));
    if (s % 1000 == 0) {
      ASSERT_EQ(p.flush(), 0);
    }
  }
  ASSERT_EQ(p.flush(), 0);
  start_node();
  double skipped = 0;
  ASSERT_TRUE(eventually([&] {
    skipped = metric_value(scrape(node->metrics_port()),
                           "fleettwin_records_skipped_total{reason=\"retention\"}");
    v1::Twin tw;
    return skipped > 0 && get(id, tw).ok() &&
           tw.applied_records() + static_cast<uint64_t>(skipped) == 100u + more;
  })) << "skipped "
      << skipped;
  v1::Twin tw;
  ASSERT_TRUE(get(id, tw).ok());
  EXPECT_EQ(tw.last_sequence(), 100u + more);
  EXPECT_EQ(tw.duplicates(), 0u);
  std::ifstream log{dir + "/data.log"};
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_NE(text.str().find("event=records_skipped"), std::string::npos);
}

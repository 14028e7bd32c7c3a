// Analytics in every twin, through the real interfaces: Kafka in; GetTwin,
// ListTwins, AlertService, the alerts topic and the metrics out. The node
// runs with the asset models of deploy/models.toml.

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "fleettwin/v1/analytics.grpc.pb.h"
#include "harness.hpp"
#include "services/kafka/kafka_config.hpp"

using namespace fleettwin;
using namespace fleettwin::test;
using grpc::StatusCode;

namespace {

struct AnalyticsNodeTest : ::testing::Test {
  kafka::topic_names topics;
  std::unique_ptr<kafka::embedded_kafka> kafka;
  std::string dir;
  std::unique_ptr<node_process> node;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::TwinService::Stub> twins;
  std::unique_ptr<v1::AlertService::Stub> alerts;

  void SetUp() override {
    std::string error;
    kafka = kafka::embedded_kafka::start(1, 4, topics, error);
    ASSERT_TRUE(kafka) << error;
    dir = make_temp_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    node = std::make_unique<node_process>(
        kafka->bootstrap(), dir + "/data",
        std::vector<std::string>{"--models", FLEETTWIN_DEPLOY_MODELS, "--alert-count-interval-ms",
                                 "200"});
    node->start();
    channel = grpc::CreateChannel(node->grpc_address(), grpc::InsecureChannelCredentials());
    twins = v1::TwinService::NewStub(channel);
    alerts = v1::AlertService::NewStub(channel);
  }

  void TearDown() override {
    node.reset();
    if (HasFailure()) {
      std::ifstream log{dir + "/data.log"};
      std::cerr << "--- fleettwin-node log ---\n" << log.rdbuf() << "--- end of log ---\n";
    }
    std::filesystem::remove_all(dir);
  }

  bool applied(const std::string& id, uint64_t n) {
    return eventually([&] {
      v1::Twin tw;
      return get_twin(*twins, id, tw).ok() && tw.applied_records() >= n;
    });
  }

  grpc::Status list_alerts(const std::string& filter, bool cleared, v1::ListAlertsResponse& out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{10});
    v1::ListAlertsRequest req;
    req.set_filter(filter);
    req.set_include_cleared(cleared);
    out.Clear();
    return alerts->ListAlerts(&ctx, req, &out);
  }

  grpc::Status acknowledge(const std::string& name, v1::Alert& out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{10});
    v1::AcknowledgeAlertRequest req;
    req.set_name(name);
    return alerts->AcknowledgeAlert(&ctx, req, &out);
  }

  std::vector<std::string> list_twins(const std::string& filter) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{10});
    v1::ListTwinsRequest req;
    req.set_filter(filter);
    v1::ListTwinsResponse resp;
    auto st = twins->ListTwins(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << filter << ": " << st.error_message();
    std::vector<std::string> ids;
    for (const auto& t : resp.twins())
      ids.push_back(t.asset_id());
    return ids;
  }
};

#ifdef FLEETTWIN_CLI_BINARY
std::pair<int, std::string> cli(const std::string& args) {
  return run_command(std::string{FLEETTWIN_CLI_BINARY} + " " + args + " 2>&1");
}
#endif

/// Readings of a meter every 30 s (its model's interval): 230 V with noise,
/// `shift` volts more from reading `shift_at` on.
void send_meter(producer& p, const std::string& topic, const std::string& id, int readings,
                int shift_at, double shift, uint32_t seed) {
  const int64_t t0 = 1'700'000'000'000;
  std::mt19937 gen{seed};
  std::normal_distribution<double> noise{0, 0.5};
  for (int s = 1; s <= readings; ++s) {
    const double v = 230 + noise(gen) + (s >= shift_at ? shift : 0);
    p.send(topic, id, telemetry(id, s, t0 + s * 30'000, {{"voltage", v}}, {}, "meter"));
  }
}

/// Reads a WatchAlerts stream on its own thread until cancelled.
struct alert_watch {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::AlertEvent>> reader;
  std::thread thread;
  std::mutex mutex;
  std::vector<v1::AlertEvent> events;

  void start(v1::AlertService::Stub& stub) {
    reader = stub.WatchAlerts(&ctx, v1::WatchAlertsRequest{});
    thread = std::thread{[this] {
      v1::AlertEvent e;
      while (reader->Read(&e)) {
        std::lock_guard<std::mutex> guard{mutex};
        events.push_back(e);
      }
    }};
  }
  bool seen(const std::string& event, const std::string& name) {
    std::lock_guard<std::mutex> guard{mutex};
    for (const auto& e : events)
      if (e.event() == event && e.alert().name() == name)
        return true;
    return false;
  }
  ~alert_watch() {
    ctx.TryCancel();
    if (thread.joinable())
      thread.join();
  }
};

}  // namespace

// A meter whose voltage jumps and stays up raises an anomaly alert (a level
// shift) seen in GetTwin and the metrics; a machine's temperature rising
// faster than its model allows is a spike.
TEST_F(AnalyticsNodeTest, AnomaliesRaiseAlertsSeenInTheTwinAndTheMetrics) {
  producer p{kafka->bootstrap()};
  const int64_t t0 = 1'700'000'000'000;
  std::mt19937 gen{5};
  std::normal_distribution<double> noise{0, 0.5};
  const int readings = 160;
  send_meter(p, topics.telemetry, "mtr-1", readings, 120, 8, 5);
  for (int s = 1; s <= readings; ++s) {
    // 20 degrees in a second at reading 100: faster than the model's 5/s.
    // The machine runs throughout (its model analyses temperature only
    // then); a second machine is stopped, and its cooling is not analysed.
    const double temp = s == 100 ? 95 : 75 + noise(gen) * 0.1;
    p.send(topics.telemetry, "mch-1",
           telemetry("mch-1", s, t0 + s * 1'000, {{"temperature", temp}}, {}, "machine",
                     {{"running", true}}));
    p.send(topics.telemetry, "mch-2",
           telemetry("mch-2", s, t0 + s * 1'000, {{"temperature", s == 100 ? 95 : 75 - s * 0.3}},
                     {}, "machine", {{"running", false}}));
  }
  ASSERT_EQ(p.flush(), 0);
  ASSERT_TRUE(applied("mtr-1", readings));
  ASSERT_TRUE(applied("mch-1", readings));
  ASSERT_TRUE(applied("mch-2", readings));

  v1::Twin meter;
  ASSERT_TRUE(get_twin(*twins, "mtr-1", meter).ok());
  ASSERT_TRUE(meter.analysis().contains("voltage")) << meter.ShortDebugString();
  const auto& voltage = meter.analysis().at("voltage");
  EXPECT_EQ(voltage.samples(), static_cast<uint64_t>(readings));
  EXPECT_GE(voltage.alerts_raised(), 1u) << voltage.ShortDebugString();
  EXPECT_NEAR(voltage.mean_interval_ms(), 30'000, 1);
  // Forecast near the new level.
  EXPECT_NEAR(voltage.forecast_next(), 238, 3) << voltage.ShortDebugString();

  v1::Twin machine;
  ASSERT_TRUE(get_twin(*twins, "mch-1", machine).ok());
  EXPECT_LT(machine.analysis().at("temperature").anomaly_score(), 0.5);
  v1::Twin stopped;
  ASSERT_TRUE(get_twin(*twins, "mch-2", stopped).ok());
  EXPECT_EQ(stopped.analysis().at("temperature").alerts_raised(), 0u) << stopped.ShortDebugString();
  EXPECT_EQ(stopped.analysis().at("temperature").samples(), 0u) << stopped.ShortDebugString();
  EXPECT_FALSE(machine.analysis().at("temperature").paused());
  EXPECT_TRUE(stopped.analysis().at("temperature").paused());

  auto text = scrape(node->metrics_port());
  double raised = 0;
  for (const char* severity : {"warning", "critical"})
    raised += std::max(0.0, metric_value(text, std::string{"fleettwin_alert_transitions_total{"
                                                           "event=\"raised\",severity=\""} +
                                                   severity + "\"}"));
  EXPECT_GE(raised, 1) << text;
  EXPECT_GE(metric_value(text, "fleettwin_anomalies_total{kind=\"level_shift\"}"), 1) << text;
  EXPECT_GE(metric_value(text, "fleettwin_anomalies_total{kind=\"spike\"}"), 1) << text;
  // Open alerts by severity, counted from the stored twins (every 200 ms
  // here): as many as the twins show.
  std::map<std::string, double> active;
  for (const auto* tw : {&meter, &machine, &stopped})
    for (const auto& [name, a] : tw->analysis())
      if (a.alert_active())
        active[a.alert_severity()] += 1;
  EXPECT_TRUE(eventually([&] {
    text = scrape(node->metrics_port());
    for (const char* severity : {"warning", "critical"})
      if (metric_value(text, std::string{"fleettwin_alerts_open{severity=\""} + severity + "\"}") !=
          active[severity])
        return false;
    return true;
  })) << "want warning "
      << active["warning"] << ", critical " << active["critical"] << "\n"
      << text;
  // The same count tells twins online from stale, as GetTwin does.
  std::map<std::string, double> connectivity;
  for (const auto* tw : {&meter, &machine, &stopped})
    connectivity[tw->connectivity() == v1::ONLINE ? "online" : "stale"] += 1;
  EXPECT_TRUE(eventually([&] {
    text = scrape(node->metrics_port());
    return metric_value(text, "fleettwin_twins_connectivity{state=\"online\"}") ==
               connectivity["online"] &&
           metric_value(text, "fleettwin_twins_connectivity{state=\"stale\"}") ==
               connectivity["stale"];
  })) << "want online "
      << connectivity["online"] << ", stale " << connectivity["stale"] << "\n"
      << text;
}

// Alerts as operators and data teams see them: WatchAlerts streams each
// event once it commits, the alerts topic holds the same events (read
// committed, each once), ListAlerts and ListTwins filter on them, and an
// acknowledgement goes through the twin's partition like any change.
TEST_F(AnalyticsNodeTest, AlertsAreListedWatchedAcknowledgedAndPublished) {
  alert_watch watch;
  // The watch is refused until the node is positioned on the alerts topic.
  ASSERT_TRUE(eventually([&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{5});
    v1::ListAlertsResponse r;
    v1::ListAlertsRequest req;
    return alerts->ListAlerts(&ctx, req, &r).ok();
  }));
  ASSERT_TRUE(eventually([&] {
    auto w = std::make_unique<grpc::ClientContext>();
    w->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{2});
    auto r = alerts->WatchAlerts(w.get(), v1::WatchAlertsRequest{});
    v1::AlertEvent e;
    r->Read(&e);  // ends at the deadline when accepted
    return r->Finish().error_code() == StatusCode::DEADLINE_EXCEEDED;
  }));
  watch.start(*alerts);

  // mtr-1 shifts early (its alert is raised, then cleared once the level is
  // the new normal); mtr-2 shifts at the end (its alert is still open);
  // mtr-3 is steady.
  producer p{kafka->bootstrap()};
  send_meter(p, topics.telemetry, "mtr-1", 160, 60, 8, 1);
  send_meter(p, topics.telemetry, "mtr-2", 160, 150, 8, 2);
  send_meter(p, topics.telemetry, "mtr-3", 160, 1000, 0, 3);
  ASSERT_EQ(p.flush(), 0);
  for (const char* id : {"mtr-1", "mtr-2", "mtr-3"})
    ASSERT_TRUE(applied(id, 160));

  const std::string name2 = "twins/mtr-2/alerts/voltage/1";
  // Listings read the store, which a commit reaches just after Kafka (and
  // GetTwin) have it.
  v1::ListAlertsResponse open;
  v1::ListAlertsResponse all;
  ASSERT_TRUE(eventually([&] {
    return list_alerts("", false, open).ok() && open.alerts_size() > 0 &&
           list_alerts("", true, all).ok() && all.alerts_size() > 1;
  }));
  ASSERT_EQ(open.alerts_size(), 1) << open.ShortDebugString();
  const auto& a = open.alerts(0);
  EXPECT_EQ(a.name(), name2);
  EXPECT_EQ(a.asset_id(), "mtr-2");
  EXPECT_EQ(a.property(), "voltage");
  EXPECT_EQ(a.state(), v1::OPEN);
  EXPECT_EQ(a.kind(), "level_shift");
  EXPECT_EQ(a.twin_kind(), "meter");
  EXPECT_GE(a.peak_score(), 0.5);

  // The cleared alert of mtr-1 is listed on request.
  ASSERT_GE(all.alerts_size(), 2) << all.ShortDebugString();
  EXPECT_EQ(all.alerts(0).asset_id(), "mtr-1");
  EXPECT_EQ(all.alerts(0).state(), v1::CLEARED);
  EXPECT_GT(all.alerts(0).cleared_ms(), all.alerts(0).raised_ms());
  v1::ListAlertsResponse filtered;
  ASSERT_TRUE(list_alerts("state = \"cleared\" AND property = \"voltage\"", true, filtered).ok());
  ASSERT_EQ(filtered.alerts_size(), 1) << filtered.ShortDebugString();
  EXPECT_EQ(filtered.alerts(0).asset_id(), "mtr-1");
  ASSERT_TRUE(list_alerts("detector = \"level_shift\" AND severity:*", false, filtered).ok());
  ASSERT_EQ(filtered.alerts_size(), 1) << filtered.ShortDebugString();
  EXPECT_EQ(filtered.alerts(0).asset_id(), "mtr-2");
  ASSERT_TRUE(list_alerts("kind = \"machine\"", true, filtered).ok());
  EXPECT_EQ(filtered.alerts_size(), 0);
  EXPECT_EQ(list_alerts("severity >", false, filtered).error_code(), StatusCode::INVALID_ARGUMENT);

  // ListTwins reads the analysis: anomalous twins, and scores.
  EXPECT_EQ(list_twins("anomaly:voltage"), std::vector<std::string>{"mtr-2"});
  EXPECT_EQ(list_twins("anomaly.voltage:*"), std::vector<std::string>{"mtr-2"});
  EXPECT_EQ(list_twins("anomaly.voltage < 0.5"), (std::vector<std::string>{"mtr-1", "mtr-3"}));

#ifdef FLEETTWIN_CLI_BINARY
  {
    // The CLI as an operator uses it.
    const auto server = "--server " + node->grpc_address();
    auto [code, out] = cli(server + " alerts list");
    EXPECT_EQ(code, 0) << out;
    EXPECT_NE(out.find("mtr-2"), std::string::npos) << out;
    EXPECT_NE(out.find("open"), std::string::npos) << out;
    EXPECT_EQ(out.find("mtr-1"), std::string::npos) << out;
    std::tie(code, out) =
        cli(server + " --json alerts list --cleared --filter 'asset_id = \"mtr-1\"'");
    EXPECT_EQ(code, 0) << out;
    EXPECT_NE(out.find("\"state\":\"CLEARED\""), std::string::npos) << out;
    std::tie(code, out) = cli(server + " alerts ack mtr-3 voltage 1");
    EXPECT_EQ(code, 3) << out;  // NOT_FOUND
  }
#endif

  // Acknowledging: once; a cleared or unknown alert, and a bad name, are refused.
  v1::Alert acked;
  ASSERT_TRUE(acknowledge(name2, acked).ok());
  EXPECT_EQ(acked.state(), v1::ACKNOWLEDGED);
  EXPECT_EQ(acked.name(), name2);
  auto again = acknowledge(name2, acked);
  EXPECT_EQ(again.error_code(), StatusCode::FAILED_PRECONDITION) << again.error_message();
  EXPECT_EQ(acknowledge("twins/mtr-1/alerts/voltage/1", acked).error_code(),
            StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(acknowledge("twins/mtr-2/alerts/voltage/7", acked).error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(acknowledge("twins/nobody/alerts/voltage/1", acked).error_code(),
            StatusCode::NOT_FOUND);
  auto bad = acknowledge("twins/mtr-2/voltage", acked);
  EXPECT_EQ(bad.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.error_message().find("twins/{asset_id}/alerts/{property}/{number}"),
            std::string::npos)
      << bad.error_message();
  ASSERT_TRUE(eventually([&] {
    return list_alerts("state = \"acknowledged\"", false, filtered).ok() && filtered.alerts_size();
  }));
  ASSERT_EQ(filtered.alerts_size(), 1);
  EXPECT_EQ(filtered.alerts(0).name(), name2);

  // The acknowledgement is part of the twin (it survives in its state).
  v1::Twin tw;
  ASSERT_TRUE(get_twin(*twins, "mtr-2", tw).ok());
  EXPECT_TRUE(tw.analysis().at("voltage").alert_acknowledged());

  // The watch saw every event, the acknowledgement last.
  ASSERT_TRUE(eventually([&] { return watch.seen("acknowledged", name2); }));
  EXPECT_TRUE(watch.seen("raised", name2));
  EXPECT_TRUE(watch.seen("raised", "twins/mtr-1/alerts/voltage/1"));
  EXPECT_TRUE(watch.seen("cleared", "twins/mtr-1/alerts/voltage/1"));
  size_t watched = 0;
  {
    std::lock_guard<std::mutex> guard{watch.mutex};
    watched = watch.events.size();
  }

  // The alerts topic: the same events, as CloudEvents, each once.
  auto records = read_topic(kafka->bootstrap(), topics.alerts, watched, std::chrono::seconds{30});
  ASSERT_EQ(records.size(), watched);
  std::set<std::string> ids;
  for (const auto& r : records) {
    EXPECT_TRUE(ids.insert(r.headers.at("ce_id")).second) << r.headers.at("ce_id");
    v1::AlertEvent e;
    ASSERT_TRUE(e.ParseFromString(r.value));
    EXPECT_EQ(r.key, e.alert().asset_id());
    EXPECT_EQ(r.headers.at("ce_type"), "fleettwin.alert." + e.event() + ".v1");
    EXPECT_EQ(r.headers.at("ce_subject"), e.alert().name());
  }

  auto text = scrape(node->metrics_port());
  double acks = 0;
  for (const char* severity : {"warning", "critical"})
    acks += std::max(0.0, metric_value(text, std::string{"fleettwin_alert_transitions_total{"
                                                         "event=\"acknowledged\",severity=\""} +
                                                 severity + "\"}"));
  EXPECT_EQ(acks, 1) << text;
  EXPECT_EQ(metric_value(text, "fleettwin_alert_watch_streams"), 1) << text;
}

// Asset models set over gRPC: versioned, checked, stored in the models
// topic, applied to the twins of their kind at once, and kept across a
// restart of the node.
TEST_F(AnalyticsNodeTest, ModelsArePutOverGrpcAndDriveTheAnalytics) {
  auto models = v1::ModelService::NewStub(channel);
  auto call = [&](auto method, const auto& req, auto& resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{15});
    return ((*models).*method)(&ctx, req, &resp);
  };
  v1::ListModelsResponse list;
  ASSERT_TRUE(call(&v1::ModelService::Stub::ListModels, v1::ListModelsRequest{}, list).ok());
  std::vector<std::string> kinds;
  for (const auto& m : list.models()) {
    kinds.push_back(m.kind());
    EXPECT_EQ(m.revision(), 0u) << "from the file";
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"machine", "meter", "vehicle"}));

  v1::PutModelRequest put;
  auto* m = put.mutable_model();
  m->set_kind("pump");
  m->set_description("Water pumps");
  auto* flow = m->add_properties();
  flow->set_name("flow");
  flow->set_unit("l/s");
  flow->set_min(0);
  flow->set_max(100);
  flow->set_max_rate_per_s(8);
  flow->set_warning("> 80");
  // Pressure is analysed only while the pump runs, settling for 20 s.
  auto* running = m->add_states();
  running->set_name("running");
  running->set_when("reported.on = true");
  auto* pressure = m->add_properties();
  pressure->set_name("pressure");
  pressure->add_analyse_in("running");
  pressure->set_settle_ms(20'000);
  v1::AssetModel stored;
  auto st = call(&v1::ModelService::Stub::PutModel, put, stored);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(stored.name(), "models/pump");
  EXPECT_EQ(stored.revision(), 1u);
  EXPECT_EQ(stored.properties(0).warning(), "> 80");
  ASSERT_EQ(stored.states_size(), 1);
  EXPECT_EQ(stored.states(0).when(), "reported.on = true");
  EXPECT_EQ(stored.properties(1).analyse_in(0), "running");
  EXPECT_EQ(stored.properties(1).settle_ms(), 20'000);
  ASSERT_TRUE(call(&v1::ModelService::Stub::PutModel, put, stored).ok());
  EXPECT_EQ(stored.revision(), 2u);

#ifdef FLEETTWIN_CLI_BINARY
  {
    const auto server = "--server " + node->grpc_address();
    auto [code, out] = cli(server + " models get pump");
    EXPECT_EQ(code, 0) << out;
    EXPECT_NE(out.find("revision 2"), std::string::npos) << out;
    EXPECT_NE(out.find("> 80"), std::string::npos) << out;
    std::ofstream{dir + "/fan.json"}
        << R"({"kind": "fan", "properties": [{"name": "rpm", "min": 0, "max": 3000}]})";
    std::tie(code, out) = cli(server + " models put " + dir + "/fan.json");
    EXPECT_EQ(code, 0) << out;
    EXPECT_NE(out.find("fan  revision 1"), std::string::npos) << out;
    std::tie(code, out) = cli(server + " models");
    EXPECT_EQ(code, 0) << out;
    for (const char* kind : {"fan", "machine", "meter", "pump", "vehicle"})
      EXPECT_NE(out.find(kind), std::string::npos) << out;
  }
#endif

  // Refused with what to fix.
  auto bad = put;
  bad.mutable_model()->mutable_properties(0)->set_warning("above 80");
  st = call(&v1::ModelService::Stub::PutModel, bad, stored);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("properties[0] (\"flow\"): warning"), std::string::npos)
      << st.error_message();
  bad = put;
  bad.mutable_model()->mutable_properties(0)->set_min(200);
  st = call(&v1::ModelService::Stub::PutModel, bad, stored);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT) << st.error_message();
  bad = put;
  bad.mutable_model()->mutable_properties(1)->set_analyse_in(0, "idle");
  st = call(&v1::ModelService::Stub::PutModel, bad, stored);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("analyse_in names \"idle\", which is not a state"),
            std::string::npos)
      << st.error_message();
  bad = put;
  bad.mutable_model()->mutable_states(0)->set_when("reported.on = ");
  st = call(&v1::ModelService::Stub::PutModel, bad, stored);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("state \"running\": condition"), std::string::npos)
      << st.error_message();
  bad = put;
  bad.mutable_model()->clear_kind();
  EXPECT_EQ(call(&v1::ModelService::Stub::PutModel, bad, stored).error_code(),
            StatusCode::INVALID_ARGUMENT);
  v1::GetModelRequest get;
  get.set_name("models/nope");
  EXPECT_EQ(call(&v1::ModelService::Stub::GetModel, get, stored).error_code(),
            StatusCode::NOT_FOUND);
  get.set_name("pump");
  EXPECT_EQ(call(&v1::ModelService::Stub::GetModel, get, stored).error_code(),
            StatusCode::INVALID_ARGUMENT);

  // The model applies to pumps: 10 l/s in a second is a spike (above its
  // 8 l/s per second), while the same series of a kind without a model is
  // within what the default detectors allow (4.3 spreads from normal).
  producer p{kafka->bootstrap()};
  const int64_t t0 = 1'700'000'000'000;
  for (const auto& [id, kind] : {std::pair{"pmp-1", "pump"}, std::pair{"unk-1", "unmodelled"}})
    for (int s = 1; s <= 40; ++s)
      p.send(topics.telemetry, id,
             telemetry(id, s, t0 + s * 1'000, {{"flow", s == 40 ? 63.0 : 50.0 + (s % 2 ? 3 : -3)}},
                       {}, kind));
  ASSERT_EQ(p.flush(), 0);
  ASSERT_TRUE(applied("pmp-1", 40));
  ASSERT_TRUE(applied("unk-1", 40));
  v1::Twin pump;
  ASSERT_TRUE(get_twin(*twins, "pmp-1", pump).ok());
  EXPECT_EQ(pump.analysis().at("flow").anomaly_kind(), "spike") << pump.ShortDebugString();
  v1::Twin other;
  ASSERT_TRUE(get_twin(*twins, "unk-1", other).ok());
  EXPECT_LT(other.analysis().at("flow").anomaly_score(), 0.5) << other.ShortDebugString();

  // The models topic holds it, and a restarted node applies it again.
  auto records = read_topic(kafka->bootstrap(), topics.models, 2, std::chrono::seconds{30});
  size_t pumps = 0;
  for (const auto& r : records)
    pumps += r.key == "asset-model/pump" ? 1 : 0;
  EXPECT_EQ(pumps, 2u);
  ASSERT_EQ(node->terminate(), 0);
  node =
      std::make_unique<node_process>(kafka->bootstrap(), dir + "/data",
                                     std::vector<std::string>{"--models", FLEETTWIN_DEPLOY_MODELS});
  node->start();
  channel = grpc::CreateChannel(node->grpc_address(), grpc::InsecureChannelCredentials());
  models = v1::ModelService::NewStub(channel);
  get.set_name("models/pump");
  ASSERT_TRUE(call(&v1::ModelService::Stub::GetModel, get, stored).ok());
  EXPECT_EQ(stored.revision(), 2u);
  EXPECT_EQ(stored.description(), "Water pumps");
  ASSERT_EQ(stored.states_size(), 1);
  EXPECT_EQ(stored.states(0).name(), "running");
}

#ifdef FLEETTWIN_SIM_BINARY
// The simulator's injected fault through the whole path: a level shift of a
// meter's voltage raises its alert, which clears once the shift is the new
// normal and is raised and cleared again when the fault ends, on the alerts
// topic (read committed, each event once) and over gRPC; the simulator's
// machines stop and start meanwhile (no fault), which pages nobody.
TEST_F(AnalyticsNodeTest, TheSimulatorsInjectedFaultRaisesAndClearsAnAlert) {
  // Nine assets, each reporting every 5 s of virtual time, for 40 minutes;
  // the fault from minute 20 to 30, 12 V.
  const int64_t start = 1'767'225'600'000;
  auto [code, text] = run_command(
      std::string{FLEETTWIN_SIM_BINARY} + " --bootstrap " + kafka->bootstrap() + " --topic " +
      topics.telemetry + " --assets 9 --count 4320 --rate 0 --virtual-rate 1.8" +
      " --start-time-ms " + std::to_string(start) +
      " --no-topology --fault level_shift:mtr-000002:voltage:1200:600:12 --quiet 2>&1");
  ASSERT_EQ(code, 0) << text;
  for (const char* id : {"mtr-000002", "mch-000001", "mch-000002", "mch-000003"})
    ASSERT_TRUE(applied(id, 480)) << id;

  // Every alert event of the run, from the topic.
  auto metrics_text = scrape(node->metrics_port());
  double events = 0;
  for (const char* event : {"raised", "updated", "cleared"})
    for (const char* severity : {"warning", "critical"})
      events += std::max(
          0.0,
          metric_value(metrics_text, std::string{"fleettwin_alert_transitions_total{event=\""} +
                                         event + "\",severity=\"" + severity + "\"}"));
  ASSERT_GE(events, 2) << metrics_text;
  auto records = read_topic(kafka->bootstrap(), topics.alerts, static_cast<size_t>(events),
                            std::chrono::seconds{30});
  ASSERT_EQ(records.size(), static_cast<size_t>(events));
  std::vector<v1::AlertEvent> voltage;
  for (const auto& r : records) {
    v1::AlertEvent e;
    ASSERT_TRUE(e.ParseFromString(r.value));
    EXPECT_NE(e.alert().twin_kind(), "machine") << e.ShortDebugString();
    if (e.alert().asset_id() == "mtr-000002" && e.alert().property() == "voltage")
      voltage.push_back(e);
  }
  // Raised within a minute of the fault's start, cleared after it; then
  // again when the voltage comes back at the fault's end.
  ASSERT_GE(voltage.size(), 2u);
  EXPECT_EQ(voltage[0].event(), "raised");
  EXPECT_GE(voltage[0].time_ms(), start + 1'200'000);
  EXPECT_LE(voltage[0].time_ms(), start + 1'260'000);
  EXPECT_EQ(voltage[0].alert().kind(), "level_shift");
  bool cleared_within = false, again = false;
  uint32_t raised = 0;
  for (const auto& e : voltage) {
    cleared_within |=
        e.event() == "cleared" && e.alert().number() == 1 && e.time_ms() < start + 1'800'000;
    again |= e.event() == "raised" && e.time_ms() >= start + 1'800'000 &&
             e.time_ms() <= start + 1'860'000;
    raised += e.event() == "raised";
  }
  EXPECT_TRUE(cleared_within);
  EXPECT_TRUE(again);

  // Over gRPC: the meter's alerts, the last one cleared.
  v1::ListAlertsResponse listed;
  ASSERT_TRUE(list_alerts("asset_id = \"mtr-000002\"", true, listed).ok());
  ASSERT_EQ(listed.alerts_size(), 1) << listed.ShortDebugString();
  EXPECT_EQ(listed.alerts(0).property(), "voltage");
  EXPECT_EQ(listed.alerts(0).number(), raised);
  EXPECT_EQ(listed.alerts(0).state(), v1::CLEARED);
}
#endif

// A vehicle's battery runs down along a line while its speed sensor
// misbehaves: the twin shows the quality flags and score, its time to
// failure (the model's "battery < 10") and health; GetForecast gives the
// points, intervals and the failure's interval; ListTwins filters on them.
TEST_F(AnalyticsNodeTest, QualityForecastAndTimeToFailureOfAVehicle) {
  producer p{kafka->bootstrap()};
  const int64_t t0 = 1'700'000'000'000;
  const int64_t every = 30'000;  // the model's expected interval
  int sent = 0;
  for (int s = 1; s <= 80; ++s) {
    if (s >= 41 && s <= 45)
      continue;  // five reports lost
    std::map<std::string, double> m{{"battery", 80.0 - 0.5 * s}, {"speed", 60.0 + (s % 3)}};
    if (s == 70)
      m["speed"] = 250;  // beyond the model's range [0, 200]: applied, and flagged
    p.send(topics.telemetry, "veh-1", telemetry("veh-1", s, t0 + s * every, m));
    ++sent;
  }
  // A healthy vehicle for contrast.
  for (int s = 1; s <= 20; ++s)
    p.send(topics.telemetry, "veh-2",
           telemetry("veh-2", s, t0 + s * every, {{"battery", 90.0}, {"speed", 50.0 + (s % 2)}}));
  ASSERT_EQ(p.flush(), 0);
  ASSERT_TRUE(applied("veh-1", sent));
  ASSERT_TRUE(applied("veh-2", 20));

  v1::Twin tw;
  ASSERT_TRUE(get_twin(*twins, "veh-1", tw).ok());
  const auto& speed = tw.analysis().at("speed");
  EXPECT_EQ(speed.out_of_range_samples(), 1u);
  EXPECT_EQ(speed.missing_reports(), 5u);
  EXPECT_GT(speed.bad_sample_rate(), 0);
  EXPECT_EQ(tw.reported().at("speed").value().double_value(), 60.0 + 80 % 3) << "applied";
  const auto& battery = tw.analysis().at("battery");
  EXPECT_EQ(battery.missing_reports(), 5u);
  // 40 % left at 0.5 % a sample: 60 samples of 30 s after the last one.
  const int64_t last = t0 + 80 * every;
  ASSERT_TRUE(battery.has_failure_expected_ms()) << battery.ShortDebugString();
  EXPECT_NEAR(static_cast<double>(battery.failure_expected_ms() - last), 60.0 * every, 3.0 * every);
  EXPECT_FALSE(battery.failed());
  EXPECT_EQ(tw.failure_expected_ms(), battery.failure_expected_ms());
  EXPECT_LT(tw.quality_score(), 1.0);
  EXPECT_GT(tw.quality_score(), 0.5);
  // Failure within a day: health at most 0.5.
  EXPECT_LE(tw.health(), 0.5);
  v1::Twin healthy;
  ASSERT_TRUE(get_twin(*twins, "veh-2", healthy).ok());
  EXPECT_EQ(healthy.quality_score(), 1.0);
  EXPECT_EQ(healthy.health(), 1.0);
  EXPECT_FALSE(healthy.analysis().at("battery").has_failure_expected_ms());

  // Listings read the store, which a commit reaches just after GetTwin.
  EXPECT_TRUE(eventually([&] {
    return list_twins("quality.score = 1").size() == 1 && list_twins("health < 0.6").size() == 1;
  }));
  EXPECT_EQ(list_twins("quality.score = 1"), std::vector<std::string>{"veh-2"});
  EXPECT_EQ(list_twins("health < 0.6"), std::vector<std::string>{"veh-1"});
  EXPECT_EQ(list_twins("quality.score < 1"), std::vector<std::string>{"veh-1"});
  // Flags are the last sample's: veh-1's last one is clean.
  EXPECT_TRUE(list_twins("quality:*").empty());

  // The forecast: a line down, with widening intervals around it.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{10});
  v1::GetForecastRequest req;
  req.set_name("twins/veh-1");
  req.set_property("battery");
  req.set_horizon_ms(600'000);
  req.set_step_ms(every);
  v1::Forecast f;
  auto st = twins->GetForecast(&ctx, req, &f);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(f.method(), "damped_holt");
  EXPECT_EQ(f.origin_ms(), last);
  EXPECT_DOUBLE_EQ(f.origin_value(), 40.0);
  ASSERT_EQ(f.points_size(), 20);  // every 30 s for 10 minutes
  EXPECT_EQ(f.points(0).time_ms(), last + every);
  // Down from 40 (the damped trend bends a little less steeply than the line).
  EXPECT_NEAR(f.points(0).value(), 39.5, 1.0);
  EXPECT_GT(f.points(19).value(), 28.0);
  EXPECT_LT(f.points(19).value(), 37.0);
  for (int i = 1; i < f.points_size(); ++i)
    EXPECT_LT(f.points(i).value(), f.points(i - 1).value());
  for (const auto& pt : f.points()) {
    EXPECT_LE(pt.lower95(), pt.lower80());
    EXPECT_LE(pt.lower80(), pt.value());
    EXPECT_LE(pt.value(), pt.upper80());
    EXPECT_LE(pt.upper80(), pt.upper95());
  }
  ASSERT_TRUE(f.has_time_to_failure());
  const auto& ttf = f.time_to_failure();
  EXPECT_EQ(ttf.threshold(), "< 10");
  ASSERT_TRUE(ttf.has_expected_ms());
  EXPECT_NEAR(static_cast<double>(ttf.expected_ms() - last), 60.0 * every, 3.0 * every);
  ASSERT_TRUE(ttf.has_earliest_ms());
  EXPECT_LE(ttf.earliest_ms(), ttf.expected_ms());

  // Precise errors.
  auto forecast = [&](const std::string& name, const std::string& property, int64_t horizon) {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{10});
    v1::GetForecastRequest r;
    r.set_name(name);
    r.set_property(property);
    r.set_horizon_ms(horizon);
    v1::Forecast out;
    return twins->GetForecast(&c, r, &out).error_code();
  };
  EXPECT_EQ(forecast("twins/veh-1", "battery", 0), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(forecast("twins/veh-1", "", 60'000), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(forecast("veh-1", "battery", 60'000), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(forecast("twins/veh-1", "tyres", 60'000), StatusCode::NOT_FOUND);
  EXPECT_EQ(forecast("twins/nobody", "battery", 60'000), StatusCode::NOT_FOUND);

#ifdef FLEETTWIN_CLI_BINARY
  auto [code, out] =
      cli("--server " + node->grpc_address() + " forecast veh-1 battery --horizon 5m");
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("failure (< 10)"), std::string::npos) << out;
  EXPECT_NE(out.find("damped_holt"), std::string::npos) << out;
#endif

  auto text = scrape(node->metrics_port());
  EXPECT_EQ(metric_value(text, "fleettwin_quality_flags_total{flag=\"out_of_range\"}"), 1) << text;
  EXPECT_GE(metric_value(text, "fleettwin_quality_flags_total{flag=\"gap\"}"), 2) << text;
  // The node's forecast error (scaled, summed over the samples scored).
  const double scored = metric_value(text, "fleettwin_forecast_scored_samples_total");
  EXPECT_GT(scored, 100) << text;
  const double scaled = metric_value(text, "fleettwin_forecast_scaled_error_total");
  EXPECT_GT(scaled, 0) << text;
  EXPECT_LT(scaled / scored, 5.0) << text;
}

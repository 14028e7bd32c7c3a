// Tenant isolation and sensitive properties on a real node (TLS, tokens, embedded Kafka):
// a token's tenant claim confines every twin method to that tenant's twins, another
// tenant's twin answers exactly like one that does not exist, and a record that tries to
// move a twin to another tenant goes to the dead-letter topic; properties the asset model
// marks sensitive are masked in every read for tokens without read_sensitive.

#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include <grpcpp/grpcpp.h>

#include "fleettwin/v1/aggregate.grpc.pb.h"
#include "fleettwin/v1/analytics.grpc.pb.h"
#include "fleettwin/v1/scenario.grpc.pb.h"
#include "fleettwin/v1/service.grpc.pb.h"
#include "fleettwin/v1/twin.pb.h"
#include "integration/harness.hpp"
#include "support/kafka_io.hpp"
#include "support/pki.hpp"
#include "support/token_issuer.hpp"

namespace fleettwin::test {
namespace {

using namespace std::chrono_literals;
using grpc::StatusCode;

std::string json_record(const std::string& asset, const std::string& tenant, uint64_t seq,
                        double speed) {
  std::string out = R"({"asset_id":")" + asset + R"(","kind":"vehicle","sequence":)" +
                    std::to_string(seq) + R"(,"metrics":{"speed":)" + std::to_string(speed) + "}";
  if (!tenant.empty())
    out += R"(,"tenant":")" + tenant + "\"";
  return out + "}";
}

class TenantTest : public ::testing::Test {
protected:
  void SetUp() override {
    p.issue("node node-a");
    auto dir = make_temp_dir("tenants");
    std::ofstream{dir + "/jwks.json"} << token_issuer::jwks({&ec});
    // A vehicle's position is personal data.
    std::ofstream{dir + "/models.toml"} << R"([[model]]
kind = "vehicle"
[model.properties.lat]
sensitive = true
[model.properties.lon]
sensitive = true
[model.properties.speed]
unit = "km/h"
)";
    std::ofstream{dir + "/kinds.toml"} << R"toml([[kind]]
name = "fleet"
collection = "fleets"
members = ["member_of"]
measures = ["n = count()", "speed = sum(reported.speed)", "lat_mean = mean(reported.lat)"]

[[kind]]
name = "region"
collection = "regions"
members = ["member_of"]
measures = ["n = count()"]

[[rule]]
attribute = "fleet"
relation = "member_of"
collection = "fleets"
)toml";
    auto args = p.node_flags("node-a", false);
    args.insert(args.end(), {"--auth-jwks", dir + "/jwks.json", "--auth-issuer", "fleettwin-tests",
                             "--auth-audience", "fleettwin", "--models", dir + "/models.toml",
                             "--aggregates", dir + "/kinds.toml"});
    node = std::make_unique<node_process>("", make_temp_dir("tenant-node"), args);
    node->use_credentials(with_token(token("admin", "")));
    node->start();
  }

  std::string token(const std::string& role, const std::string& tenant,
                    bool read_sensitive = false) {
    std::vector<std::string> roles{role};
    if (read_sensitive)
      roles.emplace_back("read_sensitive");
    return ec.sign(claims("user-of-" + (tenant.empty() ? "all" : tenant), roles, unix_now(), 600,
                          "fleettwin-tests", "fleettwin", tenant));
  }
  std::shared_ptr<grpc::ChannelCredentials> with_token(const std::string& t) {
    return grpc::CompositeChannelCredentials(p.credentials(), grpc::AccessTokenCredentials(t));
  }
  template <class Service>
  std::unique_ptr<typename Service::Stub> stub(const std::string& t) {
    return Service::NewStub(grpc::CreateChannel(node->grpc_address(), with_token(t)));
  }

  /// Produces JSON records and waits until the admin sees `asset` at `version`.
  void produce_and_wait(const std::vector<std::pair<std::string, std::string>>& records,
                        const std::string& asset, uint64_t version) {
    producer prod{node->bootstrap()};
    for (const auto& [key, value] : records)
      prod.send("fleettwin.telemetry", key, value, "application/json");
    ASSERT_EQ(prod.flush(), 0);
    auto admin = stub<v1::TwinService>(token("admin", ""));
    ASSERT_TRUE(eventually([&] {
      grpc::ClientContext ctx;
      v1::GetTwinRequest req;
      req.set_name("twins/" + asset);
      v1::Twin t;
      return admin->GetTwin(&ctx, req, &t).ok() && t.version() >= version;
    }));
  }

  token_issuer ec = token_issuer::make(token_issuer::kind::es256, "ec-1");
  pki p{"pki-tenants"};
  std::unique_ptr<node_process> node;
};

TEST_F(TenantTest, ACallerSeesOnlyItsTenantsTwinsThroughEveryTwinMethod) {
  produce_and_wait({{"a1", json_record("a1", "acme", 1, 10)},
                    {"a2", json_record("a2", "acme", 1, 11)},
                    {"b1", json_record("b1", "beta", 1, 20)},
                    {"n1", json_record("n1", "", 1, 30)}},
                   "n1", 1);
  for (const char* id : {"a1", "a2", "b1"})
    produce_and_wait({}, id, 1);
  // Listings read what is stored, which follows the commit (GetTwin may show a change
  // sooner): wait until every twin is listed.
  auto all = stub<v1::TwinService>(token("viewer", ""));
  ASSERT_TRUE(eventually([&] {
    grpc::ClientContext ctx;
    v1::ListTwinsResponse resp;
    return all->ListTwins(&ctx, v1::ListTwinsRequest{}, &resp).ok() && resp.twins_size() == 4;
  }));

  auto acme = stub<v1::TwinService>(token("operator", "acme"));
  auto get = [&](const std::string& id, v1::Twin& out) {
    grpc::ClientContext ctx;
    v1::GetTwinRequest req;
    req.set_name("twins/" + id);
    return acme->GetTwin(&ctx, req, &out);
  };
  v1::Twin t;
  ASSERT_TRUE(get("a1", t).ok());
  EXPECT_EQ(t.tenant(), "acme");
  // Another tenant's twin, a twin without a tenant and one that does not exist answer alike.
  auto missing = get("zz", t);
  ASSERT_EQ(missing.error_code(), StatusCode::NOT_FOUND);
  for (const char* id : {"b1", "n1"}) {
    auto st = get(id, t);
    EXPECT_EQ(st.error_code(), StatusCode::NOT_FOUND) << id;
    EXPECT_EQ(st.error_message(), "twin \"" + std::string{id} + "\" not found");
  }

  {  // ListTwins: only acme's, whatever the filter asks for.
    for (const std::string filter :
         {"", "tenant = \"beta\"", "asset_id = \"b1\"", "tenant = \"beta\" OR tenant = \"acme\""}) {
      grpc::ClientContext ctx;
      v1::ListTwinsRequest req;
      req.set_filter(filter);
      v1::ListTwinsResponse resp;
      ASSERT_TRUE(acme->ListTwins(&ctx, req, &resp).ok()) << filter;
      for (const auto& tw : resp.twins())
        EXPECT_EQ(tw.tenant(), "acme") << filter;
      if (filter.empty() || filter.find("OR") != std::string::npos)
        EXPECT_EQ(resp.twins_size(), 2) << filter;
    }
    // Paging with a page token works within the tenant.
    grpc::ClientContext ctx;
    v1::ListTwinsRequest req;
    req.set_page_size(1);
    v1::ListTwinsResponse first;
    ASSERT_TRUE(acme->ListTwins(&ctx, req, &first).ok());
    ASSERT_EQ(first.twins_size(), 1);
    ASSERT_FALSE(first.next_page_token().empty());
    grpc::ClientContext ctx2;
    req.set_page_token(first.next_page_token());
    v1::ListTwinsResponse second;
    ASSERT_TRUE(acme->ListTwins(&ctx2, req, &second).ok());
    ASSERT_EQ(second.twins_size(), 1);
    EXPECT_EQ(second.twins(0).asset_id(), "a2");
  }
  {  // BatchGetTwins fails whole, like for a twin that does not exist.
    grpc::ClientContext ctx;
    v1::BatchGetTwinsRequest req;
    req.add_names("twins/a1");
    req.add_names("twins/b1");
    v1::BatchGetTwinsResponse resp;
    EXPECT_EQ(acme->BatchGetTwins(&ctx, req, &resp).error_code(), StatusCode::NOT_FOUND);
  }
  {  // History and forecasts.
    grpc::ClientContext ctx;
    v1::GetHistoryRequest req;
    req.set_name("twins/b1");
    req.set_property("speed");
    v1::GetHistoryResponse resp;
    EXPECT_EQ(acme->GetHistory(&ctx, req, &resp).error_code(), StatusCode::NOT_FOUND);
    grpc::ClientContext ctx2;
    req.set_name("twins/a1");
    EXPECT_TRUE(acme->GetHistory(&ctx2, req, &resp).ok());
    grpc::ClientContext ctx3;
    v1::GetForecastRequest f;
    f.set_name("twins/b1");
    f.set_property("speed");
    f.set_horizon_ms(60'000);
    v1::Forecast fr;
    EXPECT_EQ(acme->GetForecast(&ctx3, f, &fr).error_code(), StatusCode::NOT_FOUND);
  }
  {  // Writes: another tenant's twin is not found, and left alone.
    grpc::ClientContext ctx;
    v1::UpdateDesiredRequest req;
    req.set_name("twins/b1");
    (*req.mutable_desired())["speed_limit"].set_double_value(50);
    v1::Twin out;
    auto st = acme->UpdateDesired(&ctx, req, &out);
    EXPECT_EQ(st.error_code(), StatusCode::NOT_FOUND) << st.error_message();
    grpc::ClientContext ctx2;
    req.set_name("twins/a1");
    ASSERT_TRUE(acme->UpdateDesired(&ctx2, req, &out).ok());
    EXPECT_EQ(out.desired().at("speed_limit").double_value(), 50);
    auto beta = stub<v1::TwinService>(token("viewer", "beta"));
    grpc::ClientContext ctx3;
    v1::GetTwinRequest get_b1;
    get_b1.set_name("twins/b1");
    ASSERT_TRUE(beta->GetTwin(&ctx3, get_b1, &out).ok());
    EXPECT_TRUE(out.desired().empty());
    auto alerts = stub<v1::AlertService>(token("operator", "acme"));
    grpc::ClientContext ctx4;
    v1::AcknowledgeAlertRequest ack;
    ack.set_name("twins/b1/alerts/speed/1");
    v1::Alert alert;
    auto acked = alerts->AcknowledgeAlert(&ctx4, ack, &alert);
    EXPECT_EQ(acked.error_code(), StatusCode::NOT_FOUND) << acked.error_message();

    // Bulk: a filter selects only acme's twins, whatever it asks for; named twins of
    // another tenant (or none) are not found, exactly like twins that do not exist.
    v1::BulkUpdateDesiredRequest bulk;
    bulk.set_filter("tenant = \"beta\" OR tenant = \"acme\" OR version > 0");
    (*bulk.mutable_desired())["mode"].set_string_value("eco");
    grpc::ClientContext ctx5;
    auto reader = acme->BulkUpdateDesired(&ctx5, bulk);
    v1::BulkUpdateDesiredProgress m;
    std::set<std::string> changed;
    while (reader->Read(&m))
      for (const auto& o : m.outcomes())
        if (o.code() == "OK")
          changed.insert(o.name());
    auto st5 = reader->Finish();
    ASSERT_TRUE(st5.ok()) << st5.error_message();
    EXPECT_EQ(changed, (std::set<std::string>{"twins/a1", "twins/a2"}));
    grpc::ClientContext ctx6;
    v1::BatchUpdateDesiredRequest batch;
    for (const char* n : {"twins/a1", "twins/b1", "twins/n1"})
      batch.add_names(n);
    (*batch.mutable_desired())["mode"].set_string_value("sport");
    v1::BatchUpdateDesiredResponse resp;
    ASSERT_TRUE(acme->BatchUpdateDesired(&ctx6, batch, &resp).ok());
    ASSERT_EQ(resp.outcomes_size(), 3);
    EXPECT_EQ(resp.outcomes(0).code(), "OK");
    EXPECT_EQ(resp.outcomes(1).code(), "NOT_FOUND");
    EXPECT_EQ(resp.outcomes(1).message(), "twin \"b1\" not found");
    EXPECT_EQ(resp.outcomes(2).code(), "NOT_FOUND");
    grpc::ClientContext ctx7;
    ASSERT_TRUE(beta->GetTwin(&ctx7, get_b1, &out).ok());
    EXPECT_TRUE(out.desired().empty());
  }
  {  // A token without a tenant claim sees every tenant.
    grpc::ClientContext ctx;
    v1::ListTwinsRequest req;
    v1::ListTwinsResponse resp;
    ASSERT_TRUE(all->ListTwins(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.twins_size(), 4);
  }
}

std::string fleet_record(const std::string& asset, const std::string& tenant,
                         const std::string& fleet, uint64_t seq, double speed) {
  return R"({"asset_id":")" + asset + R"(","kind":"vehicle","tenant":")" + tenant +
         R"(","sequence":)" + std::to_string(seq) + R"(,"attributes":{"fleet":")" + fleet +
         R"("},"metrics":{"speed":)" + std::to_string(speed) + R"(,"lat":52.5}})";
}

TEST_F(TenantTest, AggregatesShowOnlyTheCallersTenant) {
  // fleets/fa holds acme's twins only, fleets/fb beta's, fleets/mixed twins of both.
  produce_and_wait({{"a1", fleet_record("a1", "acme", "fa", 1, 10)},
                    {"a2", fleet_record("a2", "acme", "fa", 1, 20)},
                    {"b1", fleet_record("b1", "beta", "fb", 1, 30)},
                    {"x1", fleet_record("x1", "beta", "mixed", 1, 40)},
                    {"x2", fleet_record("x2", "acme", "mixed", 1, 50)}},
                   "x2", 1);
  auto all = stub<v1::AggregateService>(token("admin", ""));
  auto get_as = [](v1::AggregateService::Stub& s, const std::string& id, v1::Aggregate& out) {
    grpc::ClientContext ctx;
    v1::GetAggregateRequest req;
    req.set_name("aggregates/" + id);
    return s.GetAggregate(&ctx, req, &out);
  };
  v1::Aggregate a;
  for (const auto& [id, twins] :
       std::map<std::string, uint64_t>{{"fleets/fa", 2}, {"fleets/fb", 1}, {"fleets/mixed", 2}})
    ASSERT_TRUE(eventually([&] { return get_as(*all, id, a).ok() && a.member_twins() == twins; }))
        << id;
  ASSERT_TRUE(get_as(*all, "fleets/mixed", a).ok());
  EXPECT_EQ(a.tenant(), "");  // twins of two tenants: no tenant's
  // Listings read what is stored: wait until every fleet is listed.
  ASSERT_TRUE(eventually([&] {
    grpc::ClientContext ctx;
    v1::ListAggregatesResponse resp;
    return all->ListAggregates(&ctx, v1::ListAggregatesRequest{}, &resp).ok() &&
           resp.aggregates_size() == 3;
  }));

  auto acme = stub<v1::AggregateService>(token("viewer", "acme"));
  ASSERT_TRUE(get_as(*acme, "fleets/fa", a).ok());
  EXPECT_EQ(a.tenant(), "acme");
  EXPECT_EQ(a.measures(1).value(), 30);
  // Another tenant's aggregate, a mixed one and one that does not exist answer alike.
  for (const char* id : {"fleets/fb", "fleets/mixed", "fleets/none"}) {
    auto st = get_as(*acme, id, a);
    EXPECT_EQ(st.error_code(), StatusCode::NOT_FOUND) << id;
    EXPECT_EQ(st.error_message(), "aggregate \"" + std::string{id} + "\" not found");
  }
  {  // BatchGetAggregates fails whole.
    grpc::ClientContext ctx;
    v1::BatchGetAggregatesRequest req;
    req.add_names("aggregates/fleets/fa");
    req.add_names("aggregates/fleets/fb");
    v1::BatchGetAggregatesResponse resp;
    EXPECT_EQ(acme->BatchGetAggregates(&ctx, req, &resp).error_code(), StatusCode::NOT_FOUND);
  }
  // ListAggregates: only acme's, whatever the filter asks for.
  for (const std::string filter : {"", "tenant = \"beta\"", "aggregate_id = \"fleets/fb\"",
                                   "tenant = \"beta\" OR tenant = \"acme\""}) {
    grpc::ClientContext ctx;
    v1::ListAggregatesRequest req;
    req.set_filter(filter);
    v1::ListAggregatesResponse resp;
    ASSERT_TRUE(acme->ListAggregates(&ctx, req, &resp).ok()) << filter;
    for (const auto& agg : resp.aggregates())
      EXPECT_EQ(agg.aggregate_id(), "fleets/fa") << filter;
    if (filter.empty() || filter.find("OR") != std::string::npos)
      EXPECT_EQ(resp.aggregates_size(), 1) << filter;
  }
  {  // Members, without the sensitive values a measure reads; not those of another tenant.
    grpc::ClientContext ctx;
    v1::ListMembersRequest req;
    req.set_name("aggregates/fleets/fa");
    v1::ListMembersResponse resp;
    ASSERT_TRUE(acme->ListMembers(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.members_size(), 2);
    EXPECT_TRUE(resp.members(0).reported().contains("speed"));
    EXPECT_FALSE(resp.members(0).reported().contains("lat"));
    auto trusted = stub<v1::AggregateService>(token("viewer", "acme", true));
    grpc::ClientContext ctx2;
    ASSERT_TRUE(trusted->ListMembers(&ctx2, req, &resp).ok());
    EXPECT_TRUE(resp.members(0).reported().contains("lat"));
    grpc::ClientContext ctx3;
    req.set_name("aggregates/fleets/mixed");
    EXPECT_EQ(acme->ListMembers(&ctx3, req, &resp).error_code(), StatusCode::NOT_FOUND);
    grpc::ClientContext ctx4;
    req.set_name("aggregates/fleets/fa");
    req.set_filter("reported.lat > 50");
    EXPECT_EQ(acme->ListMembers(&ctx4, req, &resp).error_code(), StatusCode::PERMISSION_DENIED);
  }
  {  // History.
    grpc::ClientContext ctx;
    v1::GetAggregateHistoryRequest req;
    req.set_name("aggregates/fleets/fb");
    v1::GetAggregateHistoryResponse resp;
    EXPECT_EQ(acme->GetAggregateHistory(&ctx, req, &resp).error_code(), StatusCode::NOT_FOUND);
    grpc::ClientContext ctx2;
    req.set_name("aggregates/fleets/fa");
    EXPECT_TRUE(acme->GetAggregateHistory(&ctx2, req, &resp).ok());
  }
  {  // Relations of another tenant's twin or aggregate are not found; its own show.
    for (const std::string name : {"twins/b1", "aggregates/fleets/fb", "aggregates/fleets/mixed"}) {
      grpc::ClientContext ctx;
      v1::GetRelationsRequest req;
      req.set_name(name);
      v1::Relations resp;
      auto st = acme->GetRelations(&ctx, req, &resp);
      EXPECT_EQ(st.error_code(), StatusCode::NOT_FOUND) << name;
    }
    grpc::ClientContext ctx;
    v1::GetRelationsRequest req;
    req.set_name("twins/a1");
    v1::Relations resp;
    ASSERT_TRUE(acme->GetRelations(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.tenant(), "acme");
    ASSERT_EQ(resp.parents_size(), 1);
    EXPECT_EQ(resp.parents(0).parent(), "aggregates/fleets/fa");
  }
  {  // Traversals start only from what the caller sees, and reach only that.
    auto traverse = [&](const std::string& start, v1::Direction d, v1::TraverseResponse& resp) {
      grpc::ClientContext ctx;
      v1::TraverseRequest req;
      req.set_start(start);
      req.set_direction(d);
      req.set_max_hops(3);
      req.set_include_aggregates(true);
      return acme->Traverse(&ctx, req, &resp);
    };
    v1::TraverseResponse resp;
    ASSERT_TRUE(traverse("aggregates/fleets/fa", v1::DOWN, resp).ok());
    ASSERT_EQ(resp.hits_size(), 2);
    EXPECT_EQ(resp.hits(0).twin().asset_id(), "a1");
    EXPECT_EQ(resp.hits(0).twin().reported().at("lat").value().kind_case(),
              v1::Value::KIND_NOT_SET);  // masked like GetTwin
    resp.Clear();
    ASSERT_TRUE(traverse("twins/x2", v1::UP, resp).ok());
    EXPECT_EQ(resp.hits_size(), 0);  // fleets/mixed is not acme's
    EXPECT_EQ(traverse("aggregates/fleets/fb", v1::DOWN, resp).error_code(), StatusCode::NOT_FOUND);
    EXPECT_EQ(traverse("twins/b1", v1::UP, resp).error_code(), StatusCode::NOT_FOUND);
  }
  {  // Writes: kinds are every tenant's; relations only among the caller's tenant's.
    auto acme_admin = stub<v1::AggregateService>(token("admin", "acme"));
    grpc::ClientContext ctx;
    v1::PutAggregateKindRequest put;
    put.mutable_kind()->set_name("fleet");
    put.mutable_kind()->set_collection("fleets");
    put.mutable_kind()->add_member_relations("member_of");
    v1::AggregateKind kind;
    auto st = acme_admin->PutAggregateKind(&ctx, put, &kind);
    EXPECT_EQ(st.error_code(), StatusCode::PERMISSION_DENIED) << st.error_message();
    auto relate = [&](const std::string& child, const std::string& parent) {
      grpc::ClientContext c;
      v1::SetRelationsRequest req;
      req.set_child(child);
      auto* r = req.add_relations();
      r->set_type("member_of");
      r->set_parent(parent);
      v1::Relations out;
      return acme_admin->SetRelations(&c, req, &out);
    };
    EXPECT_EQ(relate("twins/b1", "aggregates/regions/r1").error_code(), StatusCode::NOT_FOUND);
    st = relate("twins/a1", "aggregates/fleets/fb");
    EXPECT_EQ(st.error_code(), StatusCode::FAILED_PRECONDITION) << st.error_message();
    st = relate("aggregates/fleets/fa", "aggregates/regions/r1");
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_TRUE(eventually([&] { return get_as(*acme, "regions/r1", a).ok(); }));
    EXPECT_EQ(a.tenant(), "acme");
    EXPECT_EQ(a.member_twins(), 2u);
    grpc::ClientContext c2;
    v1::DeleteRelationsRequest del;
    del.set_child("twins/b1");
    del.add_parents("aggregates/fleets/fb");
    v1::Relations out;
    EXPECT_EQ(acme_admin->DeleteRelations(&c2, del, &out).error_code(), StatusCode::NOT_FOUND);
    ASSERT_TRUE(get_as(*all, "fleets/fb", a).ok());
    EXPECT_EQ(a.member_twins(), 1u);  // left alone
  }
}

TEST_F(TenantTest, AnAggregateWatchShowsOnlyTheCallersTenant) {
  produce_and_wait({{"a1", fleet_record("a1", "acme", "fa", 1, 10)},
                    {"b1", fleet_record("b1", "beta", "fb", 1, 30)}},
                   "b1", 1);
  auto acme = stub<v1::AggregateService>(token("viewer", "acme"));
  auto all = stub<v1::AggregateService>(token("viewer", ""));
  grpc::ClientContext acme_ctx, all_ctx;
  auto acme_reader = acme->WatchAggregates(&acme_ctx, v1::WatchAggregatesRequest{});
  auto all_reader = all->WatchAggregates(&all_ctx, v1::WatchAggregatesRequest{});
  acme_reader->WaitForInitialMetadata();
  all_reader->WaitForInitialMetadata();
  // beta's fleet changes, and every stream has been sent that change, before acme's
  // changes: the first change acme's stream shows must be acme's.
  produce_and_wait({{"b1", fleet_record("b1", "beta", "fb", 2, 31)}}, "b1", 2);
  v1::AggregateChange change;
  bool seen = false;
  while (!seen && all_reader->Read(&change))
    seen = change.aggregate_id() == "fleets/fb" && change.measures(1).value() == 31;
  ASSERT_TRUE(seen);
  EXPECT_EQ(change.tenant(), "beta");
  produce_and_wait({{"a1", fleet_record("a1", "acme", "fa", 2, 11)}}, "a1", 2);
  ASSERT_TRUE(acme_reader->Read(&change));
  EXPECT_EQ(change.aggregate_id(), "fleets/fa");
  EXPECT_EQ(change.tenant(), "acme");
  acme_ctx.TryCancel();
  all_ctx.TryCancel();
}

TEST_F(TenantTest, AWatchShowsOnlyTheCallersTenant) {
  produce_and_wait({{"a1", json_record("a1", "acme", 1, 10)}}, "a1", 1);
  produce_and_wait({{"b1", json_record("b1", "beta", 1, 20)}}, "b1", 1);
  auto acme = stub<v1::TwinService>(token("viewer", "acme"));
  grpc::ClientContext ctx;
  v1::WatchTwinsRequest req;
  auto reader = acme->WatchTwins(&ctx, req);
  reader->WaitForInitialMetadata();
  // beta's change is committed (and fanned out) before acme's is produced: the first change
  // the stream shows must be acme's.
  produce_and_wait({{"b1", json_record("b1", "beta", 2, 21)}}, "b1", 2);
  produce_and_wait({{"a1", json_record("a1", "acme", 2, 12)}}, "a1", 2);
  v1::TwinChange change;
  ASSERT_TRUE(reader->Read(&change));
  EXPECT_EQ(change.asset_id(), "a1");
  EXPECT_EQ(change.tenant(), "acme");
  ctx.TryCancel();
}

TEST_F(TenantTest, ARecordNamingAnotherTenantGoesToTheDeadLetterTopic) {
  produce_and_wait({{"a1", json_record("a1", "acme", 1, 10)}}, "a1", 1);
  // A record without a tenant keeps the twin's; one naming another is refused whole.
  produce_and_wait({{"a1", json_record("a1", "beta", 2, 99)}, {"a1", json_record("a1", "", 3, 13)}},
                   "a1", 2);
  auto admin = stub<v1::TwinService>(token("admin", ""));
  grpc::ClientContext ctx;
  v1::GetTwinRequest req;
  req.set_name("twins/a1");
  v1::Twin t;
  ASSERT_TRUE(admin->GetTwin(&ctx, req, &t).ok());
  EXPECT_EQ(t.tenant(), "acme");
  EXPECT_EQ(t.reported().at("speed").value().double_value(), 13);
  EXPECT_EQ(t.version(), 2u);
  auto dlq = read_topic(node->bootstrap(), "fleettwin.telemetry.dlq", 1, 20s);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].key, "a1");
  EXPECT_EQ(dlq[0].headers["fleettwin-dlq-code"], "tenant_conflict");
  EXPECT_NE(dlq[0].headers["fleettwin-dlq-reason"].find("belongs to tenant \"acme\""),
            std::string::npos)
      << dlq[0].headers["fleettwin-dlq-reason"];
}

TEST_F(TenantTest, ClientsMayNotSendTheMetadataNodesForwardCallersWith) {
  auto acme = stub<v1::TwinService>(token("viewer", "acme"));
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-fleettwin-caller", "v1;admin;s;;root");
  v1::ListTwinsRequest req;
  v1::ListTwinsResponse resp;
  auto st = acme->ListTwins(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_NE(st.error_message().find("reserved"), std::string::npos) << st.error_message();
  // A tenant claim that is not a tenant's name is refused, not taken for "every tenant".
  auto bad = stub<v1::TwinService>(ec.sign(
      R"({"sub":"x","roles":["viewer"],"tenant":42,"iss":"fleettwin-tests","aud":"fleettwin","exp":)" +
      std::to_string(unix_now() + 600) + "}"));
  grpc::ClientContext ctx2;
  auto st2 = bad->ListTwins(&ctx2, req, &resp);
  EXPECT_EQ(st2.error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_NE(st2.error_message().find("tenant claim"), std::string::npos) << st2.error_message();
}

std::string position_record(const std::string& asset, uint64_t seq, double lat) {
  return R"({"asset_id":")" + asset + R"(","kind":"vehicle","tenant":"acme","sequence":)" +
         std::to_string(seq) + R"(,"source_time_ms":)" + std::to_string(1'700'000'000'000 + seq) +
         R"(,"metrics":{"speed":42.5,"lat":)" + std::to_string(lat) + R"(,"lon":4.9}})";
}

TEST_F(TenantTest, SensitivePropertiesAreMaskedInEveryReadWithoutReadSensitive) {
  produce_and_wait(
      {{"v1", position_record("v1", 1, 52.37)}, {"v1", position_record("v1", 2, 52.38)}}, "v1", 2);
  auto plain = stub<v1::TwinService>(token("operator", "acme"));
  auto trusted = stub<v1::TwinService>(token("viewer", "acme", true));
  auto get = [](v1::TwinService::Stub& s, v1::Twin& t) {
    grpc::ClientContext ctx;
    v1::GetTwinRequest req;
    req.set_name("twins/v1");
    return s.GetTwin(&ctx, req, &t);
  };
  v1::Twin t;
  ASSERT_TRUE(get(*plain, t).ok());
  EXPECT_EQ(t.reported().at("speed").value().double_value(), 42.5);
  EXPECT_EQ(t.reported().at("lat").value().kind_case(), v1::Value::KIND_NOT_SET);
  EXPECT_EQ(t.reported().at("lat").sequence(), 2u);  // when it reported, not where
  EXPECT_FALSE(t.stats().contains("lat"));
  EXPECT_FALSE(t.analysis().contains("lat"));
  EXPECT_TRUE(t.stats().contains("speed"));
  ASSERT_EQ(t.redacted_size(), 2);
  EXPECT_EQ(t.redacted(0), "lat");
  EXPECT_EQ(t.redacted(1), "lon");
  ASSERT_TRUE(get(*trusted, t).ok());
  EXPECT_NEAR(t.reported().at("lat").value().double_value(), 52.38, 1e-9);
  EXPECT_TRUE(t.stats().contains("lat"));
  EXPECT_EQ(t.redacted_size(), 0);

  {  // Listings mask too, and a filter may not probe a sensitive value.
    ASSERT_TRUE(eventually([&] {
      grpc::ClientContext ctx;
      v1::ListTwinsResponse resp;
      return plain->ListTwins(&ctx, v1::ListTwinsRequest{}, &resp).ok() && resp.twins_size() == 1 &&
             resp.twins(0).version() == 2;
    }));
    grpc::ClientContext ctx;
    v1::ListTwinsResponse resp;
    ASSERT_TRUE(plain->ListTwins(&ctx, v1::ListTwinsRequest{}, &resp).ok());
    EXPECT_EQ(resp.twins(0).reported().at("lat").value().kind_case(), v1::Value::KIND_NOT_SET);
    v1::ListTwinsRequest probe;
    probe.set_filter("reported.lat > 52");
    grpc::ClientContext ctx2;
    auto refused = plain->ListTwins(&ctx2, probe, &resp);
    EXPECT_EQ(refused.error_code(), StatusCode::PERMISSION_DENIED);
    EXPECT_NE(refused.error_message().find("\"lat\" is sensitive"), std::string::npos)
        << refused.error_message();
    EXPECT_NE(refused.error_message().find("read_sensitive"), std::string::npos);
    grpc::ClientContext ctx3;
    ASSERT_TRUE(trusted->ListTwins(&ctx3, probe, &resp).ok());
    EXPECT_EQ(resp.twins_size(), 1);
  }
  {  // History and forecasts of a sensitive property need the permission.
    grpc::ClientContext ctx;
    v1::GetHistoryRequest req;
    req.set_name("twins/v1");
    req.set_property("lat");
    v1::GetHistoryResponse resp;
    EXPECT_EQ(plain->GetHistory(&ctx, req, &resp).error_code(), StatusCode::PERMISSION_DENIED);
    grpc::ClientContext ctx2;
    ASSERT_TRUE(trusted->GetHistory(&ctx2, req, &resp).ok());
    EXPECT_EQ(resp.points_size(), 2);
    grpc::ClientContext ctx3;
    v1::GetForecastRequest f;
    f.set_name("twins/v1");
    f.set_property("lat");
    f.set_horizon_ms(60'000);
    v1::Forecast fr;
    EXPECT_EQ(plain->GetForecast(&ctx3, f, &fr).error_code(), StatusCode::PERMISSION_DENIED);
  }
  {  // A write's answer is masked like a read.
    grpc::ClientContext ctx;
    v1::UpdateDesiredRequest req;
    req.set_name("twins/v1");
    (*req.mutable_desired())["lat"].set_double_value(52.0);
    (*req.mutable_desired())["speed"].set_double_value(30);
    v1::Twin out;
    ASSERT_TRUE(plain->UpdateDesired(&ctx, req, &out).ok());
    EXPECT_FALSE(out.desired().contains("lat"));
    EXPECT_EQ(out.desired().at("speed").double_value(), 30);
  }
  {  // Watches: the change streams masked.
    grpc::ClientContext ctx;
    auto reader = plain->WatchTwins(&ctx, v1::WatchTwinsRequest{});
    reader->WaitForInitialMetadata();
    produce_and_wait({{"v1", position_record("v1", 3, 52.39)}}, "v1", 4);
    v1::TwinChange change;
    ASSERT_TRUE(reader->Read(&change));
    EXPECT_EQ(change.reported().at("lat").value().kind_case(), v1::Value::KIND_NOT_SET);
    EXPECT_EQ(change.reported().at("speed").value().double_value(), 42.5);
    EXPECT_EQ(change.redacted_size(), 2);
    ctx.TryCancel();
  }
  {  // A watch by the trusted token: its start is audited with what it may show.
    grpc::ClientContext ctx;
    v1::WatchTwinsRequest req;
    req.set_name("twins/v1");
    auto reader = trusted->WatchTwins(&ctx, req);
    reader->WaitForInitialMetadata();
    ctx.TryCancel();
  }
  // Reads that showed sensitive values (to the trusted token) are audited: GetTwin,
  // ListTwins, GetHistory, WatchTwins; the masked reads are not.
  auto audit = read_topic(node->bootstrap(), "fleettwin.audit", 5, 20s);
  std::map<std::string, v1::AuditEvent> reads;
  for (const auto& r : audit) {
    v1::AuditEvent e;
    ASSERT_TRUE(e.ParseFromString(r.value));
    if (e.message().rfind("read sensitive properties", 0) == 0)
      reads[e.method()] = e;
  }
  ASSERT_EQ(reads.size(), 3u);
  std::vector<v1::AuditEvent> watches;
  for (const auto& r : audit) {
    v1::AuditEvent e;
    ASSERT_TRUE(e.ParseFromString(r.value));
    if (e.method() == "/fleettwin.v1.TwinService/WatchTwins")
      watches.push_back(e);
  }
  ASSERT_EQ(watches.size(), 1u);  // the trusted one; the masked watch is not audited
  EXPECT_EQ(watches[0].target(), "twins/v1");
  EXPECT_EQ(watches[0].subject(), "user-of-acme");
  EXPECT_EQ(watches[0].message(), "watch may show sensitive properties: vehicle.lat vehicle.lon");
  EXPECT_EQ(reads["/fleettwin.v1.TwinService/GetTwin"].message(),
            "read sensitive properties: lat lon");
  EXPECT_EQ(reads["/fleettwin.v1.TwinService/GetTwin"].subject(), "user-of-acme");
  EXPECT_EQ(reads["/fleettwin.v1.TwinService/GetTwin"].target(), "twins/v1");
  EXPECT_EQ(reads["/fleettwin.v1.TwinService/GetHistory"].message(),
            "read sensitive properties: lat");
  EXPECT_EQ(reads.count("/fleettwin.v1.TwinService/ListTwins"), 1u);
}

TEST_F(TenantTest, TheRedactedChangesTopicLeavesSensitiveValuesOut) {
  // Two work items, two changes (one item's changes of a twin are merged into one).
  produce_and_wait({{"v1", position_record("v1", 1, 52.37)}}, "v1", 1);
  produce_and_wait({{"v1", position_record("v1", 2, 52.38)}}, "v1", 2);
  produce_and_wait({{"s1", json_record("s1", "acme", 1, 12)}}, "s1", 1);
  auto changes = [](const std::vector<consumed_record>& records) {
    std::map<std::string, v1::TwinChange> out;  // by CloudEvents id
    for (const auto& r : records) {
      v1::TwinChange c;
      EXPECT_TRUE(c.ParseFromString(r.value));
      out[r.headers.at("ce_id")] = c;
    }
    return out;
  };
  auto full = changes(read_topic(node->bootstrap(), "fleettwin.twin-changes", 3, 20s));
  auto redacted = changes(read_topic(node->bootstrap(), "fleettwin.twin-changes.redacted", 3, 20s));
  ASSERT_EQ(full.size(), 3u);
  ASSERT_EQ(redacted.size(), 3u);  // every change, once, with the same id
  for (const char* id : {"v1/1", "v1/2"}) {
    SCOPED_TRACE(id);
    const auto& f = full.at(id);
    const auto& r = redacted.at(id);
    EXPECT_TRUE(f.reported().at("lat").value().has_double_value());
    EXPECT_EQ(f.redacted_size(), 0);
    EXPECT_EQ(r.reported().at("lat").value().kind_case(), v1::Value::KIND_NOT_SET);
    EXPECT_EQ(r.reported().at("lon").value().kind_case(), v1::Value::KIND_NOT_SET);
    EXPECT_EQ(r.reported().at("lat").sequence(), f.reported().at("lat").sequence());
    EXPECT_EQ(r.reported().at("speed").value().double_value(), 42.5);
    ASSERT_EQ(r.redacted_size(), 2);
    EXPECT_EQ(r.redacted(0), "lat");
    EXPECT_EQ(r.redacted(1), "lon");
    EXPECT_EQ(r.tenant(), "acme");
  }
  // A change without a sensitive property is the same record on both topics.
  EXPECT_EQ(redacted.at("s1/1").SerializeAsString(), full.at("s1/1").SerializeAsString());
}

TEST_F(TenantTest, EachCallOnASharedConnectionIsScopedByItsOwnToken) {
  // One connection carrying the calls of several principals (a gateway, a client that
  // switches tokens): the tenant of each call is its own token's, never the one of the
  // connection's first call.
  produce_and_wait({{"a1", json_record("a1", "acme", 1, 10)}}, "a1", 1);
  produce_and_wait({{"b1", json_record("b1", "beta", 1, 20)}}, "b1", 1);
  auto shared =
      v1::TwinService::NewStub(grpc::CreateChannel(node->grpc_address(), p.credentials()));
  auto get_as = [&](const std::string& t, const std::string& id) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + t);
    v1::GetTwinRequest req;
    req.set_name("twins/" + id);
    v1::Twin out;
    return shared->GetTwin(&ctx, req, &out);
  };
  ASSERT_TRUE(get_as(token("viewer", ""), "b1").ok());  // all tenants first
  EXPECT_EQ(get_as(token("viewer", "acme"), "b1").error_code(), StatusCode::NOT_FOUND);
  EXPECT_TRUE(get_as(token("viewer", "acme"), "a1").ok());
  EXPECT_EQ(get_as(token("viewer", "beta"), "a1").error_code(), StatusCode::NOT_FOUND);
  EXPECT_TRUE(get_as(token("viewer", ""), "a1").ok());
}

TEST_F(TenantTest, WritesAndAdminCallsAreAuditedWithWhoWhatAndHowItEnded) {
  produce_and_wait({{"a1", json_record("a1", "acme", 1, 10)}}, "a1", 1);
  produce_and_wait({{"b1", json_record("b1", "beta", 1, 20)}}, "b1", 1);
  auto acme = stub<v1::TwinService>(token("operator", "acme"));
  auto desire = [&](v1::TwinService::Stub& s, const std::string& id) {
    grpc::ClientContext ctx;
    v1::UpdateDesiredRequest req;
    req.set_name("twins/" + id);
    (*req.mutable_desired())["speed_limit"].set_double_value(30);
    v1::Twin out;
    return s.UpdateDesired(&ctx, req, &out);
  };
  ASSERT_TRUE(desire(*acme, "a1").ok());                               // committed
  ASSERT_EQ(desire(*acme, "b1").error_code(), StatusCode::NOT_FOUND);  // another tenant's
  auto viewer = stub<v1::TwinService>(token("viewer", "acme"));
  ASSERT_EQ(desire(*viewer, "a1").error_code(), StatusCode::PERMISSION_DENIED);  // no role
  auto admin = stub<v1::TwinService>(token("admin", ""));
  {
    grpc::ClientContext ctx;
    v1::DeleteTwinRequest req;
    req.set_name("twins/b1");
    v1::DeleteTwinResponse resp;
    ASSERT_TRUE(admin->DeleteTwin(&ctx, req, &resp).ok());
  }
  {
    auto ops = v1::AdminService::NewStub(
        grpc::CreateChannel(node->grpc_address(), with_token(token("admin", ""))));
    grpc::ClientContext ctx;
    v1::ClusterStatus status;
    ASSERT_TRUE(ops->GetCluster(&ctx, v1::GetClusterRequest{}, &status).ok());
  }
  auto records = read_topic(node->bootstrap(), "fleettwin.audit", 5, 20s);
  ASSERT_EQ(records.size(), 5u);
  std::map<std::string, std::vector<v1::AuditEvent>> by_key;
  for (const auto& r : records) {
    v1::AuditEvent e;
    ASSERT_TRUE(e.ParseFromString(r.value));
    EXPECT_GT(e.time_ms(), 0);
    EXPECT_FALSE(e.node().empty());
    by_key[r.key].push_back(e);
  }
  ASSERT_EQ(by_key["a1"].size(), 1u);
  std::map<std::string, v1::AuditEvent> a1;
  for (const auto& e : by_key["a1"])
    a1[e.code()] = e;
  // Refused before its request was read (no target): keyed by the method.
  for (const auto& e : by_key["/fleettwin.v1.TwinService/UpdateDesired"])
    a1[e.code()] = e;
  EXPECT_EQ(a1["OK"].subject(), "user-of-acme");
  EXPECT_EQ(a1["OK"].tenant(), "acme");
  EXPECT_EQ(a1["OK"].role(), "operator");
  EXPECT_EQ(a1["OK"].method(), "/fleettwin.v1.TwinService/UpdateDesired");
  EXPECT_EQ(a1["OK"].target(), "twins/a1");
  EXPECT_EQ(a1["PERMISSION_DENIED"].method(), "/fleettwin.v1.TwinService/UpdateDesired");
  EXPECT_EQ(a1["PERMISSION_DENIED"].subject(), "user-of-acme");
  EXPECT_NE(a1["PERMISSION_DENIED"].message().find("needs the role operator"), std::string::npos);
  ASSERT_EQ(by_key["b1"].size(), 2u);
  std::map<std::string, v1::AuditEvent> b1;
  for (const auto& e : by_key["b1"])
    b1[e.method() + " " + e.code()] = e;
  EXPECT_EQ(b1.count("/fleettwin.v1.TwinService/UpdateDesired NOT_FOUND"), 1u);
  EXPECT_EQ(b1.count("/fleettwin.v1.TwinService/DeleteTwin OK"), 1u);
  EXPECT_EQ(b1["/fleettwin.v1.TwinService/DeleteTwin OK"].role(), "admin");
  ASSERT_EQ(by_key["cluster"].size(), 1u);
  EXPECT_EQ(by_key["cluster"][0].method(), "/fleettwin.v1.AdminService/GetCluster");

  // The trail of one twin through the API (admin, not confined to a tenant): oldest first.
  auto ops = stub<v1::AdminService>(token("admin", ""));
  auto trail = [&](const std::string& target, int32_t page_size, v1::ListAuditEventsResponse& out,
                   const std::string& as = "") {
    grpc::ClientContext ctx;
    v1::ListAuditEventsRequest req;
    req.set_target(target);
    req.set_page_size(page_size);
    out.Clear();
    return (as.empty() ? *ops : *stub<v1::AdminService>(as)).ListAuditEvents(&ctx, req, &out);
  };
  v1::ListAuditEventsResponse b1_trail;
  ASSERT_TRUE(trail("twins/b1", 0, b1_trail).ok());
  ASSERT_EQ(b1_trail.events_size(), 2);
  EXPECT_EQ(b1_trail.total(), 2);
  EXPECT_GE(b1_trail.scanned(), 2);
  EXPECT_EQ(b1_trail.events(0).method(), "/fleettwin.v1.TwinService/UpdateDesired");
  EXPECT_EQ(b1_trail.events(0).code(), "NOT_FOUND");
  EXPECT_EQ(b1_trail.events(1).method(), "/fleettwin.v1.TwinService/DeleteTwin");
  EXPECT_EQ(b1_trail.events(1).code(), "OK");
  // Reading a trail is an admin call, audited in the trail it read; the newest event first
  // when the page is cut.
  ASSERT_TRUE(eventually(
      [&] { return trail("twins/b1", 1, b1_trail).ok() && b1_trail.total() >= 3; }, 20s));
  ASSERT_EQ(b1_trail.events_size(), 1);
  EXPECT_EQ(b1_trail.events(0).method(), "/fleettwin.v1.AdminService/ListAuditEvents");
  EXPECT_EQ(b1_trail.events(0).subject(), "user-of-all");
  // A tenant's admin sees no trail (it holds every tenant's callers); a bad target is
  // INVALID_ARGUMENT.
  auto confined = trail("twins/a1", 0, b1_trail, token("admin", "acme"));
  EXPECT_EQ(confined.error_code(), StatusCode::PERMISSION_DENIED) << confined.error_message();
  EXPECT_EQ(trail("", 0, b1_trail).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(trail("twins/", 0, b1_trail).error_code(), StatusCode::INVALID_ARGUMENT);
  // Non-twin targets keep their own trail.
  v1::ListAuditEventsResponse cluster_trail;
  ASSERT_TRUE(trail("cluster", 0, cluster_trail).ok());
  ASSERT_GE(cluster_trail.events_size(), 1);
  EXPECT_EQ(cluster_trail.events(0).method(), "/fleettwin.v1.AdminService/GetCluster");

  // The CLI shows it.
  auto dir = make_temp_dir("audit-cli");
  std::ofstream{dir + "/token"} << token("admin", "") << "\n";
  auto [rc, out] = run_command(std::string{FLEETTWIN_CLI_BINARY} + " --server " +
                               node->grpc_address() + " --tls-ca " + p.file("ca.crt") +
                               " --token-file " + dir + "/token audit b1 2>&1");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("DeleteTwin"), std::string::npos) << out;
  EXPECT_NE(out.find("NOT_FOUND"), std::string::npos) << out;
  EXPECT_NE(out.find("user-of-acme (operator, tenant acme)"), std::string::npos) << out;
}

}  // namespace
}  // namespace fleettwin::test

namespace fleettwin::test {
namespace {

std::string fleet_record(const std::string& asset, const std::string& tenant, double speed) {
  return R"({"asset_id":")" + asset + R"(","kind":"vehicle","sequence":1,"tenant":")" + tenant +
         R"(","attributes":{"fleet":"north"},"metrics":{"speed":)" + std::to_string(speed) +
         ",\"lat\":59.3}}";
}

}  // namespace

TEST_F(TenantTest, ScenariosForkAndShowOnlyTheirTenantsTwins) {
  produce_and_wait({{"a1", fleet_record("a1", "acme", 10)},
                    {"a2", fleet_record("a2", "acme", 11)},
                    {"b1", fleet_record("b1", "beta", 20)}},
                   "b1", 1);
  for (const char* id : {"a1", "a2"})
    produce_and_wait({}, id, 1);
  // Forks read what is stored, which follows the commit: wait until every twin is listed.
  auto all = stub<v1::TwinService>(token("viewer", ""));
  ASSERT_TRUE(eventually([&] {
    grpc::ClientContext ctx;
    v1::ListTwinsResponse resp;
    return all->ListTwins(&ctx, v1::ListTwinsRequest{}, &resp).ok() && resp.twins_size() == 3;
  }));
  auto acme = stub<v1::ScenarioService>(token("operator", "acme"));
  auto beta = stub<v1::ScenarioService>(token("operator", "beta"));
  auto admin = stub<v1::ScenarioService>(token("admin", ""));
  auto create = [](v1::ScenarioService::Stub& s, const std::string& id,
                   v1::CreateScenarioRequest req, v1::Scenario* out = nullptr) {
    grpc::ClientContext ctx;
    req.set_scenario_id(id);
    v1::Scenario sc;
    return s.CreateScenario(&ctx, req, out ? out : &sc);
  };
  // Runs a scenario an hour forward; its result in `r`.
  auto run_hour = [](v1::ScenarioService::Stub& s, const std::string& id, v1::ScenarioResult& r) {
    grpc::ClientContext ctx;
    v1::RunScenarioRequest req;
    req.set_name("scenarios/" + id);
    req.set_horizon_ms(3'600'000);
    auto reader = s.RunScenario(&ctx, req);
    v1::RunScenarioProgress m;
    while (reader->Read(&m))
      if (m.done())
        r = m.result();
    return reader->Finish();
  };
  v1::CreateScenarioRequest everything;
  everything.set_filter("version > 0");
  v1::Scenario made;
  auto st = create(*acme, "acme-s", everything, &made);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(made.tenant(), "acme");
  EXPECT_EQ(made.owner(), "user-of-acme");
  // Another tenant's twin is not there for acme, as if it did not exist.
  v1::CreateScenarioRequest by_name;
  by_name.add_names("twins/b1");
  EXPECT_EQ(create(*acme, "acme-b", by_name).error_code(), StatusCode::NOT_FOUND);
  // A filter over a sensitive property needs the right to read it.
  v1::CreateScenarioRequest sensitive;
  sensitive.set_filter("reported.lat > 0");
  EXPECT_EQ(create(*acme, "acme-lat", sensitive).error_code(), StatusCode::PERMISSION_DENIED);

  // The run holds acme's two twins; fleets/north counts a beta twin too, so acme's
  // scenario leaves it out.
  {
    v1::ScenarioResult r;
    ASSERT_TRUE(run_hour(*acme, "acme-s", r).ok());
    EXPECT_EQ(r.stats().twins(), 2);
    EXPECT_EQ(r.kpis_size(), 0);  // the fork's only aggregate is the mixed fleet
    for (const auto& k : r.kpis())
      EXPECT_NE(k.kpi().aggregate(), "fleets/north");
  }
  // Beta sees nothing of it.
  {
    grpc::ClientContext ctx;
    v1::GetScenarioRequest req;
    req.set_name("scenarios/acme-s");
    v1::Scenario sc;
    EXPECT_EQ(beta->GetScenario(&ctx, req, &sc).error_code(), StatusCode::NOT_FOUND);
    grpc::ClientContext ctx2;
    v1::ListScenariosResponse listed;
    ASSERT_TRUE(beta->ListScenarios(&ctx2, v1::ListScenariosRequest{}, &listed).ok());
    EXPECT_EQ(listed.scenarios_size(), 0);
    grpc::ClientContext ctx3;
    v1::DeleteScenarioRequest del;
    del.set_name("scenarios/acme-s");
    v1::DeleteScenarioResponse gone;
    EXPECT_EQ(beta->DeleteScenario(&ctx3, del, &gone).error_code(), StatusCode::NOT_FOUND);
    grpc::ClientContext ctx4;
    v1::GetScenarioResultRequest res;
    res.set_name("scenarios/acme-s");
    v1::ScenarioResult r;
    EXPECT_EQ(beta->GetScenarioResult(&ctx4, res, &r).error_code(), StatusCode::NOT_FOUND);
  }
  // A caller not confined to a tenant sees it; its own fork of everything counts the
  // mixed fleet.
  {
    grpc::ClientContext ctx;
    v1::ListScenariosResponse listed;
    ASSERT_TRUE(admin->ListScenarios(&ctx, v1::ListScenariosRequest{}, &listed).ok());
    ASSERT_EQ(listed.scenarios_size(), 1);
    EXPECT_EQ(listed.scenarios(0).name(), "scenarios/acme-s");
    ASSERT_TRUE(create(*admin, "all", everything).ok());
    v1::ScenarioResult r;
    ASSERT_TRUE(run_hour(*admin, "all", r).ok());
    EXPECT_EQ(r.stats().twins(), 3);
    bool north = false;
    for (const auto& k : r.kpis())
      if (k.kpi().aggregate() == "fleets/north" && k.kpi().measure() == "n") {
        north = true;
        EXPECT_EQ(k.values(0), 3);
      }
    EXPECT_TRUE(north);
  }
}

}  // namespace fleettwin::test

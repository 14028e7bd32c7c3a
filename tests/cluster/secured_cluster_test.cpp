// A cluster with security on, on a real broker: the nodes' gRPC ports serve mutual TLS
// and calls forwarded between nodes travel over mutual TLS on the cluster port (CAF's
// OpenSSL module), which accepts only certificates of the cluster's CA.

#include <gtest/gtest.h>

#include "cluster_harness.hpp"
#include "fleettwin/v1/scenario.grpc.pb.h"
#include "support/kafka_io.hpp"
#include "support/pki.hpp"
#include "support/token_issuer.hpp"

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <tuple>

#include "fleettwin/v1/aggregate.grpc.pb.h"

namespace fleettwin::test {
namespace {

class SecuredClusterTest : public cluster_fixture {};

int rank_of(const std::string& role) {
  return role == "viewer" ? 1 : role == "operator" ? 2 : role == "admin" ? 3 : 0;
}

/// openssl s_client's exit status and output for a TLS handshake with `endpoint`,
/// presenting `cert` (none when empty) and trusting `ca`. With `until_closed` it waits
/// for the server to close the connection: with TLS 1.3 the server judges the client's
/// certificate after the client finished its part of the handshake, and says so in an
/// alert before it closes (a handshake it accepts stays open: only for refusals).
std::pair<int, std::string> handshake(const std::string& endpoint, const std::string& ca,
                                      const std::string& cert = "", const std::string& key = "",
                                      bool until_closed = false) {
  std::string cmd = "timeout 20 openssl s_client -brief -verify_return_error" +
                    std::string{until_closed ? " -ign_eof" : ""} + " -connect " + endpoint +
                    " -CAfile " + ca;
  if (!cert.empty())
    cmd += " -cert " + cert + " -key " + key;
  return run_command(cmd + " </dev/null 2>&1");
}

TEST_F(SecuredClusterTest, CallsAreForwardedOverMutualTlsThatOnlyTheClustersCaOpens) {
  pki ours{"pki-cluster"};
  pki theirs{"pki-elsewhere"};
  for (const char* n : {"node-1", "node-2"})
    ours.issue(std::string{"node "} + n);
  ours.issue("client operator");
  theirs.issue("node node-x");
  // Tokens too: the node that takes a call checks it; the owner it forwards to gets the
  // caller with the call (from a peer the cluster's TLS vouched for) and checks its role
  // and tenant like its own.
  auto issuer = token_issuer::make(token_issuer::kind::es256, "cluster-key");
  std::ofstream{ours.file("jwks.json")} << token_issuer::jwks({&issuer});
  const auto viewer = issuer.sign(claims("dashboard", {"viewer"}, unix_now(), 3600));
  const auto admin = issuer.sign(claims("sre", {"admin"}, unix_now(), 3600));
  // Fleets, so that aggregates are forwarded and confined to tenants too.
  std::ofstream{ours.file("kinds.toml")} << R"toml([[kind]]
name = "fleet"
collection = "fleets"
members = ["member_of"]
measures = ["n = count()", "speed = sum(reported.speed)"]

[[rule]]
attribute = "fleet"
relation = "member_of"
collection = "fleets"
)toml";
  c_ = std::make_unique<cluster>();
  for (const char* id : {"node-1", "node-2"}) {
    auto flags = ours.node_flags(id);
    flags.insert(flags.end(),
                 {"--auth-jwks", ours.file("jwks.json"), "--auth-issuer", "fleettwin-tests",
                  "--auth-audience", "fleettwin", "--aggregates", ours.file("kinds.toml")});
    auto i = c_->add_node(id, flags);
    // The harness also reads the cluster's state (GetCluster): an admin's token.
    c_->node(i).use_credentials(grpc::CompositeChannelCredentials(
        ours.credentials("operator"), grpc::AccessTokenCredentials(admin)));
    c_->node(i).start();
  }
  std::string why;
  ASSERT_TRUE(c_->wait_until_balanced(90s, &why)) << why;
  telemetry_source src{c_->bootstrap(), c_->topics().telemetry, 40};
  ASSERT_TRUE(src.produce(3)) << src.first_error();
  ASSERT_TRUE(wait_until_applied(c_->node(0), src.acked(), 60s, &why)) << why;

  // Every twin through every node: half of them forwarded to the other node.
  size_t forwarded = 0;
  for (size_t via = 0; via < 2; ++via) {
    for (const auto& [id, records] : src.acked()) {
      v1::Twin t;
      auto st = get_twin(c_->node(via).twins(), id, t);
      ASSERT_TRUE(st.ok()) << c_->node(via).id() << " " << id << ": " << st.error_message();
      EXPECT_EQ(t.applied_records(), records) << id;
      auto owner = c_->owner_of(id);
      forwarded += owner && *owner != via;
    }
  }
  EXPECT_GT(forwarded, 10u);
  // A viewer reads through either node (forwarded or not); its role is not enough to
  // change desired state, wherever the twin lives.
  for (size_t via = 0; via < 2; ++via) {
    auto stub = v1::TwinService::NewStub(grpc::CreateChannel(
        c_->node(via).grpc_address(),
        grpc::CompositeChannelCredentials(ours.credentials("operator"),
                                          grpc::AccessTokenCredentials(viewer))));
    for (const auto& [id, records] : src.acked()) {
      v1::Twin t;
      auto st = get_twin(*stub, id, t);
      ASSERT_TRUE(st.ok()) << id << ": " << st.error_message();
      grpc::ClientContext ctx;
      v1::UpdateDesiredRequest req;
      req.set_name("twins/" + id);
      (*req.mutable_desired())["speed_limit"].set_double_value(50);
      auto denied = stub->UpdateDesired(&ctx, req, &t);
      EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED) << id;
    }
  }

  // Tenants across nodes: a caller of one tenant sees only its twins, whichever node takes
  // the call and wherever the twin lives (the caller travels with forwarded calls).
  {
    producer prod{c_->bootstrap()};
    for (int i = 0; i < 10; ++i)
      for (const char* tenant : {"acme", "beta"}) {
        const std::string id = std::string{"t-"} + tenant + "-" + std::to_string(i);
        prod.send(c_->topics().telemetry, id,
                  R"({"asset_id":")" + id + R"(","tenant":")" + tenant +
                      R"(","sequence":1,"attributes":{"fleet":")" + tenant + "-" +
                      std::to_string(i % 3) + R"("},"metrics":{"speed":1}})",
                  "application/json");
      }
    ASSERT_EQ(prod.flush(), 0);
  }
  const auto acme_viewer = issuer.sign(
      claims("acme-dash", {"viewer"}, unix_now(), 3600, "fleettwin-tests", "fleettwin", "acme"));
  const auto acme_operator = issuer.sign(
      claims("acme-ops", {"operator"}, unix_now(), 3600, "fleettwin-tests", "fleettwin", "acme"));
  auto stub_with = [&](size_t via, const std::string& token) {
    return v1::TwinService::NewStub(grpc::CreateChannel(
        c_->node(via).grpc_address(),
        grpc::CompositeChannelCredentials(ours.credentials("operator"),
                                          grpc::AccessTokenCredentials(token))));
  };
  auto as_admin = stub_with(0, admin);
  for (int i = 0; i < 10; ++i)
    for (const char* tenant : {"acme", "beta"}) {
      const std::string id = std::string{"t-"} + tenant + "-" + std::to_string(i);
      ASSERT_TRUE(eventually([&] {
        v1::Twin t;
        return get_twin(*as_admin, id, t).ok();
      })) << id;
    }
  size_t forwarded_tenant_calls = 0;
  for (size_t via = 0; via < 2; ++via) {
    SCOPED_TRACE("via " + c_->node(via).id());
    auto viewer_stub = stub_with(via, acme_viewer);
    auto operator_stub = stub_with(via, acme_operator);
    v1::BatchGetTwinsRequest batch;
    for (int i = 0; i < 10; ++i)
      for (const char* tenant : {"acme", "beta"}) {
        const std::string id = std::string{"t-"} + tenant + "-" + std::to_string(i);
        auto owner = c_->owner_of(id);
        forwarded_tenant_calls += owner && *owner != via;
        v1::Twin t;
        auto st = get_twin(*viewer_stub, id, t);
        grpc::ClientContext ctx;
        v1::UpdateDesiredRequest req;
        req.set_name("twins/" + id);
        (*req.mutable_desired())["speed_limit"].set_double_value(30);
        auto write = operator_stub->UpdateDesired(&ctx, req, &t);
        if (std::string{tenant} == "acme") {
          EXPECT_TRUE(st.ok()) << id << ": " << st.error_message();
          EXPECT_TRUE(write.ok()) << id << ": " << write.error_message();
          batch.add_names("twins/" + id);
        } else {
          EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << id;
          EXPECT_EQ(st.error_message(), "twin \"" + id + "\" not found");
          EXPECT_EQ(write.error_code(), grpc::StatusCode::NOT_FOUND) << id;
        }
      }
    grpc::ClientContext batch_ctx;
    v1::BatchGetTwinsResponse got;
    auto batch_status = viewer_stub->BatchGetTwins(&batch_ctx, batch, &got);
    EXPECT_TRUE(batch_status.ok()) << batch_status.error_message();
    EXPECT_EQ(got.twins_size(), 10);
    // The cluster-wide listing (each node lists its partitions for the caller): acme's ten
    // once they are stored, and never one of beta's.
    std::set<std::string> listed;
    ASSERT_TRUE(eventually([&] {
      grpc::ClientContext ctx;
      v1::ListTwinsRequest req;
      req.set_filter("asset_id = \"t-*\"");
      req.set_page_size(100);
      v1::ListTwinsResponse resp;
      if (!viewer_stub->ListTwins(&ctx, req, &resp).ok())
        return false;
      listed.clear();
      for (const auto& t : resp.twins()) {
        EXPECT_EQ(t.tenant(), "acme") << t.asset_id();
        listed.insert(t.asset_id());
      }
      return listed.size() == 10;
    }));
  }
  EXPECT_GT(forwarded_tenant_calls, 5u);

  // A tenant's scenario forks its twins on both nodes (the other node pins its part for
  // the forwarded caller, over the cluster's TLS) and never another tenant's.
  {
    auto scenarios = v1::ScenarioService::NewStub(grpc::CreateChannel(
        c_->node(0).grpc_address(),
        grpc::CompositeChannelCredentials(ours.credentials("operator"),
                                          grpc::AccessTokenCredentials(acme_operator))));
    grpc::ClientContext ctx;
    v1::CreateScenarioRequest req;
    req.set_scenario_id("acme-what-if");
    req.set_filter("asset_id = \"t-*\"");
    v1::Scenario made;
    auto st = scenarios->CreateScenario(&ctx, req, &made);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(made.part_nodes_size(), 1);
    EXPECT_EQ(made.tenant(), "acme");
    grpc::ClientContext run_ctx;
    run_ctx.set_deadline(std::chrono::system_clock::now() + 60s);
    v1::RunScenarioRequest run;
    run.set_name("scenarios/acme-what-if");
    run.set_horizon_ms(3'600'000);
    run.set_step_ms(900'000);
    auto reader = scenarios->RunScenario(&run_ctx, run);
    v1::RunScenarioProgress p;
    v1::ScenarioResult result;
    while (reader->Read(&p))
      if (p.done())
        result = p.result();
    st = reader->Finish();
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(result.stats().twins(), 10);
    for (const auto& k : result.kpis())
      EXPECT_EQ(k.kpi().aggregate().rfind("fleets/acme-", 0), 0u) << k.kpi().aggregate();
  }

  // Role x tenant through a forwarding node: every method that names a twin, called on one
  // node for a twin the other node serves, by acme's viewer, operator and admin. A role
  // that is missing is PERMISSION_DENIED (at the node called); beta's twin is NOT_FOUND
  // like one that does not exist (at the owner, which checks the forwarded caller); acme's
  // own twin answers.
  const std::map<std::string, std::string> acme_tokens{
      {"viewer", acme_viewer},
      {"operator", acme_operator},
      {"admin", issuer.sign(claims("acme-admin", {"admin"}, unix_now(), 3600, "fleettwin-tests",
                                   "fleettwin", "acme"))}};
  using method_call =
      std::function<grpc::Status(const std::shared_ptr<grpc::Channel>&, const std::string& id)>;
  // A method and the role it needs; true: it names an aggregate (else a twin).
  struct matrix_method {
    std::string name;
    std::string needs;
    method_call invoke;
    bool aggregate = false;
  };
  auto with_ctx = [](auto&& f) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 20s);
    return f(ctx);
  };
  const std::vector<matrix_method> methods{
      {"GetTwin", "viewer",
       [&](const auto& ch, const std::string& id) {
         return with_ctx([&](grpc::ClientContext& ctx) {
           v1::GetTwinRequest req;
           req.set_name("twins/" + id);
           v1::Twin t;
           return v1::TwinService::NewStub(ch)->GetTwin(&ctx, req, &t);
         });
       }},
      {"BatchGetTwins", "viewer",
       [&](const auto& ch, const std::string& id) {
         return with_ctx([&](grpc::ClientContext& ctx) {
           v1::BatchGetTwinsRequest req;
           req.add_names("twins/" + id);
           v1::BatchGetTwinsResponse resp;
           return v1::TwinService::NewStub(ch)->BatchGetTwins(&ctx, req, &resp);
         });
       }},
      {"GetHistory", "viewer",
       [&](const auto& ch, const std::string& id) {
         return with_ctx([&](grpc::ClientContext& ctx) {
           v1::GetHistoryRequest req;
           req.set_name("twins/" + id);
           req.set_property("speed");
           v1::GetHistoryResponse resp;
           return v1::TwinService::NewStub(ch)->GetHistory(&ctx, req, &resp);
         });
       }},
      {"UpdateDesired", "operator",
       [&](const auto& ch, const std::string& id) {
         return with_ctx([&](grpc::ClientContext& ctx) {
           v1::UpdateDesiredRequest req;
           req.set_name("twins/" + id);
           (*req.mutable_desired())["speed_limit"].set_double_value(40);
           v1::Twin t;
           return v1::TwinService::NewStub(ch)->UpdateDesired(&ctx, req, &t);
         });
       }},
      {"GetRelations", "viewer",
       [&](const auto& ch, const std::string& id) {
         return with_ctx([&](grpc::ClientContext& ctx) {
           v1::GetRelationsRequest req;
           req.set_name("twins/" + id);
           v1::Relations resp;
           return v1::AggregateService::NewStub(ch)->GetRelations(&ctx, req, &resp);
         });
       }},
      {"Traverse", "viewer",
       [&](const auto& ch, const std::string& id) {
         return with_ctx([&](grpc::ClientContext& ctx) {
           v1::TraverseRequest req;
           req.set_start("twins/" + id);
           req.set_direction(v1::UP);
           v1::TraverseResponse resp;
           return v1::AggregateService::NewStub(ch)->Traverse(&ctx, req, &resp);
         });
       }},
      {"GetAggregate", "viewer",
       [&](const auto& ch, const std::string& id) {
         return with_ctx([&](grpc::ClientContext& ctx) {
           v1::GetAggregateRequest req;
           req.set_name("aggregates/" + id);
           v1::Aggregate a;
           return v1::AggregateService::NewStub(ch)->GetAggregate(&ctx, req, &a);
         });
       },
       true},
      {"BatchGetAggregates", "viewer",
       [&](const auto& ch, const std::string& id) {
         return with_ctx([&](grpc::ClientContext& ctx) {
           v1::BatchGetAggregatesRequest req;
           req.add_names("aggregates/" + id);
           v1::BatchGetAggregatesResponse resp;
           return v1::AggregateService::NewStub(ch)->BatchGetAggregates(&ctx, req, &resp);
         });
       },
       true},
      {"ListMembers", "viewer",
       [&](const auto& ch, const std::string& id) {
         return with_ctx([&](grpc::ClientContext& ctx) {
           v1::ListMembersRequest req;
           req.set_name("aggregates/" + id);
           v1::ListMembersResponse resp;
           return v1::AggregateService::NewStub(ch)->ListMembers(&ctx, req, &resp);
         });
       },
       true},
      {"GetAggregateHistory", "viewer",
       [&](const auto& ch, const std::string& id) {
         return with_ctx([&](grpc::ClientContext& ctx) {
           v1::GetAggregateHistoryRequest req;
           req.set_name("aggregates/" + id);
           v1::GetAggregateHistoryResponse resp;
           return v1::AggregateService::NewStub(ch)->GetAggregateHistory(&ctx, req, &resp);
         });
       },
       true},
      {"DeleteTwin", "admin",
       [&](const auto& ch, const std::string& id) {
         return with_ctx([&](grpc::ClientContext& ctx) {
           v1::DeleteTwinRequest req;
           req.set_name("twins/" + id);
           v1::DeleteTwinResponse out;
           return v1::TwinService::NewStub(ch)->DeleteTwin(&ctx, req, &out);
         });
       }},
  };
  // Twins and fleets of each tenant that the other node serves, per node called.
  auto served_elsewhere = [&](const char* tenant, size_t via, bool aggregate = false) {
    for (int i = 0; i < (aggregate ? 3 : 10); ++i) {
      const std::string id = aggregate ? std::string{"fleets/"} + tenant + "-" + std::to_string(i)
                                       : std::string{"t-"} + tenant + "-" + std::to_string(i);
      if (auto owner = c_->owner_of(id); owner && *owner != via)
        return id;
    }
    return std::string{};
  };
  // Every fleet counts its twins before the matrix reads them.
  auto aggregates_admin = v1::AggregateService::NewStub(
      grpc::CreateChannel(c_->node(0).grpc_address(),
                          grpc::CompositeChannelCredentials(ours.credentials("operator"),
                                                            grpc::AccessTokenCredentials(admin))));
  for (const char* tenant : {"acme", "beta"})
    for (int i = 0; i < 3; ++i) {
      const std::string fleet = std::string{"fleets/"} + tenant + "-" + std::to_string(i);
      ASSERT_TRUE(eventually([&] {
        grpc::ClientContext ctx;
        v1::GetAggregateRequest req;
        req.set_name("aggregates/" + fleet);
        v1::Aggregate a;
        return aggregates_admin->GetAggregate(&ctx, req, &a).ok() &&
               a.member_twins() == (i == 0 ? 4u : 3u) && a.tenant() == tenant;
      })) << fleet;
    }
  size_t matrix_calls = 0;
  size_t aggregate_calls = 0;
  for (size_t via = 0; via < 2; ++via) {
    const auto beta_twin = served_elsewhere("beta", via);
    const auto acme_twin = served_elsewhere("acme", via);
    const auto beta_fleet = served_elsewhere("beta", via, true);
    const auto acme_fleet = served_elsewhere("acme", via, true);
    ASSERT_FALSE(beta_twin.empty());
    ASSERT_FALSE(acme_twin.empty());
    for (const auto& [role, token] : acme_tokens) {
      auto channel = grpc::CreateChannel(
          c_->node(via).grpc_address(),
          grpc::CompositeChannelCredentials(ours.credentials("operator"),
                                            grpc::AccessTokenCredentials(token)));
      for (const auto& m : methods) {
        SCOPED_TRACE(m.name + " as acme's " + role + " via " + c_->node(via).id());
        // A fleet served by the other node may not exist for a tenant (3 fleets, 2 nodes).
        const auto& other_id = m.aggregate ? beta_fleet : beta_twin;
        const auto& own_id = m.aggregate ? acme_fleet : acme_twin;
        if (other_id.empty() || own_id.empty())
          continue;
        const bool allowed = rank_of(role) >= rank_of(m.needs);
        auto other = m.invoke(channel, other_id);
        ++matrix_calls;
        aggregate_calls += m.aggregate;
        if (!allowed) {
          EXPECT_EQ(other.error_code(), grpc::StatusCode::PERMISSION_DENIED)
              << other.error_message();
          continue;
        }
        EXPECT_EQ(other.error_code(), grpc::StatusCode::NOT_FOUND) << other.error_message();
        EXPECT_EQ(other.error_message(), std::string{m.aggregate ? "aggregate" : "twin"} + " \"" +
                                             other_id + "\" not found");
        if (m.name == "DeleteTwin")
          continue;  // acme's erasure of its own twin through the other node: below
        auto own = m.invoke(channel, own_id);
        EXPECT_TRUE(own.ok()) << own_id << ": " << own.error_message();
      }
    }
  }
  EXPECT_GE(matrix_calls, acme_tokens.size() * methods.size());
  EXPECT_GT(aggregate_calls, 0u);
  {  // acme's admin relates acme's twins served by the other node: to acme's fleets (wherever
     // they live), never to beta's.
    auto relations = v1::AggregateService::NewStub(grpc::CreateChannel(
        c_->node(0).grpc_address(),
        grpc::CompositeChannelCredentials(ours.credentials("operator"),
                                          grpc::AccessTokenCredentials(acme_tokens.at("admin")))));
    const auto child = served_elsewhere("acme", 0);
    auto relate = [&](const std::string& fleet) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + 20s);
      v1::SetRelationsRequest req;
      req.set_child("twins/" + child);
      auto* r = req.add_relations();
      r->set_type("member_of");
      r->set_parent("aggregates/" + fleet);
      v1::Relations out;
      return relations->SetRelations(&ctx, req, &out);
    };
    for (int i = 0; i < 3; ++i) {
      auto own = relate("fleets/acme-" + std::to_string(i));
      EXPECT_TRUE(own.ok()) << own.error_message();
      auto other = relate("fleets/beta-" + std::to_string(i));
      EXPECT_EQ(other.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << other.error_message();
    }
  }
  {  // acme's admin erases one of acme's twins served by the other node.
    const auto doomed = served_elsewhere("acme", 0);
    auto channel = grpc::CreateChannel(
        c_->node(0).grpc_address(),
        grpc::CompositeChannelCredentials(ours.credentials("operator"),
                                          grpc::AccessTokenCredentials(acme_tokens.at("admin"))));
    auto erased = methods.back().invoke(channel, doomed);
    ASSERT_TRUE(erased.ok()) << erased.error_message();
    v1::Twin t;
    EXPECT_EQ(get_twin(*as_admin, doomed, t).error_code(), grpc::StatusCode::NOT_FOUND);
  }

  // Nothing of acme's writes reached beta's twins.
  for (int i = 0; i < 10; ++i) {
    v1::Twin t;
    ASSERT_TRUE(get_twin(*as_admin, "t-beta-" + std::to_string(i), t).ok());
    EXPECT_TRUE(t.desired().empty());
  }

  // The cluster ports: a handshake with a certificate of the cluster's CA succeeds
  // (and the port's own certificate verifies against it); without a certificate, or
  // with one of another CA, there is no connection.
  v1::ClusterStatus status;
  ASSERT_TRUE(get_cluster(c_->node(0), status).ok());
  ASSERT_EQ(status.nodes_size(), 2);
  for (const auto& n : status.nodes()) {
    const auto& m = n.member();
    SCOPED_TRACE(m.node_id() + " " + m.cluster_endpoint());
    auto [rc, out] = handshake(m.cluster_endpoint(), ours.file("ca.crt"), ours.file("node-1.crt"),
                               ours.file("node-1.key"));
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("Verification: OK"), std::string::npos) << out;
    auto [anon_rc, anon_out] = handshake(m.cluster_endpoint(), ours.file("ca.crt"), "", "", true);
    EXPECT_NE(anon_rc, 0) << anon_out;
    EXPECT_NE(anon_out.find("alert certificate required"), std::string::npos) << anon_out;
    auto [x_rc, x_out] = handshake(m.cluster_endpoint(), ours.file("ca.crt"),
                                   theirs.file("node-x.crt"), theirs.file("node-x.key"), true);
    EXPECT_NE(x_rc, 0) << x_out;
  }
  // The forwarded reads still answer after those refused handshakes (CAF's OpenSSL
  // module may drop the nodes' connection after a failed handshake: a read in flight
  // is then sent again on a new connection).
  for (size_t via = 0; via < 2; ++via)
    for (const auto& [id, records] : src.acked()) {
      v1::Twin t;
      auto st = get_twin(c_->node(via).twins(), id, t);
      ASSERT_TRUE(st.ok()) << id << ": " << st.error_message();
    }
}

}  // namespace
}  // namespace fleettwin::test

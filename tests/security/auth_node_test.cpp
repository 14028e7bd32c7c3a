// Token authentication and roles on a real node over TLS: every method of the API, called
// with no token, a bad token and a token of each role, answers as the role table says;
// the CLI and grpcurl carry tokens; refusals are counted on /metrics.

#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include <google/protobuf/descriptor.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "fleettwin/v1/aggregate.pb.h"
#include "fleettwin/v1/analytics.pb.h"
#include "fleettwin/v1/scenario.pb.h"
#include "integration/harness.hpp"
#include "support/pki.hpp"
#include "support/token_issuer.hpp"

namespace fleettwin::test {
namespace {

using namespace std::chrono_literals;
using grpc::StatusCode;

/// The role each method needs, written here independently of the node's table: a method
/// added to the API without a line here fails the matrix test.
const std::map<std::string, std::string> expected_role{
    {"TwinService/GetTwin", "viewer"},
    {"TwinService/BatchGetTwins", "viewer"},
    {"TwinService/ListTwins", "viewer"},
    {"TwinService/GetHistory", "viewer"},
    {"TwinService/WatchTwins", "viewer"},
    {"TwinService/GetForecast", "viewer"},
    {"TwinService/UpdateDesired", "operator"},
    {"TwinService/BatchUpdateDesired", "operator"},
    {"TwinService/BulkUpdateDesired", "operator"},
    {"TwinService/DeleteTwin", "admin"},
    {"AggregateService/GetAggregate", "viewer"},
    {"AggregateService/BatchGetAggregates", "viewer"},
    {"AggregateService/ListAggregates", "viewer"},
    {"AggregateService/WatchAggregates", "viewer"},
    {"AggregateService/GetAggregateHistory", "viewer"},
    {"AggregateService/ListMembers", "viewer"},
    {"AggregateService/GetRelations", "viewer"},
    {"AggregateService/Traverse", "viewer"},
    {"AggregateService/ListAggregateKinds", "viewer"},
    {"AggregateService/SetRelations", "admin"},
    {"AggregateService/DeleteRelations", "admin"},
    {"AggregateService/PutAggregateKind", "admin"},
    {"AlertService/ListAlerts", "viewer"},
    {"AlertService/WatchAlerts", "viewer"},
    {"AlertService/AcknowledgeAlert", "operator"},
    {"ModelService/GetModel", "viewer"},
    {"ModelService/ListModels", "viewer"},
    {"ModelService/PutModel", "admin"},
    {"ScenarioService/GetScenario", "viewer"},
    {"ScenarioService/ListScenarios", "viewer"},
    {"ScenarioService/GetScenarioResult", "viewer"},
    {"ScenarioService/GetSweepResult", "viewer"},
    {"ScenarioService/CreateScenario", "operator"},
    {"ScenarioService/AddScenarioInputs", "operator"},
    {"ScenarioService/RunScenario", "operator"},
    {"ScenarioService/SweepScenario", "operator"},
    {"ScenarioService/DeleteScenario", "operator"},
    {"ScenarioService/ExportScenarioResult", "operator"},
    {"NodeService/GetStatus", "viewer"},
    {"NodeService/Ping", "viewer"},
    {"AdminService/GetCluster", "admin"},
    {"AdminService/ListAuditEvents", "admin"},
};

int rank(const std::string& role) {
  return role == "viewer" ? 1 : role == "operator" ? 2 : role == "admin" ? 3 : 0;
}

/// Calls `method` with an empty request message (and `token` as bearer token, none when
/// empty); the status. Streaming methods are cut off after a moment: their status is then
/// DEADLINE_EXCEEDED, which means the call was let in.
grpc::Status call(grpc::GenericStub& stub, const std::string& method, const std::string& token,
                  bool streaming) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + (streaming ? 700ms : 5s));
  if (!token.empty())
    ctx.AddMetadata("authorization", "Bearer " + token);
  grpc::ByteBuffer request;  // empty: a message with every field at its default
  grpc::Slice empty{std::string{}};
  request = grpc::ByteBuffer{&empty, 1};
  grpc::CompletionQueue cq;
  if (!streaming) {
    grpc::ByteBuffer response;
    auto rpc = stub.PrepareUnaryCall(&ctx, method, request, &cq);
    rpc->StartCall();
    grpc::Status status;
    rpc->Finish(&response, &status, reinterpret_cast<void*>(1));
    void* tag;
    bool ok;
    cq.Next(&tag, &ok);
    return status;
  }
  auto rpc = stub.PrepareCall(&ctx, method, &cq);
  void* tag;
  bool ok;
  rpc->StartCall(reinterpret_cast<void*>(1));
  cq.Next(&tag, &ok);
  rpc->Write(request, reinterpret_cast<void*>(2));
  cq.Next(&tag, &ok);
  rpc->WritesDone(reinterpret_cast<void*>(3));
  cq.Next(&tag, &ok);
  grpc::ByteBuffer in;
  // Read until the stream ends (deadline or status).
  for (;;) {
    rpc->Read(&in, reinterpret_cast<void*>(4));
    if (!cq.Next(&tag, &ok) || !ok)
      break;
  }
  grpc::Status status;
  rpc->Finish(&status, reinterpret_cast<void*>(5));
  cq.Next(&tag, &ok);
  return status;
}

class AuthNodeTest : public ::testing::Test {
protected:
  void SetUp() override {
    p.issue("node node-a");
    auto dir = make_temp_dir("auth");
    std::ofstream{dir + "/jwks.json"} << token_issuer::jwks({&rsa, &ec});
    std::ofstream{dir + "/hs256.key"} << hs_secret;
    std::vector<std::string> args = p.node_flags("node-a", false);
    args.insert(args.end(),
                {"--auth-jwks", dir + "/jwks.json", "--auth-hs256-secret-file", dir + "/hs256.key",
                 "--auth-issuer", "fleettwin-tests", "--auth-audience", "fleettwin"});
    node = std::make_unique<node_process>("", make_temp_dir("auth-node"), args);
    // The harness's readiness check calls Ping: a viewer's token.
    node->use_credentials(grpc::CompositeChannelCredentials(
        p.credentials(), grpc::AccessTokenCredentials(token({"viewer"}))));
    node->start();
  }
  std::string token(const std::vector<std::string>& roles, const token_issuer* by = nullptr) {
    return (by ? by : &ec)->sign(claims("tester", roles, unix_now(), 600));
  }

  const std::string hs_secret = "0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
  token_issuer rsa = token_issuer::make(token_issuer::kind::rs256, "rsa-1");
  token_issuer ec = token_issuer::make(token_issuer::kind::es256, "ec-1");
  token_issuer hs = token_issuer::make(token_issuer::kind::hs256, hs_secret);
  pki p{"pki-auth"};
  std::unique_ptr<node_process> node;
};

TEST_F(AuthNodeTest, EveryMethodAnswersEachRoleAsTheRoleTableSays) {
  auto channel = grpc::CreateChannel(node->grpc_address(), p.credentials());
  grpc::GenericStub stub{channel};
  // Link every proto file's generated code, so that its services are in the pool.
  v1::GetTwinRequest::descriptor();
  v1::GetAggregateRequest::descriptor();
  v1::ListAlertsRequest::descriptor();
  v1::CreateScenarioRequest::descriptor();
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  size_t methods = 0;
  const std::map<std::string, std::string> tokens{
      {"viewer", token({"viewer"}, &rsa)},
      {"operator", token({"operator"}, &ec)},
      {"admin", token({"admin"}, &hs)},
  };
  for (const char* service :
       {"fleettwin.v1.TwinService", "fleettwin.v1.AggregateService", "fleettwin.v1.AlertService",
        "fleettwin.v1.ModelService", "fleettwin.v1.NodeService", "fleettwin.v1.AdminService",
        "fleettwin.v1.ScenarioService"}) {
    const auto* sd = pool->FindServiceByName(service);
    ASSERT_NE(sd, nullptr) << service;
    for (int i = 0; i < sd->method_count(); ++i) {
      const auto* md = sd->method(i);
      const std::string name = sd->name() + "/" + md->name();
      const std::string path = "/" + sd->full_name() + "/" + md->name();
      SCOPED_TRACE(path);
      auto it = expected_role.find(name);
      ASSERT_NE(it, expected_role.end()) << "a method nobody classified: add it to the table";
      const bool streaming = md->server_streaming() || md->client_streaming();
      ++methods;
      // No token, a token that is not one.
      auto none = call(stub, path, "", streaming);
      EXPECT_EQ(none.error_code(), StatusCode::UNAUTHENTICATED) << none.error_message();
      EXPECT_EQ(call(stub, path, "not-a-token", streaming).error_code(),
                StatusCode::UNAUTHENTICATED);
      for (const auto& [role, t] : tokens) {
        auto st = call(stub, path, t, streaming);
        if (rank(role) >= rank(it->second)) {
          EXPECT_NE(st.error_code(), StatusCode::UNAUTHENTICATED)
              << role << ": " << st.error_message();
          EXPECT_NE(st.error_code(), StatusCode::PERMISSION_DENIED)
              << role << ": " << st.error_message();
        } else {
          EXPECT_EQ(st.error_code(), StatusCode::PERMISSION_DENIED)
              << role << ": " << st.error_message();
          EXPECT_NE(st.error_message().find("needs the role " + it->second), std::string::npos)
              << st.error_message();
        }
      }
    }
  }
  EXPECT_EQ(methods, expected_role.size());
  // Health and reflection need no token (probes, grpcurl's discovery).
  auto health = call(stub, "/grpc.health.v1.Health/Check", "", false);
  EXPECT_TRUE(health.ok()) << health.error_message();
}

TEST_F(AuthNodeTest, ClientsAreToldWhatIsWrongWithTheirToken) {
  auto channel = grpc::CreateChannel(node->grpc_address(), p.credentials());
  grpc::GenericStub stub{channel};
  const std::string ping = "/fleettwin.v1.NodeService/Ping";
  auto expired = call(stub, ping, ec.sign(claims("t", {"viewer"}, unix_now(), -600)), false);
  EXPECT_EQ(expired.error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_NE(expired.error_message().find("expired"), std::string::npos) << expired.error_message();
  auto wrong_aud = call(
      stub, ping, ec.sign(claims("t", {"viewer"}, unix_now(), 600, "fleettwin-tests", "x")), false);
  EXPECT_NE(wrong_aud.error_message().find("wrong audience"), std::string::npos);
  auto stranger = token_issuer::make(token_issuer::kind::es256, "ec-7");
  auto unknown = call(stub, ping, stranger.sign(claims("t", {"viewer"}, unix_now(), 600)), false);
  EXPECT_NE(unknown.error_message().find("unknown key id 'ec-7'"), std::string::npos);
  auto none = call(stub, ping,
                   token_issuer::b64url(R"({"alg":"none"})") + "." +
                       token_issuer::b64url(claims("t", {"admin"}, unix_now(), 600)) + ".",
                   false);
  EXPECT_NE(none.error_message().find("alg none is not accepted"), std::string::npos);

  // The CLI with a token file, and without a token (a hint says what to give).
  auto dir = make_temp_dir("auth-cli");
  std::ofstream{dir + "/token"} << token({"viewer"}) << "\n";
  const std::string cli = std::string{FLEETTWIN_CLI_BINARY} + " --server " + node->grpc_address() +
                          " --tls-ca " + p.file("ca.crt");
  auto [rc, out] = run_command(cli + " --token-file " + dir + "/token list 2>&1");
  EXPECT_EQ(rc, 0) << out;
  auto [rc2, out2] = run_command(cli + " list 2>&1");
  EXPECT_NE(rc2, 0);
  EXPECT_NE(out2.find("UNAUTHENTICATED"), std::string::npos) << out2;
  EXPECT_NE(out2.find("--token"), std::string::npos) << out2;
  // grpcurl, which knows the API only from reflection (no token needed to discover it).
  const std::string grpcurl =
      std::string{FLEETTWIN_GRPCURL} + " -max-time 5 -cacert " + p.file("ca.crt") + " ";
  auto [g_rc, g_out] =
      run_command(grpcurl + "-H 'authorization: Bearer " + token({"viewer"}) + "' " +
                  node->grpc_address() + " fleettwin.v1.NodeService/GetStatus 2>&1");
  EXPECT_EQ(g_rc, 0) << g_out;
  auto [d_rc, d_out] =
      run_command(grpcurl + "-H 'authorization: Bearer " + token({"viewer"}) + "' -d '{}' " +
                  node->grpc_address() + " fleettwin.v1.AdminService/GetCluster 2>&1");
  EXPECT_NE(d_out.find("PermissionDenied"), std::string::npos) << d_out;

  // /metrics counts the refusals by reason.
  auto [m_rc, metrics] =
      run_command("curl -s --cacert " + p.file("ca.crt") +
                  " https://127.0.0.1:" + std::to_string(node->metrics_port()) + "/metrics");
  EXPECT_NE(metrics.find("fleettwin_auth_refusals_total{reason=\"expired\"} 1"), std::string::npos)
      << metrics.substr(0, 3000);
  EXPECT_NE(metrics.find("fleettwin_auth_refusals_total{reason=\"forbidden\"} 1"),
            std::string::npos);
}

TEST_F(AuthNodeTest, TokensNeedTlsAndUsableKeys) {
  auto dir = make_temp_dir("auth-refusals");
  std::ofstream{dir + "/weak.key"} << "secret";
  const std::string node_cmd = "timeout 30 " + std::string{FLEETTWIN_NODE_BINARY} + " --data-dir " +
                               dir + "/data --cluster-port 0 --metrics 127.0.0.1:0 ";
  auto [rc, out] = run_command(node_cmd + "--auth-hs256-secret-file " + dir + "/weak.key 2>&1");
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("needs TLS"), std::string::npos) << out;
  auto [rc2, out2] =
      run_command(node_cmd + "--grpc 127.0.0.1:" + std::to_string(free_port()) + " --tls-cert " +
                  p.file("node-a.crt") + " --tls-key " + p.file("node-a.key") +
                  " --auth-hs256-secret-file " + dir + "/weak.key 2>&1");
  EXPECT_NE(rc2, 0) << out2;
  EXPECT_NE(out2.find("at least 32"), std::string::npos) << out2;
}

TEST(AuthCertTest, AClientCertificateWithARoleStandsInForAToken) {
  // Services that hold a certificate of the cluster's CA (SPIFFE ids, as a mesh issues
  // them) call without tokens; the node maps their identity to a role.
  pki p{"pki-cert-roles"};
  p.issue("node node-a");
  p.issue("client operator");
  p.issue("client guest");
  auto args = p.node_flags("node-a");
  args.insert(args.end(), {"--auth-cert-role", "spiffe://fleettwin/operator=operator"});
  node_process node{"", make_temp_dir("cert-roles"), args};
  node.use_credentials(p.credentials("operator"));
  node.start();
  grpc::GenericStub as_operator{
      grpc::CreateChannel(node.grpc_address(), p.credentials("operator"))};
  grpc::GenericStub as_guest{grpc::CreateChannel(node.grpc_address(), p.credentials("guest"))};
  auto get = call(as_operator, "/fleettwin.v1.TwinService/GetTwin", "", false);
  EXPECT_EQ(get.error_code(), StatusCode::INVALID_ARGUMENT) << get.error_message();  // no name
  auto update = call(as_operator, "/fleettwin.v1.TwinService/UpdateDesired", "", false);
  EXPECT_NE(update.error_code(), StatusCode::PERMISSION_DENIED) << update.error_message();
  EXPECT_NE(update.error_code(), StatusCode::UNAUTHENTICATED) << update.error_message();
  auto admin = call(as_operator, "/fleettwin.v1.AdminService/GetCluster", "", false);
  EXPECT_EQ(admin.error_code(), StatusCode::PERMISSION_DENIED);
  EXPECT_NE(admin.error_message().find("the client certificate of 'spiffe://fleettwin/operator' "
                                       "grants operator"),
            std::string::npos)
      << admin.error_message();
  auto guest = call(as_guest, "/fleettwin.v1.TwinService/GetTwin", "", false);
  EXPECT_EQ(guest.error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_NE(guest.error_message().find("'spiffe://fleettwin/guest' has no role"), std::string::npos)
      << guest.error_message();
  // Tokens are not accepted by a node that has no keys for them.
  auto token = call(as_guest, "/fleettwin.v1.TwinService/GetTwin", "e30.e30.e30", false);
  EXPECT_NE(token.error_message().find("tokens are not accepted here"), std::string::npos);
}

}  // namespace
}  // namespace fleettwin::test

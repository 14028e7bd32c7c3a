// Per-principal limits on a real node over TLS with tokens: a principal over its request
// rate is refused RESOURCE_EXHAUSTED with retry-after-ms while another principal goes on;
// a principal holding its limit of watch streams must close one before opening another;
// refusals are counted on /metrics.

#include <gtest/gtest.h>

#include <fstream>
#include <optional>

#include <grpcpp/grpcpp.h>

#include "fleettwin/v1/service.grpc.pb.h"
#include "integration/harness.hpp"
#include "support/pki.hpp"
#include "support/token_issuer.hpp"

namespace fleettwin::test {
namespace {

using namespace std::chrono_literals;
using grpc::StatusCode;

/// A call the limits let in: NOT_FOUND (no such twin), or UNAVAILABLE while the node's
/// partitions are still being assigned.
bool let_in(const grpc::Status& s) {
  return s.error_code() == StatusCode::NOT_FOUND || s.error_code() == StatusCode::UNAVAILABLE;
}

class LimitsNodeTest : public ::testing::Test {
protected:
  void SetUp() override {
    p.issue("node node-a");
    auto dir = make_temp_dir("limits");
    std::ofstream{dir + "/jwks.json"} << token_issuer::jwks({&ec});
    std::vector<std::string> args = p.node_flags("node-a", false);
    args.insert(args.end(), {"--auth-jwks", dir + "/jwks.json", "--auth-issuer", "fleettwin-tests",
                             "--auth-audience", "fleettwin", "--principal-requests-per-s", "4",
                             "--principal-burst", "6", "--principal-watch-streams", "2"});
    node = std::make_unique<node_process>("", make_temp_dir("limits-node"), args);
    node->use_credentials(grpc::CompositeChannelCredentials(
        p.credentials(), grpc::AccessTokenCredentials(token("readiness"))));
    node->start();
    channel = grpc::CreateChannel(node->grpc_address(), p.credentials());
    twins = fleettwin::v1::TwinService::NewStub(channel);
  }

  std::string token(const std::string& subject) {
    return ec.sign(claims(subject, {"viewer"}, unix_now(), 600));
  }

  /// GetTwin of a twin that does not exist as `subject`: NOT_FOUND when let in.
  grpc::Status get(const std::string& subject, std::string* retry_after = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    ctx.AddMetadata("authorization", "Bearer " + token(subject));
    fleettwin::v1::GetTwinRequest req;
    req.set_name("twins/nobody");
    fleettwin::v1::Twin twin;
    auto s = twins->GetTwin(&ctx, req, &twin);
    if (retry_after) {
      auto md = ctx.GetServerTrailingMetadata();
      auto it = md.find("retry-after-ms");
      *retry_after = it == md.end() ? "" : std::string{it->second.data(), it->second.size()};
    }
    return s;
  }

  /// An open WatchTwins stream of `subject`.
  struct watch {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<fleettwin::v1::TwinChange>> reader;
  };
  std::unique_ptr<watch> open_watch(const std::string& subject,
                                    std::chrono::milliseconds deadline = 60s) {
    auto w = std::make_unique<watch>();
    w->ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    w->ctx.AddMetadata("authorization", "Bearer " + token(subject));
    fleettwin::v1::WatchTwinsRequest req;
    w->reader = twins->WatchTwins(&w->ctx, req);
    w->reader->WaitForInitialMetadata();
    return w;
  }
  /// The status of a stream opened with a short deadline: RESOURCE_EXHAUSTED at once when
  /// refused, DEADLINE_EXCEEDED when it was let in (no changes flow on this node).
  grpc::Status watch_status(const std::string& subject) {
    auto w = open_watch(subject, 1500ms);
    fleettwin::v1::TwinChange change;
    while (w->reader->Read(&change)) {
    }
    return w->reader->Finish();
  }

  /// The node's metrics over TLS.
  std::string metrics() {
    return run_command("curl -s --cacert " + p.file("ca.crt") +
                       " https://127.0.0.1:" + std::to_string(node->metrics_port()) + "/metrics")
        .second;
  }

  token_issuer ec = token_issuer::make(token_issuer::kind::es256, "ec-1");
  pki p{"pki-limits"};
  std::unique_ptr<node_process> node;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<fleettwin::v1::TwinService::Stub> twins;
};

TEST_F(LimitsNodeTest, APrincipalOverItsRateWaitsWhileOthersGoOn) {
  // A burst of 6, then 4 per second: a client calling as fast as it can is refused within
  // a few calls, told how long to wait, and let in again after that.
  std::optional<grpc::Status> refused;
  std::string retry_after;
  int admitted = 0;
  for (int i = 0; i < 50 && !refused; ++i) {
    auto s = get("alice", &retry_after);
    if (s.error_code() == StatusCode::RESOURCE_EXHAUSTED)
      refused = s;
    else
      ASSERT_TRUE(let_in(s)) << s.error_message();
    if (!refused)
      ++admitted;
  }
  ASSERT_TRUE(refused) << "50 calls in a row were all let in";
  EXPECT_GE(admitted, 6);
  EXPECT_LE(admitted, 12);  // the burst and what 4/s refilled meanwhile
  EXPECT_NE(refused->error_message().find("'alice' exceeds its limit of 4 requests per second"),
            std::string::npos)
      << refused->error_message();
  ASSERT_FALSE(retry_after.empty()) << "no retry-after-ms in the trailing metadata";
  EXPECT_GT(std::stoi(retry_after), 0);
  EXPECT_LE(std::stoi(retry_after), 250);  // one request's worth at 4/s
  // Another principal is not held back by alice.
  auto bob = get("bob");
  EXPECT_TRUE(let_in(bob)) << bob.error_code() << " " << bob.error_message();
  // Alice is let in again once her bucket refilled: polled with a deadline well past the
  // wait she was told (each refusal says again how long is left).
  const auto told = std::chrono::steady_clock::now();
  grpc::Status again;
  ASSERT_TRUE(eventually([&] { return let_in(again = get("alice")); }, 5s))
      << again.error_code() << " " << again.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - told,
            std::chrono::milliseconds{std::stoi(retry_after)} + 2s);

  auto text = metrics();
  EXPECT_NE(text.find("fleettwin_grpc_throttled_total{limit=\"rate\"}"), std::string::npos);
  EXPECT_EQ(text.find("fleettwin_grpc_throttled_total{limit=\"rate\"} 0"), std::string::npos)
      << "no refusal counted";
}

TEST_F(LimitsNodeTest, APrincipalHoldingItsWatchStreamsClosesOneBeforeOpeningAnother) {
  auto first = open_watch("carol");
  auto second = open_watch("carol");
  auto third = watch_status("carol");
  EXPECT_EQ(third.error_code(), StatusCode::RESOURCE_EXHAUSTED) << third.error_message();
  EXPECT_NE(third.error_message().find("'carol' holds its limit of 2 watch streams"),
            std::string::npos)
      << third.error_message();
  // Another principal has streams of its own.
  auto dave = watch_status("dave");
  EXPECT_EQ(dave.error_code(), StatusCode::DEADLINE_EXCEEDED) << dave.error_message();
  // Carol closes one; once the node saw it end, she may open another.
  first->ctx.TryCancel();
  first->reader->Finish();
  grpc::Status again;
  for (int i = 0; i < 10; ++i) {
    again = watch_status("carol");
    if (again.error_code() != StatusCode::RESOURCE_EXHAUSTED)
      break;
  }
  EXPECT_EQ(again.error_code(), StatusCode::DEADLINE_EXCEEDED) << again.error_message();

  auto text = metrics();
  EXPECT_EQ(text.find("fleettwin_grpc_throttled_total{limit=\"watch_streams\"} 0"),
            std::string::npos)
      << "no refusal counted";
  second->ctx.TryCancel();
  second->reader->Finish();
}

}  // namespace
}  // namespace fleettwin::test

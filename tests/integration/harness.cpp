#include "harness.hpp"

#include <fstream>
#include <stdexcept>

#include <grpcpp/impl/client_unary_call.h>
#include <grpcpp/impl/rpc_method.h>

#include "grpc/health/v1/health.pb.h"

namespace fleettwin::test {

node_process::node_process(std::string bootstrap, std::string data_dir,
                           std::vector<std::string> extra)
    : bootstrap_(std::move(bootstrap)), data_dir_(std::move(data_dir)), extra_(std::move(extra)) {
  log_ = data_dir_ + ".log";
}

void node_process::start(bool until_ready) {
  // A port found free may be taken before the node binds it (tests run in parallel, the
  // embedded Kafka binds ports too): the node then stops at once saying so, and is
  // started again on other ports.
  for (int attempt = 1;; ++attempt) {
    try {
      start_once(until_ready);
      return;
    } catch (const std::runtime_error&) {
      if (attempt >= 3 || running() || file_tail(log_, 5).find("cannot serve") == std::string::npos)
        throw;
    }
  }
}

void node_process::start_once(bool until_ready) {
  grpc_port_ = free_port();
  metrics_port_ = free_port();
  std::vector<std::string> args{FLEETTWIN_NODE_BINARY,
                                "--data-dir",
                                data_dir_,
                                "--grpc",
                                grpc_address(),
                                "--metrics",
                                "127.0.0.1:" + std::to_string(metrics_port_),
                                "--cluster-port",
                                "0",
                                "--session-timeout-ms",
                                "6000",
                                "--passivate-after-ms",
                                "2000",
                                "--stale-after-ms",
                                "60000"};
  if (!bootstrap_.empty()) {
    // The mock cluster has no real transactions and no CreateTopics: these
    // tests cover one node.
    if (!real_kafka_)
      for (const char* a : {"--guarantee", "at-least-once", "--no-changelog", "--no-create-topics"})
        args.emplace_back(a);
    args.insert(args.begin() + 1, {"--kafka", bootstrap_});
  }
  args.insert(args.end(), extra_.begin(), extra_.end());
  process_.start(std::move(args), log_);
  // Ready when the gRPC port accepts connections and Ping answers. The channel is made
  // once the port is open: one that dials earlier backs off for seconds after each
  // refused connection.
  bool ok = eventually([&] { return !running() || port_open(grpc_port_); });
  auto channel = grpc::CreateChannel(grpc_address(), credentials_);
  auto stub = fleettwin::v1::NodeService::NewStub(channel);
  ok = ok && eventually([&] {
         if (!running())
           return true;
         grpc::ClientContext ctx;
         ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds{500});
         fleettwin::v1::PingResponse resp;
         return stub->Ping(&ctx, {}, &resp).ok();
       });
  if (!ok || !running())
    throw std::runtime_error("fleettwin-node did not start; see " + log_);
  // Then ready (grpc.health.v1, overall): its partitions assigned. A node that cannot
  // get there (a test of exactly that) is left to the test after a while.
  if (!until_ready)
    return;
  static const grpc::internal::RpcMethod check{"/grpc.health.v1.Health/Check",
                                               grpc::internal::RpcMethod::NORMAL_RPC};
  eventually(
      [&] {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds{500});
        grpc::health::v1::HealthCheckRequest request;
        grpc::health::v1::HealthCheckResponse response;
        auto st = grpc::internal::BlockingUnaryCall(channel.get(), check, &ctx, request, &response);
        return !running() ||
               (st.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING);
      },
      std::chrono::seconds{30}, std::chrono::milliseconds{50});
}

std::string node_process::bootstrap() const {
  if (!bootstrap_.empty())
    return bootstrap_;
  std::ifstream in{data_dir_ + "/kafka.bootstrap"};
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace fleettwin::test

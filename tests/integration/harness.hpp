#pragma once

// Test harness: a Kafka cluster in the test process (so it outlives a node
// killed with -9), a fleettwin-node child process on free loopback ports and
// a temp data dir, a producer and gRPC stubs. The generic parts (processes,
// ports, polling, Kafka I/O, metrics) are in tests/support.

#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "fleettwin/v1/service.grpc.pb.h"
#include "services/kafka/embedded_kafka.hpp"
#include "support/kafka_io.hpp"
#include "support/metrics_scrape.hpp"
#include "support/process.hpp"
#include "support/twin_calls.hpp"

namespace fleettwin::test {

/// A fleettwin-node child process on a mock Kafka: the test's (`bootstrap`)
/// or, with an empty bootstrap, the node's own embedded one.
class node_process {
public:
  node_process(std::string bootstrap, std::string data_dir, std::vector<std::string> extra = {});
  /// The Kafka the node uses (its embedded one: from its bootstrap file).
  std::string bootstrap() const;
  ~node_process() = default;
  /// Starts the node and returns once its gRPC port answers and, with `until_ready`, its
  /// health is SERVING (partitions assigned; given up after 30 s).
  void start(bool until_ready = true);
  /// SIGKILL, no chance to flush.
  void kill9() {
    process_.kill9();
  }
  /// SIGTERM and wait; returns the exit status.
  int terminate() {
    return process_.terminate(std::chrono::seconds{60});
  }
  bool running() {
    return process_.running();
  }
  /// The bootstrap is a real Kafka: the node keeps its defaults there (exactly-once, the
  /// changelog, topics it creates) instead of those the mock cluster needs.
  void on_real_kafka() {
    real_kafka_ = true;
  }
  /// Credentials of the readiness check in start() (default: plaintext).
  void use_credentials(std::shared_ptr<grpc::ChannelCredentials> credentials) {
    credentials_ = std::move(credentials);
  }
  std::string grpc_address() const {
    return "127.0.0.1:" + std::to_string(grpc_port_);
  }
  int metrics_port() const {
    return metrics_port_;
  }
  const std::string& log_path() const {
    return log_;
  }

private:
  void start_once(bool until_ready);

  std::string bootstrap_;
  std::string data_dir_;
  std::vector<std::string> extra_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  child_process process_;
  std::string log_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_ = grpc::InsecureChannelCredentials();
  bool real_kafka_ = false;
};

}  // namespace fleettwin::test

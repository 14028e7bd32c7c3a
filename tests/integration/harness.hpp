#pragma once

// Test harness: a Kafka cluster in the test process (so it outlives a node
// killed with -9), a fleettwin-node child process on free loopback ports and
// a temp data dir, a producer and gRPC stubs.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "fleettwin/v1/service.grpc.pb.h"
#include "services/kafka/embedded_kafka.hpp"

namespace fleettwin::test {

/// A free TCP port on 127.0.0.1 (bound and released).
int free_port();

/// Polls `cond` until true or the deadline; false on timeout.
bool eventually(const std::function<bool()>& cond,
                std::chrono::milliseconds timeout = std::chrono::seconds{60});

/// A fleettwin-node child process.
class node_process {
public:
  node_process(std::string bootstrap, std::string data_dir, std::vector<std::string> extra = {});
  ~node_process();
  void start();
  /// SIGKILL, no chance to flush.
  void kill9();
  /// SIGTERM and wait; returns the exit status.
  int terminate();
  bool running();
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
  std::string bootstrap_;
  std::string data_dir_;
  std::vector<std::string> extra_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  int pid_ = -1;
  std::string log_;
};

/// Produces records with Kafka's default (murmur2) partitioner.
class producer {
public:
  explicit producer(const std::string& bootstrap);
  ~producer();
  void send(const std::string& topic, const std::string& key, const std::string& value,
            const std::string& content_type = "application/x-protobuf");
  /// Waits for every delivery; returns the number of failed deliveries.
  int flush();

private:
  void* rk_;
};

/// Reads every record currently in a topic (from the beginning).
struct consumed_record {
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;
};
std::vector<consumed_record> read_topic(const std::string& bootstrap, const std::string& topic,
                                        size_t expected, std::chrono::milliseconds timeout);

/// A serialized fleettwin.v1.Telemetry.
std::string telemetry(const std::string& asset, uint64_t seq, int64_t ts,
                      const std::map<std::string, double>& metrics,
                      const std::map<std::string, std::string>& attributes = {},
                      const std::string& kind = "vehicle");

/// GET http://127.0.0.1:port/metrics
std::string scrape(int port);

/// The value of a metric line (name with labels as written), or -1.
double metric_value(const std::string& exposition, const std::string& series);

}  // namespace fleettwin::test

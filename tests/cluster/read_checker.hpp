#pragma once

// Clients reading twins through every node while faults happen. Each reader
// thread asks for twins through the nodes in turn (its own channels, so that
// node restarts do not disturb the test's stubs) and checks what a client
// is promised: a twin's version never goes backwards, across nodes, moves,
// pauses and broker outages, and no call hangs past its deadline: when a
// node cannot answer it says UNAVAILABLE.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "fleettwin/v1/service.grpc.pb.h"

namespace fleettwin::test {

class read_checker {
public:
  struct result {
    uint64_t ok = 0;
    uint64_t unavailable = 0;
    uint64_t not_found = 0;
    /// Calls that ran into the client deadline: a hang.
    uint64_t hung = 0;
    /// Calls a node's gRPC server cut off as it shut down (a call racing the
    /// server's final stop after a graceful drain).
    uint64_t cancelled = 0;
    uint64_t other = 0;
    std::string first_other;
    /// Reads that returned an older version than this client saw before.
    std::vector<std::string> backwards;
    double max_seconds = 0;
  };

  /// `nodes`: gRPC addresses; `assets`: the twins to read.
  read_checker(std::vector<std::string> nodes, std::vector<std::string> assets, int threads = 2,
               std::chrono::milliseconds deadline = std::chrono::seconds{10});
  ~read_checker();
  read_checker(const read_checker&) = delete;
  read_checker& operator=(const read_checker&) = delete;

  /// Stops reading through `address` (a frozen process cannot answer);
  /// returns once no call to it is in flight any more.
  void exclude(const std::string& address);
  void include(const std::string& address);
  /// Stops the readers and returns what they saw.
  result stop();
  /// Reads done so far (all outcomes).
  uint64_t reads() const {
    return reads_.load();
  }

private:
  void run(size_t thread_index);

  std::vector<std::string> nodes_;
  std::vector<std::string> assets_;
  std::chrono::milliseconds deadline_;
  std::vector<std::unique_ptr<v1::TwinService::Stub>> stubs_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> reads_{0};
  mutable std::mutex mutex_;  // guards excluded_, calling_ and result_
  std::condition_variable done_;
  std::set<std::string> excluded_;
  std::map<std::string, int> calling_;  // calls in flight per address
  result result_;
};

}  // namespace fleettwin::test

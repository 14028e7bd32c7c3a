#pragma once

// Health and readiness over grpc.health.v1 (Kubernetes gRPC probes, grpcurl):
//   ""                          overall readiness: SERVING only while the
//                               node serves every partition the group gave it
//   "fleettwin.v1.TwinService"  the same (twin calls answer here)
//   "fleettwin.v1.NodeService"  liveness: SERVING while the process runs
//   "fleettwin.v1.AdminService" SERVING while the process runs
// A thread evaluates the node's readiness check a few times a second and
// logs every change with its reason.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <grpcpp/health_check_service_interface.h>

namespace fleettwin::node {

class readiness {
public:
  /// Empty string: ready; otherwise why the node is not.
  using check = std::function<std::string()>;

  readiness(::grpc::HealthCheckServiceInterface* health, check why_not,
            std::chrono::milliseconds interval = std::chrono::milliseconds{200});
  ~readiness();

  bool ready() const {
    return ready_.load();
  }
  /// Why the node is not ready ("" when it is).
  std::string reason() const;
  /// Evaluates now (e.g. when a drain begins) instead of at the next tick.
  void update();
  /// Every service NOT_SERVING for good (the process is going away).
  void shut_down();

private:
  void run();

  ::grpc::HealthCheckServiceInterface* health_;
  check why_not_;
  std::chrono::milliseconds interval_;
  std::atomic<bool> ready_{false};
  mutable std::mutex mutex_;  // guards reason_, first_, stop_
  std::string reason_;
  bool first_ = true;
  bool stop_ = false;
  std::condition_variable wake_;
  std::thread thread_;
};

}  // namespace fleettwin::node

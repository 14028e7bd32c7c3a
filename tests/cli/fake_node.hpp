#pragma once

// An in-process stand-in for a FleetTwin node: TwinService and NodeService over canned
// data on 127.0.0.1 (port 0), recording every request it receives.

#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/server.h>

#include "fleettwin/v1/service.grpc.pb.h"

namespace fleettwin::cli::test {

class fake_node {
public:
  fake_node();
  ~fake_node();
  fake_node(const fake_node&) = delete;
  fake_node& operator=(const fake_node&) = delete;

  /// "127.0.0.1:<port>"
  const std::string& address() const {
    return address_;
  }

  /// Adds or replaces a twin (by asset id; name and etag are filled in).
  void put_twin(v1::Twin twin);
  /// Every call fails with this status from now on.
  void fail_with(grpc::Status status);
  void set_history(std::vector<v1::HistoryPoint> points);
  void set_status(v1::NodeStatus status);
  /// grpc.health.v1 status of a service ("" = the server as a whole); SERVING at start.
  void set_serving(const std::string& service, bool serving);
  /// What WatchTwins streams; with hold_open the stream then stays open until the
  /// client cancels, otherwise it ends with OK.
  void set_changes(std::vector<v1::TwinChange> changes, bool hold_open);
  /// Ready once the first watch has written every change and is holding the stream open.
  std::future<void> watch_holding();

  struct log {
    std::vector<v1::GetTwinRequest> get;
    std::vector<v1::BatchGetTwinsRequest> batch_get;
    std::vector<v1::ListTwinsRequest> list;
    std::vector<v1::UpdateDesiredRequest> update_desired;
    std::vector<v1::GetHistoryRequest> history;
    std::vector<v1::WatchTwinsRequest> watch;
    int status = 0;
    int ping = 0;
    /// Seconds from arrival to the deadline of the last GetTwin.
    double get_deadline_s = 0;
    size_t calls() const {
      return get.size() + batch_get.size() + list.size() + update_desired.size() + history.size() +
             watch.size() + status + ping;
    }
  };
  /// A copy of the requests received so far.
  log requests() const;

  class twin_service;
  class node_service;

private:
  mutable std::mutex mutex_;
  std::map<std::string, v1::Twin> twins_;  // by asset id, so ListTwins is ordered
  std::optional<grpc::Status> failure_;
  std::vector<v1::HistoryPoint> history_;
  v1::NodeStatus status_;
  std::vector<v1::TwinChange> changes_;
  bool hold_open_ = false;
  std::promise<void> holding_;
  bool holding_taken_ = false;
  log log_;

  std::unique_ptr<twin_service> twin_service_;
  std::unique_ptr<node_service> node_service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

/// A twin with kind "vehicle", tenant "acme", one attribute and reported speed.
v1::Twin make_twin(const std::string& asset_id, uint64_t version);

}  // namespace fleettwin::cli::test

#include "tests/cli/fake_node.hpp"

#include <atomic>
#include <charconv>
#include <chrono>

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>

namespace fleettwin::cli::test {

namespace {

constexpr int32_t default_page_size = 100;

grpc::Status not_found(const std::string& name) {
  auto asset = name.substr(name.find('/') + 1);
  return {grpc::StatusCode::NOT_FOUND, "twin \"" + asset + "\" not found"};
}

bool same_value(const v1::Value& a, const v1::Value& b) {
  return a.SerializeAsString() == b.SerializeAsString();
}

/// Streams the configured changes, then finishes or waits for the client to cancel.
/// Finish is called once, and never while a write is outstanding.
class change_writer final : public grpc::ServerWriteReactor<v1::TwinChange> {
public:
  change_writer(std::vector<v1::TwinChange> changes, bool hold_open, std::promise<void>* holding,
                std::optional<grpc::Status> failure)
      : changes_(std::move(changes)), hold_open_(hold_open), holding_(holding) {
    if (failure) {
      finish(*failure);
    } else {
      next();
    }
  }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard lock{mutex_};
      writing_ = false;
      cancelled_ = cancelled_ || !ok;
    }
    next();
  }

  void OnCancel() override {
    bool idle = false;
    {
      std::lock_guard lock{mutex_};
      cancelled_ = true;
      idle = !writing_;
    }
    if (idle) {
      finish(grpc::Status::CANCELLED);
    }
  }

  void OnDone() override {
    delete this;
  }

private:
  void next() {
    const v1::TwinChange* change = nullptr;
    bool end = false;
    bool cancelled = false;
    std::promise<void>* holding = nullptr;
    {
      std::lock_guard lock{mutex_};
      cancelled = cancelled_;
      if (cancelled_) {
        end = true;
      } else if (next_ < changes_.size()) {
        change = &changes_[next_++];
        writing_ = true;
      } else if (!hold_open_) {
        end = true;
      } else {
        std::swap(holding, holding_);
      }
    }
    if (change != nullptr) {
      StartWrite(change);
    } else if (end) {
      finish(cancelled ? grpc::Status::CANCELLED : grpc::Status::OK);
    } else if (holding != nullptr) {
      holding->set_value();
    }
  }

  void finish(const grpc::Status& status) {
    if (!finished_.exchange(true)) {
      Finish(status);
    }
  }

  std::mutex mutex_;
  std::vector<v1::TwinChange> changes_;
  size_t next_ = 0;
  bool hold_open_;
  std::promise<void>* holding_;
  bool writing_ = false;
  bool cancelled_ = false;
  std::atomic<bool> finished_{false};
};

}  // namespace

class fake_node::twin_service final : public v1::TwinService::CallbackService {
public:
  explicit twin_service(fake_node& node) : node_(node) {}

  grpc::ServerUnaryReactor* GetTwin(grpc::CallbackServerContext* context,
                                    const v1::GetTwinRequest* request,
                                    v1::Twin* response) override {
    std::lock_guard lock{node_.mutex_};
    node_.log_.get.push_back(*request);
    node_.log_.get_deadline_s =
        std::chrono::duration<double>(context->deadline() - std::chrono::system_clock::now())
            .count();
    return finish(context, [&] { return find(request->name(), response); });
  }

  grpc::ServerUnaryReactor* BatchGetTwins(grpc::CallbackServerContext* context,
                                          const v1::BatchGetTwinsRequest* request,
                                          v1::BatchGetTwinsResponse* response) override {
    std::lock_guard lock{node_.mutex_};
    node_.log_.batch_get.push_back(*request);
    return finish(context, [&] {
      for (const auto& name : request->names()) {
        if (auto status = find(name, response->add_twins()); !status.ok()) {
          response->Clear();
          return status;
        }
      }
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* ListTwins(grpc::CallbackServerContext* context,
                                      const v1::ListTwinsRequest* request,
                                      v1::ListTwinsResponse* response) override {
    std::lock_guard lock{node_.mutex_};
    node_.log_.list.push_back(*request);
    return finish(context, [&] {
      size_t start = 0;
      const auto& token = request->page_token();
      if (!token.empty()) {
        auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), start);
        if (ec != std::errc{} || end != token.data() + token.size()) {
          return grpc::Status{grpc::StatusCode::INVALID_ARGUMENT, "bad page token"};
        }
      }
      size_t size = request->page_size() == 0 ? default_page_size : request->page_size();
      size_t index = 0;
      for (const auto& [id, twin] : node_.twins_) {
        if (index >= start && index < start + size) {
          *response->add_twins() = twin;
        }
        ++index;
      }
      if (start + size < node_.twins_.size()) {
        response->set_next_page_token(std::to_string(start + size));
      }
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* UpdateDesired(grpc::CallbackServerContext* context,
                                          const v1::UpdateDesiredRequest* request,
                                          v1::Twin* response) override {
    std::lock_guard lock{node_.mutex_};
    node_.log_.update_desired.push_back(*request);
    return finish(context, [&] {
      auto asset = request->name().substr(request->name().find('/') + 1);
      auto& twin = node_.twins_[asset];
      if (request->has_expected_version() && request->expected_version() != twin.version()) {
        return grpc::Status{grpc::StatusCode::ABORTED,
                            "twin \"" + asset + "\" is at version " +
                                std::to_string(twin.version()) + ", not " +
                                std::to_string(request->expected_version())};
      }
      twin.set_name(request->name());
      twin.set_asset_id(asset);
      for (const auto& [key, value] : request->desired()) {
        (*twin.mutable_desired())[key] = value;
      }
      for (const auto& key : request->remove()) {
        twin.mutable_desired()->erase(key);
      }
      twin.clear_delta();
      for (const auto& [key, value] : twin.desired()) {
        auto reported = twin.reported().find(key);
        if (reported == twin.reported().end() || !same_value(reported->second.value(), value)) {
          (*twin.mutable_delta())[key] = value;
        }
      }
      twin.set_version(twin.version() + 1);
      *response = twin;
      return grpc::Status::OK;
    });
  }

  grpc::ServerUnaryReactor* GetHistory(grpc::CallbackServerContext* context,
                                       const v1::GetHistoryRequest* request,
                                       v1::GetHistoryResponse* response) override {
    std::lock_guard lock{node_.mutex_};
    node_.log_.history.push_back(*request);
    return finish(context, [&] {
      for (const auto& point : node_.history_) {
        *response->add_points() = point;
      }
      return grpc::Status::OK;
    });
  }

  grpc::ServerWriteReactor<v1::TwinChange>* WatchTwins(
      grpc::CallbackServerContext* context, const v1::WatchTwinsRequest* request) override {
    std::lock_guard lock{node_.mutex_};
    node_.log_.watch.push_back(*request);
    // Only the first watch that holds the stream open reports it.
    auto* holding = node_.holding_taken_ ? nullptr : &node_.holding_;
    node_.holding_taken_ = node_.holding_taken_ || (node_.hold_open_ && !node_.failure_);
    return new change_writer(node_.changes_, node_.hold_open_, holding, node_.failure_);
  }

private:
  /// Called with the node's mutex held.
  grpc::Status find(const std::string& name, v1::Twin* twin) {
    auto asset = name.substr(name.find('/') + 1);
    auto it = node_.twins_.find(asset);
    if (!name.starts_with("twins/") || it == node_.twins_.end()) {
      return not_found(name);
    }
    *twin = it->second;
    return grpc::Status::OK;
  }

  template <class Handler>
  grpc::ServerUnaryReactor* finish(grpc::CallbackServerContext* context, Handler handler) {
    auto* reactor = context->DefaultReactor();
    reactor->Finish(node_.failure_ ? *node_.failure_ : handler());
    return reactor;
  }

  fake_node& node_;
};

class fake_node::node_service final : public v1::NodeService::CallbackService {
public:
  explicit node_service(fake_node& node) : node_(node) {}

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest*,
                                      v1::NodeStatus* response) override {
    std::lock_guard lock{node_.mutex_};
    ++node_.log_.status;
    *response = node_.status_;
    auto* reactor = context->DefaultReactor();
    reactor->Finish(node_.failure_.value_or(grpc::Status::OK));
    return reactor;
  }

  grpc::ServerUnaryReactor* Ping(grpc::CallbackServerContext* context, const v1::PingRequest*,
                                 v1::PingResponse*) override {
    std::lock_guard lock{node_.mutex_};
    ++node_.log_.ping;
    auto* reactor = context->DefaultReactor();
    reactor->Finish(node_.failure_.value_or(grpc::Status::OK));
    return reactor;
  }

private:
  fake_node& node_;
};

fake_node::fake_node()
    : twin_service_(std::make_unique<twin_service>(*this)),
      node_service_(std::make_unique<node_service>(*this)) {
  int port = 0;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(twin_service_.get());
  builder.RegisterService(node_service_.get());
  server_ = builder.BuildAndStart();
  address_ = "127.0.0.1:" + std::to_string(port);
}

fake_node::~fake_node() {
  server_->Shutdown();
  server_->Wait();
}

void fake_node::set_serving(const std::string& service, bool serving) {
  server_->GetHealthCheckService()->SetServingStatus(service, serving);
}

void fake_node::put_twin(v1::Twin twin) {
  std::lock_guard lock{mutex_};
  twin.set_name("twins/" + twin.asset_id());
  twin.set_etag(std::to_string(twin.version()));
  twins_[twin.asset_id()] = std::move(twin);
}

void fake_node::fail_with(grpc::Status status) {
  std::lock_guard lock{mutex_};
  failure_ = std::move(status);
}

void fake_node::set_history(std::vector<v1::HistoryPoint> points) {
  std::lock_guard lock{mutex_};
  history_ = std::move(points);
}

void fake_node::set_status(v1::NodeStatus status) {
  std::lock_guard lock{mutex_};
  status_ = std::move(status);
}

void fake_node::set_changes(std::vector<v1::TwinChange> changes, bool hold_open) {
  std::lock_guard lock{mutex_};
  changes_ = std::move(changes);
  hold_open_ = hold_open;
}

std::future<void> fake_node::watch_holding() {
  std::lock_guard lock{mutex_};
  return holding_.get_future();
}

fake_node::log fake_node::requests() const {
  std::lock_guard lock{mutex_};
  return log_;
}

v1::Twin make_twin(const std::string& asset_id, uint64_t version) {
  v1::Twin twin;
  twin.set_asset_id(asset_id);
  twin.set_kind("vehicle");
  twin.set_tenant("acme");
  twin.set_version(version);
  (*twin.mutable_attributes())["fleet"] = "north";
  auto& speed = (*twin.mutable_reported())["speed"];
  speed.mutable_value()->set_double_value(52.5);
  speed.set_source_time_ms(1795514400000);  // 2026-11-24T10:00:00Z
  speed.set_ingest_time_ms(1795514400100);
  speed.set_sequence(7);
  twin.set_last_seen_ms(1795514400123);
  twin.set_connectivity(v1::ONLINE);
  auto& stats = (*twin.mutable_stats())["speed"];
  stats.set_count(3);
  stats.set_min(40);
  stats.set_max(60);
  stats.set_mean(50);
  twin.set_applied_records(7);
  twin.set_last_sequence(7);
  return twin;
}

}  // namespace fleettwin::cli::test

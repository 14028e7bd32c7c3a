#include "services/node/readiness.hpp"

#include <pthread.h>

#include <spdlog/spdlog.h>

namespace fleettwin::node {

namespace {

constexpr const char* twin_service = "fleettwin.v1.TwinService";
constexpr const char* node_service = "fleettwin.v1.NodeService";
constexpr const char* admin_service = "fleettwin.v1.AdminService";

}  // namespace

readiness::readiness(::grpc::HealthCheckServiceInterface* health, check why_not,
                     std::chrono::milliseconds interval)
    : health_(health), why_not_(std::move(why_not)), interval_(interval) {
  if (health_) {
    health_->SetServingStatus("", false);
    health_->SetServingStatus(twin_service, false);
    health_->SetServingStatus(node_service, true);
    health_->SetServingStatus(admin_service, true);
  }
  update();
  thread_ = std::thread{[this] { run(); }};
}

readiness::~readiness() {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

std::string readiness::reason() const {
  std::lock_guard<std::mutex> guard{mutex_};
  return reason_;
}

void readiness::update() {
  auto why = why_not_();
  const bool now = why.empty();
  std::lock_guard<std::mutex> guard{mutex_};
  if (stop_)
    return;
  if (first_ || now != ready_.load()) {
    if (now)
      spdlog::info("event=ready");
    else
      spdlog::info("event=not_ready reason=\"{}\"", why);
    if (health_) {
      health_->SetServingStatus("", now);
      health_->SetServingStatus(twin_service, now);
    }
  }
  first_ = false;
  ready_ = now;
  reason_ = std::move(why);
}

void readiness::shut_down() {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    stop_ = true;
    ready_ = false;
    reason_ = "the node is shutting down";
  }
  wake_.notify_all();
  if (thread_.joinable())
    thread_.join();
  if (health_)
    health_->Shutdown();  // every service NOT_SERVING, watchers told
}

void readiness::run() {
  pthread_setname_np(pthread_self(), "ft-readiness");  // top -H, perf
  std::unique_lock<std::mutex> lock{mutex_};
  while (!stop_) {
    wake_.wait_for(lock, interval_, [this] { return stop_; });
    if (stop_)
      return;
    lock.unlock();
    update();
    lock.lock();
  }
}

}  // namespace fleettwin::node

#include "services/grpc/query_pool.hpp"

namespace fleettwin::grpc_api {

query_pool::query_pool(size_t threads, size_t max_queued) : max_queued_(max_queued) {
  for (size_t i = 0; i < threads; ++i)
    threads_.emplace_back([this] {
      for (;;) {
        std::function<void()> task;
        {
          std::unique_lock<std::mutex> lock{mutex_};
          cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
          if (tasks_.empty())
            return;
          task = std::move(tasks_.front());
          tasks_.pop_front();
        }
        task();
      }
    });
}

query_pool::~query_pool() {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    t.join();
}

bool query_pool::submit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    if (stop_ || tasks_.size() >= max_queued_)
      return false;
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

}  // namespace fleettwin::grpc_api

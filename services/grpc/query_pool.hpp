#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fleettwin::grpc_api {

/// A few threads for queries that read RocksDB (ListTwins, GetHistory), so
/// that neither gRPC threads nor actors block on storage. Bounded queue.
class query_pool {
public:
  query_pool(size_t threads, size_t max_queued);
  ~query_pool();

  /// False when the queue is full (the caller answers RESOURCE_EXHAUSTED).
  bool submit(std::function<void()> task);

private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  size_t max_queued_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace fleettwin::grpc_api

#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "services/kafka/kafka_config.hpp"

namespace fleettwin::kafka {

struct compacted_log_options {
  std::string bootstrap;
  /// A compacted topic of one partition.
  std::string topic;
  std::string client_id;
  std::map<std::string, std::string> settings;  // extra librdkafka settings
};

/// A compacted, one-partition topic every node reads whole and follows (its
/// own consumer, no group, on its own thread) and can append to: the
/// cluster's shared definitions (aggregate kinds, models), the same on every
/// node.
class compacted_log {
public:
  using record_handler = std::function<void(std::string_view key, std::string_view value)>;

  static std::unique_ptr<compacted_log> start(compacted_log_options opts, record_handler on_record,
                                              std::string& error);
  ~compacted_log();

  /// Waits until every record written before the call was handed to the
  /// handler; false after `timeout`.
  bool catch_up(std::chrono::milliseconds timeout);

  /// Appends a record (acknowledged by every in-sync replica); the error
  /// when it could not be written within `timeout`.
  std::optional<std::string> append(const std::string& key, const std::string& value,
                                    std::chrono::milliseconds timeout);

private:
  compacted_log(compacted_log_options opts, record_handler on_record);
  void run();

  compacted_log_options opts_;
  record_handler on_record_;
  kafka_handle consumer_;
  kafka_handle producer_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable progressed_;
  /// Next offset handed to the handler.
  int64_t position_ = 0;
};

}  // namespace fleettwin::kafka

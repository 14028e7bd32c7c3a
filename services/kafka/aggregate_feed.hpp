#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "services/kafka/kafka_config.hpp"

namespace fleettwin::kafka {

struct aggregate_feed_options {
  std::string bootstrap;
  /// The aggregates topic (fleettwin.aggregates).
  std::string topic;
  std::string client_id = "fleettwin-aggregate-feed";
  std::map<std::string, std::string> settings;  // extra librdkafka settings
};

/// Follows the committed changes of every aggregate, wherever it is served:
/// every partition of the aggregates topic from its end, read_committed (a
/// change is seen once its transaction committed, never one that aborted),
/// with its own consumer (no group) on its own thread. WatchAggregates on any
/// node reads it, so watches see every node's aggregates and survive
/// partition moves.
class aggregate_feed {
public:
  /// `on_record(key, value)` runs on the feed's thread for every record.
  using record_handler = std::function<void(std::string_view key, std::string_view value)>;

  static std::unique_ptr<aggregate_feed> start(aggregate_feed_options opts,
                                               record_handler on_record, std::string& error);
  ~aggregate_feed();

  /// Every partition is assigned and positioned at the end it had then:
  /// later changes will be delivered.
  bool ready() const {
    return ready_.load();
  }

private:
  aggregate_feed(aggregate_feed_options opts, record_handler on_record);
  void run();
  bool assign();

  aggregate_feed_options opts_;
  record_handler on_record_;
  kafka_handle rk_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> ready_{false};
};

}  // namespace fleettwin::kafka

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

struct topic_feed_options {
  std::string bootstrap;
  /// The topic followed (e.g. fleettwin.aggregates, fleettwin.alerts).
  std::string topic;
  std::string client_id = "fleettwin-feed";
  std::map<std::string, std::string> settings;  // extra librdkafka settings
};

/// Follows the committed records of a topic that every node writes to
/// (aggregate changes, alert events), wherever they are produced: every
/// partition from its end, read_committed (a record is seen once its
/// transaction committed, never one that aborted), with its own consumer (no
/// group) on its own thread. Watches on any node read it, so they see every
/// node's records and survive partition moves.
class topic_feed {
public:
  /// `on_record(key, value)` runs on the feed's thread for every record.
  using record_handler = std::function<void(std::string_view key, std::string_view value)>;

  static std::unique_ptr<topic_feed> start(topic_feed_options opts, record_handler on_record,
                                           std::string& error);
  ~topic_feed();

  /// Every partition is assigned and positioned at the end it had then:
  /// later changes will be delivered.
  bool ready() const {
    return ready_.load();
  }

private:
  topic_feed(topic_feed_options opts, record_handler on_record);
  void run();
  bool assign();

  topic_feed_options opts_;
  record_handler on_record_;
  kafka_handle rk_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> ready_{false};
};

}  // namespace fleettwin::kafka

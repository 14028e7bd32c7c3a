#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "actors/runtime/ports.hpp"
#include "services/kafka/kafka_config.hpp"

namespace fleettwin::kafka {

struct producer_options {
  std::string bootstrap;
  topic_names topics;
  /// CloudEvents `ce_source` is "fleettwin/<node_id>".
  std::string node_id = "node-1";
  /// When false, twin changes are not published (dead letters still are).
  bool publish_changes = true;
  /// Dead-letter payloads above this are truncated (header says so) so that a
  /// broker's message size limit cannot block the partition.
  size_t dlq_max_payload = 900 * 1024;
  std::map<std::string, std::string> settings;  // extra librdkafka settings
};

/// Publishes twin changes (CloudEvents binary mode) and dead letters, and
/// reports when everything of one publish call is acknowledged.
class event_producer final : public runtime::event_sink {
public:
  static std::unique_ptr<event_producer> create(producer_options opts, std::string& error);
  ~event_producer() override;

  void publish(int32_t partition, const std::vector<core::twin_change>& changes,
               const std::vector<runtime::rejected_record>& rejects,
               std::function<void(bool ok, std::string error)> delivered) override;

  /// Waits until every queued record is delivered or `timeout` passes.
  bool flush(std::chrono::milliseconds timeout);

private:
  explicit event_producer(producer_options opts);
  void produce(const std::string& topic, std::string_view key, std::string_view value,
               rd_kafka_headers_t* headers, void* opaque);

  producer_options opts_;
  kafka_handle rk_;
  std::atomic<bool> stop_{false};
  std::thread poller_;
  std::string encode_buffer_;
};

}  // namespace fleettwin::kafka

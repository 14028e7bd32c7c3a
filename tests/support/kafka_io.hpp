#pragma once

// Producing telemetry to and reading records from Kafka in tests.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace fleettwin::test {

/// Produces records with Kafka's default (murmur2) partitioner.
class producer {
public:
  explicit producer(const std::string& bootstrap);
  ~producer();
  producer(const producer&) = delete;
  producer& operator=(const producer&) = delete;
  void send(const std::string& topic, const std::string& key, const std::string& value,
            const std::string& content_type = "application/x-protobuf");
  /// Waits for every delivery; returns the number of failed deliveries.
  int flush();

private:
  void* rk_;
};

/// Reads every record currently in a topic (from the beginning).
struct consumed_record {
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;
};
std::vector<consumed_record> read_topic(const std::string& bootstrap, const std::string& topic,
                                        size_t expected, std::chrono::milliseconds timeout);
/// The same, until `enough` says the records read so far are enough (or the timeout).
std::vector<consumed_record> read_topic(
    const std::string& bootstrap, const std::string& topic,
    const std::function<bool(const std::vector<consumed_record>&)>& enough,
    std::chrono::milliseconds timeout);

/// The sum of a topic's end offsets over its partitions (what was ever written to
/// it); nullopt when they cannot be read.
std::optional<int64_t> end_offsets(const std::string& bootstrap, const std::string& topic);

/// A serialized fleettwin.v1.Telemetry.
std::string telemetry(const std::string& asset, uint64_t seq, int64_t ts,
                      const std::map<std::string, double>& metrics,
                      const std::map<std::string, std::string>& attributes = {},
                      const std::string& kind = "vehicle",
                      const std::map<std::string, bool>& states = {});

}  // namespace fleettwin::test

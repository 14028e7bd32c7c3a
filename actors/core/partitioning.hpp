#pragma once

#include <cstdint>
#include <string_view>

namespace fleettwin::core {

/// Kafka's murmur2 hash of a record key (the Java client's default
/// partitioner, librdkafka's `murmur2_random`).
uint32_t kafka_murmur2(std::string_view key);

/// The partition Kafka's default partitioner assigns `key` to.
inline int32_t kafka_partition(std::string_view key, int32_t partitions) {
  return static_cast<int32_t>((kafka_murmur2(key) & 0x7fffffff) %
                              static_cast<uint32_t>(partitions));
}

}  // namespace fleettwin::core

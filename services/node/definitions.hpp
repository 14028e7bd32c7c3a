#pragma once

// The cluster's shared definitions (aggregate kinds, asset models): one
// compacted, one-partition models topic that every node reads whole and
// follows, keyed "<prefix><name>" (e.g. "aggregate-kind/fleet",
// "asset-model/vehicle"). Catalogs register a handler for their prefix;
// every node hands the same records to them in the same order.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "services/kafka/compacted_log.hpp"

namespace fleettwin::node {

class definitions {
public:
  using handler = std::function<void(std::string_view name, std::string_view value)>;

  /// Hands the records of `prefix` to `h` (the topic's thread); before start.
  void add(std::string prefix, handler h);

  /// Follows the topic until it caught up; false with `error`.
  bool start(kafka::compacted_log_options opts, std::chrono::milliseconds timeout,
             std::string& error);

  /// Whether the topic holds a record of `prefix` + `name` (read since start).
  bool seen(std::string_view prefix, std::string_view name) const;

  /// Writes a definition; the error when it could not be written.
  std::optional<std::string> append(std::string_view prefix, std::string_view name,
                                    const std::string& value, std::chrono::milliseconds timeout);

private:
  void on_record(std::string_view key, std::string_view value);

  std::map<std::string, handler, std::less<>> handlers_;
  std::unique_ptr<kafka::compacted_log> log_;
  mutable std::mutex mutex_;
  std::set<std::string, std::less<>> seen_;
};

}  // namespace fleettwin::node

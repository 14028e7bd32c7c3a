#include "services/node/definitions.hpp"

namespace fleettwin::node {

void definitions::add(std::string prefix, handler h) {
  handlers_[std::move(prefix)] = std::move(h);
}

void definitions::on_record(std::string_view key, std::string_view value) {
  for (const auto& [prefix, h] : handlers_) {
    if (!key.starts_with(prefix))
      continue;
    {
      std::lock_guard<std::mutex> guard{mutex_};
      seen_.emplace(key);
    }
    h(key.substr(prefix.size()), value);
    return;
  }
}

bool definitions::start(kafka::compacted_log_options opts, std::chrono::milliseconds timeout,
                        std::string& error) {
  const std::string topic = opts.topic;
  log_ = kafka::compacted_log::start(
      std::move(opts), [this](std::string_view k, std::string_view v) { on_record(k, v); }, error);
  if (!log_)
    return false;
  if (!log_->catch_up(timeout)) {
    error = "could not read the definitions of the models topic " + topic + " within " +
            std::to_string(timeout.count()) + " ms";
    return false;
  }
  return true;
}

bool definitions::seen(std::string_view prefix, std::string_view name) const {
  std::string key{prefix};
  key += name;
  std::lock_guard<std::mutex> guard{mutex_};
  return seen_.count(key) > 0;
}

std::optional<std::string> definitions::append(std::string_view prefix, std::string_view name,
                                               const std::string& value,
                                               std::chrono::milliseconds timeout) {
  if (!log_)
    return std::string{"the models topic is not followed yet"};
  std::string key{prefix};
  key += name;
  return log_->append(key, value, timeout);
}

}  // namespace fleettwin::node

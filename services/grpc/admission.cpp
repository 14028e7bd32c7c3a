#include "services/grpc/admission.hpp"

#include <algorithm>
#include <cmath>

namespace fleettwin::grpc_api {

admission::admission(admission_limits limits, std::function<void(const char*)> refused)
    : limits_(limits), refused_(std::move(refused)) {
  burst_ = limits_.burst > 0 ? limits_.burst : std::max(1.0, limits_.requests_per_second);
}

void admission::forget_idle(shard& s, clock::time_point now) {
  const double refill_seconds = burst_ / limits_.requests_per_second;
  std::erase_if(s.buckets, [&](const auto& kv) {
    return std::chrono::duration<double>(now - kv.second.last).count() >= refill_seconds;
  });
}

std::optional<std::chrono::milliseconds> admission::admit(std::string_view principal,
                                                          clock::time_point now) {
  if (!limits_rate())
    return std::nullopt;
  const double rate = limits_.requests_per_second;
  auto& s = shards_[text_hash{}(principal) % shard_count];
  std::lock_guard<std::mutex> guard{s.mutex};
  auto it = s.buckets.find(principal);
  if (it == s.buckets.end()) {
    const size_t per_shard = std::max<size_t>(1, limits_.max_principals / shard_count);
    if (s.buckets.size() >= per_shard) {
      forget_idle(s, now);
      if (s.buckets.size() >= per_shard) {
        // Every tracked principal is busy: a new one waits until one is idle (the
        // earliest a full bucket can be idle again is a refill away).
        if (refused_)
          refused_("rate");
        return std::chrono::milliseconds{
            std::max<int64_t>(1, static_cast<int64_t>(std::ceil(1000.0 * burst_ / rate)))};
      }
    }
    it = s.buckets.emplace(std::string{principal}, bucket{burst_, now}).first;
  }
  auto& b = it->second;
  if (now > b.last) {
    b.tokens =
        std::min(burst_, b.tokens + rate * std::chrono::duration<double>(now - b.last).count());
    b.last = now;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return std::nullopt;
  }
  if (refused_)
    refused_("rate");
  return std::chrono::milliseconds{
      std::max<int64_t>(1, static_cast<int64_t>(std::ceil(1000.0 * (1.0 - b.tokens) / rate)))};
}

std::shared_ptr<void> admission::open_stream(const std::string& principal) {
  {
    std::lock_guard<std::mutex> guard{streams_mutex_};
    auto& n = streams_[principal];
    if (limits_.watch_streams > 0 && n >= limits_.watch_streams) {
      if (n == 0)
        streams_.erase(principal);
      if (refused_)
        refused_("watch_streams");
      return nullptr;
    }
    ++n;
  }
  // The handle gives the slot back when the stream ends.
  struct slot {
    slot(admission* o, std::string p) : owner(o), principal(std::move(p)) {}
    slot(const slot&) = delete;
    slot& operator=(const slot&) = delete;
    admission* owner;
    std::string principal;
    ~slot() {
      owner->close_stream(principal);
    }
  };
  return std::make_shared<slot>(this, principal);
}

void admission::close_stream(const std::string& principal) {
  std::lock_guard<std::mutex> guard{streams_mutex_};
  if (auto it = streams_.find(principal); it != streams_.end() && --it->second == 0)
    streams_.erase(it);
}

size_t admission::open_streams(const std::string& principal) {
  std::lock_guard<std::mutex> guard{streams_mutex_};
  auto it = streams_.find(principal);
  return it == streams_.end() ? 0 : it->second;
}

size_t admission::tracked_principals() {
  size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard<std::mutex> guard{s.mutex};
    n += s.buckets.size();
  }
  return n;
}

std::shared_ptr<void> admission::begin_bulk() {
  if (limits_.bulk_calls == 0)
    return std::make_shared<int>(0);
  if (bulk_.fetch_add(1) >= limits_.bulk_calls) {
    bulk_.fetch_sub(1);
    if (refused_)
      refused_("bulk_calls");
    return nullptr;
  }
  return std::shared_ptr<void>(static_cast<void*>(this),
                               [](void* a) { static_cast<admission*>(a)->bulk_.fetch_sub(1); });
}

std::string principal_for(std::string_view subject, std::string_view peer) {
  if (!subject.empty())
    return std::string{subject};
  // "ipv4:1.2.3.4:5678", "ipv6:[::1]:5678", "unix:/path": the address without the port.
  auto colon = peer.rfind(':');
  auto scheme = peer.find(':');
  if (colon != std::string_view::npos && colon != scheme &&
      (peer.starts_with("ipv4:") || peer.starts_with("ipv6:")))
    peer = peer.substr(0, colon);
  return std::string{peer};
}

}  // namespace fleettwin::grpc_api

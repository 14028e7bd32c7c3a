#include "services/cluster/group_lease.hpp"

#include <pthread.h>

#include <cstring>
#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

namespace fleettwin::cluster {

namespace {

int64_t ticks(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

group_lease::group_lease(lease_options opts) : opts_(std::move(opts)) {}

std::unique_ptr<group_lease> group_lease::create(lease_options opts, std::string& error) {
  std::unique_ptr<group_lease> l{new group_lease(std::move(opts))};
  if (!l->enabled())
    return l;
  auto settings = l->opts_.settings;
  settings["bootstrap.servers"] = l->opts_.bootstrap;
  settings["client.id"] = l->opts_.client_id;
  auto* conf = kafka::make_conf(settings, error);
  if (!conf)
    return nullptr;
  char errstr[512];
  l->rk_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));
  if (!l->rk_) {
    rd_kafka_conf_destroy(conf);
    error = std::string{"cannot create the group lease client: "} + errstr;
    return nullptr;
  }
  l->thread_ = std::thread{[raw = l.get()] { raw->run(); }};
  return l;
}

group_lease::~group_lease() {
  {
    std::lock_guard<std::mutex> guard{wake_mutex_};
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

bool group_lease::held() const {
  if (!enabled())
    return true;
  auto at = confirmed_at_.load(std::memory_order_acquire);
  if (at == 0)
    return false;
  auto now = ticks(std::chrono::steady_clock::now());
  return now - at < std::chrono::duration_cast<std::chrono::nanoseconds>(opts_.duration).count();
}

lease_view group_lease::view() const {
  lease_view v;
  v.held = held();
  if (!enabled()) {
    return v;
  }
  auto at = confirmed_at_.load();
  if (at != 0)
    v.age_ms = (ticks(std::chrono::steady_clock::now()) - at) / 1'000'000;
  std::lock_guard<std::mutex> guard{mutex_};
  v.assignment_known = assignment_known_;
  v.assignment = assignment_;
  if (!v.held) {
    v.why = at == 0 ? "this node has not yet been confirmed as a member of the consumer group"
                    : "this node's membership of the consumer group was last confirmed " +
                          std::to_string(v.age_ms) + " ms ago (lease " +
                          std::to_string(opts_.duration.count()) +
                          " ms): it may have been paused or cut off, and another node may serve "
                          "its partitions now";
    if (!last_error_.empty())
      v.why += " (" + last_error_ + ")";
  }
  return v;
}

std::optional<std::set<std::string>> group_lease::live_clients() const {
  std::lock_guard<std::mutex> guard{mutex_};
  if (!clients_known_)
    return std::nullopt;
  return clients_;
}

void group_lease::invalidate() {
  confirmed_at_ = 0;
}

namespace {

/// The partitions of `topic` in a consumer protocol assignment (version
/// int16, [topic string, [partition int32]], user data bytes); nullopt
/// when the bytes are not one.
std::optional<std::set<int32_t>> assigned_partitions(const void* data, int size,
                                                     const std::string& topic) {
  const auto* p = static_cast<const unsigned char*>(data);
  const auto* end = p + size;
  auto be = [&](int bytes) -> std::optional<int64_t> {
    if (end - p < bytes)
      return std::nullopt;
    int64_t x = 0;
    for (int i = 0; i < bytes; ++i)
      x = (x << 8) | *p++;
    return bytes == 2 ? int16_t(x) : int32_t(x);
  };
  std::set<int32_t> out;
  if (!data || size == 0)
    return out;  // nothing assigned
  if (!be(2))
    return std::nullopt;
  auto topics = be(4);
  if (!topics || *topics < 0)
    return std::nullopt;
  for (int64_t t = 0; t < *topics; ++t) {
    auto len = be(2);
    if (!len || *len < 0 || end - p < *len)
      return std::nullopt;
    std::string name{reinterpret_cast<const char*>(p), static_cast<size_t>(*len)};
    p += *len;
    auto n = be(4);
    if (!n || *n < 0)
      return std::nullopt;
    for (int64_t i = 0; i < *n; ++i) {
      auto part = be(4);
      if (!part)
        return std::nullopt;
      if (name == topic)
        out.insert(static_cast<int32_t>(*part));
    }
  }
  return out;
}

}  // namespace

bool group_lease::confirm(std::chrono::steady_clock::time_point asked) {
  const std::string me = opts_.member_id ? opts_.member_id() : std::string{};
  const auto timeout = std::max<int>(static_cast<int>(opts_.duration.count() / 2), 200);
  // librdkafka's classic group listing (ListGroups to every broker, then
  // DescribeGroups to the one that coordinates the group). Its Admin API
  // equivalent trips an assertion in librdkafka 2.0 when a broker is down.
  // With a broker down the call waits out `timeout` and returns what the
  // others (the coordinator among them) said: RD_KAFKA_RESP_ERR__PARTIAL.
  const rd_kafka_group_list* groups = nullptr;
  auto err = rd_kafka_list_groups(rk_.get(), opts_.group_id.c_str(), &groups, timeout);
  if (err == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE) {
    // Every Apache Kafka broker answers DescribeGroups; test doubles such as
    // librdkafka's mock cluster do not. Without it there is no fencing.
    spdlog::warn(
        "event=read_fencing_off reason=\"the Kafka cluster does not describe consumer "
        "groups ({})\"",
        rd_kafka_err2str(err));
    unsupported_ = true;
    if (groups)
      rd_kafka_group_list_destroy(groups);
    return false;
  }
  std::string error;
  bool answered = false;
  bool listed = false;
  bool stable = false;
  std::set<int32_t> assignment;
  std::set<std::string> clients;
  if ((err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__PARTIAL) || !groups) {
    error = std::string{"describing the consumer group: "} + rd_kafka_err2str(err);
  } else {
    for (int g = 0; g < groups->group_cnt; ++g) {
      const auto& info = groups->groups[g];
      if (!info.group || opts_.group_id != info.group)
        continue;
      if (info.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        error = std::string{"describing the consumer group: "} + rd_kafka_err2str(info.err);
        continue;
      }
      answered = true;
      stable = info.state && std::string_view{info.state} == "Stable";
      for (int i = 0; i < info.member_cnt; ++i) {
        const auto& m = info.members[i];
        clients.insert(m.client_id ? m.client_id : "");
        if (me.empty() || !m.member_id || me != m.member_id)
          continue;
        listed = true;
        if (auto a =
                assigned_partitions(m.member_assignment, m.member_assignment_size, opts_.topic))
          assignment = std::move(*a);
        else
          stable = false;  // unreadable: treat as unknown
      }
    }
    if (!listed && error.empty())
      error = !answered    ? "the consumer group's coordinator did not answer"
              : me.empty() ? "not joined to the consumer group yet"
                           : "member " + me + " is not in the consumer group";
  }
  if (groups)
    rd_kafka_group_list_destroy(groups);
  {
    std::lock_guard<std::mutex> guard{mutex_};
    clients_known_ = answered;
    if (answered)
      clients_ = clients;
    if (listed) {
      // Only a stable group reports assignments.
      assignment_known_ = stable;
      if (stable)
        assignment_ = std::move(assignment);
      last_error_.clear();
    } else {
      assignment_known_ = false;
      last_error_ = error;
    }
  }
  if (listed)
    confirmed_at_.store(ticks(asked), std::memory_order_release);
  return listed;
}

void group_lease::run() {
  pthread_setname_np(pthread_self(), "ft-lease");  // top -H, perf
  bool was_held = false;
  while (true) {
    {
      std::unique_lock<std::mutex> lock{wake_mutex_};
      if (stop_ || unsupported_)
        return;
    }
    auto asked = std::chrono::steady_clock::now();
    confirm(asked);
    if (unsupported_)
      return;
    bool now_held = held();
    if (now_held != was_held) {
      if (now_held)
        spdlog::info("event=read_lease_confirmed");
      else
        spdlog::warn("event=read_lease_lost reason=\"{}\"", view().why);
      was_held = now_held;
    }
    std::unique_lock<std::mutex> lock{wake_mutex_};
    wake_.wait_until(lock, asked + opts_.interval, [this] { return stop_; });
  }
}

}  // namespace fleettwin::cluster

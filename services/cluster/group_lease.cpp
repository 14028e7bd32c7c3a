#include "services/cluster/group_lease.hpp"

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

bool group_lease::supported() {
  if (probed_)
    return true;
  // librdkafka's mock cluster (tests) has no DescribeGroups; asking it
  // through the Admin API would leave the client unable to close, so ask
  // once with the classic call, which says so cleanly.
  const rd_kafka_group_list* groups = nullptr;
  auto err = rd_kafka_list_groups(rk_.get(), opts_.group_id.c_str(), &groups, 2'000);
  if (groups)
    rd_kafka_group_list_destroy(groups);
  if (err == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE) {
    spdlog::warn("event=read_fencing_off reason=\"the Kafka cluster does not describe consumer "
                 "groups ({})\"",
                 rd_kafka_err2str(err));
    unsupported_ = true;
    return false;
  }
  probed_ = true;
  return true;
}

bool group_lease::confirm(std::chrono::steady_clock::time_point asked) {
  if (!supported())
    return false;
  const std::string me = opts_.member_id ? opts_.member_id() : std::string{};
  // DescribeGroups goes to the group's coordinator only: one broker of
  // several being down does not stop it (unless it is the coordinator, and
  // then the group cannot confirm anybody either).
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk_.get());
  auto* options = rd_kafka_AdminOptions_new(rk_.get(), RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
  const auto timeout = std::max<int>(static_cast<int>(opts_.duration.count() / 2), 200);
  char errstr[256];
  rd_kafka_AdminOptions_set_request_timeout(options, timeout, errstr, sizeof(errstr));
  const char* groups[] = {opts_.group_id.c_str()};
  rd_kafka_DescribeConsumerGroups(rk_.get(), groups, 1, options, queue);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, timeout + 1'000);
  std::string error;
  bool answered = false;
  bool listed = false;
  bool stable = false;
  std::set<int32_t> assignment;
  std::set<std::string> clients;
  if (!ev) {
    error = "no answer from the group coordinator within " + std::to_string(timeout + 1'000) +
            " ms";
  } else if (rd_kafka_event_error(ev)) {
    error = std::string{"describing the consumer group: "} + rd_kafka_event_error_string(ev);
  } else if (const auto* res = rd_kafka_event_DescribeConsumerGroups_result(ev)) {
    size_t n = 0;
    const auto** descs = rd_kafka_DescribeConsumerGroups_result_groups(res, &n);
    for (size_t g = 0; g < n; ++g) {
      if (const auto* e = rd_kafka_ConsumerGroupDescription_error(descs[g])) {
        error = std::string{"describing the consumer group: "} + rd_kafka_error_string(e);
        continue;
      }
      answered = true;
      stable = rd_kafka_ConsumerGroupDescription_state(descs[g]) ==
               RD_KAFKA_CONSUMER_GROUP_STATE_STABLE;
      auto members = rd_kafka_ConsumerGroupDescription_member_count(descs[g]);
      for (size_t i = 0; i < members; ++i) {
        const auto* m = rd_kafka_ConsumerGroupDescription_member(descs[g], static_cast<int>(i));
        clients.insert(rd_kafka_MemberDescription_client_id(m));
        if (me.empty() || me != rd_kafka_MemberDescription_consumer_id(m))
          continue;
        listed = true;
        const auto* a = rd_kafka_MemberDescription_assignment(m);
        const auto* parts = a ? rd_kafka_MemberAssignment_partitions(a) : nullptr;
        for (int j = 0; parts && j < parts->cnt; ++j)
          if (opts_.topic == parts->elems[j].topic)
            assignment.insert(parts->elems[j].partition);
      }
    }
    if (!listed && error.empty())
      error = me.empty() ? "not joined to the consumer group yet"
                         : "member " + me + " is not in the consumer group";
  }
  if (ev)
    rd_kafka_event_destroy(ev);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_queue_destroy(queue);
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

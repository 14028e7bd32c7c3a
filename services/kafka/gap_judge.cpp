#include "services/kafka/gap_judge.hpp"

#include <algorithm>
#include <thread>

#include <spdlog/spdlog.h>

namespace fleettwin::kafka {

gap_judge::gap_judge(options opts) : opts_(std::move(opts)), msgs_(1'000) {}

gap_judge::~gap_judge() {
  if (queue_)
    rd_kafka_queue_destroy(queue_);
  if (rk_)
    rd_kafka_consumer_close(rk_.get());
}

bool gap_judge::open() {
  if (rk_)
    return true;
  auto settings = opts_.settings;
  for (const auto& [k, v] : std::map<std::string, std::string>{
           {"bootstrap.servers", opts_.bootstrap},
           {"client.id", opts_.client_id + "-gap-judge"},
           {"group.id", opts_.client_id + "-gap-judge"},  // never joined, nothing committed
           {"enable.auto.commit", "false"},
           {"enable.auto.offset.store", "false"},
           {"enable.partition.eof", "true"},
           {"auto.offset.reset", "error"},  // never silently elsewhere
           {"isolation.level", "read_committed"},
           {"fetch.wait.max.ms", "500"},  // data ends the wait at once
           {"queued.max.messages.kbytes", "16384"}})
    settings[k] = v;
  std::string error;
  auto* conf = make_conf(settings, error);
  if (!conf) {
    spdlog::error("event=gap_judge_unavailable error=\"{}\"", error);
    return false;
  }
  char errstr[512];
  rk_.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr)));
  if (!rk_) {
    rd_kafka_conf_destroy(conf);
    spdlog::error("event=gap_judge_unavailable error=\"{}\"", errstr);
    return false;
  }
  rd_kafka_poll_set_consumer(rk_.get());
  queue_ = rd_kafka_queue_get_consumer(rk_.get());
  return true;
}

namespace {

/// Adds `p` to the reader's assignment at `offset`, or takes it out.
///
/// Only the partition itself changes (incremental): replacing the whole
/// assignment for every change stopped and restarted every other partition,
/// and librdkafka 2.0 aborts the process (rd_kafka_assignment_partition_
/// stopped: rktp_started) when a partition is taken out again before its
/// fetcher acknowledged the previous stop (confluentinc/librdkafka#5573).
void change_assignment(rd_kafka_t* rk, const std::string& topic, int32_t p,
                       std::optional<int64_t> offset) {
  auto* list = rd_kafka_topic_partition_list_new(1);
  auto* tp = rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  if (offset)
    tp->offset = *offset;
  auto* e =
      offset ? rd_kafka_incremental_assign(rk, list) : rd_kafka_incremental_unassign(rk, list);
  if (e) {
    spdlog::warn("event=gap_judge_assign_failed partition={} error=\"{}\"", p,
                 rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  }
  rd_kafka_topic_partition_list_destroy(list);
}

}  // namespace

void gap_judge::follow(int32_t p, int64_t from) {
  // Taken out moments ago: its fetcher may not have stopped yet (see
  // change_assignment); a gap this soon after waits out the rest.
  if (auto it = unassigned_.find(p); it != unassigned_.end()) {
    const auto settle = it->second + std::chrono::seconds{1};
    if (std::chrono::steady_clock::now() < settle)
      std::this_thread::sleep_until(settle);
    unassigned_.erase(it);
  }
  window w;
  w.from = from;
  w.until = from;
  w.used = std::chrono::steady_clock::now();
  const auto known = windows_.find(p);
  if (known == windows_.end()) {
    windows_[p] = std::move(w);
    change_assignment(rk_.get(), opts_.topic, p, from);
    return;
  }
  // Followed already, from later on: read again from `from`.
  const bool paused = known->second.paused;
  known->second = std::move(w);
  // Not waited for (it runs on the consumer's thread): the version barrier
  // it raises drops whatever was fetched before it.
  if (auto error = seek_without_waiting(rk_.get(), opts_.topic, p, from))
    spdlog::warn("event=gap_judge_seek_failed partition={} error=\"{}\"", p, *error);
  if (paused)
    pause(p, false);
}

void gap_judge::unfollow(int32_t p) {
  if (windows_.erase(p) && rk_) {
    change_assignment(rk_.get(), opts_.topic, p, std::nullopt);
    unassigned_[p] = std::chrono::steady_clock::now();
  }
}

void gap_judge::pause(int32_t p, bool paused) {
  auto* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, opts_.topic.c_str(), p);
  if (paused)
    rd_kafka_pause_partitions(rk_.get(), list);
  else
    rd_kafka_resume_partitions(rk_.get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  windows_[p].paused = paused;
}

ssize_t gap_judge::take(int wait_ms) {
  auto n = rd_kafka_consume_batch_queue(queue_, wait_ms, msgs_.data(), msgs_.size());
  std::vector<int32_t> failed;
  for (ssize_t i = 0; i < n; ++i) {
    auto* m = msgs_[i];
    auto it = windows_.find(m->partition);
    if (it != windows_.end()) {
      auto& w = it->second;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (m->offset >= w.until) {
          w.offsets.push_back(m->offset);
          w.until = m->offset + 1;
        }
      } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        // Everything up to the end (markers and aborted records included)
        // has been seen.
        w.until = std::max(w.until, m->offset);
      } else {
        spdlog::warn("event=gap_judge_read_failed partition={} error=\"{}\"", m->partition,
                     rd_kafka_message_errstr(m));
        failed.push_back(m->partition);
      }
      if (!w.paused && w.offsets.size() >= opts_.max_remembered)
        pause(m->partition, true);
    }
    rd_kafka_message_destroy(m);
  }
  // Followed again from the next gap on.
  for (auto p : failed)
    unfollow(p);
  return n;
}

std::optional<bool> gap_judge::verdict(const window& w, int64_t from, int64_t to) {
  if (from < w.from)
    return std::nullopt;
  auto it = std::lower_bound(w.offsets.begin(), w.offsets.end(), from);
  if (it != w.offsets.end() && *it < to)
    return false;
  if (w.until >= to)
    return true;
  return std::nullopt;
}

std::optional<bool> gap_judge::empty(int32_t p, int64_t from, int64_t to,
                                     std::chrono::milliseconds wait) {
  if (!open())
    return std::nullopt;
  auto it = windows_.find(p);
  if (it == windows_.end() || from < it->second.from)
    follow(p, from);
  windows_[p].used = std::chrono::steady_clock::now();
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (true) {
    it = windows_.find(p);
    if (it == windows_.end())
      return std::nullopt;  // its read failed
    if (auto v = verdict(it->second, from, to))
      return v;
    if (std::chrono::steady_clock::now() >= deadline)
      return std::nullopt;
    take(10);
  }
}

void gap_judge::passed(int32_t p, int64_t offset) {
  auto it = windows_.find(p);
  if (it == windows_.end())
    return;
  auto& w = it->second;
  w.from = std::max(w.from, std::min(offset, w.until));
  while (!w.offsets.empty() && w.offsets.front() < w.from)
    w.offsets.pop_front();
  if (w.paused && w.offsets.size() < opts_.max_remembered / 2)
    pause(p, false);
}

void gap_judge::forget(int32_t p) {
  unfollow(p);
}

void gap_judge::poll() {
  if (windows_.empty())
    return;
  for (int i = 0; i < 10 && !windows_.empty(); ++i)
    if (take(0) < static_cast<ssize_t>(msgs_.size()))
      break;
  auto now = std::chrono::steady_clock::now();
  if (now - last_idle_check_ < std::chrono::seconds{5})
    return;
  last_idle_check_ = now;
  std::vector<int32_t> idle;
  for (const auto& [p, w] : windows_)
    if (now - w.used > opts_.idle)
      idle.push_back(p);
  for (auto p : idle) {
    spdlog::info("event=gap_judge_stopped_following partition={}", p);
    unfollow(p);
  }
}

}  // namespace fleettwin::kafka

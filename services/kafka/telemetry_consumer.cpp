#include "services/kafka/telemetry_consumer.hpp"

#include <pthread.h>

#include <cstdlib>
#include <cstring>
#include <set>

#include <spdlog/spdlog.h>

namespace fleettwin::kafka {

namespace {

/// Positions the fetcher of partition `p` at `offset`, not waited for
/// (seek_without_waiting).
void seek_to(rd_kafka_t* rk, const std::string& topic, int32_t p, int64_t offset) {
  if (auto error = seek_without_waiting(rk, topic, p, offset))  // only a misuse fails here
    spdlog::error("event=seek_failed partition={} offset={} error=\"{}\"", p, offset, *error);
}

/// Keeps the librdkafka messages of a batch alive while actors read them.
struct message_holder {
  std::vector<rd_kafka_message_t*> messages;
  ~message_holder() {
    for (auto* m : messages)
      rd_kafka_message_destroy(m);
  }
};

std::string_view header_value(rd_kafka_message_t* m, const char* name) {
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
    return {};
  const void* value = nullptr;
  size_t size = 0;
  if (rd_kafka_header_get_last(hdrs, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      value == nullptr)
    return {};
  return {static_cast<const char*>(value), size};
}

}  // namespace

telemetry_consumer::telemetry_consumer(consumer_options opts) : opts_(std::move(opts)) {}

std::unique_ptr<telemetry_consumer> telemetry_consumer::create(consumer_options opts,
                                                               std::string& error) {
  std::map<std::string, std::string> settings{
      {"bootstrap.servers", opts.bootstrap},
      {"group.id", opts.group_id},
      {"client.id", opts.client_id},
      {"partition.assignment.strategy", "cooperative-sticky"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "earliest"},
      {"enable.partition.eof", "false"},
      {"queued.max.messages.kbytes", "65536"},
      {"fetch.wait.max.ms", "50"},
      {"isolation.level", "read_committed"},
  };
  for (const auto& [k, v] : opts.settings)
    settings[k] = v;
  auto* conf = make_conf(settings, error);
  if (!conf)
    return nullptr;
  std::unique_ptr<telemetry_consumer> c{new telemetry_consumer(std::move(opts))};
  rd_kafka_conf_set_opaque(conf, c.get());
  rd_kafka_conf_set_rebalance_cb(conf, &telemetry_consumer::rebalance_cb);
  char errstr[512];
  c->rk_.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr)));
  if (!c->rk_) {
    rd_kafka_conf_destroy(conf);
    error = std::string{"cannot create Kafka consumer: "} + errstr;
    return nullptr;
  }
  rd_kafka_poll_set_consumer(c->rk_.get());
  return c;
}

telemetry_consumer::~telemetry_consumer() {
  stop();
}

int32_t telemetry_consumer::fetch_partition_count(std::chrono::milliseconds timeout,
                                                  std::string& error) {
  rd_kafka_topic_t* topic = rd_kafka_topic_new(rk_.get(), opts_.topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  auto err = rd_kafka_metadata(rk_.get(), 0, topic, &md, static_cast<int>(timeout.count()));
  int32_t count = 0;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = std::string{"metadata for topic "} + opts_.topic + ": " + rd_kafka_err2str(err);
  } else if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = "topic " + opts_.topic + " is not available: " +
            (md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "no metadata");
  } else {
    count = md->topics[0].partition_cnt;
  }
  if (md)
    rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(topic);
  if (count > 0)
    partition_count_ = count;
  return count;
}

std::string telemetry_consumer::cluster_id(std::chrono::milliseconds timeout) {
  char* id = rd_kafka_clusterid(rk_.get(), static_cast<int>(timeout.count()));
  if (!id)
    return {};
  std::string out{id};
  rd_kafka_mem_free(rk_.get(), id);
  return out;
}

std::string telemetry_consumer::member_id() const {
  char* id = rd_kafka_memberid(rk_.get());
  if (!id)
    return {};
  std::string out{id};
  rd_kafka_mem_free(rk_.get(), id);
  return out;
}

void telemetry_consumer::start(partition_host& host) {
  host_ = &host;
  gap_judge::options jo;
  jo.bootstrap = opts_.bootstrap;
  jo.topic = opts_.topic;
  jo.client_id = opts_.client_id;
  jo.settings = opts_.settings;
  judge_ = std::make_unique<gap_judge>(std::move(jo));
  if (opts_.follower) {
    thread_ = std::thread{[this] { run(); }};
    watermarks_ = std::thread{[this] { watch_log_ends(); }};
    return;
  }
  auto* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, opts_.topic.c_str(), RD_KAFKA_PARTITION_UA);
  auto err = rd_kafka_subscribe(rk_.get(), topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    spdlog::error("event=subscribe_failed topic={} error=\"{}\"", opts_.topic,
                  rd_kafka_err2str(err));
  thread_ = std::thread{[this] { run(); }};
  watermarks_ = std::thread{[this] { watch_log_ends(); }};
}

void telemetry_consumer::stop() {
  if (!thread_.joinable())
    return;
  {
    std::lock_guard<std::mutex> guard{watermarks_mutex_};
    stop_ = true;
  }
  watermarks_wake_.notify_all();
  if (watermarks_.joinable())
    watermarks_.join();
  thread_.join();
}

void telemetry_consumer::watch_log_ends() {
  pthread_setname_np(pthread_self(), "ft-log-ends");  // top -H, perf
  // Fetch responses only tell the log end of partitions being fetched; a
  // paused or restoring partition would show a lag frozen at its last fetch.
  while (!stop_.load()) {
    std::vector<int32_t> parts;
    {
      std::lock_guard<std::mutex> guard{mutex_};
      for (const auto& [p, prog] : progress_)
        parts.push_back(p);
    }
    for (auto p : parts) {
      int64_t low = 0;
      int64_t high = 0;
      if (stop_.load())
        break;
      auto err =
          rd_kafka_query_watermark_offsets(rk_.get(), opts_.topic.c_str(), p, &low, &high,
                                           static_cast<int>(opts_.watermark_interval.count()));
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR || high < 0)
        continue;
      std::lock_guard<std::mutex> guard{mutex_};
      if (auto it = progress_.find(p); it != progress_.end())
        it->second.high_watermark = std::max(it->second.high_watermark, high);
    }
    std::unique_lock<std::mutex> lock{watermarks_mutex_};
    watermarks_wake_.wait_for(lock, opts_.watermark_interval, [this] { return stop_.load(); });
  }
}

std::optional<int64_t> telemetry_consumer::log_end(int32_t p) {
  int64_t low = 0;
  int64_t high = 0;
  if (rd_kafka_query_watermark_offsets(rk_.get(), opts_.topic.c_str(), p, &low, &high, 5'000) !=
      RD_KAFKA_RESP_ERR_NO_ERROR)
    return std::nullopt;
  return high;
}

int64_t telemetry_consumer::reconcile(int32_t p, int64_t offset) {
  if (offset < 0 && offset != RD_KAFKA_OFFSET_BEGINNING)
    return offset;
  int64_t low = -1;
  int64_t high = -1;
  // The watermarks this consumer's fetches cached (no round trip) decide when they can: a
  // watermark query waits for a sick broker far beyond its timeout (a minute, with one
  // broker of three killed), and this runs where a partition's restore completes, so it
  // held that partition, and the restores behind it, unserved. A cached log start only
  // grows, so a position before it is gone for sure; a cached end may be old, so a position
  // beyond it is asked of the cluster.
  auto err = rd_kafka_get_watermark_offsets(rk_.get(), opts_.topic.c_str(), p, &low, &high);
  const bool cached = err == RD_KAFKA_RESP_ERR_NO_ERROR && low >= 0 && high >= 0;
  const bool decided =
      cached && (offset == RD_KAFKA_OFFSET_BEGINNING || offset < low || offset <= high);
  if (!decided)
    err = rd_kafka_query_watermark_offsets(rk_.get(), opts_.topic.c_str(), p, &low, &high, 5'000);
  if (offset == RD_KAFKA_OFFSET_BEGINNING) {
    // Nothing committed: start at the log's first offset, as a number. A
    // seek to the logical "beginning" of a partition assigned paused can
    // lose a race with librdkafka's own offset lookup and start at the end,
    // skipping the backlog, with no gap to notice.
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
      spdlog::warn("event=log_range_unknown partition={} offset=beginning error=\"{}\"", p,
                   rd_kafka_err2str(err));
    return err == RD_KAFKA_RESP_ERR_NO_ERROR ? low : offset;
  }
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    // Unknown now: the gap check of every fetched record still catches a
    // position the log no longer has.
    spdlog::warn("event=log_range_unknown partition={} offset={} error=\"{}\"", p, offset,
                 rd_kafka_err2str(err));
    return offset;
  }
  if (offset > high) {
    spdlog::warn(
        "event=input_position_reset partition={} stored_offset={} log_start={} log_end={} "
        "reason=\"the log ends before the stored position: the topic was recreated or the broker "
        "is new; twins are kept and the new log is consumed from its beginning\"",
        p, offset, low, high);
    opts_.probe->on_input_reset(p, "log_truncated");
    return low;
  }
  if (offset < low) {
    spdlog::error(
        "event=records_skipped partition={} from_offset={} to_offset={} count={} "
        "reason=\"deleted by the topic's retention before this node read them\"",
        p, offset, low, low - offset);
    opts_.probe->on_records_skipped(p, "retention", low - offset);
    return low;
  }
  return offset;
}

void telemetry_consumer::acknowledge(int32_t partition, int64_t next_offset, size_t batches,
                                     std::optional<int64_t> changelog) {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    acks_.push_back({partition, next_offset, batches, changelog});
  }
  // Wake a blocked poll so that a paused partition resumes without delay.
  if (auto* q = queue_.load())
    rd_kafka_queue_yield(q);
}

void telemetry_consumer::resume(int32_t partition, int64_t offset) {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    resumes_.push_back({partition, offset, ++last_epoch_});
  }
  if (auto* q = queue_.load())
    rd_kafka_queue_yield(q);
}

uint64_t telemetry_consumer::hold(int32_t partition) {
  uint64_t epoch = 0;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    epoch = ++last_epoch_;
    holds_.push_back({partition, -1, epoch});
  }
  if (auto* q = queue_.load())
    rd_kafka_queue_yield(q);
  return epoch;
}

uint64_t telemetry_consumer::rewind(int32_t partition, int64_t offset) {
  uint64_t epoch = 0;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    epoch = ++last_epoch_;
    rewinds_.push_back({partition, offset, epoch});
  }
  if (auto* q = queue_.load())
    rd_kafka_queue_yield(q);
  return epoch;
}

std::optional<committed_position> telemetry_consumer::committed(int32_t partition,
                                                                std::chrono::milliseconds timeout,
                                                                std::string& error) {
  auto* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, opts_.topic.c_str(), partition);
  auto err = rd_kafka_committed(rk_.get(), list, static_cast<int>(timeout.count()));
  std::optional<committed_position> out;
  const auto& tp = list->elems[0];
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
    err = tp.err;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = std::string{"committed offset of partition "} + std::to_string(partition) + ": " +
            rd_kafka_err2str(err);
  } else {
    out.emplace();
    if (tp.offset >= 0)
      out->offset = tp.offset;
    if (tp.metadata && tp.metadata_size > 0)
      out->changelog =
          parse_changelog_metadata({static_cast<const char*>(tp.metadata), tp.metadata_size});
  }
  rd_kafka_topic_partition_list_destroy(list);
  return out;
}

rd_kafka_consumer_group_metadata_t* telemetry_consumer::group_metadata() {
  return rd_kafka_consumer_group_metadata(rk_.get());
}

std::vector<partition_progress> telemetry_consumer::progress() const {
  std::lock_guard<std::mutex> guard{mutex_};
  std::vector<partition_progress> out;
  for (const auto& [p, prog] : progress_)
    out.push_back(prog);
  return out;
}

void telemetry_consumer::rebalance_cb(rd_kafka_t*, rd_kafka_resp_err_t err,
                                      rd_kafka_topic_partition_list_t* parts, void* opaque) {
  static_cast<telemetry_consumer*>(opaque)->rebalance(err, parts);
}

void telemetry_consumer::rebalance(rd_kafka_resp_err_t err,
                                   rd_kafka_topic_partition_list_t* parts) {
  const bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(rk_.get()), "COOPERATIVE") == 0;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    auto* hold = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; ++i) {
      auto& tp = parts->elems[i];
      {
        // Before the host hears of it: what the host asks from here on is
        // about this assignment.
        std::lock_guard<std::mutex> guard{mutex_};
        assigned_at_[tp.partition] = last_epoch_;
      }
      start_partition(tp, host_->on_assigned(tp.partition), hold);
    }
    rd_kafka_error_t* e = nullptr;
    if (cooperative)
      e = rd_kafka_incremental_assign(rk_.get(), parts);
    else
      rd_kafka_assign(rk_.get(), parts);
    if (e) {
      spdlog::error("event=assign_failed error=\"{}\"", rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
    }
    if (hold->cnt > 0)
      rd_kafka_pause_partitions(rk_.get(), hold);
    rd_kafka_topic_partition_list_destroy(hold);
    // Called after every rebalance, with no partitions too (cooperative).
    assigned_once_ = true;
  } else {
    const bool lost = rd_kafka_assignment_lost(rk_.get()) == 1;
    for (int i = 0; i < parts->cnt; ++i) {
      auto p = parts->elems[i].partition;
      host_->on_revoked(p, lost);
      drain_acks();
      forget_partition(p);
      spdlog::info("event=partition_revoked partition={} lost={}", p, lost);
    }
    if (cooperative) {
      if (auto* e = rd_kafka_incremental_unassign(rk_.get(), parts))
        rd_kafka_error_destroy(e);
    } else {
      rd_kafka_assign(rk_.get(), nullptr);
    }
  }
}

void telemetry_consumer::start_partition(rd_kafka_topic_partition_t& tp, const assignment& given,
                                         rd_kafka_topic_partition_list_t* hold) {
  auto a = given;
  if (!a.paused && a.offset)
    a.offset = reconcile(tp.partition, *a.offset);
  // A held partition gets its offset when it resumes.
  tp.offset = a.paused ? RD_KAFKA_OFFSET_END : a.offset.value_or(RD_KAFKA_OFFSET_BEGINNING);
  {
    std::lock_guard<std::mutex> guard{mutex_};
    partition_progress prog{tp.partition, a.offset.value_or(0), -1};
    prog.restoring = a.paused;
    progress_[tp.partition] = prog;
  }
  inflight_[tp.partition] = 0;
  windows_[tp.partition] = {};
  epochs_[tp.partition] = 0;
  expected_[tp.partition] = a.paused ? -1 : a.offset.value_or(-1);
  paused_[tp.partition] = a.paused;
  if (a.paused) {
    restoring_.insert(tp.partition);
    rd_kafka_topic_partition_list_add(hold, opts_.topic.c_str(), tp.partition);
  }
  spdlog::info("event=partition_assigned topic={} partition={} resume_offset={}", opts_.topic,
               tp.partition,
               a.paused ? "after restore" : (a.offset ? std::to_string(*a.offset) : "beginning"));
}

void telemetry_consumer::forget_partition(int32_t p) {
  std::lock_guard<std::mutex> guard{mutex_};
  progress_.erase(p);
  inflight_.erase(p);
  windows_.erase(p);
  paused_.erase(p);
  restoring_.erase(p);
  epochs_.erase(p);
  expected_.erase(p);
  liveness_.erase(p);
  judge_->forget(p);
}

uint64_t telemetry_consumer::new_epoch() {
  std::lock_guard<std::mutex> guard{mutex_};
  return ++last_epoch_;
}

void telemetry_consumer::assign(int32_t partition, assignment a, uint64_t epoch) {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    assignments_.push_back({partition, a, epoch});
  }
  if (auto* q = queue_.load())
    rd_kafka_queue_yield(q);
}

void telemetry_consumer::unassign(int32_t partition) {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    assignments_.push_back({partition, std::nullopt, 0});
  }
  if (auto* q = queue_.load())
    rd_kafka_queue_yield(q);
}

void telemetry_consumer::drain_assignments() {
  std::vector<assignment_request> todo;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    todo.swap(assignments_);
  }
  // librdkafka (2.0 on Debian bookworm; fixed upstream in 2026,
  // confluentinc/librdkafka#5573) aborts the process
  // when a partition is unassigned, assigned and unassigned again before the
  // fetcher acknowledged the first stop. A partition unassigned moments ago is
  // therefore assigned again only after a pause (its later requests wait
  // behind it, in order), and a revival repositions it with a seek.
  constexpr auto settle = std::chrono::seconds{1};
  const auto now = std::chrono::steady_clock::now();
  std::vector<assignment_request> later;
  std::set<int32_t> deferred;
  for (auto& request : todo) {
    auto& [p, a, epoch] = request;
    if (deferred.contains(p) || (a && !inflight_.contains(p) && unassigned_at_.contains(p) &&
                                 now - unassigned_at_[p] < settle)) {
      deferred.insert(p);
      later.push_back(std::move(request));
      continue;
    }
    auto* list = rd_kafka_topic_partition_list_new(1);
    auto* tp = rd_kafka_topic_partition_list_add(list, opts_.topic.c_str(), p);
    rd_kafka_error_t* e = nullptr;
    if (a && inflight_.contains(p)) {
      // Assigned again (a revival): start over from the given offset.
      forget_partition(p);
      auto* hold = rd_kafka_topic_partition_list_new(1);
      start_partition(*tp, *a, hold);
      epochs_[p] = epoch;
      seek(p, tp->offset == RD_KAFKA_OFFSET_BEGINNING ? reconcile(p, RD_KAFKA_OFFSET_BEGINNING)
                                                      : tp->offset);
      if (hold->cnt > 0) {
        rd_kafka_pause_partitions(rk_.get(), hold);
        paused_[p] = true;
      }
      rd_kafka_topic_partition_list_destroy(hold);
    } else if (a) {
      auto* hold = rd_kafka_topic_partition_list_new(1);
      start_partition(*tp, *a, hold);
      epochs_[p] = epoch;
      e = rd_kafka_incremental_assign(rk_.get(), list);
      if (hold->cnt > 0)
        rd_kafka_pause_partitions(rk_.get(), hold);
      rd_kafka_topic_partition_list_destroy(hold);
    } else if (inflight_.contains(p)) {
      e = rd_kafka_incremental_unassign(rk_.get(), list);
      forget_partition(p);
      unassigned_at_[p] = now;
      spdlog::info("event=partition_unassigned topic={} partition={}", opts_.topic, p);
    }
    if (e) {
      spdlog::error("event=assign_failed topic={} partition={} error=\"{}\"", opts_.topic, p,
                    rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(list);
  }
  if (!later.empty()) {
    std::lock_guard<std::mutex> guard{mutex_};
    later.insert(later.end(), std::make_move_iterator(assignments_.begin()),
                 std::make_move_iterator(assignments_.end()));
    assignments_ = std::move(later);
  }
}

bool telemetry_consumer::window_full(int32_t p) const {
  if (auto it = inflight_.find(p);
      it != inflight_.end() && it->second >= opts_.max_inflight_batches)
    return true;
  auto it = windows_.find(p);
  return it != windows_.end() && it->second.dispatched >= 0 && it->second.acked >= 0 &&
         it->second.dispatched - it->second.acked >= opts_.max_inflight_records;
}

void telemetry_consumer::drain_acks() {
  std::vector<ack> acks;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    acks.swap(acks_);
    for (const auto& a : acks)
      if (auto it = progress_.find(a.partition); it != progress_.end()) {
        it->second.committed = a.next_offset;
        if (a.changelog)
          it->second.changelog = *a.changelog;
      }
  }
  if (acks.empty())
    return;
  commit_due_ = true;
  auto* resume = rd_kafka_topic_partition_list_new(4);
  for (const auto& a : acks) {
    auto p = a.partition;
    auto it = inflight_.find(p);
    if (it == inflight_.end())
      continue;
    it->second -= std::min<int>(it->second, static_cast<int>(a.batches));
    liveness_[p].acked = std::chrono::steady_clock::now();
    auto& w = windows_[p];
    w.acked = std::max(w.acked, a.next_offset);
    if (paused_[p] && !restoring_.contains(p) && !window_full(p)) {
      paused_[p] = false;
      rd_kafka_topic_partition_list_add(resume, opts_.topic.c_str(), p);
    }
  }
  if (resume->cnt > 0)
    rd_kafka_resume_partitions(rk_.get(), resume);
  rd_kafka_topic_partition_list_destroy(resume);
}

void telemetry_consumer::seek(int32_t p, int64_t offset) {
  // Not waited for, like every seek of this thread (seek_to): the resume
  // below is queued to the partition's fetcher behind the seek, so it
  // fetches from `offset` once it takes both.
  seek_to(rk_.get(), opts_.topic, p, offset);
  auto* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, opts_.topic.c_str(), p);
  rd_kafka_resume_partitions(rk_.get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  paused_[p] = false;
  inflight_[p] = 0;
  windows_[p] = {};
  liveness_[p] = {};
  expected_[p] = offset >= 0 ? offset : -1;
  judge_->forget(p);  // the log may be another one (reset, recreated)
  std::lock_guard<std::mutex> guard{mutex_};
  if (auto it = progress_.find(p); it != progress_.end())
    it->second.committed = offset;
}

bool telemetry_consumer::accept_offset(int32_t p, int64_t offset) {
  auto it = expected_.find(p);
  if (it == expected_.end() || it->second < 0 || offset == it->second) {
    if (it != expected_.end())
      it->second = offset + 1;
    return true;
  }
  if (offset < it->second)
    return false;  // fetched before a seek back: already handed out
  // The log starts after the expected offset: those records were deleted
  // (retention) before they were read, and librdkafka moved on to the log's
  // start. Never silent: logged and counted.
  int64_t low = -1;
  int64_t high = -1;
  if (rd_kafka_get_watermark_offsets(rk_.get(), opts_.topic.c_str(), p, &low, &high) ==
          RD_KAFKA_RESP_ERR_NO_ERROR &&
      low > it->second && low <= offset) {
    spdlog::error(
        "event=records_skipped partition={} from_offset={} to_offset={} count={} "
        "reason=\"deleted by the topic's retention before this node read them\"",
        p, it->second, low, low - it->second);
    opts_.probe->on_records_skipped(p, "retention", low - it->second);
    it->second = low;
    if (offset == low) {
      it->second = offset + 1;
      return true;
    }
  }
  // Offsets are missing. Either they hold nothing a read_committed reader
  // may see (transaction markers, aborted records), or this consumer skipped
  // them (librdkafka before 2.1 could skip offsets around pause/resume in
  // batch consumption, and a re-read can skip again). An independent reader
  // tells which: only when it sees nothing in the gap either is the gap
  // real. Never decided by this consumer's own second look.
  auto empty = judge_->empty(p, it->second, offset, std::chrono::seconds{1});
  if (empty && *empty) {
    opts_.probe->on_offset_gap(p, "empty");
    it->second = offset + 1;
    return true;
  }
  const char* verdict = empty ? "skipped" : "unknown";
  opts_.probe->on_offset_gap(p, verdict);
  spdlog::warn("event=offset_gap partition={} expected={} got={} verdict={} action=reread", p,
               it->second, offset, verdict);
  seek_to(rk_.get(), opts_.topic, p, it->second);
  return false;
}

bool telemetry_consumer::current(const reposition& r) const {
  auto it = assigned_at_.find(r.partition);
  return it == assigned_at_.end() || r.epoch > it->second;
}

void telemetry_consumer::drain_resumes() {
  std::vector<reposition> rewinds;
  std::vector<reposition> holds;
  std::vector<reposition> resumes;
  {
    // Requests asked of an earlier assignment of the partition (revoked and
    // assigned again before they were taken up) are dropped: the new
    // assignment restores on its own, with its own epoch.
    std::lock_guard<std::mutex> guard{mutex_};
    auto take = [this](std::vector<reposition>& from, std::vector<reposition>& to) {
      for (auto& r : from)
        if (current(r))
          to.push_back(r);
        else
          spdlog::info("event=stale_reposition_ignored partition={} request={}", r.partition,
                       r.epoch);
      from.clear();
    };
    take(holds_, holds);
    take(rewinds_, rewinds);
    take(resumes_, resumes);
  }
  for (const auto& h : holds) {
    const auto p = h.partition;
    const auto epoch = h.epoch;
    if (!inflight_.contains(p))
      continue;  // revoked meanwhile
    auto* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, opts_.topic.c_str(), p);
    rd_kafka_pause_partitions(rk_.get(), list);
    rd_kafka_topic_partition_list_destroy(list);
    paused_[p] = true;
    inflight_[p] = 0;
    windows_[p] = {};
    restoring_.insert(p);
    epochs_[p] = epoch;
    expected_[p] = -1;
    judge_->forget(p);
    std::lock_guard<std::mutex> guard{mutex_};
    if (auto it = progress_.find(p); it != progress_.end())
      it->second.restoring = true;
    spdlog::info("event=partition_held partition={} epoch={}", p, epoch);
  }
  for (const auto& r : rewinds) {
    if (!inflight_.contains(r.partition) || restoring_.contains(r.partition))
      continue;  // revoked meanwhile (or held: resume() will seek)
    seek(r.partition, r.offset);
    epochs_[r.partition] = r.epoch;
    spdlog::warn("event=partition_rewound partition={} offset={} epoch={}", r.partition, r.offset,
                 r.epoch);
  }
  for (const auto& r : resumes) {
    const auto p = r.partition;
    const auto offset = r.offset;
    if (!restoring_.erase(p))
      continue;  // revoked meanwhile
    seek(p, offset);
    {
      std::lock_guard<std::mutex> guard{mutex_};
      if (auto it = progress_.find(p); it != progress_.end())
        it->second.restoring = false;
    }
    spdlog::info("event=partition_resumed partition={} offset={}", p, offset);
  }
}

void telemetry_consumer::refresh_watermarks() {
  auto now = std::chrono::steady_clock::now();
  if (now - last_refresh_ < std::chrono::seconds{1})
    return;
  last_refresh_ = now;
  std::lock_guard<std::mutex> guard{mutex_};
  auto* offsets = rd_kafka_topic_partition_list_new(static_cast<int>(progress_.size()) + 1);
  for (auto& [p, prog] : progress_) {
    int64_t low = 0;
    int64_t high = 0;
    // Cached values from fetch responses (no network round trip); the log
    // end asked by watch_log_ends() may be newer.
    if (rd_kafka_get_watermark_offsets(rk_.get(), opts_.topic.c_str(), p, &low, &high) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        high >= 0)
      prog.high_watermark = std::max(prog.high_watermark, high);
    if (commit_due_ && prog.committed > 0 && !opts_.exactly_once && !prog.restoring &&
        !opts_.follower) {
      auto* tp = rd_kafka_topic_partition_list_add(offsets, opts_.topic.c_str(), p);
      tp->offset = prog.committed;
      if (prog.changelog >= 0) {
        // Freed by the list: a copy in malloc'ed memory.
        auto meta = changelog_metadata(prog.changelog);
        tp->metadata = std::malloc(meta.size());
        std::memcpy(tp->metadata, meta.data(), meta.size());
        tp->metadata_size = meta.size();
      }
    }
  }
  if (offsets->cnt > 0)
    rd_kafka_commit(rk_.get(), offsets, 1);  // async: for lag tools only
  rd_kafka_topic_partition_list_destroy(offsets);
  commit_due_ = false;
}

void telemetry_consumer::check_stalls() {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_stall_check_ < std::chrono::seconds{1})
    return;
  last_stall_check_ = now;
  std::vector<std::pair<int32_t, int64_t>> ends;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    for (const auto& [p, prog] : progress_)
      ends.emplace_back(p, prog.high_watermark);
  }
  const auto timeout = opts_.input_stall_timeout;
  const auto seconds = [&](std::chrono::steady_clock::time_point since) {
    return std::chrono::duration<double>(now - since).count();
  };
  for (const auto& [p, end] : ends) {
    auto& live = liveness_[p];
    if (live.fed == std::chrono::steady_clock::time_point{})
      live.fed = live.acked = now;
    const auto pending = inflight_.find(p);
    if (pending != inflight_.end() && pending->second > 0) {
      // Handed out and not acknowledged: the partition's work waits (a slow
      // commit, a broker away). Nothing to fetch anew; said, so that a wait
      // that never ends is visible.
      if (now - std::max(live.acked, live.fed) >= timeout * 6) {
        ++live.waits;
        if ((live.waits & (live.waits - 1)) == 0)
          spdlog::warn(
              "event=input_unacknowledged partition={} batches={} dispatched={} acked={} "
              "seconds={:.1f} reason=\"records were handed to the partition and their work has "
              "not committed since\"",
              p, pending->second, windows_[p].dispatched, windows_[p].acked, seconds(live.acked));
      }
      continue;
    }
    live.waits = 0;
    const auto next = expected_.find(p);
    const bool paused = paused_.contains(p) && paused_.at(p);
    // One offset short of the end is a transaction's marker, never a record.
    if (restoring_.contains(p) || paused || next == expected_.end() || next->second < 0 ||
        end < 0 || end - next->second <= 1 || end == live.judged_end) {
      live.fed = now;
      continue;
    }
    if (now - live.fed < timeout)
      continue;
    // Records beyond the marker may be aborted ones or markers too: an
    // independent read_committed reader tells whether anything is there.
    auto nothing = judge_->empty(p, next->second, end, std::chrono::seconds{1});
    if (!nothing)
      continue;  // cannot tell now (the broker is away)
    if (*nothing) {
      live.judged_end = end;
      live.fed = now;
      continue;
    }
    ++live.refetches;
    if ((live.refetches & (live.refetches - 1)) == 0)
      spdlog::warn(
          "event=input_stalled partition={} next_offset={} log_end={} seconds={:.1f} "
          "attempts={} action=refetch reason=\"the log holds records this partition was not "
          "given\"",
          p, next->second, end, seconds(live.fed), live.refetches);
    opts_.probe->on_input_refetch(p);
    seek_to(rk_.get(), opts_.topic, p, next->second);
    live.fed = now;
  }
}

void telemetry_consumer::run() {
  pthread_setname_np(pthread_self(), "ft-consumer");  // top -H, perf
  rd_kafka_queue_t* queue = rd_kafka_queue_get_consumer(rk_.get());
  queue_ = queue;
  std::vector<rd_kafka_message_t*> msgs(opts_.max_poll_records);
  std::map<int32_t, std::shared_ptr<runtime::raw_batch>> batches;
  std::map<int32_t, std::shared_ptr<message_holder>> holders;
  std::set<int32_t> rereading;  // partitions sought back during this poll
  while (!stop_.load(std::memory_order_relaxed)) {
    rereading.clear();
    if (opts_.follower)
      drain_assignments();
    drain_acks();
    drain_resumes();
    refresh_watermarks();
    judge_->poll();
    check_stalls();
    // Returns when the batch is full or the wait is over: keep the wait short
    // so that a trickle is not held back.
    auto n = rd_kafka_consume_batch_queue(queue, 10, msgs.data(), msgs.size());
    if (n <= 0)
      continue;
    for (ssize_t i = 0; i < n; ++i) {
      auto* m = msgs[i];
      if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
          spdlog::warn("event=consume_error error=\"{}\"", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        continue;
      }
      auto p = m->partition;
      if (restoring_.contains(p) || rereading.contains(p)) {
        // Held (resume() seeks back to what is needed), or being re-read
        // from a gap.
        rd_kafka_message_destroy(m);
        continue;
      }
      if (!accept_offset(p, m->offset)) {
        rereading.insert(p);
        rd_kafka_message_destroy(m);
        continue;
      }
      auto& batch = batches[p];
      if (!batch) {
        batch = std::make_shared<runtime::raw_batch>();
        batch->partition = p;
        batch->source = opts_.source;
        batch->records.reserve(static_cast<size_t>(n));
        holders[p] = std::make_shared<message_holder>();
      }
      holders[p]->messages.push_back(m);
      runtime::raw_record r;
      r.key = {static_cast<const char*>(m->key), m->key_len};
      r.payload = {static_cast<const char*>(m->payload), m->len};
      r.content_type = header_value(m, "content-type");
      r.offset = m->offset;
      rd_kafka_timestamp_type_t tstype;
      r.timestamp_ms = rd_kafka_message_timestamp(m, &tstype);
      batch->records.push_back(r);
      batch->bytes += m->len + m->key_len;
      batch->next_offset = m->offset + 1;
    }
    auto* pause = rd_kafka_topic_partition_list_new(4);
    const auto now = std::chrono::steady_clock::now();
    for (auto& [p, batch] : batches) {
      if (!batch)
        continue;
      batch->owner = std::move(holders[p]);
      if (!inflight_.contains(p)) {
        continue;  // revoked meanwhile: the records will be consumed by the new owner
      }
      auto& live = liveness_[p];
      live.fed = now;
      live.refetches = 0;
      batch->epoch = epochs_[p];
      judge_->passed(p, batch->next_offset);
      auto& w = windows_[p];
      if (w.acked < 0)
        w.acked = batch->records.front().offset;
      w.dispatched = batch->next_offset;
      host_->dispatch(std::move(batch));
      ++inflight_[p];
      if (window_full(p) && !paused_[p]) {
        paused_[p] = true;
        rd_kafka_topic_partition_list_add(pause, opts_.topic.c_str(), p);
      }
    }
    if (pause->cnt > 0)
      rd_kafka_pause_partitions(rk_.get(), pause);
    rd_kafka_topic_partition_list_destroy(pause);
    batches.clear();
    holders.clear();
  }
  queue_ = nullptr;
  rd_kafka_queue_destroy(queue);
  // Leaving the group revokes every partition through the rebalance callback.
  rd_kafka_consumer_close(rk_.get());
}

}  // namespace fleettwin::kafka

#include "services/kafka/changelog_restorer.hpp"

#include <pthread.h>

#include <algorithm>

#include <spdlog/spdlog.h>

namespace fleettwin::kafka {

namespace {

/// How often a restore at the end of the changelog asks its check again.
constexpr auto recheck_interval = std::chrono::milliseconds{100};

/// A restore that has read nothing, not even the end of the partition, for
/// this long fetches anew: after broker outages a restore sometimes got
/// neither a record nor the end of the partition, and waited, silent, until
/// the next rebalance (the partition unserved meanwhile).
constexpr auto stall_timeout = std::chrono::seconds{3};

}  // namespace

changelog_reader::changelog_reader(restorer_options opts, storage::rocksdb_store& store)
    : opts_(std::move(opts)), store_(store) {}

std::unique_ptr<changelog_reader> changelog_reader::create(restorer_options opts,
                                                           storage::rocksdb_store& store,
                                                           std::string& error) {
  std::map<std::string, std::string> settings{
      {"bootstrap.servers", opts.bootstrap},
      {"client.id", opts.client_id},
      // Never committed: the position lives in the store with the state.
      {"group.id", opts.client_id},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "earliest"},
      {"enable.partition.eof", "true"},
      {"isolation.level", "read_committed"},
      // Standbys follow all the time: a short wait only adds idle requests
      // (data ends the wait at once); a new assignment waits for the fetch
      // in flight, so not the default 500 either.
      {"fetch.wait.max.ms", "200"},
      // A restore reads whole partitions: large fetches, few round trips.
      {"max.partition.fetch.bytes", "16777216"},
      {"fetch.max.bytes", "67108864"},
      {"queued.max.messages.kbytes", "262144"},
  };
  for (const auto& [k, v] : opts.settings)
    settings[k] = v;
  auto* conf = make_conf(settings, error);
  if (!conf)
    return nullptr;
  std::unique_ptr<changelog_reader> r{new changelog_reader(std::move(opts), store)};
  char errstr[512];
  r->rk_.reset(rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr)));
  if (!r->rk_) {
    rd_kafka_conf_destroy(conf);
    error = std::string{"cannot create the changelog consumer: "} + errstr;
    return nullptr;
  }
  rd_kafka_poll_set_consumer(r->rk_.get());
  r->thread_ = std::thread{[raw = r.get()] { raw->run(); }};
  return r;
}

changelog_reader::~changelog_reader() {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable())
    thread_.join();
  if (rk_)
    rd_kafka_consumer_close(rk_.get());
}

void changelog_reader::restore(int32_t partition, completeness_check check,
                               std::function<void(restore_result)> done) {
  std::lock_guard<std::mutex> guard{mutex_};
  commands_.push_back({command::restore, partition, std::move(check), std::move(done)});
  wake_.notify_all();
}

void changelog_reader::follow(int32_t partition) {
  std::lock_guard<std::mutex> guard{mutex_};
  commands_.push_back({command::follow, partition, {}, {}});
  wake_.notify_all();
}

void changelog_reader::stop(int32_t partition) {
  std::lock_guard<std::mutex> guard{mutex_};
  commands_.push_back({command::stop, partition, {}, {}});
  wake_.notify_all();
}

int64_t changelog_reader::log_end(int32_t partition) {
  // The high watermark of the last fetch response, which the end of the
  // partition just reported came with: no round trip. A ListOffsets through
  // this read_committed consumer would answer the last stable offset, which
  // stops short of the records of an open or undecided transaction (the
  // very records this must see), and a watermark query waits for its
  // requests however long a sick broker takes (a minute, seen with gdb).
  int64_t low = 0;
  int64_t high = -1;
  if (rd_kafka_get_watermark_offsets(rk_.get(), opts_.topic.c_str(), partition, &low, &high) !=
      RD_KAFKA_RESP_ERR_NO_ERROR)
    return -1;
  return high;
}

bool changelog_reader::command_pending(int32_t partition) const {
  std::lock_guard<std::mutex> guard{mutex_};
  return std::any_of(commands_.begin(), commands_.end(),
                     [&](const command& c) { return c.partition == partition; });
}

std::vector<restore_progress> changelog_reader::progress() const {
  std::lock_guard<std::mutex> guard{progress_mutex_};
  return progress_;
}

void changelog_reader::start_reading(task& t) {
  auto from = store_.load_changelog_offset(t.partition);
  t.position = from.value_or(-1);
  auto* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, opts_.topic.c_str(), t.partition)->offset =
      from ? *from : RD_KAFKA_OFFSET_BEGINNING;
  if (auto* e = rd_kafka_incremental_assign(rk_.get(), list)) {
    spdlog::error("event=changelog_assign_failed partition={} error=\"{}\"", t.partition,
                  rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  }
  rd_kafka_topic_partition_list_destroy(list);
  t.last_progress = std::chrono::steady_clock::now();
  spdlog::info("event=changelog_read_started partition={} mode={} from={}", t.partition,
               t.standby ? "standby" : "restore", from ? std::to_string(*from) : "beginning");
}

void changelog_reader::stop_reading(int32_t partition) {
  auto* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, opts_.topic.c_str(), partition);
  if (auto* e = rd_kafka_incremental_unassign(rk_.get(), list))
    rd_kafka_error_destroy(e);
  rd_kafka_topic_partition_list_destroy(list);
}

void changelog_reader::apply_commands() {
  std::vector<command> cmds;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    cmds.swap(commands_);
  }
  std::vector<int32_t> stopped;
  for (auto& c : cmds) {
    auto it = tasks_.find(c.partition);
    switch (c.kind) {
      case command::follow:
        if (it == tasks_.end()) {
          auto& t = tasks_[c.partition];
          t.partition = c.partition;
          t.standby = true;
          start_reading(t);
        }
        break;
      case command::restore: {
        const bool fresh = it == tasks_.end();
        auto& t = tasks_[c.partition];
        t.partition = c.partition;
        t.standby = false;
        t.check = std::move(c.check);
        t.done = std::move(c.done);
        t.started = std::chrono::steady_clock::now();
        t.last_check = {};
        t.restored = 0;
        // A standby keeps its position and end-of-changelog state: it is
        // warm, and only the tail (if any) remains to read.
        if (fresh)
          start_reading(t);
        break;
      }
      case command::stop:
        if (it != tasks_.end()) {
          stop_reading(c.partition);
          tasks_.erase(it);
        }
        stopped.push_back(c.partition);
        break;
    }
  }
  // Once every command taken is done: a stop followed by a restore keeps it here.
  for (auto p : stopped)
    if (!tasks_.contains(p) && released_)
      released_(p);
}

void changelog_reader::flush(task& t, std::vector<rd_kafka_message_t*>& msgs) {
  if (msgs.empty())
    return;
  std::vector<storage::changelog_entry> entries;
  entries.reserve(msgs.size());
  for (auto* m : msgs)
    entries.push_back({{static_cast<const char*>(m->key), m->key_len},
                       {static_cast<const char*>(m->payload), m->len}});
  auto next = msgs.back()->offset + 1;
  if (auto err = store_.apply_changelog(t.partition, entries, next)) {
    spdlog::error("event=changelog_apply_failed partition={} error=\"{}\"", t.partition, *err);
    if (!t.standby && t.done) {
      auto done = std::move(t.done);
      t.done = nullptr;
      done(restore_result{false, *err, t.restored, 0});
    }
  } else {
    t.position = next;
    t.records += msgs.size();
    t.restored += msgs.size();
  }
  for (auto* m : msgs)
    rd_kafka_message_destroy(m);
  msgs.clear();
}

void changelog_reader::finish_ready() {
  auto now = std::chrono::steady_clock::now();
  for (auto it = tasks_.begin(); it != tasks_.end();) {
    auto& t = it->second;
    if (!t.standby && !t.done) {  // failed: already reported
      const auto partition = t.partition;
      stop_reading(partition);
      it = tasks_.erase(it);
      if (released_)
        released_(partition);
      continue;
    }
    if (t.standby || !t.at_end || now - t.last_check < recheck_interval) {
      ++it;
      continue;
    }
    t.last_check = now;
    std::string why;
    if (t.check && !t.check(t.partition, t.position, why)) {
      if (why != t.waiting_for)
        spdlog::warn("event=restore_waiting partition={} position={} reason=\"{}\"", t.partition,
                     t.position, why);
      t.waiting_for = why;
      ++it;
      continue;
    }
    restore_result r;
    r.records = t.restored;
    r.seconds = std::chrono::duration<double>(now - t.started).count();
    const auto recount_start = std::chrono::steady_clock::now();
    if (auto err = store_.recount_partition(t.partition)) {
      r.ok = false;
      r.error = *err;
    }
    spdlog::info(
        "event=restore_finished partition={} records={} seconds={:.3f} position={} "
        "recount_seconds={:.3f}",
        t.partition, r.records, r.seconds, t.position,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - recount_start).count());
    auto done = std::move(t.done);
    const auto partition = t.partition;
    stop_reading(partition);
    it = tasks_.erase(it);
    if (released_)
      released_(partition);
    done(std::move(r));
  }
}

void changelog_reader::reassign_stalled() {
  const auto now = std::chrono::steady_clock::now();
  for (auto& [p, t] : tasks_) {
    if (t.standby || t.at_end || now - t.last_progress < stall_timeout)
      continue;
    // Fetched anew from what the store holds (the records read so far are
    // written, with their position): a seek starts a new fetch, which
    // reports the end of the partition again; a partition the consumer
    // does not hold (any more) is assigned again.
    ++t.reassignments;
    const auto from = store_.load_changelog_offset(p);
    auto* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, opts_.topic.c_str(), p)->offset =
        from ? *from : RD_KAFKA_OFFSET_BEGINNING;
    bool sought = false;
    if (auto* e = rd_kafka_seek_partitions(rk_.get(), list, 2'000))
      rd_kafka_error_destroy(e);
    else
      sought = list->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(list);
    if ((t.reassignments & (t.reassignments - 1)) == 0)  // 1, 2, 4, 8 ...: not every 3 s
      spdlog::warn(
          "event=restore_stalled partition={} position={} attempts={} action={} reason=\"nothing "
          "read from the changelog (not even its end) for {} s\"",
          p, t.position, t.reassignments, sought ? "seek" : "assign",
          std::chrono::duration_cast<std::chrono::seconds>(now - t.last_progress).count());
    if (sought) {
      t.position = from.value_or(-1);
      t.last_progress = now;
    } else {
      stop_reading(p);
      start_reading(t);
    }
  }
}

void changelog_reader::publish_progress() {
  std::vector<restore_progress> out;
  out.reserve(tasks_.size());
  for (auto& [p, t] : tasks_) {
    restore_progress rp{p, t.standby, t.position, -1, t.records};
    int64_t low = 0;
    int64_t high = 0;
    if (rd_kafka_get_watermark_offsets(rk_.get(), opts_.topic.c_str(), p, &low, &high) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        high >= 0)
      rp.end = high;
    out.push_back(rp);
  }
  std::lock_guard<std::mutex> guard{progress_mutex_};
  progress_ = std::move(out);
}

void changelog_reader::run() {
  pthread_setname_np(pthread_self(), "ft-changelog");  // top -H, perf
  rd_kafka_queue_t* queue = rd_kafka_queue_get_consumer(rk_.get());
  std::vector<rd_kafka_message_t*> msgs(opts_.batch_records);
  std::map<int32_t, std::vector<rd_kafka_message_t*>> by_partition;
  std::map<int32_t, int64_t> ends;  // end-of-partition offsets seen in this poll
  while (!stop_.load(std::memory_order_relaxed)) {
    apply_commands();
    auto n = tasks_.empty() ? 0 : rd_kafka_consume_batch_queue(queue, 50, msgs.data(), msgs.size());
    for (ssize_t i = 0; i < n; ++i) {
      auto* m = msgs[i];
      auto it = tasks_.find(m->partition);
      if (it == tasks_.end()) {
        rd_kafka_message_destroy(m);
        continue;
      }
      auto& t = it->second;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        // Records skipped before the end (aborted, transaction markers) are
        // covered too, once the records pending before the end are written.
        auto& end = ends[m->partition];
        end = std::max(end, m->offset);
        t.at_end = true;
        t.last_progress = std::chrono::steady_clock::now();
        rd_kafka_message_destroy(m);
        continue;
      }
      if (m->err) {
        spdlog::warn("event=changelog_consume_error partition={} error=\"{}\"", m->partition,
                     rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        continue;
      }
      if (m->offset < t.position) {  // fetched before a re-assignment
        rd_kafka_message_destroy(m);
        continue;
      }
      t.at_end = false;
      t.last_progress = std::chrono::steady_clock::now();
      by_partition[m->partition].push_back(m);
    }
    for (auto& [p, pending] : by_partition) {
      auto it = tasks_.find(p);
      if (it != tasks_.end())
        flush(it->second, pending);
      for (auto* m : pending)
        rd_kafka_message_destroy(m);
      pending.clear();
    }
    for (auto& [p, end] : ends) {
      auto it = tasks_.find(p);
      if (it != tasks_.end() && it->second.at_end && end > it->second.position)
        it->second.position = end;
    }
    ends.clear();
    finish_ready();
    reassign_stalled();
    publish_progress();
    hold_compactions_while_behind();
    if (tasks_.empty()) {
      // Idle: wait for a command without spinning.
      std::unique_lock<std::mutex> lock{mutex_};
      wake_.wait_for(lock, std::chrono::milliseconds{200},
                     [this] { return !commands_.empty() || stop_.load(); });
    }
  }
  for (auto& [p, t] : tasks_)
    stop_reading(p);
  tasks_.clear();
  if (holding_compactions_)
    store_.release_compactions();
  holding_compactions_ = false;
  rd_kafka_queue_destroy(queue);
}

void changelog_reader::hold_compactions_while_behind() {
  // Far behind: a restore, or a standby catching up (one following a live
  // partition stays near the end and does not hold). Level 0 bounded: past
  // it, reads would look into too many files.
  constexpr int64_t far_behind = 20'000;
  constexpr int max_level0_files = 16;
  bool behind = false;
  {
    std::lock_guard<std::mutex> guard{progress_mutex_};
    for (const auto& p : progress_)
      behind = behind || p.lag() > far_behind;
  }
  // Taken again only once compactions have brought level 0 well below the
  // bound (no hold and release at every poll around it).
  const bool hold = behind && store_.level0_files() <
                                  (holding_compactions_ ? max_level0_files : max_level0_files / 2);
  if (hold == holding_compactions_)
    return;
  holding_compactions_ = hold;
  if (hold)
    store_.hold_compactions();
  else
    store_.release_compactions();
}

std::unique_ptr<changelog_restorer> changelog_restorer::create(restorer_options opts,
                                                               storage::rocksdb_store& store,
                                                               std::string& error) {
  std::unique_ptr<changelog_restorer> r{new changelog_restorer};
  const int n = std::max(1, opts.readers);
  for (int i = 0; i < n; ++i) {
    auto o = opts;
    o.client_id = opts.client_id + "-" + std::to_string(i + 1);
    auto reader = changelog_reader::create(std::move(o), store, error);
    if (!reader)
      return nullptr;
    reader->on_released([raw = r.get(), from = reader.get()](int32_t p) { raw->release(p, from); });
    r->readers_.push_back(std::move(reader));
  }
  return r;
}

changelog_reader& changelog_restorer::reader(int32_t partition) {
  if (auto it = reader_of_.find(partition); it != reader_of_.end())
    return *readers_[it->second];
  std::vector<size_t> load(readers_.size(), 0);
  for (const auto& [p, r] : reader_of_)
    ++load[r];
  const auto least = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
  reader_of_[partition] = least;
  return *readers_[least];
}

void changelog_restorer::release(int32_t partition, const changelog_reader* from) {
  std::lock_guard<std::mutex> guard{readers_mutex_};
  auto it = reader_of_.find(partition);
  if (it == reader_of_.end() || readers_[it->second].get() != from ||
      from->command_pending(partition))
    return;
  reader_of_.erase(it);
}

void changelog_restorer::restore(int32_t partition, completeness_check check,
                                 std::function<void(restore_result)> done) {
  std::lock_guard<std::mutex> guard{readers_mutex_};
  reader(partition).restore(partition, std::move(check), std::move(done));
}

void changelog_restorer::follow(int32_t partition) {
  std::lock_guard<std::mutex> guard{readers_mutex_};
  reader(partition).follow(partition);
}

void changelog_restorer::stop(int32_t partition) {
  std::lock_guard<std::mutex> guard{readers_mutex_};
  reader(partition).stop(partition);
}

std::vector<restore_progress> changelog_restorer::progress() const {
  std::vector<restore_progress> out;
  for (const auto& r : readers_) {
    auto part = r->progress();
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

}  // namespace fleettwin::kafka

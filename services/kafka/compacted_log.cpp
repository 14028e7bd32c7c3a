#include "services/kafka/compacted_log.hpp"

#include <pthread.h>

#include <spdlog/spdlog.h>

#include <future>

namespace fleettwin::kafka {

namespace {

constexpr int poll_ms = 50;

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
  auto* done = static_cast<std::promise<std::optional<std::string>>*>(m->_private);
  if (!done)
    return;
  if (m->err)
    done->set_value(std::string{rd_kafka_err2str(m->err)});
  else
    done->set_value(std::nullopt);
}

}  // namespace

compacted_log::compacted_log(compacted_log_options opts, record_handler on_record)
    : opts_(std::move(opts)), on_record_(std::move(on_record)) {}

std::unique_ptr<compacted_log> compacted_log::start(compacted_log_options opts,
                                                    record_handler on_record, std::string& error) {
  std::unique_ptr<compacted_log> log{new compacted_log(std::move(opts), std::move(on_record))};
  const auto& o = log->opts_;
  std::map<std::string, std::string> consumer{
      {"bootstrap.servers", o.bootstrap},
      {"client.id", o.client_id},
      {"group.id", o.client_id},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"isolation.level", "read_committed"},
      // Idle, a consumer asks every broker every fetch.wait.max.ms, and data ends the
      // wait at once; but reaching the end of the log waits it out once (startup).
      {"fetch.wait.max.ms", "200"},
  };
  std::map<std::string, std::string> producer{
      {"bootstrap.servers", o.bootstrap},
      {"client.id", o.client_id},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"linger.ms", "0"},
  };
  for (const auto& [k, v] : o.settings) {
    consumer[k] = v;
    producer[k] = v;
  }
  log->consumer_ = make_client(RD_KAFKA_CONSUMER, consumer, "the consumer of " + o.topic, error);
  if (!log->consumer_)
    return nullptr;
  // The producer reports deliveries to append(): built by hand for the callback.
  auto* pconf = make_conf(producer, error);
  if (!pconf)
    return nullptr;
  rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
  char errstr[512];
  log->producer_.reset(rd_kafka_new(RD_KAFKA_PRODUCER, pconf, errstr, sizeof(errstr)));
  if (!log->producer_) {
    rd_kafka_conf_destroy(pconf);
    error = "cannot create the producer of " + o.topic + ": " + errstr;
    return nullptr;
  }
  rd_kafka_poll_set_consumer(log->consumer_.get());
  if (auto err = assign_partition(log->consumer_.get(), o.topic, 0, RD_KAFKA_OFFSET_BEGINNING)) {
    error = *err;
    return nullptr;
  }
  log->thread_ = std::thread{[raw = log.get()] { raw->run(); }};
  return log;
}

compacted_log::~compacted_log() {
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
  if (consumer_)
    rd_kafka_consumer_close(consumer_.get());
  if (producer_)
    rd_kafka_flush(producer_.get(), 5'000);
}

void compacted_log::run() {
  pthread_setname_np(pthread_self(), "ft-compacted");  // top -H, perf
  while (!stop_) {
    rd_kafka_poll(producer_.get(), 0);
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer_.get(), poll_ms);
    if (!m)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::string_view key{m->key ? static_cast<const char*>(m->key) : "", m->key_len};
      std::string_view value{m->payload ? static_cast<const char*>(m->payload) : "", m->len};
      on_record_(key, value);
      std::lock_guard<std::mutex> guard{mutex_};
      position_ = m->offset + 1;
      progressed_.notify_all();
    } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      spdlog::debug("event=compacted_log_error topic={} error=\"{}\"", opts_.topic,
                    rd_kafka_message_errstr(m));
    }
    rd_kafka_message_destroy(m);
  }
}

bool compacted_log::catch_up(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int64_t low = 0;
  int64_t high = -1;
  while (rd_kafka_query_watermark_offsets(consumer_.get(), opts_.topic.c_str(), 0, &low, &high,
                                          1'000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
  }
  std::unique_lock<std::mutex> lock{mutex_};
  // Compaction may have removed the last records: the end is what counts.
  return progressed_.wait_until(lock, deadline, [&] { return position_ >= high || high <= low; });
}

std::optional<std::string> compacted_log::append(const std::string& key, const std::string& value,
                                                 std::chrono::milliseconds timeout) {
  auto done = std::make_unique<std::promise<std::optional<std::string>>>();
  auto result = done->get_future();
  auto err = rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC(opts_.topic.c_str()),
                               RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY(key.data(), key.size()),
                               RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                               RD_KAFKA_V_OPAQUE(done.get()), RD_KAFKA_V_END);
  if (err)
    return std::string{"cannot write to "} + opts_.topic + ": " + rd_kafka_err2str(err);
  rd_kafka_flush(producer_.get(), static_cast<int>(timeout.count()));
  if (result.wait_for(std::chrono::milliseconds{0}) != std::future_status::ready) {
    // The delivery report still refers to the promise: keep it alive.
    done.release();
    return "writing to " + opts_.topic + " timed out";
  }
  return result.get();
}

}  // namespace fleettwin::kafka

#include "services/kafka/topic_feed.hpp"

#include <pthread.h>

#include <spdlog/spdlog.h>

#include <chrono>

namespace fleettwin::kafka {

namespace {

constexpr int poll_ms = 100;
constexpr int metadata_timeout_ms = 5'000;

}  // namespace

topic_feed::topic_feed(topic_feed_options opts, record_handler on_record)
    : opts_(std::move(opts)), on_record_(std::move(on_record)) {}

std::unique_ptr<topic_feed> topic_feed::start(topic_feed_options opts, record_handler on_record,
                                              std::string& error) {
  std::map<std::string, std::string> settings{
      {"bootstrap.servers", opts.bootstrap},
      {"client.id", opts.client_id},
      // Never committed: a watch starts at the end.
      {"group.id", opts.client_id},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "latest"},
      {"isolation.level", "read_committed"},
      // Data ends the broker's wait at once: a long wait costs no latency, and idle
      // watches do not poll every broker 50 times a second.
      {"fetch.wait.max.ms", "500"},
  };
  for (const auto& [k, v] : opts.settings)
    settings[k] = v;
  std::unique_ptr<topic_feed> f{new topic_feed(std::move(opts), std::move(on_record))};
  f->rk_ = make_client(RD_KAFKA_CONSUMER, settings, "the consumer of " + opts.topic, error);
  if (!f->rk_)
    return nullptr;
  rd_kafka_poll_set_consumer(f->rk_.get());
  f->thread_ = std::thread{[raw = f.get()] { raw->run(); }};
  return f;
}

topic_feed::~topic_feed() {
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
  if (rk_)
    rd_kafka_consumer_close(rk_.get());
}

bool topic_feed::assign() {
  rd_kafka_topic_t* topic = rd_kafka_topic_new(rk_.get(), opts_.topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  auto err = rd_kafka_metadata(rk_.get(), 0, topic, &md, metadata_timeout_ms);
  rd_kafka_topic_destroy(topic);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err ||
      md->topics[0].partition_cnt <= 0) {
    if (md)
      rd_kafka_metadata_destroy(md);
    return false;
  }
  const int count = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  // The end of each partition now, as a read_committed reader sees it (the
  // last stable offset; -1 asks for the latest): from there on every
  // committed change arrives. Asked here, not left to the fetcher, so that
  // `ready` means positioned.
  auto* list = rd_kafka_topic_partition_list_new(count);
  for (int p = 0; p < count; ++p)
    rd_kafka_topic_partition_list_add(list, opts_.topic.c_str(), p)->offset = -1;
  if (rd_kafka_offsets_for_times(rk_.get(), list, metadata_timeout_ms) !=
      RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_topic_partition_list_destroy(list);
    return false;
  }
  for (int p = 0; p < count; ++p)
    if (list->elems[p].offset < 0)
      list->elems[p].offset = RD_KAFKA_OFFSET_END;
  err = rd_kafka_assign(rk_.get(), list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::warn("event=topic_feed_assign_failed topic={} error=\"{}\"", opts_.topic,
                 rd_kafka_err2str(err));
    return false;
  }
  spdlog::info("event=topic_feed_started topic={} partitions={}", opts_.topic, count);
  return true;
}

void topic_feed::run() {
  pthread_setname_np(pthread_self(), "ft-feed");  // top -H, perf
  while (!stop_ && !assign())
    std::this_thread::sleep_for(std::chrono::milliseconds{200});
  ready_ = true;
  while (!stop_) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_.get(), poll_ms);
    if (!m)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->payload) {
      std::string_view key{m->key ? static_cast<const char*>(m->key) : "", m->key_len};
      std::string_view value{static_cast<const char*>(m->payload), m->len};
      on_record_(key, value);
    } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      spdlog::debug("event=topic_feed_error topic={} error=\"{}\"", opts_.topic,
                    rd_kafka_message_errstr(m));
    }
    rd_kafka_message_destroy(m);
  }
}

}  // namespace fleettwin::kafka

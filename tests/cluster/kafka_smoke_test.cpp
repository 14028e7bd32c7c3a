// The real broker from tools/kafka works with our librdkafka: idempotent produce and
// consume, exactly-once transactions with consumer offsets, compacted topics. The embedded
// mock cluster cannot prove the last two (it ignores aborts and has no compaction).

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include "kafka_broker.hpp"
#include "services/kafka/topic_admin.hpp"

namespace fleettwin::test {
namespace {

using namespace std::chrono_literals;
using settings = std::map<std::string, std::string>;

constexpr int timeout_ms = 30000;

struct handle_deleter {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_destroy(rk);
  }
};
using handle_ptr = std::unique_ptr<rd_kafka_t, handle_deleter>;

struct partitions_deleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const {
    rd_kafka_topic_partition_list_destroy(list);
  }
};
using partitions_ptr = std::unique_ptr<rd_kafka_topic_partition_list_t, partitions_deleter>;

/// Per-producer delivery outcome, filled by the delivery report callback.
struct deliveries {
  int ok = 0;
  int failed = 0;
  std::string first_error;
};

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  auto* d = static_cast<deliveries*>(opaque);
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++d->ok;
  } else if (d->failed++ == 0) {
    d->first_error = rd_kafka_err2str(msg->err);
  }
}

/// A producer (delivery reports go to `d` when given) or a consumer; throws on a bad setting.
handle_ptr make_client(rd_kafka_type_t type, const settings& config, deliveries* d = nullptr) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [key, value] : config) {
    if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      throw std::runtime_error(key + ": " + errstr);
    }
  }
  if (d) {
    rd_kafka_conf_set_opaque(conf, d);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(errstr);
  }
  if (type == RD_KAFKA_CONSUMER)
    rd_kafka_poll_set_consumer(rk);
  return handle_ptr{rk};
}

/// "" on success, else the error's text; destroys `error`.
std::string text_of(rd_kafka_error_t* error) {
  if (!error)
    return {};
  std::string text = rd_kafka_error_string(error);
  rd_kafka_error_destroy(error);
  return text;
}

rd_kafka_resp_err_t produce(rd_kafka_t* rk, const std::string& topic, const std::string& key,
                            const std::string& value) {
  return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                           RD_KAFKA_V_KEY(key.data(), key.size()),
                           RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
}

struct record {
  int32_t partition = 0;
  int64_t offset = 0;
  std::string value;
};

/// What a consumer poll yields: a record, or the end of a partition (at `offset`).
struct poll_result {
  std::optional<record> rec;
  std::optional<std::pair<int32_t, int64_t>> eof;
};

poll_result poll_once(rd_kafka_t* consumer) {
  poll_result result;
  rd_kafka_message_t* msg = rd_kafka_consumer_poll(consumer, 100);
  if (!msg)
    return result;
  if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    result.eof = {{msg->partition, msg->offset}};
  } else if (msg->err) {
    ADD_FAILURE() << "consumer error: " << rd_kafka_message_errstr(msg);
  } else {
    result.rec = record{msg->partition, msg->offset,
                        std::string(static_cast<const char*>(msg->payload), msg->len)};
  }
  rd_kafka_message_destroy(msg);
  return result;
}

/// Polls until `done()` holds after a poll, or the deadline; false on timeout.
bool poll_until(rd_kafka_t* consumer, const std::function<void(const poll_result&)>& on_result,
                const std::function<bool()>& done, std::chrono::milliseconds timeout = 60s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    on_result(poll_once(consumer));
  }
  return true;
}

/// Consumes `count` records with a subscribed consumer and returns, per partition, the
/// offset to commit (last consumed + 1), merged into `next`.
void consume_count(rd_kafka_t* consumer, int count, std::map<int32_t, int64_t>& next) {
  int seen = 0;
  ASSERT_TRUE(poll_until(
      consumer,
      [&](const poll_result& r) {
        if (r.rec) {
          ++seen;
          next[r.rec->partition] = r.rec->offset + 1;
        }
      },
      [&] { return seen >= count; }))
      << "consumed " << seen << " of " << count;
  EXPECT_EQ(seen, count);
}

partitions_ptr offsets_list(const std::string& topic, const std::map<int32_t, int64_t>& offsets) {
  partitions_ptr list{rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size()))};
  for (const auto& [partition, offset] : offsets)
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)->offset = offset;
  return list;
}

/// The group's committed offsets (OffsetFetch) for partitions 0..n-1 of `topic`.
std::map<int32_t, int64_t> committed(rd_kafka_t* consumer, const std::string& topic, int n,
                                     rd_kafka_resp_err_t* err_out = nullptr,
                                     int wait_ms = timeout_ms) {
  partitions_ptr list{rd_kafka_topic_partition_list_new(n)};
  for (int32_t p = 0; p < n; ++p)
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p);
  auto err = rd_kafka_committed(consumer, list.get(), wait_ms);
  if (err_out)
    *err_out = err;
  else
    EXPECT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
  std::map<int32_t, int64_t> result;
  for (int i = 0; i < list->cnt; ++i) {
    if (list->elems[i].offset >= 0)
      result[list->elems[i].partition] = list->elems[i].offset;
  }
  return result;
}

/// Assigns every partition from the beginning, reporting partition ends.
handle_ptr reader(const std::string& bootstrap, const std::string& topic, int partitions,
                  const std::string& isolation) {
  auto consumer = make_client(RD_KAFKA_CONSUMER, {{"bootstrap.servers", bootstrap},
                                                  {"group.id", "smoke-reader-" + isolation},
                                                  {"enable.auto.commit", "false"},
                                                  {"enable.partition.eof", "true"},
                                                  {"isolation.level", isolation}});
  partitions_ptr list{rd_kafka_topic_partition_list_new(partitions)};
  for (int32_t p = 0; p < partitions; ++p)
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  EXPECT_EQ(rd_kafka_assign(consumer.get(), list.get()), RD_KAFKA_RESP_ERR_NO_ERROR);
  return consumer;
}

void seed(const std::string& bootstrap, const std::string& topic, int from, int count) {
  deliveries d;
  auto producer = make_client(
      RD_KAFKA_PRODUCER, {{"bootstrap.servers", bootstrap}, {"enable.idempotence", "true"}}, &d);
  for (int i = from; i < from + count; ++i)
    ASSERT_EQ(
        produce(producer.get(), topic, "asset-" + std::to_string(i), "in-" + std::to_string(i)),
        RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(rd_kafka_flush(producer.get(), timeout_ms), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(d.ok, count) << d.first_error;
}

/// A consumer that is neither subscribed nor assigned: its ListOffsets and OffsetFetch
/// requests do not queue behind long-polling Fetch requests.
handle_ptr idle_consumer(const std::string& bootstrap, const std::string& isolation,
                         const std::string& group = "smoke-idle") {
  return make_client(
      RD_KAFKA_CONSUMER,
      {{"bootstrap.servers", bootstrap}, {"group.id", group}, {"isolation.level", isolation}});
}

/// The end offset of partitions 0..n-1 as `rk` sees it: for a read_committed handle that is
/// the last stable offset, for a read_uncommitted one the high watermark.
std::map<int32_t, int64_t> watermarks(rd_kafka_t* rk, const std::string& topic, int n) {
  std::map<int32_t, int64_t> result;
  for (int32_t p = 0; p < n; ++p) {
    int64_t low = 0, high = 0;
    if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, timeout_ms) ==
        RD_KAFKA_RESP_ERR_NO_ERROR)
      result[p] = high;
  }
  return result;
}

/// What an open transaction with records and offsets looks like from outside (librdkafka
/// 2.0.2, Kafka 3.9), which recovery code must expect:
/// - ListOffsets from a read_committed handle answers the last stable offset, below the
///   high watermark by the open transaction's records;
/// - OffsetFetch with require_stable, which librdkafka sends for read_committed handles,
///   gets UNSTABLE_OFFSET_COMMIT until the transaction ends, so rd_kafka_committed() blocks
///   (here: times out), while a read_uncommitted handle gets the last committed offsets.
void check_open_transaction(const std::string& bootstrap, rd_kafka_t* read_committed_member,
                            const std::string& in, const std::string& out,
                            const std::map<int32_t, int64_t>& last_committed) {
  constexpr int partitions = 4;
  auto stable = watermarks(idle_consumer(bootstrap, "read_committed").get(), out, partitions);
  auto high = watermarks(idle_consumer(bootstrap, "read_uncommitted").get(), out, partitions);
  ASSERT_EQ(stable.size(), high.size());
  int64_t pending = 0;
  for (const auto& [p, offset] : high) {
    EXPECT_LE(stable[p], offset) << "partition " << p;
    pending += offset - stable[p];
  }
  EXPECT_GE(pending, 10) << "the 10 records of the open transaction lie above the LSO";

  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  committed(read_committed_member, in, partitions, &err, 1000);
  EXPECT_EQ(err, RD_KAFKA_RESP_ERR__TIMED_OUT) << rd_kafka_err2name(err);
  auto uncommitted = idle_consumer(bootstrap, "read_uncommitted", "smoke-tx");
  EXPECT_EQ(committed(uncommitted.get(), in, partitions), last_committed);
}

class kafka_smoke : public ::testing::Test {
protected:
  // One broker for the whole suite (ctest runs each test in its own process, so there it
  // is one broker per test).
  static void SetUpTestSuite() {
    try {
      broker_ = std::make_unique<kafka_broker>(1);
    } catch (const std::exception& e) {
      setup_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    broker_.reset();
  }
  void SetUp() override {
    if (!broker_)
      GTEST_FAIL() << "no Kafka broker: " << setup_error_;
  }
  static const std::string& bootstrap() {
    return broker_->bootstrap();
  }
  static void create(const std::string& topic, int partitions, const settings& config = {}) {
    std::string error;
    ASSERT_TRUE(broker_->create_topic(topic, partitions, 1, config, error)) << error;
  }

  static std::unique_ptr<kafka_broker> broker_;
  static std::string setup_error_;
};

std::unique_ptr<kafka_broker> kafka_smoke::broker_;
std::string kafka_smoke::setup_error_;

TEST_F(kafka_smoke, idempotent_producer_and_consumer) {
  const std::string topic = "smoke.plain";
  create(topic, 4);
  constexpr int n = 200;

  deliveries d;
  auto producer = make_client(
      RD_KAFKA_PRODUCER,
      {{"bootstrap.servers", bootstrap()}, {"enable.idempotence", "true"}, {"acks", "all"}}, &d);
  for (int i = 0; i < n; ++i)
    ASSERT_EQ(
        produce(producer.get(), topic, "asset-" + std::to_string(i), "v-" + std::to_string(i)),
        RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(rd_kafka_flush(producer.get(), timeout_ms), RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(d.ok, n);
  EXPECT_EQ(d.failed, 0) << d.first_error;

  auto consumer = make_client(RD_KAFKA_CONSUMER, {{"bootstrap.servers", bootstrap()},
                                                  {"group.id", "smoke-plain"},
                                                  {"auto.offset.reset", "earliest"}});
  partitions_ptr subscription{rd_kafka_topic_partition_list_new(1)};
  rd_kafka_topic_partition_list_add(subscription.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  ASSERT_EQ(rd_kafka_subscribe(consumer.get(), subscription.get()), RD_KAFKA_RESP_ERR_NO_ERROR);

  std::set<std::string> values;
  std::set<int32_t> partitions;
  ASSERT_TRUE(poll_until(
      consumer.get(),
      [&](const poll_result& r) {
        if (r.rec) {
          values.insert(r.rec->value);
          partitions.insert(r.rec->partition);
        }
      },
      [&] { return values.size() >= static_cast<size_t>(n); }))
      << "consumed " << values.size() << " of " << n;
  EXPECT_EQ(values.size(), static_cast<size_t>(n));
  EXPECT_EQ(partitions.size(), 4u) << "keys should spread over all partitions";
  rd_kafka_consumer_close(consumer.get());
}

TEST_F(kafka_smoke, transactions_commit_records_and_offsets_atomically) {
  const std::string in = "smoke.tx.in";
  const std::string out = "smoke.tx.out";
  constexpr int partitions = 4;
  create(in, partitions);
  create(out, partitions);

  // The consume-transform-produce loop: `source` reads `in` in group smoke-tx, `txn`
  // writes to `out` and commits source's offsets in the same transaction.
  auto source = make_client(RD_KAFKA_CONSUMER, {{"bootstrap.servers", bootstrap()},
                                                {"group.id", "smoke-tx"},
                                                {"enable.auto.commit", "false"},
                                                {"auto.offset.reset", "earliest"},
                                                {"isolation.level", "read_committed"}});
  partitions_ptr subscription{rd_kafka_topic_partition_list_new(1)};
  rd_kafka_topic_partition_list_add(subscription.get(), in.c_str(), RD_KAFKA_PARTITION_UA);
  ASSERT_EQ(rd_kafka_subscribe(source.get(), subscription.get()), RD_KAFKA_RESP_ERR_NO_ERROR);

  deliveries d;
  auto txn = make_client(RD_KAFKA_PRODUCER,
                         {{"bootstrap.servers", bootstrap()},
                          {"transactional.id", "smoke-tx-producer"},
                          {"transaction.timeout.ms", "60000"}},
                         &d);
  ASSERT_EQ(text_of(rd_kafka_init_transactions(txn.get(), timeout_ms)), "");
  std::unique_ptr<rd_kafka_consumer_group_metadata_t,
                  decltype(&rd_kafka_consumer_group_metadata_destroy)>
      group{nullptr, &rd_kafka_consumer_group_metadata_destroy};

  auto run_transaction = [&](const std::string& prefix, int count,
                             const std::map<int32_t, int64_t>& offsets) {
    ASSERT_EQ(text_of(rd_kafka_begin_transaction(txn.get())), "");
    for (int i = 0; i < count; ++i)
      ASSERT_EQ(produce(txn.get(), out, "asset-" + std::to_string(i), prefix + std::to_string(i)),
                RD_KAFKA_RESP_ERR_NO_ERROR);
    group.reset(rd_kafka_consumer_group_metadata(source.get()));
    auto list = offsets_list(in, offsets);
    ASSERT_EQ(text_of(rd_kafka_send_offsets_to_transaction(txn.get(), list.get(), group.get(),
                                                           timeout_ms)),
              "");
  };

  // 1: committed, with the offsets of the first 20 input records.
  std::map<int32_t, int64_t> first;
  ASSERT_NO_FATAL_FAILURE(seed(bootstrap(), in, 0, 20));
  ASSERT_NO_FATAL_FAILURE(consume_count(source.get(), 20, first));
  ASSERT_NO_FATAL_FAILURE(run_transaction("committed-", 20, first));
  ASSERT_EQ(text_of(rd_kafka_commit_transaction(txn.get(), timeout_ms)), "");
  EXPECT_EQ(committed(source.get(), in, partitions), first);

  // 2: aborted, after its records reached the log; its offsets must not count.
  std::map<int32_t, int64_t> second = first;
  ASSERT_NO_FATAL_FAILURE(seed(bootstrap(), in, 20, 8));
  ASSERT_NO_FATAL_FAILURE(consume_count(source.get(), 8, second));
  ASSERT_NE(second, first);
  ASSERT_NO_FATAL_FAILURE(run_transaction("aborted-", 10, second));
  ASSERT_EQ(rd_kafka_flush(txn.get(), timeout_ms), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(d.ok, 30) << d.first_error;
  ASSERT_NO_FATAL_FAILURE(check_open_transaction(bootstrap(), source.get(), in, out, first));
  ASSERT_EQ(text_of(rd_kafka_abort_transaction(txn.get(), timeout_ms)), "");
  EXPECT_EQ(committed(source.get(), in, partitions), first);

  // 3: committed after the abort, so read_committed readers must skip the aborted batch.
  ASSERT_NO_FATAL_FAILURE(run_transaction("after-", 5, second));
  ASSERT_EQ(text_of(rd_kafka_commit_transaction(txn.get(), timeout_ms)), "");
  EXPECT_EQ(committed(source.get(), in, partitions), second);
  EXPECT_EQ(d.failed, 0) << d.first_error;

  // Read `out` to the end: a read_committed reader ends a partition at its last stable
  // offset, which reaches the high watermark once the coordinator has written every
  // transaction marker (asynchronously, after commit/abort returned).
  auto idle = idle_consumer(bootstrap(), "read_uncommitted");
  auto read_all = [&](const std::string& isolation) {
    auto consumer = reader(bootstrap(), out, partitions, isolation);
    std::multiset<std::string> values;
    std::map<int32_t, int64_t> ends;
    bool complete = poll_until(
        consumer.get(),
        [&](const poll_result& r) {
          if (r.rec)
            values.insert(r.rec->value);
          if (r.eof)
            ends[r.eof->first] = r.eof->second;
        },
        [&] {
          return ends.size() == static_cast<size_t>(partitions) &&
                 ends == watermarks(idle.get(), out, partitions);
        });
    EXPECT_TRUE(complete) << isolation << " reader did not reach the end of " << out;
    rd_kafka_consumer_close(consumer.get());
    return values;
  };
  auto count = [](const std::multiset<std::string>& values, const std::string& prefix) {
    size_t n = 0;
    for (const auto& v : values)
      n += v.rfind(prefix, 0) == 0 ? 1 : 0;
    return n;
  };

  auto visible = read_all("read_committed");
  EXPECT_EQ(visible.size(), 25u);
  EXPECT_EQ(count(visible, "committed-"), 20u);
  EXPECT_EQ(count(visible, "after-"), 5u);
  EXPECT_EQ(count(visible, "aborted-"), 0u);

  // The aborted records are really in the log (unlike on the mock cluster).
  auto everything = read_all("read_uncommitted");
  EXPECT_EQ(everything.size(), 35u);
  EXPECT_EQ(count(everything, "aborted-"), 10u);

  rd_kafka_consumer_close(source.get());
}

// The node's check at start: output topics that refuse records as large as it may write
// (max.message.bytes below its spec) are named with what they have.
TEST_F(kafka_smoke, topics_refusing_the_nodes_largest_records_are_named) {
  create("smoke.default-limit", 1, {});
  create("smoke.large-limit", 1,
         {{"max.message.bytes", std::to_string(kafka::max_output_record_bytes)}});
  const std::map<std::string, std::string> needs{
      {"max.message.bytes", std::to_string(kafka::max_output_record_bytes)}};
  std::string error;
  auto low = kafka::record_limits_below(bootstrap(), {},
                                        {{"smoke.default-limit", 1, -1, needs, false},
                                         {"smoke.large-limit", 1, -1, needs, false},
                                         {"smoke.no-spec", 1, -1, {}, false}},
                                        10s, error);
  EXPECT_EQ(error, "");
  ASSERT_EQ(low.size(), 1u);
  EXPECT_EQ(low[0].topic, "smoke.default-limit");
  EXPECT_EQ(low[0].max_message_bytes, 1048588);  // the broker's default
  EXPECT_EQ(low[0].needed, kafka::max_output_record_bytes);
}

TEST_F(kafka_smoke, compacted_topic) {
  const std::string topic = "smoke.compacted";
  create(topic, 4, {{"cleanup.policy", "compact"}, {"min.cleanable.dirty.ratio", "0.1"}});

  // The broker kept the setting: read it back with DescribeConfigs.
  auto admin = make_client(RD_KAFKA_PRODUCER, {{"bootstrap.servers", bootstrap()}});
  std::unique_ptr<rd_kafka_ConfigResource_t, decltype(&rd_kafka_ConfigResource_destroy)> resource{
      rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str()),
      &rd_kafka_ConfigResource_destroy};
  std::unique_ptr<rd_kafka_queue_t, decltype(&rd_kafka_queue_destroy)> queue{
      rd_kafka_queue_new(admin.get()), &rd_kafka_queue_destroy};
  rd_kafka_ConfigResource_t* resources[] = {resource.get()};
  rd_kafka_DescribeConfigs(admin.get(), resources, 1, nullptr, queue.get());
  std::unique_ptr<rd_kafka_event_t, decltype(&rd_kafka_event_destroy)> event{
      rd_kafka_queue_poll(queue.get(), timeout_ms), &rd_kafka_event_destroy};
  ASSERT_NE(event, nullptr);
  ASSERT_EQ(rd_kafka_event_error(event.get()), RD_KAFKA_RESP_ERR_NO_ERROR)
      << rd_kafka_event_error_string(event.get());
  size_t count = 0;
  const rd_kafka_ConfigResource_t** described = rd_kafka_DescribeConfigs_result_resources(
      rd_kafka_event_DescribeConfigs_result(event.get()), &count);
  ASSERT_EQ(count, 1u);
  size_t entries = 0;
  const rd_kafka_ConfigEntry_t** configs = rd_kafka_ConfigResource_configs(described[0], &entries);
  std::map<std::string, std::string> values;
  for (size_t i = 0; i < entries; ++i) {
    const char* value = rd_kafka_ConfigEntry_value(configs[i]);
    values[rd_kafka_ConfigEntry_name(configs[i])] = value ? value : "";
  }
  EXPECT_EQ(values["cleanup.policy"], "compact");
  EXPECT_EQ(values["min.cleanable.dirty.ratio"], "0.1");

  // A second create is refused, and says why.
  std::string error;
  EXPECT_FALSE(broker_->create_topic(topic, 4, 1, {}, error));
  EXPECT_NE(error.find("TOPIC_ALREADY_EXISTS"), std::string::npos) << error;
}

}  // namespace
}  // namespace fleettwin::test

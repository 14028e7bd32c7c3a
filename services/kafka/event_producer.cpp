#include "services/kafka/event_producer.hpp"

#include <pthread.h>

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include <spdlog/spdlog.h>

#include "fleettwin/v1/aggregate.pb.h"
#include "fleettwin/v1/twin.pb.h"
#include "services/grpc/convert.hpp"
#include "services/grpc/privacy.hpp"
#include "services/kafka/audit_log.hpp"
#include "services/kafka/topic_admin.hpp"

namespace fleettwin::kafka {

namespace {

/// `models` if some kind marks a property sensitive (what the redacted changes topic hides).
std::shared_ptr<const core::model_set> with_sensitive(const runtime::models_holder* holder) {
  auto models = holder ? holder->get() : nullptr;
  if (models)
    for (const auto& [kind, m] : *models)
      for (const auto& p : m.properties)
        if (p.sensitive)
          return models;
  return nullptr;
}

}  // namespace

/// One publish call: its records, encoded on the caller's thread, and how
/// their delivery went.
struct event_producer::item {
  struct message {
    const std::string* topic = nullptr;
    int32_t partition = RD_KAFKA_PARTITION_UA;
    std::string key;
    std::string value;
    rd_kafka_headers_t* headers = nullptr;  // owned until produced
    bool changelog = false;
  };

  ~item() {
    for (auto& m : messages)
      if (m.headers)
        rd_kafka_headers_destroy(m.headers);
  }

  void fail(std::string_view why) {
    std::lock_guard<std::mutex> guard{mutex};
    if (error.empty())
      error = why;
  }

  runtime::publish_result result() {
    runtime::publish_result r;
    std::lock_guard<std::mutex> guard{mutex};
    r.ok = error.empty();
    r.error = error;
    if (auto last = changelog_last.load(); last >= 0)
      r.changelog_offset = last + 1;
    return r;
  }

  event_producer* owner = nullptr;
  int32_t partition = 0;
  uint64_t incarnation = 0;
  std::optional<int64_t> next_offset;
  runtime::follower_offsets input_offsets;
  std::vector<message> messages;
  std::function<void(runtime::publish_result)> done;
  /// Delivery reports outstanding (+1 held while producing, at-least-once).
  std::atomic<size_t> remaining{0};
  std::atomic<int64_t> changelog_last{-1};
  std::mutex mutex;
  std::string error;
};

namespace {

using item = event_producer::item;

/// Records one transaction takes at most before it commits early.
constexpr size_t max_transaction_messages = 200'000;

/// Changelog messages carry a tagged pointer to their item (items are
/// aligned, so the low bit is free): their offsets are reported.
void* opaque_of(item* it, bool changelog) {
  return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(it) | (changelog ? 1 : 0));
}

std::pair<item*, bool> item_of(void* opaque) {
  auto bits = reinterpret_cast<uintptr_t>(opaque);
  return {reinterpret_cast<item*>(bits & ~uintptr_t{1}), (bits & 1) != 0};
}

rd_kafka_headers_t* content_type(std::string_view type) {
  auto* h = rd_kafka_headers_new(1);
  add_header(h, "content-type", type);
  return h;
}

std::string be64(int64_t x) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>(static_cast<uint64_t>(x) >> (8 * (7 - i)));
  return out;
}

std::string error_text(rd_kafka_error_t* e) {
  std::string s = rd_kafka_error_string(e);
  rd_kafka_error_destroy(e);
  return s;
}

}  // namespace

event_producer::event_producer(producer_options opts) : opts_(std::move(opts)) {}

void event_producer::on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void*) {
  if (!msg->_private)
    return;
  auto [it, changelog] = item_of(msg->_private);
  if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    it->fail(rd_kafka_err2str(msg->err));
  } else if (changelog) {
    auto last = it->changelog_last.load();
    while (msg->offset > last && !it->changelog_last.compare_exchange_weak(last, msg->offset)) {
    }
  }
  // Exactly-once items are completed by their transaction's commit.
  if (it->owner->transactional())
    it->remaining.fetch_sub(1);
  else
    it->owner->settle(it);
}

namespace {

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void event_producer::step(const char* what) {
  step_since_ms_.store(steady_ms(), std::memory_order_relaxed);
  step_.store(what, std::memory_order_relaxed);
}

std::string event_producer::activity() const {
  const int64_t since = step_since_ms_.load(std::memory_order_relaxed);
  std::string out = step_.load(std::memory_order_relaxed);
  if (since > 0)
    out += " for " + std::to_string(steady_ms() - since) + " ms";
  {
    std::lock_guard<std::mutex> guard{mutex_};
    out += ", " + std::to_string(pending_) + " items unreported";
  }
  return out;
}

void event_producer::settle(item* it) {
  if (it->remaining.fetch_sub(1) != 1)
    return;
  it->done(it->result());
  delete it;
  std::lock_guard<std::mutex> guard{mutex_};
  if (--pending_ == 0)
    drained_.notify_all();
}

std::unique_ptr<event_producer> event_producer::create(producer_options opts, std::string& error) {
  std::map<std::string, std::string> settings{
      {"bootstrap.servers", opts.bootstrap},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"linger.ms", "5"},
      {"batch.num.messages", "10000"},
      {"queue.buffering.max.messages", "1000000"},
      {"queue.buffering.max.kbytes", "1048576"},
      // A request holds at least one record: the largest output and its framing.
      {"message.max.bytes", std::to_string(max_output_record_bytes + (1 << 20))},
      {"compression.type", "lz4"},
      {"partitioner", "murmur2_random"},
  };
  if (!opts.transactional_id.empty()) {
    settings["transactional.id"] = opts.transactional_id;
    settings["transaction.timeout.ms"] = std::to_string(opts.transaction_timeout.count());
  }
  for (const auto& [k, v] : opts.settings)
    settings[k] = v;
  std::unique_ptr<event_producer> p{new event_producer(std::move(opts))};
  p->settings_ = std::move(settings);
  if (!p->open_handle(error))
    return nullptr;
  if (p->transactional() && !p->init_transactions(error))
    return nullptr;
  p->output_ = std::thread{[raw = p.get()] { raw->run(); }};
  return p;
}

bool event_producer::open_handle(std::string& error) {
  auto* conf = make_conf(settings_, error);
  if (!conf)
    return false;
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  char errstr[512];
  kafka_handle rk{rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))};
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    error = std::string{"cannot create Kafka producer: "} + errstr;
    return false;
  }
  {
    std::unique_lock<std::shared_mutex> lock{handle_mutex_};
    rk_ = std::move(rk);
  }
  poll_stop_ = false;
  poller_ = std::thread{[this] {
    pthread_setname_np(pthread_self(), "ft-prod-poll");
    while (!poll_stop_.load(std::memory_order_relaxed))
      rd_kafka_poll(rk_.get(), 50);
  }};
  return true;
}

rd_kafka_topic_t* event_producer::topic_handle(const std::string* topic) {
  for (const auto& [name, handle] : topic_handles_)
    if (name == topic)
      return handle;
  auto* handle = rd_kafka_topic_new(rk_.get(), topic->c_str(), nullptr);
  if (handle)
    topic_handles_.emplace_back(topic, handle);
  return handle;
}

void event_producer::drop_topic_handles() {
  for (const auto& [name, handle] : topic_handles_)
    rd_kafka_topic_destroy(handle);
  topic_handles_.clear();
}

void event_producer::close_handle() {
  poll_stop_ = true;
  if (poller_.joinable())
    poller_.join();
  drop_topic_handles();
  kafka_handle old;
  {
    std::unique_lock<std::shared_mutex> lock{handle_mutex_};
    old = std::move(rk_);
  }
  // Messages still queued are dropped with the handle: their items were
  // reported failed already, and no report of this handle comes any more.
  old.reset();
  graveyard_.clear();
}

bool event_producer::init_transactions(std::string& error) {
  // Fences an earlier incarnation of this node (same transactional id) and
  // aborts what it left open.
  auto timeout = static_cast<int>(std::max<int64_t>(opts_.transaction_timeout.count() * 3, 30'000));
  if (auto* e = rd_kafka_init_transactions(rk_.get(), timeout)) {
    error = "cannot initialise Kafka transactions (transactional.id " + opts_.transactional_id +
            "): " + error_text(e);
    return false;
  }
  if (auto* e = rd_kafka_begin_transaction(rk_.get())) {
    error = "cannot begin a Kafka transaction: " + error_text(e);
    return false;
  }
  return true;
}

void event_producer::replace_producer(const std::string& why) {
  replacing_ = true;
  replacements_.fetch_add(1);
  step("replacing the producer");
  spdlog::warn("event=producer_replacing transactional_id={} reason=\"{}\"", opts_.transactional_id,
               why);
  close_handle();
  auto stopping = [this] {
    std::lock_guard<std::mutex> guard{mutex_};
    return stop_;
  };
  std::string error;
  for (int attempt = 1; !stopping(); ++attempt) {
    if (!rk_ && !open_handle(error)) {
      spdlog::error("event=producer_replace_failed attempt={} error=\"{}\"", attempt, error);
    } else {
      // init_transactions resumes where a timed-out attempt stopped.
      auto timeout = static_cast<int>(std::max<int64_t>(opts_.transaction_timeout.count(), 10'000));
      rd_kafka_error_t* e = rd_kafka_init_transactions(rk_.get(), timeout);
      if (!e)
        e = rd_kafka_begin_transaction(rk_.get());
      if (!e) {
        replacing_ = false;
        spdlog::info("event=producer_replaced transactional_id={} attempts={}",
                     opts_.transactional_id, attempt);
        return;
      }
      const bool fatal = rd_kafka_error_is_fatal(e);
      error = error_text(e);
      spdlog::warn("event=producer_init_retry attempt={} fatal={} error=\"{}\"", attempt, fatal,
                   error);
      if (fatal) {
        if (opts_.another_instance && opts_.another_instance(error)) {
          replacing_ = false;
          become_fatal("another process uses this node's id: " + error);
          return;
        }
        close_handle();
      }
    }
    std::unique_lock<std::mutex> lock{mutex_};
    wake_.wait_for(lock, opts_.retry_backoff, [this] { return stop_; });
  }
  // The node is stopping: what is left fails, nothing more is fatal.
  replacing_ = false;
  fatal_ = true;
  fatal_error_ = "the node stopped while the Kafka producer was being replaced (" + why + ")";
}

event_producer::~event_producer() {
  {
    std::lock_guard<std::mutex> guard{mutex_};
    stop_ = true;
  }
  wake_.notify_all();
  if (output_.joinable())
    output_.join();
  drop_topic_handles();  // the messages keep their topics alive
  if (rk_)
    rd_kafka_flush(rk_.get(), 10'000);
  poll_stop_ = true;
  if (poller_.joinable())
    poller_.join();
  if (rk_)
    rd_kafka_poll(rk_.get(), 0);
}

bool event_producer::flush(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock{mutex_};
  if (!drained_.wait_for(lock, timeout, [this] { return pending_ == 0; }))
    return false;
  lock.unlock();
  std::shared_lock<std::shared_mutex> handle{handle_mutex_};
  if (!rk_)
    return false;
  return rd_kafka_flush(rk_.get(), static_cast<int>(timeout.count())) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

void event_producer::publish_aggregates(const runtime::item_outputs& out, const std::string& source,
                                        item& it) {
  auto& msgs = it.messages;
  // One record per parent aggregate: every child's contribution to it.
  std::map<std::string_view, std::vector<const core::contribution*>> by_parent;
  for (const auto& c : out.contributions)
    by_parent[c.parent].push_back(&c);
  for (const auto& [parent, items] : by_parent) {
    auto& m = msgs.emplace_back();
    m.topic = &opts_.topics.aggregate_updates;
    m.key = std::string{parent};
    core::encode_contributions(items, m.value);
    m.headers = content_type(core::contributions_content_type);
  }
  fleettwin::v1::AggregateChange proto;
  for (size_t i = 0; i < out.aggregate_changes.size(); ++i) {
    const auto& h = out.aggregate_changes[i];
    auto& m = msgs.emplace_back();
    m.topic = &opts_.topics.aggregates;
    m.key = h.id;
    grpc_api::to_proto(h, proto);
    if (out.aggregate_origins && i < out.aggregate_origins->size() &&
        (*out.aggregate_origins)[i].first > 0)
      proto.set_oldest_source_ms((*out.aggregate_origins)[i].first);
    proto.SerializeToString(&m.value);
    auto* hd = m.headers = rd_kafka_headers_new(8);
    add_header(hd, "content-type", "application/x-protobuf");
    add_header(hd, "ce_specversion", "1.0");
    add_header(hd, "ce_id", h.id + "/" + std::to_string(h.version));
    add_header(hd, "ce_type", "fleettwin.aggregate.changed.v1");
    add_header(hd, "ce_source", source);
    add_header(hd, "ce_subject", "aggregates/" + h.id);
    add_header(hd, "ce_time", rfc3339(h.updated_ms));
  }
}

void event_producer::publish_alerts(const std::vector<runtime::alert_record>& alerts,
                                    const std::string& source, item& it) {
  fleettwin::v1::AlertEvent proto;
  for (const auto& a : alerts) {
    auto& m = it.messages.emplace_back();
    m.topic = &opts_.topics.alerts;
    m.key = a.asset_id;
    grpc_api::to_proto(a.asset_id, a.twin_kind, a.tenant, a.change, proto);
    proto.SerializeToString(&m.value);
    const auto& name = proto.alert().name();
    auto* hd = m.headers = rd_kafka_headers_new(8);
    add_header(hd, "content-type", "application/x-protobuf");
    add_header(hd, "ce_specversion", "1.0");
    add_header(hd, "ce_id", name + "/" + proto.event() + "/" + std::to_string(a.change.time_ms));
    add_header(hd, "ce_type", "fleettwin.alert." + proto.event() + ".v1");
    add_header(hd, "ce_source", source);
    add_header(hd, "ce_subject", name);
    add_header(hd, "ce_time", rfc3339(a.change.time_ms));
  }
}

void event_producer::publish_audit(const std::vector<runtime::audit_entry>& audit, item& it) {
  for (const auto& e : audit) {
    auto& m = it.messages.emplace_back();
    m.topic = &opts_.topics.audit;
    m.key = audit_key(e);
    encode_audit(e, opts_.node_id, m.value);
    m.headers = content_type("application/x-protobuf");
  }
}

void event_producer::publish(const runtime::item_outputs& out,
                             std::function<void(runtime::publish_result)> done) {
  auto it = std::make_unique<item>();
  it->owner = this;
  it->partition = out.partition;
  it->incarnation = out.incarnation;
  it->next_offset = out.state.next_offset;
  it->input_offsets = out.state.input_offsets;
  it->done = std::move(done);
  auto& msgs = it->messages;
  const size_t change_count = opts_.publish_changes ? out.changes.size() : 0;
  size_t state_count = 0;
  if (opts_.changelog)
    state_count = out.state.twins.size() + out.state.history.size() + (it->next_offset ? 1 : 0) +
                  out.state.aggregates.size() + out.state.members.size() +
                  runtime::follower_input_count + 1;
  msgs.reserve(change_count + state_count + out.rejects.size() + out.contributions.size() +
               out.aggregate_changes.size());

  const std::string source = "fleettwin/" + opts_.node_id;
  // Each change goes to the redacted topic as well while some property is sensitive.
  const auto sensitive = change_count ? with_sensitive(opts_.models.get()) : nullptr;
  if (sensitive)
    msgs.reserve(msgs.capacity() + change_count);
  fleettwin::v1::TwinChange proto;
  int64_t time_ms = -1;
  std::string time_text;
  std::string text;
  for (size_t i = 0; i < change_count; ++i) {
    const auto& c = out.changes[i];
    auto& m = msgs.emplace_back();
    m.topic = &opts_.topics.changes;
    m.key = c.asset_id;
    if (sensitive) {  // the redacted copy below masks the message
      grpc_api::to_proto(c, proto);
      proto.SerializeToString(&m.value);
    } else {
      grpc_api::encode_change(c, m.value);  // the same bytes, no message built
    }
    auto* h = m.headers = rd_kafka_headers_new(8);
    add_header(h, "content-type", "application/x-protobuf");
    add_header(h, "ce_specversion", "1.0");
    text.assign(c.asset_id).push_back('/');  // one buffer for the texts of every change
    char digits[24];
    text.append(digits, std::to_chars(digits, digits + sizeof(digits), c.version).ptr);
    add_header(h, "ce_id", text);
    add_header(h, "ce_type",
               c.type == core::change_type::reported  ? "fleettwin.twin.reported.v1"
               : c.type == core::change_type::desired ? "fleettwin.twin.desired.v1"
                                                      : "fleettwin.twin.erased.v1");
    add_header(h, "ce_source", source);
    text.assign("twins/").append(c.asset_id);
    add_header(h, "ce_subject", text);
    if (c.time_ms != time_ms) {  // a batch's changes share their time: format once
      time_ms = c.time_ms;
      time_text = rfc3339(time_ms);
    }
    add_header(h, "ce_time", time_text);
    if (sensitive) {
      auto& r = msgs.emplace_back();
      r.topic = &opts_.topics.redacted_changes;
      r.key = c.asset_id;
      r.headers = rd_kafka_headers_copy(h);
      grpc_api::redact_all(*sensitive, proto);
      if (proto.redacted_size() == 0)
        r.value = msgs[msgs.size() - 2].value;
      else
        proto.SerializeToString(&r.value);
    }
  }
  if (opts_.changelog) {
    auto changelog = [&](std::string key, const std::string& value, std::string_view type) {
      auto& m = msgs.emplace_back();
      m.topic = &opts_.topics.state;
      m.partition = out.partition;
      m.key = std::move(key);
      m.value = value;
      m.headers = content_type(type);
      m.changelog = true;
    };
    for (const auto& [id, bytes] : out.state.twins)
      changelog(id, bytes, "application/vnd.fleettwin.twin-state.v1");
    for (const auto& h : out.state.history) {
      std::string key = h.asset_id;
      key.push_back('\0');
      key += be64(h.slot).substr(4);
      changelog(std::move(key), h.segment, "application/vnd.fleettwin.history-segment.v1");
    }
    if (it->next_offset)
      changelog(std::string{changelog_checkpoint_key}, be64(*it->next_offset),
                "application/vnd.fleettwin.input-offset.v1");
    for (const auto& [id, bytes] : out.state.aggregates)
      changelog(storage::changelog_aggregate_marker + id, bytes,
                "application/vnd.fleettwin.aggregate.v1");
    for (const auto& w : out.state.members) {
      std::string key = storage::changelog_member_marker + w.aggregate_id;
      key.push_back('\0');
      key += w.member_id;
      // An empty value is a tombstone: compaction forgets the member.
      changelog(std::move(key), w.entry, "application/vnd.fleettwin.aggregate-member.v1");
    }
    for (size_t slot = 0; slot < it->input_offsets.size(); ++slot)
      if (const auto& o = it->input_offsets[slot])
        changelog(std::string{storage::changelog_input_keys[slot]}, be64(*o),
                  "application/vnd.fleettwin.input-offset.v1");
    if (const auto& o = it->input_offsets[runtime::follower_slot(runtime::input::contributions)])
      changelog(std::string{storage::changelog_applied_key},
                be64(std::max(*o, out.state.contributions_applied.value_or(*o))),
                "application/vnd.fleettwin.input-offset.v1");
  }
  publish_aggregates(out, source, *it);
  if (out.alerts)
    publish_alerts(*out.alerts, source, *it);
  if (out.audit)
    publish_audit(*out.audit, *it);
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  for (const auto& r : out.rejects) {
    auto& m = msgs.emplace_back();
    m.topic = &opts_.topics.dlq;
    m.key = r.record.key;
    auto* h = m.headers = rd_kafka_headers_new(10);
    std::string_view value = r.record.payload;
    if (value.size() > opts_.dlq_max_payload) {
      add_header(h, "fleettwin-dlq-truncated-from", std::to_string(value.size()));
      value = value.substr(0, opts_.dlq_max_payload);
    }
    m.value = value;
    if (!r.record.content_type.empty())
      add_header(h, "content-type", r.record.content_type);
    add_header(h, "fleettwin-dlq-reason", r.reason);
    add_header(h, "fleettwin-dlq-code", r.code);
    add_header(h, "fleettwin-dlq-topic", input_topic(r.source));
    add_header(h, "fleettwin-dlq-partition", std::to_string(out.partition));
    add_header(h, "fleettwin-dlq-offset", std::to_string(r.record.offset));
    add_header(h, "fleettwin-dlq-time", rfc3339(now_ms));
  }
  {
    std::lock_guard<std::mutex> guard{mutex_};
    ++pending_;
    queue_.push_back(std::move(it));
  }
  wake_.notify_one();
}

void event_producer::produce_item(item& it) {
  it.remaining = it.messages.size() + (transactional() ? 0 : 1);
  for (auto& m : it.messages) {
    if (fatal_) {
      it.fail(fatal_error_);
      it.remaining.fetch_sub(1);
      continue;
    }
    auto* topic = topic_handle(m.topic);
    if (!topic) {
      it.fail("producing to " + *m.topic + ": " + rd_kafka_err2str(rd_kafka_last_error()));
      it.remaining.fetch_sub(1);
      continue;
    }
    for (;;) {
      auto err = rd_kafka_producev(
          rk_.get(), RD_KAFKA_V_RKT(topic), RD_KAFKA_V_PARTITION(m.partition),
          RD_KAFKA_V_KEY(m.key.data(), m.key.size()),
          RD_KAFKA_V_VALUE(m.value.empty() ? nullptr : m.value.data(), m.value.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(m.headers),
          RD_KAFKA_V_OPAQUE(opaque_of(&it, m.changelog)), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        m.headers = nullptr;  // librdkafka owns them now
        break;
      }
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        // Backpressure on this thread only (never an actor's): serve
        // delivery reports until the queue has room.
        rd_kafka_poll(rk_.get(), 10);
        continue;
      }
      it.fail(std::string{"producing to "} + *m.topic + ": " + rd_kafka_err2str(err));
      it.remaining.fetch_sub(1);
      break;
    }
  }
  // The keys and values were copied; keep only what reports need.
  it.messages.clear();
  it.messages.shrink_to_fit();
}

void event_producer::finish(std::vector<std::unique_ptr<item>>& items, bool ok,
                            const std::string& error) {
  // Delivery reports of a committed transaction are served by the flush it
  // includes; wait for stragglers before the items go away.
  step("waiting for delivery reports");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{30};
  for (auto& it : items)
    while (it->remaining.load() > 0 && std::chrono::steady_clock::now() < deadline)
      rd_kafka_poll(rk_.get(), 10);
  for (auto& it : items) {
    if (!ok)
      it->fail(error);
    it->done(it->result());
  }
  release(items);
  items.clear();
}

void event_producer::release(const std::vector<std::unique_ptr<item>>& reported) {
  std::lock_guard<std::mutex> guard{mutex_};
  pending_ -= reported.size();
  if (pending_ == 0)
    drained_.notify_all();
}

void event_producer::fail_now(std::vector<std::unique_ptr<item>>& items, const std::string& error) {
  for (auto& it : items) {
    it->fail(error);
    it->done(it->result());
  }
  release(items);
  for (auto& it : items)
    graveyard_.push_back(std::move(it));
  items.clear();
}

void event_producer::bury_settled() {
  std::erase_if(graveyard_, [](const auto& it) { return it->remaining.load() == 0; });
}

void event_producer::become_fatal(const std::string& why) {
  if (fatal_)
    return;
  fatal_ = true;
  failed_ = true;
  fatal_error_ = why;
  spdlog::critical("event=producer_fatal transactional_id={} error=\"{}\"", opts_.transactional_id,
                   why);
  if (opts_.on_fatal)
    opts_.on_fatal(why);
}

bool event_producer::abort_transaction(std::string& failure) {
  const int timeout = static_cast<int>(opts_.transaction_timeout.count());
  for (int attempt = 1;; ++attempt) {
    auto* a = rd_kafka_abort_transaction(rk_.get(), timeout);
    if (!a)
      return true;
    const bool retriable = rd_kafka_error_is_retriable(a) && !rd_kafka_error_is_fatal(a);
    auto text = error_text(a);
    {
      std::lock_guard<std::mutex> guard{mutex_};
      if (stop_ || !retriable) {
        failure += "; abort failed: " + text;
        return false;
      }
    }
    // The broker is away: keep the transaction until it can be aborted (or
    // the broker aborts it and fences this producer, which is replaced).
    spdlog::warn("event=transaction_abort_retry attempt={} error=\"{}\"", attempt, text);
  }
}

void event_producer::abandon(int32_t partition, uint64_t incarnation) {
  if (!transactional() || incarnation == 0)
    return;
  std::lock_guard<std::mutex> guard{mutex_};
  abandoned_.emplace_back(partition, incarnation);
  wake_.notify_one();
}

std::string event_producer::abandoned_in_transaction() {
  std::lock_guard<std::mutex> guard{mutex_};
  for (auto [partition, incarnation] : abandoned_)
    for (const auto& it : in_transaction_)
      if (it->partition == partition && it->incarnation == incarnation)
        return "partition " + std::to_string(partition) +
               " abandoned work in this transaction while it was flushed (dropped or failed)";
  return {};
}

void event_producer::commit_transaction() {
  const int timeout = static_cast<int>(opts_.transaction_timeout.count());
  const auto began = std::chrono::steady_clock::now();
  std::string failure = std::exchange(abort_open_, std::string{});
  for (auto& it : in_transaction_) {
    std::lock_guard<std::mutex> guard{it->mutex};
    if (!it->error.empty()) {
      failure = it->error;
      break;
    }
  }
  rd_kafka_error_t* e = nullptr;
  std::map<int32_t, std::pair<int64_t, int64_t>> offsets;  // input, changelog
  if (failure.empty() && !fatal_) {
    // Every record delivered first, so that the changelog positions are
    // known: they are committed as the input offsets' metadata, which tells
    // a restore how far the committed state reaches.
    step("flushing the transaction's records");
    if (auto err = rd_kafka_flush(rk_.get(), timeout); err != RD_KAFKA_RESP_ERR_NO_ERROR)
      failure = std::string{"flushing the transaction: "} + rd_kafka_err2str(err);
    // The input offsets of every item, per partition: the furthest wins.
    for (auto& it : in_transaction_)
      if (it->next_offset) {
        auto& [input, changelog] = offsets.try_emplace(it->partition, -1, -1).first->second;
        input = std::max(input, *it->next_offset);
        changelog = std::max(changelog, it->changelog_last.load() + 1);
      }
    for (auto& it : in_transaction_) {
      std::lock_guard<std::mutex> guard{it->mutex};
      if (!it->error.empty() && failure.empty())
        failure = it->error;
    }
    // Committed offsets never go backwards: a lower one would replay
    // records into twins that already applied them.
    for (auto& [p, o] : offsets)
      if (auto it = committed_offsets_.find(p);
          it != committed_offsets_.end() && o.first < it->second && failure.empty()) {
        offset_regressions_.fetch_add(1);
        failure = "input offset " + std::to_string(o.first) + " of partition " + std::to_string(p) +
                  " is below the committed " + std::to_string(it->second);
        spdlog::error("event=offset_regression partition={} offset={} committed={}", p, o.first,
                      it->second);
      }
    // The follower inputs commit with the telemetry input.
    std::map<std::pair<size_t, int32_t>, int64_t> input_offsets;
    for (auto& it : in_transaction_)
      for (size_t slot = 0; slot < it->input_offsets.size(); ++slot)
        if (const auto& next = it->input_offsets[slot]) {
          auto& o = input_offsets.try_emplace({slot, it->partition}, -1).first->second;
          o = std::max(o, *next);
        }
    if ((!offsets.empty() || !input_offsets.empty()) && failure.empty()) {
      auto* list = rd_kafka_topic_partition_list_new(
          static_cast<int>(offsets.size() + input_offsets.size()));
      for (auto& [at, o] : input_offsets)
        rd_kafka_topic_partition_list_add(
            list, input_topic(runtime::follower_inputs[at.first]).c_str(), at.second)
            ->offset = o;
      for (auto& [p, o] : offsets) {
        auto* tp = rd_kafka_topic_partition_list_add(list, opts_.topics.telemetry.c_str(), p);
        tp->offset = o.first;
        if (o.second > 0) {
          // Freed with the list.
          auto meta = changelog_metadata(o.second);
          tp->metadata = std::malloc(meta.size());
          std::memcpy(tp->metadata, meta.data(), meta.size());
          tp->metadata_size = meta.size();
        }
      }
      step("asking the consumer for its group metadata");
      auto* cgmd = opts_.group_metadata ? opts_.group_metadata() : nullptr;
      if (!cgmd) {
        failure = "no consumer group metadata to commit input offsets with";
      } else {
        // Asked after the group metadata: a partition lost before this
        // point was abandoned (the consumer drops it in its rebalance
        // callback, before it can join a new generation); one lost after
        // it leaves metadata of the generation the broker no longer takes.
        // Either way the dropped work cannot commit with a later
        // generation's metadata behind its next owner's restore.
        failure = abandoned_in_transaction();
        if (failure.empty()) {
          step("sending the input offsets to the transaction");
          e = rd_kafka_send_offsets_to_transaction(rk_.get(), list, cgmd, timeout);
        }
        rd_kafka_consumer_group_metadata_destroy(cgmd);
      }
      rd_kafka_topic_partition_list_destroy(list);
    } else if (failure.empty()) {
      failure = abandoned_in_transaction();
    }
    if (!e && failure.empty()) {
      step("committing the transaction");
      e = rd_kafka_commit_transaction(rk_.get(), timeout);
    }
  } else if (fatal_) {
    failure = fatal_error_;
  }
  if (!e && failure.empty()) {
    commits_.fetch_add(1);
    commit_micros_.fetch_add(
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                  std::chrono::steady_clock::now() - began)
                                  .count()));
    {
      std::lock_guard<std::mutex> guard{committed_mutex_};
      for (auto& [p, o] : offsets) {
        auto& c = committed_offsets_[p];
        c = std::max(c, o.first);
      }
    }
    finish(in_transaction_, true, {});
  } else {
    bool fatal = fatal_;
    if (e) {
      fatal = fatal || rd_kafka_error_is_fatal(e) || !rd_kafka_error_txn_requires_abort(e);
      failure = rd_kafka_error_string(e);
      rd_kafka_error_destroy(e);
    }
    spdlog::error("event=transaction_failed error=\"{}\" fatal={}", failure, fatal);
    aborts_.fetch_add(1);
    // The items' partitions are revived from committed state right away;
    // what follows only settles this producer. Their partition actors may
    // have handed over later items already, built on these: refused.
    for (const auto& it : in_transaction_)
      if (it->incarnation != 0)
        failed_incarnations_[it->partition] = it->incarnation;
    fail_now(in_transaction_, "transaction aborted: " + failure);
    step("aborting the transaction");
    if (!fatal_ && !fatal && !abort_transaction(failure))
      fatal = true;
    if (fatal && !fatal_) {
      if (opts_.another_instance && opts_.another_instance(failure))
        become_fatal("another process uses this node's id: " + failure);
      else
        replace_producer(failure);
      return;  // a replacement began its first transaction
    }
  }
  if (!fatal_) {
    if (auto* b = rd_kafka_begin_transaction(rk_.get())) {
      auto text = error_text(b);
      if (opts_.another_instance && opts_.another_instance(text))
        become_fatal("another process uses this node's id: " + text);
      else
        replace_producer("cannot begin a Kafka transaction: " + text);
    }
  }
}

void event_producer::run() {
  pthread_setname_np(pthread_self(), "ft-producer");  // top -H, perf
  std::unique_lock<std::mutex> lock{mutex_};
  for (;;) {
    if (queue_.empty() && abandoned_.empty() && !stop_) {
      step(in_transaction_.empty() ? "waiting for outputs" : "collecting the transaction");
      if (in_transaction_.empty())
        wake_.wait(lock, [this] { return !queue_.empty() || !abandoned_.empty() || stop_; });
      else
        wake_.wait_until(lock, transaction_started_ + opts_.commit_interval,
                         [this] { return !queue_.empty() || !abandoned_.empty() || stop_; });
    }
    step("producing");
    auto batch = std::move(queue_);
    queue_.clear();
    if (!forgotten_.empty()) {
      std::lock_guard<std::mutex> guard{committed_mutex_};
      for (auto p : forgotten_)
        committed_offsets_.erase(p);
    }
    forgotten_.clear();
    auto abandoned = std::move(abandoned_);
    abandoned_.clear();
    const bool stopping = stop_;
    lock.unlock();
    for (auto [partition, incarnation] : abandoned) {
      failed_incarnations_[partition] = incarnation;
      for (const auto& it : in_transaction_)
        if (it->partition == partition && it->incarnation == incarnation && abort_open_.empty())
          abort_open_ = "partition " + std::to_string(partition) +
                        " abandoned work in this transaction (dropped or failed)";
    }
    for (auto& it : batch) {
      if (transactional() && it->incarnation != 0) {
        if (auto f = failed_incarnations_.find(it->partition);
            f != failed_incarnations_.end() && f->second == it->incarnation) {
          std::vector<std::unique_ptr<item>> refused;
          refused.push_back(std::move(it));
          finish(refused, false,
                 "an earlier work item of partition " + std::to_string(refused.front()->partition) +
                     " failed in its transaction; this one built on it");
          continue;
        }
      }
      if (transactional())
        transaction_messages_ += it->messages.size();
      produce_item(*it);
      if (transactional()) {
        if (in_transaction_.empty())
          transaction_started_ = std::chrono::steady_clock::now();
        in_transaction_.push_back(std::move(it));
      } else {
        // The hold taken in produce_item: the last delivery report (or this
        // release) completes and deletes the item.
        settle(it.release());
      }
    }
    // A backlog commits by size too, so that no transaction grows without
    // bound while the output thread catches up.
    if (!in_transaction_.empty() &&
        (stopping || !abort_open_.empty() || transaction_messages_ >= max_transaction_messages ||
         std::chrono::steady_clock::now() >= transaction_started_ + opts_.commit_interval)) {
      commit_transaction();
      transaction_messages_ = 0;
    }
    bury_settled();
    lock.lock();
    if (stopping && queue_.empty() && in_transaction_.empty())
      return;
  }
}

}  // namespace fleettwin::kafka

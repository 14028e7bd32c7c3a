// Partition and asset actors on CAF's deterministic scheduler: every step is
// driven explicitly, no threads, no sleeps.

#include "actors/runtime/partition_actor.hpp"

#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include "actors/core/codec.hpp"

using namespace fleettwin;
using namespace fleettwin::runtime;

namespace {

/// Records every commit; state lives in maps like RocksDB would keep it.
struct fake_store final : twin_store {
  std::map<std::pair<int32_t, std::string>, std::string> twins;
  std::map<std::pair<int32_t, std::string>, std::string> aggregates;
  std::map<std::tuple<int32_t, std::string, std::string>, std::string> members;
  std::map<int32_t, int64_t> offsets;
  std::map<int32_t, int64_t> contribution_offsets;
  std::map<int32_t, int64_t> contributions_applied;
  std::vector<commit_batch> commits;
  std::optional<std::string> fail_next;
  /// Entities asked for by each load_many, and reads outside of one (the partition
  /// actor reading on its own thread: none expected).
  std::vector<size_t> batched_loads;
  size_t direct_loads = 0;
  bool in_load_many = false;

  void load_many(load_request& r) override {
    batched_loads.push_back(r.entities.size());
    in_load_many = true;
    twin_store::load_many(r);
    in_load_many = false;
  }
  load_status load_twin(int32_t p, std::string_view id, core::twin& out,
                        std::string& error) override {
    direct_loads += in_load_many ? 0 : 1;
    auto it = twins.find({p, std::string{id}});
    if (it == twins.end())
      return load_status::missing;
    if (auto err = core::decode_twin(it->second, out)) {
      error = *err;
      return load_status::failed;
    }
    return load_status::found;
  }
  std::optional<std::string> commit(const commit_batch& b) override {
    if (fail_next)
      return std::exchange(fail_next, std::nullopt);
    for (const auto& [id, bytes] : b.twins)
      twins[{b.partition, id}] = bytes;
    for (const auto& [id, bytes] : b.aggregates)
      aggregates[{b.partition, id}] = bytes;
    for (const auto& m : b.members) {
      if (m.entry.empty())
        members.erase({b.partition, m.aggregate_id, m.member_id});
      else
        members[{b.partition, m.aggregate_id, m.member_id}] = m.entry;
    }
    if (b.next_offset)
      offsets[b.partition] = *b.next_offset;
    if (const auto& o = b.input_offsets[follower_slot(input::contributions)]) {
      contribution_offsets[b.partition] = *o;
      contributions_applied[b.partition] = std::max(*o, b.contributions_applied.value_or(*o));
    }
    commits.push_back(b);
    return std::nullopt;
  }
  std::optional<int64_t> load_offset(int32_t p) override {
    auto it = offsets.find(p);
    return it == offsets.end() ? std::nullopt : std::optional<int64_t>{it->second};
  }
  std::optional<int64_t> load_contributions_applied(int32_t p) override {
    auto it = contributions_applied.find(p);
    return it == contributions_applied.end() ? std::nullopt : std::optional<int64_t>{it->second};
  }
  std::optional<int64_t> load_input_offset(int32_t p, input in) override {
    if (in != input::contributions)
      return std::nullopt;
    auto it = contribution_offsets.find(p);
    return it == contribution_offsets.end() ? std::nullopt : std::optional<int64_t>{it->second};
  }
  load_status load_aggregate(int32_t p, std::string_view id, stored_aggregate& out,
                             std::string& error) override {
    direct_loads += in_load_many ? 0 : 1;
    auto it = aggregates.find({p, std::string{id}});
    if (it == aggregates.end())
      return load_status::missing;
    out = stored_aggregate{};
    if (auto err = core::decode_aggregate_header(it->second, out.header)) {
      error = *err;
      return load_status::failed;
    }
    for (const auto& [key, bytes] : members)
      if (std::get<0>(key) == p && std::get<1>(key) == id) {
        core::member_entry e;
        if (auto err = core::decode_member_entry(bytes, e)) {
          error = *err;
          return load_status::failed;
        }
        out.members.emplace_back(std::get<2>(key), std::move(e));
      }
    return load_status::found;
  }
  core::aggregate_header header(const std::string& id) {
    core::aggregate_header h;
    auto it = aggregates.find({0, id});
    if (it != aggregates.end()) {
      EXPECT_FALSE(core::decode_aggregate_header(it->second, h));
    }
    return h;
  }
};

/// Holds delivery callbacks until the test releases them.
struct fake_sink final : event_sink {
  struct call {
    std::vector<core::twin_change> changes;
    std::vector<rejected_record> rejects;
    size_t twins = 0;
    std::optional<int64_t> next_offset;
    std::function<void(publish_result)> delivered;
    std::vector<core::contribution> contributions;
    std::vector<core::aggregate_header> aggregate_changes;
  };
  std::vector<call> calls;
  /// Changelog position reported with each delivery (none when negative).
  int64_t changelog_next = -1;
  void publish(const item_outputs& out, std::function<void(publish_result)> delivered) override {
    calls.push_back({out.changes, out.rejects, out.state.twins.size(), out.state.next_offset,
                     std::move(delivered), out.contributions, out.aggregate_changes});
  }
  /// Partitions whose actor fenced its unreported items.
  std::vector<int32_t> abandoned;
  void abandon(int32_t partition, uint64_t) override {
    abandoned.push_back(partition);
  }
};

/// Payload "seq,ts,name=value;name=value" (values are doubles); "bad" fails.
struct text_decoder final : telemetry_decoder {
  std::optional<std::pair<std::string, std::string>> decode(const raw_record& r,
                                                            core::telemetry& out) override {
    out = core::telemetry{};
    if (r.payload == "bad")
      return std::pair<std::string, std::string>{"malformed", "payload says bad"};
    out.asset_id = std::string{r.key};
    std::string p{r.payload};
    auto c1 = p.find(',');
    auto c2 = p.find(',', c1 + 1);
    out.sequence = std::stoull(p.substr(0, c1));
    out.source_time_ms = std::stoll(p.substr(c1 + 1, c2 - c1 - 1));
    std::istringstream metrics{p.substr(c2 + 1)};
    std::string kv;
    while (std::getline(metrics, kv, ';')) {
      auto eq = kv.find('=');
      if (kv.starts_with("a:"))  // an attribute
        out.attributes.emplace_back(kv.substr(2, eq - 2), kv.substr(eq + 1));
      else
        out.metrics.emplace_back(kv.substr(0, eq), std::stod(kv.substr(eq + 1)));
    }
    return std::nullopt;
  }
};

struct listener final : change_listener {
  std::vector<core::twin_change> seen;
  bool wants_snapshots() const override {
    return false;
  }
  void on_changes(const std::vector<core::twin_change>& changes,
                  const std::vector<std::shared_ptr<const core::twin>>&) override {
    seen.insert(seen.end(), changes.begin(), changes.end());
  }
};

struct PartitionActorTest : ::testing::Test {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  std::shared_ptr<fake_store> store = std::make_shared<fake_store>();
  std::shared_ptr<fake_sink> sink = std::make_shared<fake_sink>();
  std::shared_ptr<listener> watch = std::make_shared<listener>();
  std::shared_ptr<twin_cache> cache = std::make_shared<twin_cache>();
  int64_t now = 1'000'000;
  std::vector<std::pair<int32_t, int64_t>> acks;
  std::vector<std::pair<int32_t, int64_t>> contribution_acks;
  std::vector<std::string> fatal;
  partition_actor part;
  // Keeps raw payloads alive for the views of raw_record.
  std::vector<std::shared_ptr<std::vector<std::string>>> payloads;

  PartitionActorTest() {
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.set("logger.verbosity", caf::atom("quiet"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
  }

  ~PartitionActorTest() override {
    caf::anon_send_exit(part, caf::exit_reason::user_shutdown);
    sched->run();
    EXPECT_EQ(store->direct_loads, 0u)
        << "a twin or aggregate was read from the store on the partition actor's thread";
  }

  std::shared_ptr<partition_gauges> gauges = std::make_shared<partition_gauges>();

  std::shared_ptr<kinds_holder> kinds;
  /// Aggregates checkpoint their members this often (unset: with every commit).
  std::optional<std::chrono::milliseconds> member_checkpoint;

  /// Items behind items in flight start at once when this many records are
  /// queued; otherwise when the linger fires (sched->trigger_timeouts()).
  size_t min_item_records = 1000;

  size_t max_in_flight = 8;  // the pipeline (the node's default is 1)

  /// partition_config::behind_records.
  size_t behind_records = 2000;

  /// asset_config::merge_changes (the node's default: one change per twin per item).
  bool merge_changes = true;

  /// The partition's status, as a status query gets it.
  partition_info status() {
    auto info = std::make_shared<partition_info>();
    caf::anon_send(
        part, status_atom::value,
        partition_info_completion{[info](partition_info i) { *info = i; }, partition_info{-1}});
    sched->run();
    return *info;
  }

  void spawn_partition(size_t max_active = 1000, uint64_t epoch = 0, bool read_committed = false) {
    partition_config pc;
    pc.min_item_records = min_item_records;
    pc.behind_records = behind_records;
    pc.max_items_in_flight = max_in_flight;
    pc.item_linger = std::chrono::hours{1};
    pc.partition = 0;
    pc.epoch = epoch;
    pc.read_committed = read_committed;
    pc.gauges = gauges;
    pc.max_read_wait = std::chrono::milliseconds{2000};
    auto acfg = std::make_shared<asset_config>();
    acfg->history_capacity = 4;
    acfg->clock = [this] { return now; };
    acfg->cache = cache;
    acfg->kinds = kinds;
    acfg->merge_changes = merge_changes;
    if (member_checkpoint) {
      acfg->checkpoint_members = true;
      pc.member_checkpoint_interval = *member_checkpoint;
    }
    pc.assets = acfg;
    pc.store = store;
    pc.detached_committer = false;
    pc.sink = sink;
    pc.listener = watch;
    pc.make_decoder = [] { return std::make_unique<text_decoder>(); };
    pc.passivate_after = std::chrono::milliseconds{1000};
    pc.tick_interval = std::chrono::milliseconds{500};
    pc.max_active_twins = max_active;
    pc.on_committed = [this](int32_t p, input source, int64_t next, size_t,
                             std::optional<int64_t>) {
      if (source == input::telemetry)
        acks.emplace_back(p, next);
      else
        contribution_acks.emplace_back(p, next);
    };
    pc.on_fatal = [this](std::string why, bool) { fatal.push_back(std::move(why)); };
    part = sys->spawn(partition, std::move(pc));
    sched->run();
  }

  /// A batch of (key, payload) records starting at `offset`.
  raw_batch_ptr batch(int64_t offset, std::vector<std::pair<std::string, std::string>> recs) {
    auto keep = std::make_shared<std::vector<std::string>>();
    for (auto& [k, v] : recs) {
      keep->push_back(k);
      keep->push_back(v);
    }
    auto b = std::make_shared<raw_batch>();
    b->partition = 0;
    for (size_t i = 0; i < recs.size(); ++i)
      b->records.push_back(raw_record{(*keep)[2 * i], (*keep)[2 * i + 1], "", offset + int64_t(i)});
    b->next_offset = offset + static_cast<int64_t>(recs.size());
    b->owner = keep;
    return b;
  }

  void deliver_all(bool ok = true) {
    for (auto& c : sink->calls)
      if (c.delivered) {
        publish_result r{ok, ok ? "" : "broker down", {}};
        if (ok && sink->changelog_next >= 0)
          r.changelog_offset = sink->changelog_next;
        std::exchange(c.delivered, nullptr)(std::move(r));
      }
    sched->run();
  }

  twin_reply get(const std::string& id) {
    auto reply = std::make_shared<twin_reply>();
    reply->message = "unanswered";
    caf::anon_send(part, get_atom::value, id,
                   twin_completion{[reply](twin_reply r) { *reply = std::move(r); },
                                   twin_reply{query_error::unavailable, "dropped", {}}});
    sched->run();
    return *reply;
  }
};

}  // namespace

TEST_F(PartitionActorTest, BatchCommitsStateAndOffsetAfterOutputsAreAcknowledged) {
  spawn_partition();
  caf::anon_send(part, batch_atom::value,
                 batch(10, {{"a", "1,100,x=1"}, {"b", "1,100,x=2"}, {"a", "2,200,x=3;y=4"}}));
  sched->run();
  // Outputs published, nothing committed until Kafka acknowledges them; one
  // change per twin (a's two records merged).
  ASSERT_EQ(sink->calls.size(), 1u);
  EXPECT_EQ(sink->calls[0].changes.size(), 2u);
  EXPECT_TRUE(store->commits.empty());
  EXPECT_TRUE(acks.empty());
  deliver_all();
  ASSERT_EQ(store->commits.size(), 1u);
  const auto& c = store->commits[0];
  EXPECT_EQ(c.next_offset, 13);
  EXPECT_EQ(c.twins.size(), 2u);
  // Too small to close: each twin's samples travel in its state record (a: x, x, y; b: x).
  EXPECT_TRUE(c.history.empty());
  core::twin stored_a;
  for (const auto& [id, bytes] : c.twins)
    if (id == "a")
      ASSERT_FALSE(core::decode_twin(bytes, stored_a));
  size_t open_samples = 0;
  EXPECT_FALSE(core::decode_history_segment(
      stored_a.open_history, [&](std::string_view, core::history_point&) { ++open_samples; }));
  EXPECT_EQ(open_samples, 3u);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0], std::make_pair(0, int64_t{13}));
  EXPECT_EQ(watch->seen.size(), 2u);
  auto a = get("a");
  ASSERT_EQ(a.error, query_error::none) << a.message;
  EXPECT_EQ(a.twin->version, 2u);
  EXPECT_EQ(std::get<double>(a.twin->reported.at("y").val), 4.0);
}

TEST_F(PartitionActorTest, AnItemsChangesOfATwinAreMergedIntoOne) {
  spawn_partition();
  // a: three records, the second setting y, the third an older x (not applied: x
  // keeps 5), then one only late (nothing applied); b: one record.
  caf::anon_send(part, batch_atom::value,
                 batch(0, {{"a", "1,100,x=1"},
                           {"b", "1,100,z=9"},
                           {"a", "2,300,x=5;y=2"},
                           {"a", "3,200,x=7;w=1"},
                           {"a", "4,50,x=8"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 1u);
  const auto& changes = sink->calls[0].changes;
  ASSERT_EQ(changes.size(), 2u);
  const auto& a = changes[0].asset_id == "a" ? changes[0] : changes[1];
  const auto& b = changes[0].asset_id == "a" ? changes[1] : changes[0];
  EXPECT_EQ(a.type, core::change_type::reported);
  EXPECT_EQ(a.first_version, 1u);
  EXPECT_EQ(a.version, 3u) << "three records changed a (the fourth is older than every sample)";
  EXPECT_EQ(a.sequence, 3u) << "the last applied record's";
  // Every property the records set, once, in name order, as it is after the item.
  ASSERT_EQ(a.reported.size(), 3u);
  EXPECT_EQ(a.reported[0].first, "w");
  EXPECT_EQ(a.reported[1].first, "x");
  EXPECT_EQ(std::get<double>(a.reported[1].second.val), 5.0) << "x of time 300, not 200 or 50";
  EXPECT_EQ(a.reported[1].second.source_time_ms, 300);
  EXPECT_EQ(a.reported[1].second.sequence, 2u);
  EXPECT_EQ(a.reported[2].first, "y");
  EXPECT_EQ(b.first_version, 1u);
  EXPECT_EQ(b.version, 1u);
  ASSERT_EQ(b.reported.size(), 1u);
  deliver_all();
  ASSERT_EQ(watch->seen.size(), 2u) << "watchers get the merged changes too";
  auto twin = get("a");
  ASSERT_EQ(twin.error, query_error::none) << twin.message;
  EXPECT_EQ(twin.twin->version, a.version);
  EXPECT_EQ(twin.twin->applied_records, 3u);
  // The next item starts a new change at the next version.
  caf::anon_send(part, batch_atom::value, batch(5, {{"a", "5,400,y=3"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 2u);
  ASSERT_EQ(sink->calls[1].changes.size(), 1u);
  EXPECT_EQ(sink->calls[1].changes[0].first_version, 4u);
  EXPECT_EQ(sink->calls[1].changes[0].version, 4u);
}

TEST_F(PartitionActorTest, WithChangeEventsEachEveryRecordIsItsOwnChange) {
  merge_changes = false;
  spawn_partition();
  caf::anon_send(part, batch_atom::value,
                 batch(0, {{"a", "1,100,x=1"}, {"a", "2,300,x=5;y=2"}, {"a", "3,200,x=7;w=1"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 1u);
  const auto& changes = sink->calls[0].changes;
  ASSERT_EQ(changes.size(), 3u);
  for (uint64_t v = 1; v <= 3; ++v) {
    EXPECT_EQ(changes[v - 1].version, v);
    EXPECT_EQ(changes[v - 1].first_version, v);
    EXPECT_EQ(changes[v - 1].sequence, v);
  }
  ASSERT_EQ(changes[2].reported.size(), 1u) << "x of time 200 is older than x of time 300";
  EXPECT_EQ(changes[2].reported[0].first, "w");
}

TEST_F(PartitionActorTest, AHotTwinsHistoryIsSplitIntoSegmentsABrokerAccepts) {
  spawn_partition();
  // 30,000 records for one twin in one item, each with a long property name: one
  // segment would be about 1.5 MB, more than a broker takes by default (1 MiB).
  const std::string name(40, 'p');
  std::vector<std::pair<std::string, std::string>> recs;
  for (int i = 1; i <= 30'000; ++i)
    recs.emplace_back(
        "hot", std::to_string(i) + "," + std::to_string(i) + "," + name + "=" + std::to_string(i));
  caf::anon_send(part, batch_atom::value, batch(0, std::move(recs)));
  sched->run();
  deliver_all();
  ASSERT_EQ(store->commits.size(), 1u);
  const auto& history = store->commits[0].history;
  ASSERT_GE(history.size(), 4u);
  size_t samples = 0;
  int64_t last_time = 0;
  for (const auto& h : history) {
    EXPECT_LE(h.segment.size(), 300'000u);
    EXPECT_FALSE(
        core::decode_history_segment(h.segment, [&](std::string_view, core::history_point& p) {
          EXPECT_GT(p.source_time_ms, last_time);  // in order, none twice
          last_time = p.source_time_ms;
          ++samples;
        }));
  }
  EXPECT_EQ(samples, 30'000u);
  // Each segment its own ring slot, the next after the last.
  EXPECT_EQ(get("hot").twin->history_segments, history.size());
}

TEST_F(PartitionActorTest, ASlowTwinsHistoryGathersAcrossItemsAndClosesIntoOneSegment) {
  spawn_partition();
  // One record per item, as a twin reporting once a second gets: its samples stay in
  // its state record until they make a segment worth its own ring slot.
  size_t closed_at = 0;
  for (int i = 1; i <= 500 && closed_at == 0; ++i) {
    caf::anon_send(part, batch_atom::value,
                   batch(i - 1, {{"slow", std::to_string(i) + "," + std::to_string(i * 1000) +
                                              ",temp=" + std::to_string(i)}}));
    sched->run();
    deliver_all();
    ASSERT_EQ(store->commits.size(), static_cast<size_t>(i));
    const auto& c = store->commits.back();
    ASSERT_EQ(c.twins.size(), 1u);
    if (!c.history.empty())
      closed_at = static_cast<size_t>(i);
  }
  ASSERT_GT(closed_at, 10u);  // not one history record per item
  const auto& c = store->commits.back();
  ASSERT_EQ(c.history.size(), 1u);
  int64_t last_time = 0;
  size_t samples = 0;
  EXPECT_FALSE(core::decode_history_segment(
      c.history[0].segment, [&](std::string_view, core::history_point& p) {
        EXPECT_GT(p.source_time_ms, last_time);  // in order, none lost or twice
        last_time = p.source_time_ms;
        ++samples;
      }));
  EXPECT_EQ(samples, closed_at);
  EXPECT_EQ(last_time, static_cast<int64_t>(closed_at) * 1000);
  core::twin stored;
  ASSERT_FALSE(core::decode_twin(c.twins[0].second, stored));
  EXPECT_TRUE(stored.open_history.empty());
  EXPECT_EQ(stored.history_segments, 1u);
  EXPECT_EQ(c.history[0].slot, core::history_slot(1, 4));
}

TEST_F(PartitionActorTest, BatchesAreProcessedOneAtATimeInOrder) {
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  caf::anon_send(part, batch_atom::value, batch(1, {{"a", "2,200,x=2"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 1u);  // the second waits for the first commit
  deliver_all();
  ASSERT_EQ(sink->calls.size(), 2u);
  deliver_all();
  ASSERT_EQ(store->commits.size(), 2u);
  EXPECT_EQ(store->offsets[0], 2);
  core::twin tw;
  ASSERT_FALSE(core::decode_twin(store->twins[{0, "a"}], tw));
  EXPECT_EQ(tw.version, 2u);
}

TEST_F(PartitionActorTest, ItemsApplyWhileEarlierOnesAwaitKafkaAndCommitInOrder) {
  // A partition applies its next item while the one before waits for its
  // Kafka transaction; the store follows in item order, in one write for
  // the items delivered together.
  min_item_records = 1;
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  caf::anon_send(part, batch_atom::value, batch(1, {{"a", "2,200,x=2"}, {"b", "1,100,x=7"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 2u);  // both published, neither delivered
  EXPECT_EQ(sink->calls[1].changes.size(), 2u);
  EXPECT_EQ(sink->calls[1].next_offset, 3);
  // The second is delivered first: nothing may commit before the first.
  std::exchange(sink->calls[1].delivered, nullptr)(publish_result{true, "", {}});
  sched->run();
  EXPECT_TRUE(store->commits.empty());
  EXPECT_TRUE(acks.empty());
  deliver_all();
  ASSERT_EQ(store->commits.size(), 1u);  // one RocksDB write for both
  EXPECT_EQ(store->commits[0].next_offset, 3);
  EXPECT_EQ(store->offsets[0], 3);
  core::twin tw;
  ASSERT_FALSE(core::decode_twin(store->twins[{0, "a"}], tw));
  EXPECT_EQ(tw.version, 2u);   // the later state of the same twin wins
  ASSERT_EQ(acks.size(), 2u);  // each item acknowledged, in order
  EXPECT_EQ(acks[0].second, 1);
  EXPECT_EQ(acks[1].second, 3);
  EXPECT_EQ(watch->seen.size(), 3u);
  EXPECT_EQ(gauges->next_offset.load(), 3);
}

TEST_F(PartitionActorTest, BatchesQueuedBehindItemsInFlightLingerIntoOneItem) {
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  caf::anon_send(part, batch_atom::value, batch(1, {{"a", "2,200,x=2"}}));
  caf::anon_send(part, batch_atom::value, batch(2, {{"b", "1,200,x=2"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 1u);  // small batches wait for the linger
  sched->trigger_timeouts();
  sched->run();
  ASSERT_EQ(sink->calls.size(), 2u);  // then go as one item
  EXPECT_EQ(sink->calls[1].changes.size(), 2u);
  deliver_all();
  EXPECT_EQ(store->offsets[0], 3);
  EXPECT_EQ(acks.size(), 2u);
}

TEST_F(PartitionActorTest, APartitionFallingBehindStopsPipeliningUntilItsItemsAreSmallAgain) {
  // Each item writes every twin it changed: small items behind one another
  // at a high rate would write a twin per record. A partition with
  // behind_records queued waits for its items in flight and takes the queue
  // as one item, and keeps doing so until an item is small again.
  min_item_records = 1;
  behind_records = 8;
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 1u);
  std::vector<std::pair<std::string, std::string>> eight;
  for (char c = 'b'; c <= 'i'; ++c)
    eight.emplace_back(std::string(1, c), "1,100,x=1");
  caf::anon_send(part, batch_atom::value, batch(1, eight));
  sched->run();
  EXPECT_EQ(sink->calls.size(), 1u);  // behind: waits for the item in flight
  deliver_all();
  ASSERT_EQ(sink->calls.size(), 2u);
  EXPECT_EQ(sink->calls[1].changes.size(), 8u);  // the queue as one item
  caf::anon_send(part, batch_atom::value, batch(9, {{"j", "1,100,x=1"}}));
  sched->run();
  EXPECT_EQ(sink->calls.size(), 2u);  // still catching up: waits too
  deliver_all();
  ASSERT_EQ(sink->calls.size(), 3u);
  EXPECT_EQ(sink->calls[2].changes.size(), 1u);
  caf::anon_send(part, batch_atom::value, batch(10, {{"k", "1,100,x=1"}}));
  sched->run();
  EXPECT_EQ(sink->calls.size(), 4u);  // small items again: the pipeline runs
  deliver_all();
  EXPECT_EQ(store->offsets[0], 11);
  EXPECT_EQ(acks.size(), 4u);
}

TEST_F(PartitionActorTest, ADeliveryThatFailsAbandonsTheItemsBuiltOnIt) {
  min_item_records = 1;
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  caf::anon_send(part, batch_atom::value, batch(1, {{"a", "2,200,x=2"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 2u);
  std::exchange(sink->calls[1].delivered, nullptr)(publish_result{true, "", {}});
  std::exchange(sink->calls[0].delivered,
                nullptr)(publish_result{false, "transaction aborted", {}});
  sched->run();
  EXPECT_TRUE(store->commits.empty());
  EXPECT_TRUE(acks.empty());
  ASSERT_EQ(fatal.size(), 1u);
  EXPECT_NE(fatal[0].find("transaction aborted"), std::string::npos);
}

TEST_F(PartitionActorTest, ReadsShowTheLastCommittedChangeNotOneStillInFlight) {
  // Exactly-once: a lookup of a twin whose change awaits Kafka is answered
  // when that change commits, with that state, even when a later change is
  // in flight by then; the snapshot cache never holds uncommitted state.
  min_item_records = 1;
  spawn_partition(1000, 0, true);
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  auto first = std::make_shared<twin_reply>();
  first->message = "unanswered";
  caf::anon_send(part, get_atom::value, std::string{"a"},
                 twin_completion{[first](twin_reply r) { *first = std::move(r); },
                                 twin_reply{query_error::internal, "dropped", {}}});
  sched->run();
  caf::anon_send(part, batch_atom::value, batch(1, {{"a", "2,200,x=2"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 2u);
  EXPECT_EQ(first->message, "unanswered");
  EXPECT_EQ(cache->find("a"), nullptr);
  std::exchange(sink->calls[0].delivered, nullptr)(publish_result{true, "", {}});
  sched->run();
  ASSERT_EQ(first->error, query_error::none) << first->message;
  EXPECT_EQ(first->twin->version, 1u);
  // The second change is still in flight: a new lookup waits for it.
  auto second = std::make_shared<twin_reply>();
  second->message = "unanswered";
  caf::anon_send(part, get_atom::value, std::string{"a"},
                 twin_completion{[second](twin_reply r) { *second = std::move(r); },
                                 twin_reply{query_error::internal, "dropped", {}}});
  sched->run();
  EXPECT_EQ(second->message, "unanswered");
  EXPECT_EQ(cache->find("a"), nullptr);
  deliver_all();
  ASSERT_EQ(second->error, query_error::none) << second->message;
  EXPECT_EQ(second->twin->version, 2u);
  // Committed now: a lookup is answered at once and fills the cache.
  auto third = get("a");
  ASSERT_EQ(third.error, query_error::none);
  ASSERT_NE(cache->find("a"), nullptr);
  EXPECT_EQ(cache->find("a")->version, 2u);
}

TEST_F(PartitionActorTest, AHeldReadIsAnsweredOnceKafkaCommitsNotAfterTheLocalWrite) {
  // Committed in Kafka is committed (a restore from the changelog would show
  // it): a read waiting for the change is answered then, not after the
  // RocksDB write that follows.
  min_item_records = 1;
  spawn_partition(1000, 0, true);
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  auto read = std::make_shared<twin_reply>();
  read->message = "unanswered";
  caf::anon_send(part, get_atom::value, std::string{"a"},
                 twin_completion{[read](twin_reply r) { *read = std::move(r); },
                                 twin_reply{query_error::internal, "dropped", {}}});
  sched->run();
  ASSERT_EQ(sink->calls.size(), 1u);
  EXPECT_EQ(read->message, "unanswered");
  const auto commits = store->commits.size();
  std::exchange(sink->calls[0].delivered, nullptr)(publish_result{true, "", {}});
  ASSERT_TRUE(sched->try_run_once());  // the partition takes the delivery in
  ASSERT_NE(read->message, "unanswered") << "the read still waits for the local write";
  ASSERT_EQ(read->error, query_error::none) << read->message;
  ASSERT_NE(read->twin, nullptr);
  EXPECT_EQ(read->twin->version, 1u);
  EXPECT_EQ(store->commits.size(), commits) << "the local write had to wait for the scheduler";
  sched->run();
  EXPECT_EQ(store->commits.size(), commits + 1);
}

TEST_F(PartitionActorTest, AnUpdateWaitsForTheItemsInFlightAndTelemetryQueuesBehindIt) {
  min_item_records = 1;
  spawn_partition(1000, 0, true);
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  auto answer = std::make_shared<twin_reply>();
  answer->message = "unanswered";
  core::desired_update u;
  u.set = {{"x", 5.0}};
  caf::anon_send(part, desired_atom::value, std::string{"a"}, u,
                 twin_completion{[answer](twin_reply r) { *answer = std::move(r); },
                                 twin_reply{query_error::internal, "dropped", {}}});
  caf::anon_send(part, batch_atom::value, batch(1, {{"a", "2,200,x=2"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 1u);  // the update waits; the batch behind it too
  deliver_all();                      // the first commits; the update, then the batch go
  ASSERT_EQ(sink->calls.size(), 3u);
  EXPECT_EQ(sink->calls[1].next_offset, 1);  // the update carries the partition's offset
  EXPECT_EQ(sink->calls[2].next_offset, 2);
  deliver_all();
  ASSERT_EQ(answer->error, query_error::none) << answer->message;
  EXPECT_EQ(answer->twin->version, 2u);
  EXPECT_EQ(store->offsets[0], 2);
  EXPECT_TRUE(fatal.empty());
}

TEST_F(PartitionActorTest, RejectedRecordsArePublishedAndTheirOffsetsCommitted) {
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(5, {{"a", "bad"}, {"", "1,1,x=1"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 1u);
  ASSERT_EQ(sink->calls[0].rejects.size(), 2u);
  EXPECT_EQ(sink->calls[0].rejects[0].code, "malformed");
  EXPECT_EQ(sink->calls[0].rejects[1].code, "invalid");  // empty asset id
  EXPECT_EQ(sink->calls[0].rejects[1].record.offset, 6);
  deliver_all();
  EXPECT_EQ(store->offsets[0], 7);
  EXPECT_TRUE(fatal.empty());
}

TEST_F(PartitionActorTest, DuplicatesAreCommittedButNotPublished) {
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}, {"a", "1,100,x=1"}}));
  sched->run();
  deliver_all();
  ASSERT_EQ(sink->calls.size(), 1u);
  EXPECT_EQ(sink->calls[0].changes.size(), 1u);
  auto a = get("a");
  EXPECT_EQ(a.twin->duplicates, 1u);
  EXPECT_EQ(a.twin->applied_records, 1u);
}

TEST_F(PartitionActorTest, FailedDeliveryStopsThePartitionWithoutCommitting) {
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  deliver_all(false);
  EXPECT_TRUE(store->commits.empty());
  ASSERT_EQ(fatal.size(), 1u);
  EXPECT_NE(fatal[0].find("broker down"), std::string::npos);
}

TEST_F(PartitionActorTest, FailedCommitIsFatal) {
  spawn_partition();
  store->fail_next = "disk full";
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  deliver_all();
  ASSERT_EQ(fatal.size(), 1u);
  EXPECT_NE(fatal[0].find("disk full"), std::string::npos);
  EXPECT_TRUE(acks.empty());
}

TEST_F(PartitionActorTest, UnknownTwinIsNotFoundWithoutSpawning) {
  spawn_partition();
  auto r = get("ghost");
  EXPECT_EQ(r.error, query_error::not_found);
  EXPECT_NE(r.message.find("ghost"), std::string::npos);
}

TEST_F(PartitionActorTest, DesiredUpdateIsCommittedBeforeItIsAnswered) {
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  deliver_all();
  auto answer = std::make_shared<twin_reply>();
  answer->message = "unanswered";
  core::desired_update u;
  u.set = {{"x", 5.0}};
  u.expected_version = 1;
  caf::anon_send(part, desired_atom::value, std::string{"a"}, u,
                 twin_completion{[answer](twin_reply r) { *answer = std::move(r); },
                                 twin_reply{query_error::unavailable, "dropped", {}}});
  sched->run();
  EXPECT_EQ(answer->message, "unanswered");  // waits for the change event's ack
  deliver_all();
  ASSERT_EQ(answer->error, query_error::none) << answer->message;
  EXPECT_EQ(answer->twin->version, 2u);
  core::twin stored;
  ASSERT_FALSE(core::decode_twin(store->twins[{0, "a"}], stored));
  EXPECT_EQ(std::get<double>(stored.desired.at("x")), 5.0);
  // A stale expected version is ABORTED and changes nothing.
  caf::anon_send(part, desired_atom::value, std::string{"a"}, u,
                 twin_completion{[answer](twin_reply r) { *answer = std::move(r); },
                                 twin_reply{query_error::unavailable, "dropped", {}}});
  sched->run();
  EXPECT_EQ(answer->error, query_error::aborted);
  EXPECT_EQ(store->commits.size(), 2u);
}

TEST_F(PartitionActorTest, DesiredUpdatesQueuedTogetherCommitInOneTransaction) {
  spawn_partition();
  caf::anon_send(part, batch_atom::value,
                 batch(0, {{"a", "1,100,x=1"}, {"b", "1,100,x=1"}, {"c", "1,100,x=1"}}));
  sched->run();
  deliver_all();
  // Writes queue behind an item in flight (a batch Kafka has not acknowledged yet).
  caf::anon_send(part, batch_atom::value, batch(1, {{"d", "1,100,x=1"}}));
  sched->run();
  const auto commits = store->commits.size();
  const auto published = sink->calls.size();
  std::map<std::string, twin_reply> answers;
  auto send = [&](const std::string& id, core::desired_update u) {
    caf::anon_send(part, desired_atom::value, id, std::move(u),
                   twin_completion{[&answers, id](twin_reply r) { answers[id] = std::move(r); },
                                   twin_reply{query_error::internal, "dropped", {}}});
  };
  core::desired_update set;
  set.set = {{"mode", std::string{"eco"}}};
  send("a", set);
  auto stale = set;
  stale.expected_version = 7;
  send("b", stale);  // conflicts: answered at once, the others still commit
  send("ghost", set);
  auto dry = set;
  dry.validate_only = true;
  send("c", dry);  // a dry run: answered with what would be, nothing kept
  send("a", set);  // the same twin again: the next item
  sched->run();
  EXPECT_TRUE(answers.empty());
  deliver_all();  // the batch commits, the writes start as one item
  ASSERT_EQ(sink->calls.size(), published + 1) << "one transaction for the first four";
  EXPECT_EQ(sink->calls.back().twins, 1u);
  ASSERT_EQ(sink->calls.back().changes.size(), 1u);
  EXPECT_EQ(sink->calls.back().changes[0].asset_id, "a");
  EXPECT_EQ(answers.at("b").error, query_error::aborted);
  EXPECT_EQ(answers.at("ghost").error, query_error::not_found);
  ASSERT_EQ(answers.at("c").error, query_error::none) << answers.at("c").message;
  EXPECT_EQ(answers.at("c").twin->version, 2u);
  EXPECT_EQ(std::get<std::string>(answers.at("c").twin->desired.at("mode")), "eco");
  EXPECT_FALSE(answers.contains("a")) << "answered only after its commit";
  deliver_all();
  ASSERT_EQ(answers.at("a").error, query_error::none) << answers.at("a").message;
  EXPECT_EQ(answers.at("a").twin->version, 2u);
  EXPECT_TRUE(answers.at("a").unchanged) << "the second update of \"a\" answered last";
  EXPECT_FALSE(answers.at("c").unchanged);
  EXPECT_EQ(store->commits.size(), commits + 2);  // the second update of "a" changed nothing
  EXPECT_EQ(get("c").twin->version, 1u);
  EXPECT_TRUE(get("c").twin->desired.empty());
  EXPECT_TRUE(get("b").twin->desired.empty());
  EXPECT_TRUE(fatal.empty());
}

TEST_F(PartitionActorTest, IdleTwinsArePassivatedAndReloadedOnDemand) {
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}, {"b", "1,100,x=1"}}));
  sched->run();
  deliver_all();
  EXPECT_EQ(status().active_twins, 2u);
  now += 5000;
  sched->trigger_timeouts();
  sched->run();
  EXPECT_EQ(status().active_twins, 0u);
  auto a = get("a");  // comes back from the store
  ASSERT_EQ(a.error, query_error::none);
  EXPECT_EQ(a.twin->applied_records, 1u);
  EXPECT_EQ(status().active_twins, 1u);
}

TEST_F(PartitionActorTest, TwinsNotResidentAreReadByTheCommitterInOneRequestPerItem) {
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}, {"b", "1,100,x=1"}}));
  sched->run();
  deliver_all();
  ASSERT_EQ(store->batched_loads, (std::vector<size_t>{2}));  // both new: one read
  // Passivate both; then one item touches a, b (stored) and c (new), twice each.
  now += 5000;
  sched->trigger_timeouts();
  sched->run();
  caf::anon_send(part, batch_atom::value,
                 batch(2, {{"a", "2,200,x=2"},
                           {"c", "1,100,x=1"},
                           {"b", "2,200,x=2"},
                           {"a", "3,300,x=3"},
                           {"c", "2,200,x=2"}}));
  sched->run();
  deliver_all();
  EXPECT_EQ(store->batched_loads, (std::vector<size_t>{2, 3}));
  EXPECT_EQ(get("a").twin->applied_records, 3u);  // resident now: no read
  EXPECT_EQ(get("b").twin->applied_records, 2u);
  EXPECT_EQ(get("c").twin->applied_records, 2u);
  EXPECT_EQ(store->batched_loads.size(), 2u);
  EXPECT_EQ(get("nobody").error, query_error::not_found);  // read, not there, not spawned
  EXPECT_EQ(store->batched_loads, (std::vector<size_t>{2, 3, 1}));
}

TEST_F(PartitionActorTest, AReadAndAnItemAskingForTheSameStoredTwinShareItsState) {
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  deliver_all();
  now += 5000;
  sched->trigger_timeouts();
  sched->run();
  // The read and the item are both in the committer's queue before either is read:
  // the second read finds the twin resident and keeps its state.
  auto reply = std::make_shared<twin_reply>();
  caf::anon_send(part, get_atom::value, std::string{"a"},
                 twin_completion{[reply](twin_reply r) { *reply = std::move(r); },
                                 twin_reply{query_error::unavailable, "dropped", {}}});
  caf::anon_send(part, batch_atom::value, batch(1, {{"a", "2,200,x=2"}}));
  sched->run();
  deliver_all();
  ASSERT_EQ(reply->error, query_error::none);
  EXPECT_EQ(reply->twin->applied_records, 1u);
  EXPECT_EQ(get("a").twin->applied_records, 2u);
  EXPECT_EQ(store->batched_loads, (std::vector<size_t>{1, 1, 1}));
}

TEST_F(PartitionActorTest, LeastRecentlyUsedTwinsArePassivatedBeyondTheBound) {
  spawn_partition(2);
  for (int i = 0; i < 5; ++i) {
    now += 10;
    caf::anon_send(part, batch_atom::value, batch(i, {{"t" + std::to_string(i), "1,100,x=1"}}));
    sched->run();
    deliver_all();
  }
  sched->trigger_timeouts();
  sched->run();
  EXPECT_EQ(status().active_twins, 2u);
  EXPECT_EQ(get("t0").twin->applied_records, 1u);  // passivated, still there
}

TEST_F(PartitionActorTest, StopFinishesQueuedWorkThenCallsBack) {
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  caf::anon_send(part, batch_atom::value, batch(1, {{"a", "2,200,x=2"}}));
  bool stopped = false;
  caf::anon_send(part, stop_atom::value, std::function<void()>{[&] { stopped = true; }});
  sched->run();
  EXPECT_FALSE(stopped);
  deliver_all();
  EXPECT_FALSE(stopped);
  deliver_all();
  EXPECT_TRUE(stopped);
  EXPECT_EQ(store->offsets[0], 2);
}

TEST_F(PartitionActorTest, AStoppingPartitionSaysWhatItWaitsFor) {
  // What a slow stop is reported with (event=partition_stop_slow).
  min_item_records = 1;
  spawn_partition();
  auto waiting_on = [&] { return status().waiting_on; };
  EXPECT_EQ(waiting_on(), "nothing");
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  caf::anon_send(part, batch_atom::value, batch(1, {{"a", "2,200,x=2"}}));
  sched->run();
  bool stopped = false;
  caf::anon_send(part, stop_atom::value, std::function<void()>{[&] { stopped = true; }});
  sched->run();
  auto w = waiting_on();
  EXPECT_NE(w.find("2 items in flight (0 committed in Kafka; the oldest, item 1, waits for Kafka"),
            std::string::npos)
      << w;
  EXPECT_NE(w.find("stopping"), std::string::npos) << w;
  std::exchange(sink->calls[1].delivered, nullptr)(publish_result{true, "", {}});
  sched->run();
  w = waiting_on();
  EXPECT_NE(w.find("(1 committed in Kafka; the oldest, item 1, waits for Kafka"), std::string::npos)
      << w;
  deliver_all();
  EXPECT_TRUE(stopped);
}

TEST_F(PartitionActorTest, RecordsOnTheWrongPartitionAreRejected) {
  partition_config pc;
  pc.partition = 0;
  pc.partition_count = 8;
  pc.store = store;
  pc.detached_committer = false;
  pc.sink = sink;
  pc.make_decoder = [] { return std::make_unique<text_decoder>(); };
  part = sys->spawn(partition, std::move(pc));
  sched->run();
  // "veh-1" hashes to a partition other than 0 of 8 (murmur2).
  caf::anon_send(part, batch_atom::value, batch(0, {{"veh-1", "1,100,x=1"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 1u);
  ASSERT_EQ(sink->calls[0].rejects.size(), 1u);
  EXPECT_EQ(sink->calls[0].rejects[0].code, "wrong_partition");
}

TEST_F(PartitionActorTest, ReadSnapshotsArePublishedAndWithdrawnOnChange) {
  spawn_partition();
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  deliver_all();
  EXPECT_EQ(cache->find("a"), nullptr);  // nobody read it: nothing copied
  auto first = get("a");
  auto cached = cache->find("a");
  ASSERT_NE(cached, nullptr);
  EXPECT_EQ(cached->version, 1u);
  caf::anon_send(part, batch_atom::value, batch(1, {{"a", "2,200,x=2"}}));
  sched->run();
  EXPECT_EQ(cache->find("a"), nullptr);  // withdrawn as soon as the twin changes
  deliver_all();
  EXPECT_EQ(get("a").twin->version, 2u);
  EXPECT_EQ(cache->find("a")->version, 2u);
  now += 5000;
  sched->trigger_timeouts();
  sched->run();
  EXPECT_EQ(cache->find("a"), nullptr);  // passivated twins are not served from memory
}

TEST_F(PartitionActorTest, BatchesFetchedBeforeARewindAreIgnored) {
  // A revived partition expects the consumer's new epoch: batches fetched
  // before the consumer was rewound would skip the abandoned records.
  spawn_partition(1000, 2);
  auto stale = std::const_pointer_cast<raw_batch>(batch(7, {{"a", "1,100,x=1"}}));
  stale->epoch = 1;
  caf::anon_send(part, batch_atom::value, raw_batch_ptr{stale});
  sched->run();
  EXPECT_TRUE(sink->calls.empty());
  auto fresh = std::const_pointer_cast<raw_batch>(batch(5, {{"a", "1,100,x=1"}}));
  fresh->epoch = 2;
  caf::anon_send(part, batch_atom::value, raw_batch_ptr{fresh});
  sched->run();
  ASSERT_EQ(sink->calls.size(), 1u);
  deliver_all();
  EXPECT_EQ(store->offsets[0], 6);
}

TEST_F(PartitionActorTest, ReadsWaitingForAnUncommittedItemExpireInsteadOfHanging) {
  // Exactly-once reads never see uncommitted state: a lookup of a twin the
  // item in flight changed waits for its commit. When Kafka does not commit
  // (broker down), the lookup is answered UNAVAILABLE after the read wait,
  // and so is an update queued behind the item.
  spawn_partition(1000, 0, true);
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  deliver_all();
  ASSERT_EQ(gauges->next_offset.load(), 1);
  ASSERT_EQ(gauges->records_applied.load(), 1u);
  caf::anon_send(part, batch_atom::value, batch(1, {{"a", "2,200,x=2"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 2u);  // published, not delivered
  auto lookup = std::make_shared<twin_reply>();
  lookup->message = "unanswered";
  caf::anon_send(part, get_atom::value, std::string{"a"},
                 twin_completion{[lookup](twin_reply r) { *lookup = std::move(r); },
                                 twin_reply{query_error::internal, "dropped", {}}});
  auto update = std::make_shared<twin_reply>();
  update->message = "unanswered";
  core::desired_update u;
  u.set = {{"x", 5.0}};
  caf::anon_send(part, desired_atom::value, std::string{"a"}, u,
                 twin_completion{[update](twin_reply r) { *update = std::move(r); },
                                 twin_reply{query_error::internal, "dropped", {}}});
  sched->run();
  EXPECT_EQ(lookup->message, "unanswered");
  EXPECT_EQ(update->message, "unanswered");
  // The read wait passes (the clock and the scheduler's timeouts), the item
  // still open.
  now += 2000;
  sched->trigger_timeouts();
  sched->run();
  EXPECT_EQ(lookup->error, query_error::unavailable) << lookup->message;
  EXPECT_NE(lookup->message.find("not committed"), std::string::npos) << lookup->message;
  EXPECT_EQ(update->error, query_error::unavailable) << update->message;
  EXPECT_NE(update->message.find("nothing was changed"), std::string::npos) << update->message;
  // The item commits later: nothing is answered twice, state moves on.
  deliver_all();
  EXPECT_EQ(gauges->next_offset.load(), 2);
  auto r = get("a");
  ASSERT_EQ(r.error, query_error::none) << r.message;
  EXPECT_EQ(r.twin->version, 2u);
  EXPECT_TRUE(r.twin->desired.empty());  // the expired update was dropped
  EXPECT_TRUE(fatal.empty());
}

TEST_F(PartitionActorTest, ALostPartitionDropsUncommittedWorkWithoutWaitingForIt) {
  // The group took the partition away (session timed out, e.g. the broker
  // was down): the item waiting for Kafka is abandoned at once, nothing of
  // it is committed, and no failure is reported (no revival follows).
  spawn_partition(1000, 0, true);
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  deliver_all();
  caf::anon_send(part, batch_atom::value, batch(1, {{"a", "2,200,x=2"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 2u);  // in flight, never delivered
  bool dropped = false;
  caf::anon_send(part, drop_atom::value, std::function<void()>{[&] { dropped = true; }});
  sched->run();
  EXPECT_TRUE(dropped);
  EXPECT_EQ(store->commits.size(), 1u);
  EXPECT_TRUE(fatal.empty());
  deliver_all();  // a late delivery changes nothing
  EXPECT_EQ(store->commits.size(), 1u);
  EXPECT_EQ(acks.size(), 1u);
}

TEST_F(PartitionActorTest, ALostPartitionFencesItsOneItemInFlight) {
  // The node's default: one item in flight. Lost while that item's
  // transaction waits for an absent broker, the partition must still fence
  // it: the consumer may join the next generation (and get the partition
  // back) before the transaction flushes, and the item must not commit
  // behind the restore that follows.
  max_in_flight = 1;
  spawn_partition(1000, 0, true);
  caf::anon_send(part, batch_atom::value, batch(0, {{"a", "1,100,x=1"}}));
  sched->run();
  ASSERT_EQ(sink->calls.size(), 1u);
  caf::anon_send(part, drop_atom::value, std::function<void()>{[] {}});
  sched->run();
  EXPECT_EQ(sink->abandoned, std::vector<int32_t>{0});
  deliver_all();
  EXPECT_TRUE(store->commits.empty());
}

// -- aggregates ---------------------------------------------------------------------

struct AggregateActorTest : PartitionActorTest {
  int64_t contribution_offset = 0;
  /// Every contributions batch fed in (what the topic holds).
  std::vector<raw_batch_ptr> fed;

  AggregateActorTest() {
    auto r = std::make_shared<core::kind_registry>();
    EXPECT_FALSE(r->put({"fleet",
                         "fleets",
                         {"member_of"},
                         {{"n", "count()"}, {"power", "sum(power)"}, {"peak", "max(power)"}},
                         ""}));
    EXPECT_FALSE(r->put(
        {"region",
         "regions",
         {"member_of"},
         {{"n", "count()"}, {"power", "sum(power)"}, {"share", "power / attributes.capacity"}},
         ""}));
    EXPECT_FALSE(r->put({"depot",
                         "depots",
                         {"located_at"},
                         {{"n", "count()"}, {"stale", "count(connectivity = stale)"}},
                         ""}));
    EXPECT_FALSE(r->add_rule({"fleet", "member_of", "fleets"}));
    EXPECT_FALSE(r->add_rule({"region", "member_of", "regions"}));
    EXPECT_FALSE(r->add_rule({"depot", "located_at", "depots"}));
    kinds = std::make_shared<kinds_holder>(std::move(r));
  }

  /// Feeds what the last items published back in as the contributions
  /// input (what the aggregate-updates topic does), until nothing is left.
  /// Returns the rounds it took.
  int settle() {
    int rounds = 0;
    while (true) {
      deliver_all();
      std::map<std::string, std::vector<core::contribution>> by_parent;
      for (auto& c : sink->calls)
        for (auto& k : std::exchange(c.contributions, {}))
          by_parent[k.parent].push_back(std::move(k));
      if (by_parent.empty())
        return rounds;
      ++rounds;
      auto keep = std::make_shared<std::vector<std::string>>();
      keep->reserve(by_parent.size() * 2);
      auto b = std::make_shared<raw_batch>();
      b->source = input::contributions;
      for (auto& [parent, items] : by_parent) {
        keep->push_back(parent);
        std::string bytes;
        core::encode_contributions(items, bytes);
        keep->push_back(std::move(bytes));
        b->records.push_back(raw_record{(*keep)[keep->size() - 2], keep->back(),
                                        core::contributions_content_type, contribution_offset++});
      }
      b->next_offset = contribution_offset;
      b->owner = keep;
      fed.push_back(b);
      caf::anon_send(part, batch_atom::value, raw_batch_ptr{b});
      sched->run();
    }
  }

  /// Feeds telemetry records at `offset` and lets every contribution settle.
  void feed(int64_t offset, std::vector<std::pair<std::string, std::string>> recs) {
    caf::anon_send(part, batch_atom::value, batch(offset, std::move(recs)));
    sched->run();
    settle();
  }

  /// Every actor goes idle and is passivated (state lives in the store only).
  void idle_out() {
    for (int i = 0; i < 2; ++i) {
      now += 5'000;
      sched->trigger_timeouts();
      sched->run();
    }
  }

  double measure(const std::string& id, const std::string& name) {
    for (const auto& [n, v] : store->header(id).measures)
      if (n == name)
        return v.value_or(-1);
    ADD_FAILURE() << id << " has no measure " << name;
    return -1;
  }
};

TEST_F(AggregateActorTest, TwinsRollUpThroughFleetsIntoRegionsAndMoveBetweenFleets) {
  spawn_partition();
  int64_t offset = 0;
  auto send = [&](std::vector<std::pair<std::string, std::string>> recs) {
    auto n = static_cast<int64_t>(recs.size());
    caf::anon_send(part, batch_atom::value, batch(offset, std::move(recs)));
    offset += n;
    sched->run();
  };
  send({{"v1", "1,100,power=10;a:fleet=north"},
        {"v2", "1,100,power=5;a:fleet=north"},
        {"fleets/north", "1,100,a:region=eu"},
        {"regions/eu", "1,100,a:capacity=60"}});
  EXPECT_GE(settle(), 2);
  EXPECT_EQ(measure("fleets/north", "n"), 2);
  EXPECT_EQ(measure("fleets/north", "power"), 15);
  EXPECT_EQ(measure("fleets/north", "peak"), 10);
  EXPECT_EQ(measure("regions/eu", "n"), 2);
  EXPECT_EQ(measure("regions/eu", "power"), 15);
  EXPECT_DOUBLE_EQ(measure("regions/eu", "share"), 0.25);
  EXPECT_EQ(store->contribution_offsets[0], contribution_offset);
  EXPECT_FALSE(contribution_acks.empty());

  // The twin stores the relation its attribute derived.
  auto v1 = get("v1");
  ASSERT_TRUE(v1.twin);
  ASSERT_EQ(v1.twin->relations.size(), 1u);
  EXPECT_EQ(v1.twin->relations[0].parent, "fleets/north");
  EXPECT_EQ(v1.twin->relations[0].origin, core::relation_origin::rule);

  // The peak leaves: max is exact. v2 moves to another fleet outside the region.
  send({{"v1", "2,200,power=3"}, {"v2", "2,200,power=7;a:fleet=south"}});
  settle();
  EXPECT_EQ(measure("fleets/north", "n"), 1);
  EXPECT_EQ(measure("fleets/north", "peak"), 3);
  EXPECT_EQ(measure("fleets/south", "n"), 1);
  EXPECT_EQ(measure("fleets/south", "power"), 7);
  EXPECT_EQ(measure("regions/eu", "n"), 1);
  EXPECT_EQ(measure("regions/eu", "power"), 3);
  const auto version = store->header("regions/eu").version;

  // The region's capacity changes: only its expression moves.
  send({{"regions/eu", "2,300,a:capacity=30"}});
  settle();
  EXPECT_DOUBLE_EQ(measure("regions/eu", "share"), 0.1);
  EXPECT_EQ(store->header("regions/eu").version, version + 1);

  // The south fleet joins the region: all of it arrives there.
  send({{"fleets/south", "1,400,a:region=eu"}});
  settle();
  EXPECT_EQ(measure("regions/eu", "n"), 2);
  EXPECT_EQ(measure("regions/eu", "power"), 10);
}

TEST_F(AggregateActorTest, AggregatesReloadTheirMembersAfterPassivation) {
  spawn_partition();
  feed(0, {{"v1", "1,100,power=10;a:fleet=north"},
           {"v2", "1,100,power=20;a:fleet=north"},
           {"v3", "1,100,power=30;a:fleet=north"}});
  EXPECT_EQ(measure("fleets/north", "peak"), 30);
  idle_out();
  EXPECT_EQ(gauges->active_twins.load(), 0u);
  // The peak leaves after the reload: exact only if every member came back.
  feed(3, {{"v3", "2,200,power=1"}});
  EXPECT_EQ(measure("fleets/north", "peak"), 20);
  EXPECT_EQ(measure("fleets/north", "n"), 3);
  EXPECT_EQ(measure("fleets/north", "power"), 31);
}

TEST_F(AggregateActorTest, MembersGoStaleWithoutTrafficAndTheAggregateSaysSo) {
  spawn_partition();
  caf::anon_send(
      part, batch_atom::value,
      batch(0, {{"v1", "1,100,speed=1;a:depot=d1"}, {"v2", "1,100,speed=2;a:depot=d1"}}));
  sched->run();
  settle();
  EXPECT_EQ(measure("depots/d1", "n"), 2);
  EXPECT_EQ(measure("depots/d1", "stale"), 0);
  const auto version = store->header("depots/d1").version;
  // Nothing reports for longer than stale_after (30 s): the next ticks
  // advance the depot, which commits its new measure on its own.
  now += 31'000;
  for (int i = 0; i < 4; ++i) {
    sched->trigger_timeouts();
    sched->run();
    deliver_all();
  }
  EXPECT_EQ(measure("depots/d1", "stale"), 2);
  EXPECT_EQ(store->header("depots/d1").version, version + 1);
  // The twins were passivated meanwhile; the timed depot stays resident.
  EXPECT_EQ(gauges->active_twins.load(), 1u);
  // A member reports again: online again.
  caf::anon_send(part, batch_atom::value, batch(2, {{"v1", "2,200,speed=3"}}));
  sched->run();
  settle();
  EXPECT_EQ(measure("depots/d1", "stale"), 1);
}

TEST_F(AggregateActorTest, UnreadableContributionsGoToTheDeadLetterTopicNamingTheirInput) {
  spawn_partition();
  auto keep = std::make_shared<std::vector<std::string>>(
      std::vector<std::string>{"fleets/north", "not a contribution record"});
  auto b = std::make_shared<raw_batch>();
  b->source = input::contributions;
  b->records.push_back(raw_record{(*keep)[0], (*keep)[1], core::contributions_content_type, 0});
  b->next_offset = 1;
  b->owner = keep;
  caf::anon_send(part, batch_atom::value, raw_batch_ptr{b});
  sched->run();
  ASSERT_EQ(sink->calls.size(), 1u);
  ASSERT_EQ(sink->calls[0].rejects.size(), 1u);
  EXPECT_EQ(sink->calls[0].rejects[0].code, "malformed_contributions");
  EXPECT_EQ(sink->calls[0].rejects[0].source, input::contributions);
  deliver_all();
  // Its offset commits: nothing is read twice.
  EXPECT_EQ(store->contribution_offsets[0], 1);
  EXPECT_FALSE(store->aggregates.count({0, "fleets/north"}));
}

TEST_F(AggregateActorTest, CheckpointedMembersAreReplayedSilentlyAfterACrash) {
  member_checkpoint = std::chrono::milliseconds{60'000};
  spawn_partition();
  feed(0, {{"v1", "1,100,power=10;a:fleet=north"},
           {"v2", "1,100,power=20;a:fleet=north"},
           {"v3", "1,100,power=30;a:fleet=north"},
           {"fleets/north", "1,100,a:region=eu"}});
  EXPECT_EQ(measure("fleets/north", "peak"), 30);
  EXPECT_EQ(measure("regions/eu", "n"), 3);
  // No member record is written yet: the committed contributions offset
  // stays where the stored members stand, the applied one beside it.
  EXPECT_TRUE(store->members.empty());
  EXPECT_EQ(store->contribution_offsets[0], 0);
  EXPECT_EQ(store->contributions_applied[0], contribution_offset);
  const auto version = store->header("fleets/north").version;
  const auto region_version = store->header("regions/eu").version;

  // kill -9: a new actor over the same store gets the contributions from the
  // committed offset again and folds them into the members only.
  caf::anon_send_exit(part, caf::exit_reason::kill);
  sched->run();
  sink->calls.clear();
  spawn_partition();
  for (const auto& b : fed)
    caf::anon_send(part, batch_atom::value, b);
  sched->run();
  for (int i = 0; i < 10; ++i)
    deliver_all();  // one item after the other
  for (const auto& c : sink->calls) {
    EXPECT_TRUE(c.contributions.empty());
    EXPECT_TRUE(c.aggregate_changes.empty());
  }
  EXPECT_EQ(store->header("fleets/north").version, version);
  EXPECT_EQ(store->header("regions/eu").version, region_version);
  EXPECT_EQ(store->contributions_applied[0], contribution_offset);

  // Exact only if every member came back: the peak leaves.
  feed(4, {{"v3", "2,200,power=1"}});
  EXPECT_EQ(measure("fleets/north", "peak"), 20);
  EXPECT_EQ(measure("fleets/north", "n"), 3);
  EXPECT_EQ(measure("fleets/north", "power"), 31);
  EXPECT_EQ(measure("regions/eu", "power"), 31);
  EXPECT_EQ(store->header("fleets/north").version, version + 1);

  // The checkpoint writes every member; the offsets meet again.
  now += 60'000;
  sched->trigger_timeouts();
  sched->run();
  deliver_all();
  EXPECT_EQ(store->contribution_offsets[0], contribution_offset);
  EXPECT_EQ(store->contributions_applied[0], contribution_offset);
  size_t north = 0;
  for (const auto& [key, bytes] : store->members)
    north += std::get<1>(key) == "fleets/north" ? 1 : 0;
  EXPECT_EQ(north, 3u);
}

TEST_F(AggregateActorTest, StoppingWritesTheMembersHeldUnwritten) {
  member_checkpoint = std::chrono::milliseconds{60'000};
  spawn_partition();
  feed(0, {{"v1", "1,100,power=10;a:fleet=north"}, {"v2", "1,100,power=20;a:fleet=north"}});
  EXPECT_TRUE(store->members.empty());
  bool stopped = false;
  caf::anon_send(part, stop_atom::value, std::function<void()>{[&stopped] { stopped = true; }});
  sched->run();
  deliver_all();
  EXPECT_TRUE(stopped);
  EXPECT_EQ(store->members.size(), 2u);
  EXPECT_EQ(store->contribution_offsets[0], contribution_offset);
  EXPECT_EQ(store->contributions_applied[0], contribution_offset);
}

TEST_F(AggregateActorTest, AChangedKindShowsInResidentAndReloadedAggregatesWithoutNewRecords) {
  spawn_partition();
  feed(0, {{"v1", "1,100,power=10;a:fleet=north"},
           {"v2", "1,100,power=20;a:fleet=north"},
           {"v3", "1,100,power=30;a:fleet=south"}});
  const auto north = store->header("fleets/north").version;
  auto change_fleet = [&](uint64_t revision,
                          std::vector<std::pair<std::string, std::string>> measures) {
    auto r = std::make_shared<core::kind_registry>(*kinds->get());
    EXPECT_FALSE(r->put({"fleet", "fleets", {"member_of"}, std::move(measures), "", revision}));
    kinds->set(std::move(r));
  };
  auto has = [&](const std::string& id, const std::string& name) {
    for (const auto& [n, v] : store->header(id).measures)
      if (n == name)
        return true;
    return false;
  };

  // Resident: recomputed as soon as the partition hears of the change.
  change_fleet(1, {{"n", "count()"}, {"power", "sum(power)"}, {"low", "min(power)"}});
  caf::anon_send(part, refresh_atom::value);
  sched->run();
  deliver_all();
  EXPECT_EQ(measure("fleets/north", "low"), 10);
  EXPECT_EQ(measure("fleets/south", "low"), 30);
  EXPECT_FALSE(has("fleets/north", "peak"));
  EXPECT_EQ(store->header("fleets/north").version, north + 1);
  EXPECT_EQ(store->header("fleets/north").kind_revision, 1u);

  // Passivated while the kind changes again: recomputed when loaded.
  idle_out();
  EXPECT_EQ(gauges->active_twins.load(), 0u);
  change_fleet(2, {{"n", "count()"}, {"avg", "mean(power)"}});
  EXPECT_FALSE(has("fleets/south", "avg"));
  auto reply = std::make_shared<aggregate_reply>();
  caf::anon_send(part, get_atom::value, std::string{"fleets/south"}, aggregate_query{},
                 aggregate_completion{[reply](aggregate_reply r) { *reply = std::move(r); },
                                      aggregate_reply{query_error::unavailable, "dropped", {}}});
  sched->run();
  now += 1'000;
  sched->trigger_timeouts();
  sched->run();
  deliver_all();
  EXPECT_EQ(measure("fleets/south", "avg"), 30);
  EXPECT_EQ(store->header("fleets/south").kind_revision, 2u);
  EXPECT_FALSE(has("fleets/south", "low"));
}

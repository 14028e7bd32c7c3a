#include "services/storage/rocksdb_store.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "actors/core/codec.hpp"
#include "actors/core/twin.hpp"

using namespace fleettwin;
using runtime::commit_batch;
using runtime::load_status;
using storage::rocksdb_store;
using storage::store_options;

namespace {

namespace fs = std::filesystem;

core::twin make_twin(std::string id, uint64_t version, double temp = 20.0) {
  core::twin tw;
  tw.asset_id = std::move(id);
  tw.kind = "pump";
  tw.tenant = "demo";
  tw.version = version;
  tw.last_seen_ms = 1'700'000'000'000;
  tw.attributes = {{"site", "north"}};
  tw.reported["temp"] = {temp, 1000, 1001, version};
  return tw;
}

std::string encoded(const core::twin& tw) {
  std::string out;
  core::encode_twin(tw, out);
  return out;
}

/// A history segment with one sample.
runtime::history_write history(std::string id, std::string property, uint32_t slot,
                               int64_t source_time_ms, uint64_t sequence, double v) {
  runtime::history_write h;
  h.asset_id = std::move(id);
  h.slot = slot;
  core::begin_history_segment(h.segment);
  core::append_history_sample(h.segment, property, v, source_time_ms, sequence);
  return h;
}

std::string asset(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "asset-%03d", i);
  return buf;
}

std::vector<std::string> ids_of(const std::vector<core::twin>& twins) {
  std::vector<std::string> ids;
  for (const auto& tw : twins)
    ids.push_back(tw.asset_id);
  return ids;
}

struct StoreTest : ::testing::Test {
  fs::path dir;
  std::unique_ptr<rocksdb_store> store;

  void SetUp() override {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir = fs::temp_directory_path() / ("fleettwin-store-" + std::to_string(::getpid()) + "-" +
                                       std::to_string(counter++) + "-" + info->name());
    fs::remove_all(dir);
    store = open_store();
    ASSERT_NE(store, nullptr);
  }

  void TearDown() override {
    store.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  std::unique_ptr<rocksdb_store> open_store(bool sync = false) {
    store_options o;
    o.path = dir.string();
    o.sync_commits = sync;
    o.block_cache_bytes = 8 << 20;
    o.write_buffer_bytes = 4 << 20;
    std::string error;
    auto s = rocksdb_store::open(o, error);
    EXPECT_NE(s, nullptr) << error;
    return s;
  }

  void reopen() {
    store.reset();
    store = open_store();
    ASSERT_NE(store, nullptr);
  }

  void commit(const commit_batch& b) {
    auto err = store->commit(b);
    ASSERT_FALSE(err) << *err;
  }

  void put_twins(int32_t partition, const std::vector<std::string>& ids, int64_t offset) {
    commit_batch b;
    b.partition = partition;
    for (const auto& id : ids)
      b.twins.emplace_back(id, encoded(make_twin(id, 1)));
    b.next_offset = offset;
    commit(b);
  }

  /// 40 assets spread over partitions 0..3 so that their ids interleave.
  std::vector<std::string> fill_interleaved() {
    std::vector<std::vector<std::string>> parts(4);
    std::vector<std::string> all;
    for (int i = 0; i < 40; ++i) {
      parts[(i * 7 + i / 5) % 4].push_back(asset(i));
      all.push_back(asset(i));
    }
    for (int p = 0; p < 4; ++p)
      put_twins(p, parts[p], 100 + p);
    // A partition that is not listed must not leak into the results.
    put_twins(5, {"asset-0205", "asset-015x"}, 1);
    return all;
  }

  storage::list_page list(std::string_view start_after, size_t page_size, size_t max_scanned = 0,
                          std::function<bool(const core::twin&)> pred = {},
                          std::vector<int32_t> partitions = {0, 1, 2, 3}) {
    std::string error;
    auto page = store->list_twins(partitions, start_after, pred, page_size, max_scanned, error);
    EXPECT_EQ(error, "");
    return page;
  }

  std::vector<core::history_point> read(int32_t partition, std::string_view id,
                                        std::string_view property, int64_t start = 0,
                                        int64_t end = 0, size_t limit = 0) {
    std::string error;
    auto points = store->read_history(partition, id, property, start, end, limit, error);
    EXPECT_EQ(error, "");
    return points;
  }

  std::vector<int64_t> times(const std::vector<core::history_point>& points) {
    std::vector<int64_t> out;
    for (const auto& p : points)
      out.push_back(p.source_time_ms);
    return out;
  }
};

}  // namespace

TEST_F(StoreTest, CommitsAndReloadsTwinsAndOffsets) {
  auto a = make_twin("pump-1", 3, 21.5);
  auto b = make_twin("pump-2", 7, 19.0);
  commit_batch batch;
  batch.partition = 2;
  batch.twins = {{a.asset_id, encoded(a)}, {b.asset_id, encoded(b)}};
  batch.next_offset = 42;
  commit(batch);

  core::twin out;
  std::string error;
  ASSERT_EQ(store->load_twin(2, "pump-1", out, error), load_status::found) << error;
  EXPECT_EQ(out.asset_id, "pump-1");
  EXPECT_EQ(out.version, 3u);
  EXPECT_EQ(std::get<double>(out.reported.at("temp").val), 21.5);
  EXPECT_EQ(out.attributes.at("site"), "north");
  ASSERT_EQ(store->load_twin(2, "pump-2", out, error), load_status::found) << error;
  EXPECT_EQ(out.version, 7u);
  EXPECT_EQ(store->load_offset(2), 42);

  // A later commit overwrites the twin and moves the offset on.
  a.version = 4;
  batch.twins = {{a.asset_id, encoded(a)}};
  batch.next_offset = 50;
  commit(batch);
  ASSERT_EQ(store->load_twin(2, "pump-1", out, error), load_status::found) << error;
  EXPECT_EQ(out.version, 4u);
  EXPECT_EQ(store->load_offset(2), 50);

  // A commit without records leaves the offset alone.
  commit_batch twins_only;
  twins_only.partition = 2;
  twins_only.twins = {{b.asset_id, encoded(b)}};
  commit(twins_only);
  EXPECT_EQ(store->load_offset(2), 50);
  commit_batch nothing;
  nothing.partition = 2;
  commit(nothing);
  EXPECT_EQ(store->load_offset(2), 50);

  // Offsets and twins are per partition.
  EXPECT_EQ(store->load_offset(3), std::nullopt);
  EXPECT_EQ(store->load_twin(3, "pump-1", out, error), load_status::missing);
}

TEST_F(StoreTest, OffsetsRoundTripLargeValues) {
  for (int64_t off : {int64_t{0}, int64_t{1}, int64_t{255}, int64_t{256},
                      int64_t{0x0102030405060708}, std::numeric_limits<int64_t>::max()}) {
    commit_batch b;
    b.partition = 9;
    b.next_offset = off;
    commit(b);
    EXPECT_EQ(store->load_offset(9), off);
  }
}

TEST_F(StoreTest, OneBatchIsDurableAsAWholeAcrossReopen) {
  commit_batch b;
  b.partition = 1;
  for (int i = 0; i < 50; ++i) {
    auto tw = make_twin(asset(i), i + 1);
    b.twins.emplace_back(tw.asset_id, encoded(tw));
    b.history.push_back(history(asset(i), "temp", 0, 1000 + i, i + 1, i * 1.5));
  }
  b.next_offset = 1234;
  commit(b);
  reopen();

  EXPECT_EQ(store->load_offset(1), 1234);
  for (int i = 0; i < 50; ++i) {
    core::twin out;
    std::string error;
    ASSERT_EQ(store->load_twin(1, asset(i), out, error), load_status::found) << i << error;
    EXPECT_EQ(out.version, uint64_t(i + 1));
    auto points = read(1, asset(i), "temp");
    ASSERT_EQ(points.size(), 1u) << i;
    EXPECT_EQ(points[0].source_time_ms, 1000 + i);
    EXPECT_EQ(std::get<double>(points[0].val), i * 1.5);
  }
}

TEST_F(StoreTest, SyncCommitsWork) {
  store.reset();
  store = open_store(true);
  ASSERT_NE(store, nullptr);
  put_twins(0, {"a"}, 7);
  reopen();
  core::twin out;
  std::string error;
  EXPECT_EQ(store->load_twin(0, "a", out, error), load_status::found) << error;
  EXPECT_EQ(store->load_offset(0), 7);
}

TEST_F(StoreTest, MissingTwin) {
  put_twins(0, {"pump-1"}, 1);
  core::twin out;
  std::string error;
  EXPECT_EQ(store->load_twin(0, "pump-2", out, error), load_status::missing);
  EXPECT_EQ(store->load_twin(0, "pump-", out, error), load_status::missing);
  EXPECT_EQ(store->load_twin(0, "pump-10", out, error), load_status::missing);
  EXPECT_EQ(store->load_twin(1, "pump-1", out, error), load_status::missing);
  EXPECT_EQ(error, "");
}

TEST_F(StoreTest, CorruptTwinFailsWithReason) {
  commit_batch b;
  b.partition = 0;
  b.twins = {{"bad", std::string("\x63garbage", 8)}, {"empty", ""}};
  commit(b);

  core::twin out;
  std::string error;
  EXPECT_EQ(store->load_twin(0, "bad", out, error), load_status::failed);
  EXPECT_NE(error.find("\"bad\""), std::string::npos) << error;
  EXPECT_NE(error.find("corrupt"), std::string::npos) << error;
  EXPECT_NE(error.find("unknown twin format"), std::string::npos) << error;
  error.clear();
  EXPECT_EQ(store->load_twin(0, "empty", out, error), load_status::failed);
  EXPECT_NE(error.find("empty twin record"), std::string::npos) << error;

  // A listing that meets the corrupt twin reports it instead of skipping it.
  error.clear();
  auto page = store->list_twins({0}, "", {}, 10, 0, error);
  EXPECT_NE(error.find("\"bad\""), std::string::npos) << error;
  EXPECT_TRUE(page.twins.empty());
}

TEST_F(StoreTest, ListMergesPartitionsInAssetIdOrder) {
  auto all = fill_interleaved();
  auto page = list("", 100);
  EXPECT_EQ(ids_of(page.twins), all);
  EXPECT_EQ(page.next_page_token, "");

  // Duplicate and unordered partitions change nothing.
  page = list("", 100, 0, {}, {3, 1, 1, 0, 2});
  EXPECT_EQ(ids_of(page.twins), all);

  // A subset of partitions gives the sorted subset.
  page = list("", 100, 0, {}, {1, 3});
  auto ids = ids_of(page.twins);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_FALSE(ids.empty());
  EXPECT_LT(ids.size(), all.size());

  // No partitions: nothing.
  page = list("", 100, 0, {}, {});
  EXPECT_TRUE(page.twins.empty());
  EXPECT_EQ(page.next_page_token, "");
}

TEST_F(StoreTest, ListPagesWithStartAfterUntilExhausted) {
  auto all = fill_interleaved();
  for (size_t page_size : {size_t{1}, size_t{7}, size_t{10}, size_t{39}, size_t{40}}) {
    std::vector<std::string> seen;
    std::string token;
    size_t pages = 0;
    do {
      auto page = list(token, page_size);
      ++pages;
      ASSERT_LE(page.twins.size(), page_size);
      for (const auto& tw : page.twins)
        seen.push_back(tw.asset_id);
      if (!page.next_page_token.empty()) {
        EXPECT_EQ(page.twins.size(), page_size);
        EXPECT_EQ(page.next_page_token, page.twins.back().asset_id);
      }
      token = page.next_page_token;
      ASSERT_LE(pages, all.size() + 1) << "paging does not terminate";
    } while (!token.empty());
    EXPECT_EQ(seen, all) << "page size " << page_size;
    // Exact multiples end without an empty trailing page.
    EXPECT_EQ(pages, (all.size() + page_size - 1) / page_size) << "page size " << page_size;
  }

  // start_after need not be a stored id.
  auto page = list("asset-0155", 3);
  EXPECT_EQ(ids_of(page.twins), (std::vector<std::string>{"asset-016", "asset-017", "asset-018"}));
  page = list("zzz", 3);
  EXPECT_TRUE(page.twins.empty());
  EXPECT_EQ(page.next_page_token, "");
}

TEST_F(StoreTest, ListFiltersWithPredicate) {
  fill_interleaved();
  auto even = [](const core::twin& tw) { return (tw.asset_id.back() - '0') % 2 == 0; };
  std::vector<std::string> seen;
  std::string token;
  do {
    auto page = list(token, 4, 0, even);
    ASSERT_LE(page.twins.size(), 4u);
    for (const auto& tw : page.twins) {
      EXPECT_EQ(tw.kind, "pump");
      seen.push_back(tw.asset_id);
    }
    token = page.next_page_token;
  } while (!token.empty());
  std::vector<std::string> expected;
  for (int i = 0; i < 40; i += 2)
    expected.push_back(asset(i));
  EXPECT_EQ(seen, expected);

  auto none = list("", 10, 0, [](const core::twin&) { return false; });
  EXPECT_TRUE(none.twins.empty());
  EXPECT_EQ(none.next_page_token, "");
}

TEST_F(StoreTest, ListStopsAfterMaxScannedWithContinuationToken) {
  fill_interleaved();
  auto nines = [](const core::twin& tw) { return tw.asset_id.back() == '9'; };
  // Scans 8 twins per call: asset-000..007 match nothing, so the page is
  // empty but carries a token to continue from.
  auto first = list("", 10, 8, nines);
  EXPECT_TRUE(first.twins.empty());
  EXPECT_EQ(first.next_page_token, "asset-007");

  std::vector<std::string> seen;
  std::string token;
  size_t pages = 0;
  do {
    auto page = list(token, 10, 8, nines);
    ++pages;
    for (const auto& tw : page.twins)
      seen.push_back(tw.asset_id);
    token = page.next_page_token;
  } while (!token.empty() && pages < 100);
  EXPECT_EQ(seen, (std::vector<std::string>{"asset-009", "asset-019", "asset-029", "asset-039"}));
  EXPECT_EQ(pages, 5u);  // 40 twins, 8 scanned per page; the last one ends the scan

  // Whichever limit comes first cuts the page.
  auto page = list("", 2, 30, nines);
  EXPECT_EQ(ids_of(page.twins), (std::vector<std::string>{"asset-009", "asset-019"}));
  EXPECT_EQ(page.next_page_token, "asset-019");
}

TEST_F(StoreTest, AggregateMeasureHistoryIsARingApartFromTheTwinsOwn) {
  constexpr uint32_t capacity = 3;
  commit_batch b;
  b.partition = 2;
  // An aggregate that also reports telemetry of its own ("power").
  b.history.push_back(history("feeders/F1", "power", core::history_slot(1, capacity), 900, 1, 1.5));
  for (uint64_t v = 1; v <= 5; ++v) {
    auto& w = b.history.emplace_back();
    w.asset_id = "feeders/F1";
    w.slot = core::aggregate_history_slot(v, capacity);
    core::begin_history_segment(w.segment);
    core::append_history_sample(w.segment, "power", core::value{double(v) * 10}, int64_t(v) * 1000,
                                v);
    core::append_history_sample(w.segment, "members", core::value{int64_t(v)}, int64_t(v) * 1000,
                                v);
  }
  commit(b);
  // The twin's ring is unaffected by the measure ring.
  EXPECT_EQ(times(read(2, "feeders/F1", "power")), (std::vector<int64_t>{900}));

  bool more = false;
  std::string error;
  auto all = store->read_aggregate_history(2, "feeders/F1", {}, 0, 0, 0, 10, more, error);
  ASSERT_EQ(error, "");
  ASSERT_EQ(all.size(), 3u);  // versions 3, 4, 5: the ring keeps three
  EXPECT_FALSE(more);
  EXPECT_EQ(all[0].version, 3u);
  EXPECT_EQ(all[2].version, 5u);
  EXPECT_EQ(all[2].time_ms, 5000);
  ASSERT_EQ(all[2].measures.size(), 2u);
  EXPECT_EQ(all[2].measures[0], (std::pair<std::string, double>{"power", 50.0}));
  EXPECT_EQ(all[2].measures[1], (std::pair<std::string, double>{"members", 5.0}));

  // Pages by version, a measure selection, a time range.
  auto page = store->read_aggregate_history(2, "feeders/F1", {"members"}, 0, 0, 0, 2, more, error);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_TRUE(more);
  EXPECT_EQ(page[1].measures.size(), 1u);
  page = store->read_aggregate_history(2, "feeders/F1", {"members"}, 0, 0, page[1].version, 2, more,
                                       error);
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].version, 5u);
  EXPECT_FALSE(more);
  page = store->read_aggregate_history(2, "feeders/F1", {}, 4000, 5000, 0, 10, more, error);
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].version, 4u);
  EXPECT_TRUE(
      store->read_aggregate_history(2, "feeders/F10", {}, 0, 0, 0, 10, more, error).empty());
}

TEST_F(StoreTest, HistoryRingReadsRangeAndLimit) {
  constexpr uint32_t capacity = 4;
  commit_batch b;
  b.partition = 3;
  // Six samples into a ring of four: samples 1 and 2 are overwritten.
  for (uint64_t n = 1; n <= 6; ++n)
    b.history.push_back(history("pump-1", "temp", core::history_slot(n, capacity),
                                int64_t(n) * 1000, n, double(n)));
  // Neighbours whose keys or names share a prefix must not leak in.
  b.history.push_back(history("pump-10", "temp", 0, 500, 1, -1));
  b.history.push_back(history("pump-1", "temp2", 10, 500, 1, -1));
  b.history.push_back(history("pump-1", "tem", 11, 500, 1, -1));
  commit(b);
  // The same asset and property in another partition.
  commit_batch other;
  other.partition = 4;
  other.history = {history("pump-1", "temp", 0, 99, 1, -1)};
  commit(other);

  EXPECT_EQ(times(read(3, "pump-1", "temp")), (std::vector<int64_t>{3000, 4000, 5000, 6000}));

  // Sample 7 overwrites slot 2, which held the oldest one (sample 3).
  commit_batch next;
  next.partition = 3;
  next.history = {history("pump-1", "temp", core::history_slot(7, capacity), 7000, 7, 7.0)};
  commit(next);
  auto all = read(3, "pump-1", "temp");
  EXPECT_EQ(times(all), (std::vector<int64_t>{4000, 5000, 6000, 7000}));
  EXPECT_EQ(std::get<double>(all.back().val), 7.0);
  EXPECT_EQ(all.back().sequence, 7u);

  // [start, end): start inclusive, end exclusive, 0 unbounded.
  EXPECT_EQ(times(read(3, "pump-1", "temp", 4000, 7000)), (std::vector<int64_t>{4000, 5000, 6000}));
  EXPECT_EQ(times(read(3, "pump-1", "temp", 5000, 6000)), (std::vector<int64_t>{5000}));
  EXPECT_EQ(times(read(3, "pump-1", "temp", 4500)), (std::vector<int64_t>{5000, 6000, 7000}));
  EXPECT_EQ(times(read(3, "pump-1", "temp", 0, 5000)), (std::vector<int64_t>{4000}));
  // limit keeps the newest points of the range, still ascending.
  EXPECT_EQ(times(read(3, "pump-1", "temp", 0, 0, 2)), (std::vector<int64_t>{6000, 7000}));
  EXPECT_EQ(times(read(3, "pump-1", "temp", 4000, 7000, 2)), (std::vector<int64_t>{5000, 6000}));
  EXPECT_EQ(times(read(3, "pump-1", "temp", 0, 0, 10)).size(), 4u);
  EXPECT_TRUE(read(3, "pump-1", "temp", 8000).empty());
  EXPECT_TRUE(read(3, "pump-1", "pressure").empty());
  EXPECT_TRUE(read(3, "pump-2", "temp").empty());
  EXPECT_EQ(times(read(3, "pump-10", "temp")), (std::vector<int64_t>{500}));
  EXPECT_EQ(times(read(4, "pump-1", "temp")), (std::vector<int64_t>{99}));
}

TEST_F(StoreTest, HistoryOrdersEqualTimesBySequence) {
  commit_batch b;
  b.partition = 0;
  b.history = {history("a", "p", 0, 1000, 9, 1), history("a", "p", 1, 1000, 3, 2),
               history("a", "p", 2, 999, 20, 3)};
  commit(b);
  auto points = read(0, "a", "p");
  ASSERT_EQ(points.size(), 3u);
  EXPECT_EQ(points[0].sequence, 20u);
  EXPECT_EQ(points[1].sequence, 3u);
  EXPECT_EQ(points[2].sequence, 9u);
}

TEST_F(StoreTest, StoredTwinCountIsExactAndSurvivesReopen) {
  commit_batch b;
  b.partition = 2;
  b.created_twins = 3;
  commit(b);
  commit_batch c;
  c.partition = 5;
  c.created_twins = 4;
  commit(c);
  commit(b);  // 3 more in partition 2
  EXPECT_EQ(store->stored_twins(), 10u);
  EXPECT_EQ(store->stored_twins(2), 6u);
  EXPECT_EQ(store->stats().stored_twins, 10u);
  reopen();
  EXPECT_EQ(store->stored_twins(), 10u);
  ASSERT_FALSE(store->drop_partition(2));
  EXPECT_EQ(store->stored_twins(), 4u);
  reopen();
  EXPECT_EQ(store->stored_twins(), 4u);
}

TEST_F(StoreTest, HistorySegmentsHoldSeveralPropertiesAndRecords) {
  commit_batch b;
  b.partition = 0;
  runtime::history_write h;
  h.asset_id = "veh";
  h.slot = 0;
  core::begin_history_segment(h.segment);
  core::append_history_sample(h.segment, "speed", 10.0, 1000, 1);
  core::append_history_sample(h.segment, "gear", std::string{"D"}, 1000, 1);
  core::append_history_sample(h.segment, "speed", 12.0, 2000, 2);
  b.history = {h};
  commit(b);
  std::string error;
  auto speed = store->read_history(0, "veh", "speed", 0, 0, 0, error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_EQ(speed.size(), 2u);
  EXPECT_EQ(std::get<double>(speed[1].val), 12.0);
  auto gear = store->read_history(0, "veh", "gear", 0, 0, 0, error);
  ASSERT_EQ(gear.size(), 1u);
  EXPECT_EQ(std::get<std::string>(gear[0].val), "D");
}

TEST_F(StoreTest, HistoryIncludesTheOpenSegmentInTheTwinsStateRecord) {
  // Closed segments in their ring slots, the newest samples still in the twin's state.
  commit_batch b;
  b.partition = 0;
  b.history = {history("veh", "speed", 0, 1000, 1, 10.0),
               history("veh", "speed", 1, 2000, 2, 11.0)};
  core::twin tw;
  tw.asset_id = "veh";
  tw.version = 4;
  tw.history_segments = 2;
  core::begin_history_segment(tw.open_history);
  core::append_history_sample(tw.open_history, "speed", 12.0, 3000, 3);
  core::append_history_sample(tw.open_history, "gear", std::string{"D"}, 3000, 3);
  core::append_history_sample(tw.open_history, "speed", 13.0, 4000, 4);
  b.twins = {{"veh", encoded(tw)}};
  commit(b);
  std::string error;
  auto speed = store->read_history(0, "veh", "speed", 0, 0, 0, error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_EQ(speed.size(), 4u);
  for (size_t i = 0; i < speed.size(); ++i) {
    EXPECT_EQ(std::get<double>(speed[i].val), 10.0 + double(i));
    EXPECT_EQ(speed[i].source_time_ms, 1000 * int64_t(i + 1));
  }
  // Range and limit apply to both.
  auto late = store->read_history(0, "veh", "speed", 2000, 4000, 0, error);
  ASSERT_EQ(late.size(), 2u);
  EXPECT_EQ(std::get<double>(late[1].val), 12.0);
  auto newest = store->read_history(0, "veh", "speed", 0, 0, 1, error);
  ASSERT_EQ(newest.size(), 1u);
  EXPECT_EQ(std::get<double>(newest[0].val), 13.0);
  // The segment closes: its samples move to a ring slot, once.
  commit_batch next;
  next.partition = 0;
  runtime::history_write closed{"veh", 2, tw.open_history};
  next.history = {closed};
  tw.open_history.clear();
  tw.history_segments = 3;
  next.twins = {{"veh", encoded(tw)}};
  commit(next);
  EXPECT_EQ(store->read_history(0, "veh", "speed", 0, 0, 0, error).size(), 4u);
  EXPECT_EQ(store->read_history(0, "veh", "gear", 0, 0, 0, error).size(), 1u);
  EXPECT_TRUE(error.empty()) << error;
  // The caller sees the twin first (as of the same moment) and may stop there.
  uint64_t seen = 0;
  auto refused = store->read_history(0, "veh", "speed", 0, 0, 0, error, [&](const core::twin* t) {
    seen = t ? t->version : 0;
    return false;
  });
  EXPECT_TRUE(refused.empty());
  EXPECT_EQ(seen, 4u);
  bool missing = false;
  store->read_history(0, "nobody", "speed", 0, 0, 0, error, [&](const core::twin* t) {
    missing = t == nullptr;
    return true;
  });
  EXPECT_TRUE(missing);
  EXPECT_TRUE(error.empty()) << error;
}

TEST_F(StoreTest, CorruptHistoryPointFailsWithReason) {
  commit_batch b;
  b.partition = 0;
  b.history = {history("a", "p", 0, 1000, 1, 1)};
  b.history.push_back({"a", 1, "junk"});
  commit(b);
  std::string error;
  auto points = store->read_history(0, "a", "p", 0, 0, 0, error);
  EXPECT_TRUE(points.empty());
  EXPECT_NE(error.find("slot 1"), std::string::npos) << error;
  EXPECT_NE(error.find("corrupt"), std::string::npos) << error;
}

TEST_F(StoreTest, DropPartitionRemovesTwinsHistoryAndOffset) {
  for (int32_t p : {1, 2}) {
    commit_batch b;
    b.partition = p;
    for (int i = 0; i < 5; ++i) {
      auto id = asset(p * 10 + i);
      b.twins.emplace_back(id, encoded(make_twin(id, 1)));
      b.history.push_back(history(id, "temp", 0, 1000, 1, 1.0));
    }
    b.next_offset = 10 * p;
    commit(b);
  }
  auto err = store->drop_partition(1);
  ASSERT_FALSE(err) << *err;

  core::twin out;
  std::string error;
  EXPECT_EQ(store->load_twin(1, asset(10), out, error), load_status::missing);
  EXPECT_TRUE(read(1, asset(10), "temp").empty());
  EXPECT_EQ(store->load_offset(1), std::nullopt);
  EXPECT_EQ(store->load_twin(2, asset(20), out, error), load_status::found) << error;
  EXPECT_EQ(read(2, asset(20), "temp").size(), 1u);
  EXPECT_EQ(store->load_offset(2), 20);
  auto page = list("", 100, 0, {}, {1, 2});
  EXPECT_EQ(ids_of(page.twins),
            (std::vector<std::string>{asset(20), asset(21), asset(22), asset(23), asset(24)}));

  // Survives a reopen, and the partition can be filled again.
  reopen();
  EXPECT_EQ(store->load_twin(1, asset(10), out, error), load_status::missing);
  EXPECT_EQ(store->load_offset(2), 20);
  put_twins(1, {"again"}, 3);
  EXPECT_EQ(store->load_twin(1, "again", out, error), load_status::found) << error;
  EXPECT_EQ(store->load_offset(1), 3);
  EXPECT_TRUE(store->drop_partition(-1).has_value());
}

TEST_F(StoreTest, ReopenAfterClose) {
  fill_interleaved();
  for (int round = 0; round < 3; ++round) {
    reopen();
    EXPECT_EQ(list("", 100).twins.size(), 40u);
    for (int p = 0; p < 4; ++p)
      EXPECT_EQ(store->load_offset(p), 100 + p);
  }
  put_twins(0, {"zeta"}, 500);
  reopen();
  core::twin out;
  std::string error;
  EXPECT_EQ(store->load_twin(0, "zeta", out, error), load_status::found) << error;
  EXPECT_EQ(store->load_offset(0), 500);
}

TEST_F(StoreTest, SecondOpenOfSameDirFailsClearly) {
  store_options o;
  o.path = dir.string();
  std::string error;
  auto second = rocksdb_store::open(o, error);
  EXPECT_EQ(second, nullptr);
  EXPECT_EQ(error, "data dir " + dir.string() + " is in use by another fleettwin-node (LOCK held)");

  // Once the first closes, the directory can be opened again.
  store.reset();
  error.clear();
  second = rocksdb_store::open(o, error);
  EXPECT_NE(second, nullptr) << error;
}

TEST_F(StoreTest, OpenFailsClearlyWhileAnotherProcessHoldsTheLock) {
  store.reset();
  auto lock_file = (dir / "LOCK").string();
  int ready[2], release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Only async-signal-safe calls here: take the lock as RocksDB does, then
    // hold it until the parent closes the release pipe.
    ::close(release[1]);
    ::close(ready[0]);
    int fd = ::open(lock_file.c_str(), O_RDWR | O_CREAT, 0644);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    char ok = (fd >= 0 && ::fcntl(fd, F_SETLK, &fl) == 0) ? 1 : 0;
    (void)!::write(ready[1], &ok, 1);
    char c;
    (void)!::read(release[0], &c, 1);
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(release[0]);
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  EXPECT_EQ(ok, 1);

  store_options o;
  o.path = dir.string();
  std::string error;
  auto s = rocksdb_store::open(o, error);
  EXPECT_EQ(s, nullptr);
  EXPECT_EQ(error, "data dir " + dir.string() + " is in use by another fleettwin-node (LOCK held)");

  ::close(release[1]);
  ::close(ready[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  error.clear();
  s = rocksdb_store::open(o, error);
  EXPECT_NE(s, nullptr) << error;
}

TEST_F(StoreTest, OpenFailsClearlyWhenTheDirCannotBeCreated) {
  auto file = dir / "not-a-dir";
  {
    std::FILE* f = std::fopen(file.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  store_options o;
  o.path = (file / "rocksdb").string();
  std::string error;
  EXPECT_EQ(rocksdb_store::open(o, error), nullptr);
  EXPECT_NE(error.find(o.path), std::string::npos) << error;
}

TEST_F(StoreTest, StatsReportTheStore) {
  fill_interleaved();
  EXPECT_GE(store->estimate_twins(), 40u);
  auto s = store->stats();
  EXPECT_GE(store->estimate_twins(), 40u);
  EXPECT_GT(s.memtable_bytes, 0u);
  EXPECT_FALSE(s.write_stopped);
  EXPECT_EQ(s.stall_micros, 0u);
  // Twins reach SST files after a reopen (WAL recovery flushes them).
  reopen();
  list("", 100);
  s = store->stats();
  EXPECT_GE(store->estimate_twins(), 40u);
  EXPECT_GT(s.sst_bytes, 0u);
}

TEST_F(StoreTest, RestoredCheckpointBecomesTheCommittedOffset) {
  // A partition this node served before holds an older offset; a restore
  // from the changelog brings both the state and the input checkpoint
  // forward, so a revival resumes right after the restored state.
  put_twins(4, {"pump-1"}, 100);
  ASSERT_EQ(store->load_offset(4), 100);
  auto newer = make_twin("pump-1", 9);
  auto be64 = [](int64_t x) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i)
      out[i] = static_cast<char>(static_cast<uint64_t>(x) >> (8 * (7 - i)));
    return out;
  };
  const std::string state = encoded(newer);
  const std::string checkpoint = be64(11210);
  std::vector<storage::changelog_entry> entries{{"pump-1", state},
                                                {storage::changelog_checkpoint_key, checkpoint}};
  auto err = store->apply_changelog(4, entries, 77);
  ASSERT_FALSE(err) << *err;
  EXPECT_EQ(store->load_offset(4), 11210);
  EXPECT_EQ(store->load_changelog_offset(4), 77);
  core::twin out;
  std::string error;
  ASSERT_EQ(store->load_twin(4, "pump-1", out, error), load_status::found) << error;
  EXPECT_EQ(out.version, 9u);
  // The checkpoint is no twin and no history slot.
  EXPECT_EQ(store->load_twin(4, storage::changelog_checkpoint_key, out, error),
            load_status::missing);
  EXPECT_EQ(ids_of(list("", 100, 0, {}, {4}).twins), std::vector<std::string>{"pump-1"});
  reopen();
  EXPECT_EQ(store->load_offset(4), 11210);
}

TEST_F(StoreTest, ARestoredBatchEndsAtTheLastRecordOfEachKey) {
  // A changelog not compacted yet holds several versions of a twin, and
  // tombstones between them; one restored batch (written sorted, each key
  // once) must end exactly where the changelog does, in every column family.
  put_twins(5, {"zz-kept", "b-deleted-before"}, 3);
  std::vector<std::string> states;
  for (uint64_t v : {1, 2, 3, 4, 5})
    states.push_back(encoded(make_twin("c-pump", v)));
  const std::string a_state = encoded(make_twin("a-pump", 7));
  const std::string revived = encoded(make_twin("d-revived", 2));
  const std::string history_key = std::string{"c-pump"} + std::string(1, '\0') + "slot";
  const std::string checkpoint_1("\0\0\0\0\0\0\0\x05", 8);
  const std::string checkpoint_2("\0\0\0\0\0\0\0\x09", 8);
  std::vector<storage::changelog_entry> entries{
      {"c-pump", states[0]},
      {storage::changelog_checkpoint_key, checkpoint_1},
      {"d-revived", encoded(make_twin("d-revived", 1))},
      {"c-pump", states[1]},
      {"b-deleted-before", ""},
      {"d-revived", ""},
      {history_key, "older segment"},
      {"a-pump", a_state},
      {"c-pump", states[2]},
      {"c-pump", ""},
      {"c-pump", states[4]},
      {"d-revived", revived},
      {history_key, ""},
      {storage::changelog_checkpoint_key, checkpoint_2},
  };
  ASSERT_FALSE(store->apply_changelog(5, entries, 40));
  core::twin out;
  std::string error;
  ASSERT_EQ(store->load_twin(5, "c-pump", out, error), load_status::found) << error;
  EXPECT_EQ(out.version, 5u);
  ASSERT_EQ(store->load_twin(5, "d-revived", out, error), load_status::found) << error;
  EXPECT_EQ(out.version, 2u);
  EXPECT_EQ(store->load_twin(5, "b-deleted-before", out, error), load_status::missing);
  EXPECT_EQ(store->load_offset(5), 9);
  EXPECT_EQ(store->load_changelog_offset(5), 40);
  EXPECT_EQ(ids_of(list("", 100, 0, {}, {5}).twins),
            (std::vector<std::string>{"a-pump", "c-pump", "d-revived", "zz-kept"}));
  ASSERT_FALSE(store->recount_partition(5));
  EXPECT_EQ(store->stored_twins(5), 4u);
  reopen();
  ASSERT_EQ(store->load_twin(5, "c-pump", out, error), load_status::found) << error;
  EXPECT_EQ(out.version, 5u);
  EXPECT_EQ(store->load_offset(5), 9);
}

namespace {

core::member_entry meter_entry(double power, std::string via) {
  core::member_entry e;
  e.twin = true;
  e.depth = 1;
  e.paths = {{std::move(via), 1, "feeds"}};
  e.values.kind = "meter";
  e.values.version = 3;
  e.values.reported = {{"power", power}};
  return e;
}

std::string encoded_entry(const core::member_entry& e) {
  std::string out;
  core::encode_member_entry(e, out);
  return out;
}

}  // namespace

TEST_F(StoreTest, LoadManyReadsTwinsAndAggregatesLikeSingleLoads) {
  put_twins(0, {"pump-1", "pump-2"}, 1);
  commit_batch b;
  b.partition = 0;
  b.twins = {{"bad", std::string("\x63garbage", 8)}};
  core::aggregate_header h{"fleets/f1", "fleet", 4, 1000, 2, 1, 0, {{"power", 7.5}}};
  std::string header;
  core::encode_aggregate_header(h, header);
  b.aggregates.emplace_back("fleets/f1", header);
  b.members.push_back({"fleets/f1", "pump-1", encoded_entry(meter_entry(2.5, "pump-1"))});
  commit(b);

  runtime::load_request r;
  r.partition = 0;
  for (const char* id : {"pump-2", "nobody", "bad", "pump-1", "fleets/f1", "fleets/none"}) {
    auto& e = r.entities.emplace_back();
    e.id = id;
    e.aggregate = std::string_view{id}.starts_with("fleets/");
  }
  store->load_many(r);
  const auto& e = r.entities;
  for (size_t i : {0, 3}) {
    SCOPED_TRACE(e[i].id);
    ASSERT_EQ(e[i].twin_status, load_status::found) << e[i].error;
    core::twin single;
    std::string error;
    ASSERT_EQ(store->load_twin(0, e[i].id, single, error), load_status::found);
    std::string a, b;
    core::encode_twin(e[i].twin, a);
    core::encode_twin(single, b);
    EXPECT_EQ(a, b);
    EXPECT_EQ(e[i].aggregate_status, load_status::missing);  // not asked for
  }
  EXPECT_EQ(e[1].twin_status, load_status::missing);
  EXPECT_EQ(e[1].error, "");
  EXPECT_EQ(e[2].twin_status, load_status::failed);
  EXPECT_NE(e[2].error.find("\"bad\" in partition 0 is corrupt"), std::string::npos) << e[2].error;
  EXPECT_EQ(e[4].twin_status, load_status::missing);
  ASSERT_EQ(e[4].aggregate_status, load_status::found) << e[4].error;
  EXPECT_EQ(e[4].stored.header, h);
  ASSERT_EQ(e[4].stored.members.size(), 1u);
  EXPECT_EQ(e[4].stored.members[0].first, "pump-1");
  EXPECT_EQ(e[5].aggregate_status, load_status::missing);
}

TEST_F(StoreTest, AggregatesKeepAHeaderAndOneRecordPerMember) {
  core::aggregate_header h{"transformers/T1", "transformer", 4, 1000, 2, 2, 0, {{"power", 7.5}}};
  std::string header;
  core::encode_aggregate_header(h, header);
  commit_batch batch;
  batch.partition = 3;
  batch.aggregates.emplace_back("transformers/T1", header);
  batch.members.push_back({"transformers/T1", "m1", encoded_entry(meter_entry(2.5, "m1"))});
  batch.members.push_back({"transformers/T1", "m2", encoded_entry(meter_entry(5, "m2"))});
  // Another aggregate whose id extends this one's must not leak into it.
  batch.members.push_back({"transformers/T10", "m9", encoded_entry(meter_entry(1, "m9"))});
  batch.input_offsets = {42, 7};
  ASSERT_FALSE(store->commit(batch));
  runtime::stored_aggregate out;
  std::string error;
  ASSERT_EQ(store->load_aggregate(3, "transformers/T1", out, error), load_status::found) << error;
  EXPECT_EQ(out.header, h);
  ASSERT_EQ(out.members.size(), 2u);
  EXPECT_EQ(out.members[0].first, "m1");
  EXPECT_TRUE(out.members[1].second.same_state(meter_entry(5, "m2")));
  EXPECT_EQ(store->load_input_offset(3, runtime::input::contributions), 42);
  EXPECT_EQ(store->load_input_offset(3, runtime::input::relations), 7);
  EXPECT_EQ(store->load_aggregate(2, "transformers/T1", out, error), load_status::missing);

  // A member leaves: its record is deleted in the same batch as the header.
  commit_batch leave;
  leave.partition = 3;
  leave.members.push_back({"transformers/T1", "m1", ""});
  ASSERT_FALSE(store->commit(leave));
  reopen();
  ASSERT_EQ(store->load_aggregate(3, "transformers/T1", out, error), load_status::found);
  ASSERT_EQ(out.members.size(), 1u);
  EXPECT_EQ(out.members[0].first, "m2");
  EXPECT_EQ(store->load_input_offset(3, runtime::input::contributions), 42);

  // Restored from the changelog under the aggregate markers.
  const std::string member_key = std::string{storage::changelog_member_marker} + "feeders/F1" +
                                 std::string(1, '\0') + "transformers/T1";
  core::member_entry agg_member;
  agg_member.depth = 1;
  agg_member.paths = {{"transformers/T1", 1, "feeds"}};
  const std::string agg_member_bytes = encoded_entry(agg_member);
  core::aggregate_header fh{"feeders/F1", "feeder", 1, 5, 1, 0, 0, {}};
  std::string fh_bytes;
  core::encode_aggregate_header(fh, fh_bytes);
  const std::string header_key = std::string{storage::changelog_aggregate_marker} + "feeders/F1";
  const std::string relation_offset("\0\0\0\0\0\0\0\x09", 8);
  std::vector<storage::changelog_entry> entries{
      {header_key, fh_bytes},
      {member_key, agg_member_bytes},
      {storage::changelog_input_keys[1], relation_offset}};
  ASSERT_FALSE(store->apply_changelog(3, entries, 10));
  ASSERT_EQ(store->load_aggregate(3, "feeders/F1", out, error), load_status::found) << error;
  EXPECT_EQ(out.header, fh);
  ASSERT_EQ(out.members.size(), 1u);
  EXPECT_EQ(out.members[0].first, "transformers/T1");
  EXPECT_EQ(store->load_input_offset(3, runtime::input::relations), 9);
  // Nothing of it shows up as a twin.
  EXPECT_TRUE(list("", 100, 0, {}, {3}).twins.empty());

  // Dropping the partition drops its aggregates.
  ASSERT_FALSE(store->drop_partition(3));
  EXPECT_EQ(store->load_aggregate(3, "transformers/T1", out, error), load_status::missing);
  EXPECT_FALSE(store->load_input_offset(3, runtime::input::contributions));
  EXPECT_FALSE(store->load_input_offset(3, runtime::input::relations));
}

#include "services/storage/rocksdb_store.hpp"

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/snapshot.h>
#include <rocksdb/statistics.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <system_error>

namespace fleettwin::storage {

namespace {

/// Members reserved up front when an aggregate is loaded, at most.
constexpr uint64_t max_members_reserved = 1 << 16;

constexpr const char* twins_cf_name = "twins";
constexpr const char* history_cf_name = "history";
constexpr const char* aggregates_cf_name = "aggregates";
constexpr const char* members_cf_name = "members";
constexpr std::string_view offset_key_prefix = "offset/";
/// Follower-input offsets, by follower slot.
constexpr std::array<std::string_view, runtime::follower_input_count> input_offset_prefixes{
    "offset-contrib/", "offset-relation/"};
/// The next contribution applied, where it is beyond the stored members
/// (runtime::commit_batch::contributions_applied).
constexpr std::string_view applied_key_prefix = "applied-contrib/";
constexpr std::string_view count_key_prefix = "count/";
constexpr std::string_view changelog_key_prefix = "changelog/";
constexpr std::string_view setting_key_prefix = "setting/";
constexpr size_t partition_bytes = 4;
/// Memtable of the meta column family: it holds one tiny key per partition.
constexpr size_t meta_write_buffer_bytes = size_t{4} << 20;

void put_be32(std::string& out, uint32_t x) {
  char buf[4] = {static_cast<char>(x >> 24), static_cast<char>(x >> 16), static_cast<char>(x >> 8),
                 static_cast<char>(x)};
  out.append(buf, 4);
}

uint32_t get_be32(const char* p) {
  auto b = [p](int i) { return static_cast<uint32_t>(static_cast<unsigned char>(p[i])); };
  return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

std::string partition_prefix(int32_t partition) {
  std::string k;
  put_be32(k, static_cast<uint32_t>(partition));
  return k;
}

/// The first key after every key of `partition` (partition >= 0, so no wrap).
std::string partition_end(int32_t partition) {
  std::string k;
  put_be32(k, static_cast<uint32_t>(partition) + 1);
  return k;
}

void twin_key(std::string& out, int32_t partition, std::string_view asset_id) {
  out.clear();
  put_be32(out, static_cast<uint32_t>(partition));
  out.append(asset_id);
}

/// The common prefix of every history ring slot of one twin.
void history_prefix(std::string& out, int32_t partition, std::string_view asset_id) {
  twin_key(out, partition, asset_id);
  out.push_back('\0');
}

std::string count_key(int32_t partition) {
  std::string k{count_key_prefix};
  put_be32(k, static_cast<uint32_t>(partition));
  return k;
}

std::string offset_key(int32_t partition) {
  std::string k{offset_key_prefix};
  put_be32(k, static_cast<uint32_t>(partition));
  return k;
}

std::string input_offset_key(int32_t partition, size_t slot) {
  std::string k{input_offset_prefixes[slot]};
  put_be32(k, static_cast<uint32_t>(partition));
  return k;
}

std::string applied_key(int32_t partition) {
  std::string k{applied_key_prefix};
  put_be32(k, static_cast<uint32_t>(partition));
  return k;
}

/// The common prefix of every member record of one aggregate.
void members_prefix(std::string& out, int32_t partition, std::string_view aggregate_id) {
  twin_key(out, partition, aggregate_id);
  out.push_back('\0');
}

std::string changelog_key(int32_t partition) {
  std::string k{changelog_key_prefix};
  put_be32(k, static_cast<uint32_t>(partition));
  return k;
}

std::string encode_offset(int64_t offset) {
  auto x = static_cast<uint64_t>(offset);
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>(x >> (8 * (7 - i)));
  return out;
}

int64_t decode_offset(std::string_view bytes) {
  uint64_t x = 0;
  for (unsigned char c : bytes)
    x = (x << 8) | c;
  return static_cast<int64_t>(x);
}

std::string_view view(const rocksdb::Slice& s) {
  return {s.data(), s.size()};
}

bool contains(const std::string& s, std::string_view what) {
  return s.find(what) != std::string::npos;
}

/// An operator-facing message for a failed DB::Open.
std::string describe_open_failure(const std::string& path, const rocksdb::Status& s) {
  auto text = s.ToString();
  // Another process: "While lock file: <dir>/LOCK: Resource temporarily
  // unavailable"; this process: "lock hold by current process ...".
  if (s.IsIOError() && (contains(text, "While lock file") || contains(text, "lock hold by")))
    return "data dir " + path + " is in use by another fleettwin-node (LOCK held)";
  if (s.IsCorruption())
    return "data dir " + path + " is corrupt (" + text + ")";
  if (s.IsInvalidArgument() || s.IsNotSupported())
    return "data dir " + path + " holds an incompatible RocksDB database (" + text + ")";
  return "cannot open data dir " + path + ": " + text;
}

rocksdb::CompressionType pick_compression() {
  auto supported = rocksdb::GetSupportedCompressions();
  if (std::find(supported.begin(), supported.end(), rocksdb::kLZ4Compression) != supported.end())
    return rocksdb::kLZ4Compression;
  return rocksdb::kNoCompression;
}

rocksdb::ColumnFamilyOptions cf_options(const std::shared_ptr<rocksdb::Cache>& cache,
                                        rocksdb::CompressionType compression,
                                        size_t write_buffer_bytes, bool bloom) {
  rocksdb::ColumnFamilyOptions o;
  o.write_buffer_size = write_buffer_bytes;
  o.compression = compression;
  // Flushes and the first compaction write uncompressed files (RocksDB's own
  // tuning advice): they are rewritten soon, and LZ4 in the flush and
  // compaction threads took 15% of the node's CPU while a failover restore
  // wrote the changelog of the partitions it took over (perf). The levels
  // that hold most of the data stay compressed.
  if (compression != rocksdb::kNoCompression) {
    o.compression_per_level.assign(static_cast<size_t>(o.num_levels), compression);
    o.compression_per_level[0] = rocksdb::kNoCompression;
    o.compression_per_level[1] = rocksdb::kNoCompression;
  }
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = cache;
  if (bloom)
    t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // The same for the memtables: a work item's MultiGet of twins that are not
  // resident mostly misses (new twins), and without a filter each miss walks
  // every memtable's skip list (6% of the CPU while creating twins, perf).
  // 2% of the write buffer: 1.3 MiB per 64 MiB memtable.
  if (bloom) {
    o.memtable_prefix_bloom_size_ratio = 0.02;
    o.memtable_whole_key_filtering = true;
  }
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  return o;
}

}  // namespace

std::unique_ptr<rocksdb_store> rocksdb_store::open(const store_options& opts, std::string& error) {
  if (opts.path.empty()) {
    error = "no data dir given for the RocksDB store";
    return nullptr;
  }
  std::error_code ec;
  std::filesystem::create_directories(opts.path, ec);
  if (ec) {
    error = "cannot create data dir " + opts.path + ": " + ec.message();
    return nullptr;
  }

  std::unique_ptr<rocksdb_store> s{new rocksdb_store()};
  s->opts_ = opts;
  s->cache_ = rocksdb::NewLRUCache(opts.block_cache_bytes);
  s->statistics_ = rocksdb::CreateDBStatistics();
  // Tickers only (STALL_MICROS): no histograms, no timers on the write path.
  s->statistics_->set_stats_level(rocksdb::StatsLevel::kExceptHistogramOrTimers);

  rocksdb::DBOptions dbo;
  dbo.create_if_missing = true;
  dbo.create_missing_column_families = true;
  dbo.max_background_jobs = 2;
  // Memtable inserts of one write group run while the next group writes the
  // WAL: partitions commit concurrently.
  dbo.enable_pipelined_write = true;
  dbo.keep_log_file_num = 10;
  dbo.statistics = s->statistics_;

  auto compression = pick_compression();
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs{
      {rocksdb::kDefaultColumnFamilyName,
       cf_options(s->cache_, compression,
                  std::min(opts.write_buffer_bytes, meta_write_buffer_bytes), true)},
      {twins_cf_name, cf_options(s->cache_, compression, opts.write_buffer_bytes, true)},
      {history_cf_name, cf_options(s->cache_, compression, opts.write_buffer_bytes, false)},
      {aggregates_cf_name, cf_options(s->cache_, compression, opts.write_buffer_bytes, true)},
      {members_cf_name, cf_options(s->cache_, compression, opts.write_buffer_bytes, false)},
  };
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  auto st = rocksdb::DB::Open(dbo, opts.path, cfs, &handles, &raw);
  if (!st.ok()) {
    error = describe_open_failure(opts.path, st);
    return nullptr;
  }
  s->db_.reset(raw);
  s->meta_ = handles[0];
  s->twins_ = handles[1];
  s->history_ = handles[2];
  s->aggregates_ = handles[3];
  s->members_ = handles[4];
  // Load the twin counts of every partition stored here.
  std::unique_ptr<rocksdb::Iterator> it{s->db_->NewIterator(rocksdb::ReadOptions{}, s->meta_)};
  for (it->Seek(rocksdb::Slice{count_key_prefix.data(), count_key_prefix.size()}); it->Valid();
       it->Next()) {
    auto key = view(it->key());
    if (key.substr(0, count_key_prefix.size()) != count_key_prefix ||
        key.size() != count_key_prefix.size() + 4)
      break;
    auto partition = static_cast<int32_t>(get_be32(key.data() + count_key_prefix.size()));
    s->counts_[partition] = static_cast<uint64_t>(decode_offset(view(it->value())));
  }
  return s;
}

rocksdb_store::~rocksdb_store() {
  if (!db_)
    return;
  // A clean stop writes the memtables out, so that the next open does not replay them
  // from the WAL (about 2 s with 1M twins' memtables, all of it before the first serve).
  std::vector<rocksdb::ColumnFamilyHandle*> families;
  for (auto* h : {meta_, twins_, history_, aggregates_, members_})
    if (h)
      families.push_back(h);
  if (auto st = db_->Flush(rocksdb::FlushOptions{}, families); !st.ok())
    spdlog::warn("event=store_flush_failed path={} error=\"{}\"", opts_.path, st.ToString());
  for (auto* h : {meta_, twins_, history_, aggregates_, members_})
    if (h)
      db_->DestroyColumnFamilyHandle(h);
  auto st = db_->Close();
  if (!st.ok())
    spdlog::warn("event=store_close_failed path={} error=\"{}\"", opts_.path, st.ToString());
  db_.reset();
}

runtime::load_status rocksdb_store::load_twin(int32_t partition, std::string_view asset_id,
                                              core::twin& out, std::string& error) {
  return get_twin(nullptr, partition, asset_id, out, error);
}

runtime::load_status rocksdb_store::read_twin(const store_snapshot& at, int32_t partition,
                                              std::string_view asset_id, core::twin& out,
                                              std::string& error) {
  return get_twin(at.snapshot, partition, asset_id, out, error);
}

runtime::load_status rocksdb_store::read_aggregate(const store_snapshot& at, int32_t partition,
                                                   std::string_view id,
                                                   runtime::stored_aggregate& out,
                                                   std::string& error) {
  return get_aggregate(at.snapshot, partition, id, out, error);
}

bool rocksdb_store::read_samples(const store_snapshot& at, int32_t partition, const core::twin& tw,
                                 int64_t end_ms,
                                 std::vector<std::pair<std::string, core::history_point>>& out,
                                 std::string& error) {
  out.clear();
  std::string prefix;
  history_prefix(prefix, partition, tw.asset_id);
  std::string upper = prefix;
  upper.back() = '\x01';
  rocksdb::Slice upper_slice{upper};
  rocksdb::ReadOptions ro;
  ro.snapshot = at.snapshot;
  ro.iterate_upper_bound = &upper_slice;
  auto keep = [&](std::string_view name, core::history_point& p) {
    if (p.source_time_ms < end_ms)
      out.emplace_back(std::string{name}, std::move(p));
  };
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(ro, history_)};
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    auto key = view(it->key());
    if (key.size() != prefix.size() + 4) {
      error = "history of \"" + tw.asset_id + "\": malformed key";
      return false;
    }
    if (get_be32(key.data() + prefix.size()) & core::aggregate_history_bit)
      break;
    if (auto why = core::decode_history_segment(view(it->value()), keep)) {
      error = "history of \"" + tw.asset_id + "\" is corrupt: " + *why;
      return false;
    }
  }
  if (!it->status().ok()) {
    error = "scanning history of \"" + tw.asset_id + "\": " + it->status().ToString();
    return false;
  }
  if (!tw.open_history.empty())
    if (auto why = core::decode_history_segment(tw.open_history, keep)) {
      error = "the open history segment of \"" + tw.asset_id + "\" is corrupt: " + *why;
      return false;
    }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.second.source_time_ms != b.second.source_time_ms
               ? a.second.source_time_ms < b.second.source_time_ms
               : a.second.sequence < b.second.sequence;
  });
  return true;
}

namespace {

/// Where the node's own records live in the meta column family (apart from the
/// partitions' keys).
constexpr std::string_view record_key_prefix = "record/";

}  // namespace

bool rocksdb_store::put_record(std::string_view key, std::string_view value, std::string& error) {
  std::string k{record_key_prefix};
  k.append(key);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (auto st = db_->Put(wo, meta_, k, rocksdb::Slice{value.data(), value.size()}); !st.ok()) {
    error = "writing record " + std::string{key} + ": " + st.ToString();
    return false;
  }
  return true;
}

bool rocksdb_store::delete_record(std::string_view key, std::string& error) {
  std::string k{record_key_prefix};
  k.append(key);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (auto st = db_->Delete(wo, meta_, k); !st.ok()) {
    error = "deleting record " + std::string{key} + ": " + st.ToString();
    return false;
  }
  return true;
}

bool rocksdb_store::scan_records(
    std::string_view prefix,
    const std::function<void(std::string_view key, std::string_view value)>& each,
    std::string& error) {
  std::string start{record_key_prefix};
  start.append(prefix);
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, meta_)};
  for (it->Seek(start); it->Valid(); it->Next()) {
    auto key = view(it->key());
    if (key.substr(0, start.size()) != start)
      break;
    each(key.substr(record_key_prefix.size()), view(it->value()));
  }
  if (!it->status().ok()) {
    error = "reading records: " + it->status().ToString();
    return false;
  }
  return true;
}

std::shared_ptr<const store_snapshot> rocksdb_store::pin() {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  auto* s = new store_snapshot{db_->GetSnapshot(), now};
  return std::shared_ptr<const store_snapshot>(s, [this](const store_snapshot* p) {
    db_->ReleaseSnapshot(p->snapshot);
    delete p;
  });
}

runtime::load_status rocksdb_store::get_twin(const rocksdb::Snapshot* at, int32_t partition,
                                             std::string_view asset_id, core::twin& out,
                                             std::string& error) {
  std::string key;
  twin_key(key, partition, asset_id);
  rocksdb::PinnableSlice value;
  rocksdb::ReadOptions ro;
  ro.snapshot = at;
  auto st = db_->Get(ro, twins_, key, &value);
  if (st.IsNotFound())
    return runtime::load_status::missing;
  if (!st.ok()) {
    error = "reading twin \"" + std::string{asset_id} + "\": " + st.ToString();
    return runtime::load_status::failed;
  }
  if (auto why = core::decode_twin(view(value), out)) {
    error = "twin \"" + std::string{asset_id} + "\" in partition " + std::to_string(partition) +
            " is corrupt: " + *why;
    return runtime::load_status::failed;
  }
  return runtime::load_status::found;
}

void rocksdb_store::load_many(runtime::load_request& r) {
  const size_t n = r.entities.size();
  std::vector<std::string> keys(n);
  std::vector<rocksdb::Slice> slices(n);
  for (size_t i = 0; i < n; ++i) {
    twin_key(keys[i], r.partition, r.entities[i].id);
    slices[i] = keys[i];
  }
  std::vector<rocksdb::PinnableSlice> values(n);
  std::vector<rocksdb::Status> statuses(n);
  db_->MultiGet(rocksdb::ReadOptions{}, twins_, n, slices.data(), values.data(), statuses.data());
  for (size_t i = 0; i < n; ++i) {
    auto& e = r.entities[i];
    if (statuses[i].IsNotFound()) {
      e.twin_status = runtime::load_status::missing;
    } else if (!statuses[i].ok()) {
      e.error = "reading twin \"" + e.id + "\": " + statuses[i].ToString();
      e.twin_status = runtime::load_status::failed;
      continue;
    } else if (auto why = core::decode_twin(view(values[i]), e.twin)) {
      e.error = "twin \"" + e.id + "\" in partition " + std::to_string(r.partition) +
                " is corrupt: " + *why;
      e.twin_status = runtime::load_status::failed;
      continue;
    } else {
      e.twin_status = runtime::load_status::found;
    }
    values[i].Reset();
    if (e.aggregate)
      e.aggregate_status = load_aggregate(r.partition, e.id, e.stored, e.error);
  }
}

std::optional<std::string> rocksdb_store::commit(const runtime::commit_batch& b) {
  if (b.twins.empty() && b.history.empty() && !b.next_offset && !b.changelog_offset &&
      b.created_twins == 0 && b.aggregates.empty() && b.members.empty() &&
      !runtime::any_offset(b.input_offsets))
    return std::nullopt;
  // Reserve roughly the batch's size: keys, values and a few bytes of framing.
  size_t reserve = 64;
  for (const auto& [id, bytes] : b.twins)
    reserve += id.size() + bytes.size() + 16;
  for (const auto& h : b.history)
    reserve += h.asset_id.size() + h.segment.size() + 20;
  for (const auto& [id, bytes] : b.aggregates)
    reserve += id.size() + bytes.size() + 16;
  for (const auto& m : b.members)
    reserve += m.aggregate_id.size() + m.member_id.size() + m.entry.size() + 16;
  rocksdb::WriteBatch batch{reserve};

  auto failed = [&](const rocksdb::Status& st) {
    return "RocksDB commit of partition " + std::to_string(b.partition) +
           " failed: " + st.ToString();
  };
  std::string key;
  for (const auto& [id, bytes] : b.twins) {
    twin_key(key, b.partition, id);
    if (auto st = batch.Put(twins_, key, bytes); !st.ok())
      return failed(st);
  }
  for (const auto& h : b.history) {
    history_prefix(key, b.partition, h.asset_id);
    put_be32(key, h.slot);
    // An empty segment is a tombstone (an erased twin's history).
    auto st = h.segment.empty() ? batch.Delete(history_, key) : batch.Put(history_, key, h.segment);
    if (!st.ok())
      return failed(st);
  }
  for (const auto& [id, bytes] : b.aggregates) {
    twin_key(key, b.partition, id);
    if (auto st = batch.Put(aggregates_, key, bytes); !st.ok())
      return failed(st);
  }
  for (const auto& m : b.members) {
    members_prefix(key, b.partition, m.aggregate_id);
    key.append(m.member_id);
    auto st = m.entry.empty() ? batch.Delete(members_, key) : batch.Put(members_, key, m.entry);
    if (!st.ok())
      return failed(st);
  }
  if (b.next_offset) {
    if (auto st = batch.Put(meta_, offset_key(b.partition), encode_offset(*b.next_offset));
        !st.ok())
      return failed(st);
  }
  for (size_t slot = 0; slot < b.input_offsets.size(); ++slot)
    if (const auto& o = b.input_offsets[slot]) {
      if (auto st = batch.Put(meta_, input_offset_key(b.partition, slot), encode_offset(*o));
          !st.ok())
        return failed(st);
    }
  if (const auto& o = b.input_offsets[runtime::follower_slot(runtime::input::contributions)]) {
    // Always beside the contributions offset, so that it never outlives it.
    const auto applied = std::max(*o, b.contributions_applied.value_or(*o));
    if (auto st = batch.Put(meta_, applied_key(b.partition), encode_offset(applied)); !st.ok())
      return failed(st);
  }
  if (b.changelog_offset) {
    if (auto st = batch.Put(meta_, changelog_key(b.partition), encode_offset(*b.changelog_offset));
        !st.ok())
      return failed(st);
  }
  uint64_t count = 0;
  if (b.created_twins > 0) {
    {
      std::lock_guard<std::mutex> guard{counts_mutex_};
      count = counts_[b.partition] + b.created_twins;
    }
    if (auto st =
            batch.Put(meta_, count_key(b.partition), encode_offset(static_cast<int64_t>(count)));
        !st.ok())
      return failed(st);
  }
  rocksdb::WriteOptions wo;
  wo.sync = opts_.sync_commits;
  if (auto st = db_->Write(wo, &batch); !st.ok())
    return failed(st);
  if (b.created_twins > 0) {
    std::lock_guard<std::mutex> guard{counts_mutex_};
    counts_[b.partition] = count;
  }
  return std::nullopt;
}

uint64_t rocksdb_store::stored_twins(std::optional<int32_t> partition) {
  std::lock_guard<std::mutex> guard{counts_mutex_};
  if (partition) {
    auto it = counts_.find(*partition);
    return it == counts_.end() ? 0 : it->second;
  }
  uint64_t n = 0;
  for (const auto& [p, c] : counts_)
    n += c;
  return n;
}

std::optional<int64_t> rocksdb_store::load_offset(int32_t partition) {
  return read_meta_offset(offset_key(partition), partition);
}

std::optional<int64_t> rocksdb_store::load_input_offset(int32_t partition, runtime::input in) {
  return read_meta_offset(input_offset_key(partition, runtime::follower_slot(in)), partition);
}

std::optional<int64_t> rocksdb_store::load_contributions_applied(int32_t partition) {
  return read_meta_offset(applied_key(partition), partition);
}

runtime::load_status rocksdb_store::load_aggregate(int32_t partition, std::string_view id,
                                                   runtime::stored_aggregate& out,
                                                   std::string& error) {
  return get_aggregate(nullptr, partition, id, out, error);
}

runtime::load_status rocksdb_store::get_aggregate(const rocksdb::Snapshot* at, int32_t partition,
                                                  std::string_view id,
                                                  runtime::stored_aggregate& out,
                                                  std::string& error) {
  out = runtime::stored_aggregate{};
  std::string key;
  twin_key(key, partition, id);
  rocksdb::PinnableSlice value;
  rocksdb::ReadOptions get_options;
  get_options.snapshot = at;
  auto st = db_->Get(get_options, aggregates_, key, &value);
  if (st.IsNotFound())
    return runtime::load_status::missing;
  if (!st.ok()) {
    error = "reading aggregate \"" + std::string{id} + "\": " + st.ToString();
    return runtime::load_status::failed;
  }
  if (auto why = core::decode_aggregate_header(view(value), out.header)) {
    error = "aggregate \"" + std::string{id} + "\" is corrupt: " + *why;
    return runtime::load_status::failed;
  }
  members_prefix(key, partition, id);
  std::string end = key;
  end.back() = '\1';  // the first key after every member of this aggregate
  rocksdb::ReadOptions ro;
  ro.snapshot = at;
  rocksdb::Slice upper{end};
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(ro, members_)};
  // The header's count is a hint, not a promise: a corrupt header must not ask for
  // gigabytes (found by the changelog fuzzer).
  out.members.reserve(std::min<uint64_t>(out.header.members, max_members_reserved));
  for (it->Seek(key); it->Valid(); it->Next()) {
    auto k = view(it->key());
    core::member_entry e;
    if (auto why = core::decode_member_entry(view(it->value()), e)) {
      error = "member \"" + std::string{k.substr(key.size())} + "\" of aggregate \"" +
              std::string{id} + "\" is corrupt: " + *why;
      return runtime::load_status::failed;
    }
    out.members.emplace_back(std::string{k.substr(key.size())}, std::move(e));
  }
  if (!it->status().ok()) {
    error =
        "reading the members of aggregate \"" + std::string{id} + "\": " + it->status().ToString();
    return runtime::load_status::failed;
  }
  return runtime::load_status::found;
}

std::optional<int64_t> rocksdb_store::load_changelog_offset(int32_t partition) {
  return read_meta_offset(changelog_key(partition), partition);
}

std::optional<int64_t> rocksdb_store::read_meta_offset(const std::string& key, int32_t partition) {
  rocksdb::PinnableSlice value;
  auto st = db_->Get(rocksdb::ReadOptions{}, meta_, key, &value);
  if (st.IsNotFound())
    return std::nullopt;
  if (!st.ok()) {
    spdlog::error("event=offset_read_failed partition={} error=\"{}\"", partition, st.ToString());
    return std::nullopt;
  }
  if (value.size() != 8) {
    spdlog::error("event=offset_corrupt partition={} bytes={}", partition, value.size());
    return std::nullopt;
  }
  return decode_offset(view(value));
}

std::string rocksdb_store::merged_scan(rocksdb::ColumnFamilyHandle* cf,
                                       const std::vector<int32_t>& partitions,
                                       std::string_view start_after, size_t page_size,
                                       size_t max_scanned, const scan_visitor& visit,
                                       std::string& error, const rocksdb::Snapshot* at) {
  std::vector<int32_t> parts = partitions;
  std::sort(parts.begin(), parts.end());
  parts.erase(std::unique(parts.begin(), parts.end()), parts.end());
  for (auto p : parts)
    if (p < 0) {
      error = "invalid partition " + std::to_string(p);
      return {};
    }

  // Declared before the iterators so that it is released after them.
  rocksdb::ManagedSnapshot snapshot{db_.get()};
  const auto n = parts.size();
  // The bounds must outlive the iterators and must not move: sized up front.
  std::vector<std::string> uppers(n);
  std::vector<rocksdb::Slice> upper_slices(n);
  std::vector<std::unique_ptr<rocksdb::Iterator>> its(n);
  std::string seek;
  auto fail = [&](size_t i, const rocksdb::Status& st) {
    error = "scanning partition " + std::to_string(parts[i]) + ": " + st.ToString();
    return std::string{};
  };
  // Min-heap of cursor indexes by current id (ties: partition order).
  auto id_of = [&](size_t i) { return view(its[i]->key()).substr(partition_bytes); };
  auto after = [&](size_t a, size_t b) {
    auto ia = id_of(a), ib = id_of(b);
    return ia != ib ? ia > ib : a > b;
  };
  std::vector<size_t> heap;
  heap.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    uppers[i] = partition_end(parts[i]);
    upper_slices[i] = rocksdb::Slice{uppers[i]};
    rocksdb::ReadOptions ro;
    ro.snapshot = at ? at : snapshot.snapshot();
    ro.iterate_upper_bound = &upper_slices[i];
    // A listing may sweep the whole store: keep it from evicting hot blocks.
    ro.fill_cache = false;
    its[i].reset(db_->NewIterator(ro, cf));
    twin_key(seek, parts[i], start_after);
    its[i]->Seek(seek);
    if (its[i]->Valid() && id_of(i) == start_after)
      its[i]->Next();
    if (its[i]->Valid())
      heap.push_back(i);
    else if (!its[i]->status().ok())
      return fail(i, its[i]->status());
  }
  std::make_heap(heap.begin(), heap.end(), after);

  std::string last;
  size_t scanned = 0;
  size_t taken = 0;
  while (!heap.empty()) {
    if ((page_size != 0 && taken >= page_size) || (max_scanned != 0 && scanned >= max_scanned))
      return last;
    std::pop_heap(heap.begin(), heap.end(), after);
    auto i = heap.back();
    heap.pop_back();
    auto& it = *its[i];
    auto id = id_of(i);
    bool took = false;
    if (auto why = visit(parts[i], id, view(it.value()), took)) {
      error = *why;
      return {};
    }
    taken += took ? 1 : 0;
    last.assign(id);
    ++scanned;
    it.Next();
    if (it.Valid()) {
      heap.push_back(i);
      std::push_heap(heap.begin(), heap.end(), after);
    } else if (!it.status().ok()) {
      return fail(i, it.status());
    }
  }
  return {};
}

list_page rocksdb_store::list_twins(const std::vector<int32_t>& partitions,
                                    std::string_view start_after,
                                    const std::function<bool(const core::twin&)>& predicate,
                                    size_t page_size, size_t max_scanned, std::string& error,
                                    const store_snapshot* at) {
  list_page page;
  core::twin tw;
  page.next_page_token = merged_scan(
      twins_, partitions, start_after, page_size, max_scanned,
      [&](int32_t p, std::string_view id, std::string_view value,
          bool& took) -> std::optional<std::string> {
        if (auto why = core::decode_twin(value, tw))
          return "twin \"" + std::string{id} + "\" in partition " + std::to_string(p) +
                 " is corrupt: " + *why;
        if (tw.empty())
          return std::nullopt;  // an erased twin's tombstone
        if (!predicate || predicate(tw)) {
          page.twins.push_back(std::move(tw));
          took = true;
        }
        return std::nullopt;
      },
      error, at ? at->snapshot : nullptr);
  if (!error.empty())
    return {};
  return page;
}

aggregate_page rocksdb_store::list_aggregates(
    const std::vector<int32_t>& partitions, std::string_view start_after,
    const std::function<bool(const core::aggregate_header&)>& predicate, size_t page_size,
    size_t max_scanned, std::string& error, const store_snapshot* at) {
  aggregate_page page;
  core::aggregate_header h;
  page.next_page_token = merged_scan(
      aggregates_, partitions, start_after, page_size, max_scanned,
      [&](int32_t p, std::string_view id, std::string_view value,
          bool& took) -> std::optional<std::string> {
        if (auto why = core::decode_aggregate_header(value, h))
          return "aggregate \"" + std::string{id} + "\" in partition " + std::to_string(p) +
                 " is corrupt: " + *why;
        if (!predicate || predicate(h)) {
          page.aggregates.push_back(std::move(h));
          took = true;
        }
        return std::nullopt;
      },
      error, at ? at->snapshot : nullptr);
  if (!error.empty())
    return {};
  return page;
}

std::vector<core::history_point> rocksdb_store::read_history(
    int32_t partition, std::string_view asset_id, std::string_view property, int64_t start_ms,
    int64_t end_ms, size_t limit, std::string& error,
    const std::function<bool(const core::twin*)>& accept) {
  std::string prefix;
  history_prefix(prefix, partition, asset_id);
  // The prefix ends in '\0': bumping that byte bounds exactly its keys.
  std::string upper = prefix;
  upper.back() = '\x01';
  rocksdb::Slice upper_slice{upper};
  // The closed segments and the open one (inside the twin's state record) as of one
  // moment: a commit in between would show a segment's samples twice, or not at all.
  const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
  struct release {
    rocksdb::DB* db;
    const rocksdb::Snapshot* s;
    ~release() {
      db->ReleaseSnapshot(s);
    }
  } released{db_.get(), snapshot};
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  ro.iterate_upper_bound = &upper_slice;
  rocksdb::ReadOptions point_ro;
  point_ro.snapshot = snapshot;
  // The twin's state first: the caller may refuse to go on (`accept`), and its open
  // segment comes last.
  core::twin tw;
  {
    std::string key;
    twin_key(key, partition, asset_id);
    rocksdb::PinnableSlice state;
    auto st = db_->Get(point_ro, twins_, key, &state);
    if (st.ok()) {
      if (auto why = core::decode_twin(view(state), tw)) {
        error = "twin \"" + std::string{asset_id} + "\" is corrupt: " + *why;
        return {};
      }
    } else if (!st.IsNotFound()) {
      error = "reading twin \"" + std::string{asset_id} + "\": " + st.ToString();
      return {};
    }
    if (accept && !accept(st.ok() ? &tw : nullptr))
      return {};
  }
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(ro, history_)};

  std::vector<core::history_point> points;
  auto wanted = [&](std::string_view name, core::history_point& p) {
    if (name != property)
      return;
    if (start_ms != 0 && p.source_time_ms < start_ms)
      return;
    if (end_ms != 0 && p.source_time_ms >= end_ms)
      return;
    points.push_back(std::move(p));
  };
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    auto key = view(it->key());
    auto describe = [&] {
      std::string where =
          "history of \"" + std::string{asset_id} + "\" property \"" + std::string{property} + "\"";
      if (key.size() == prefix.size() + 4)
        where += " slot " + std::to_string(get_be32(key.data() + prefix.size()));
      return where;
    };
    if (key.size() != prefix.size() + 4) {
      error = describe() + ": malformed key of " + std::to_string(key.size()) + " bytes";
      return {};
    }
    if (get_be32(key.data() + prefix.size()) & core::aggregate_history_bit)
      break;  // the aggregate's measure ring follows the twin's own slots
    if (auto why = core::decode_history_segment(view(it->value()), wanted)) {
      error = describe() + " is corrupt: " + *why;
      return {};
    }
  }
  if (!it->status().ok()) {
    error = "scanning history of \"" + std::string{asset_id} + "\": " + it->status().ToString();
    return {};
  }
  // The open segment (inside the twin's state record) after the closed ones.
  if (!tw.open_history.empty())
    if (auto why = core::decode_history_segment(tw.open_history, wanted)) {
      error = "the open history segment of \"" + std::string{asset_id} + "\" is corrupt: " + *why;
      return {};
    }
  std::sort(points.begin(), points.end(), [](const auto& a, const auto& b) {
    return a.source_time_ms != b.source_time_ms ? a.source_time_ms < b.source_time_ms
                                                : a.sequence < b.sequence;
  });
  if (limit != 0 && points.size() > limit)
    points.erase(points.begin(), points.end() - static_cast<std::ptrdiff_t>(limit));
  return points;
}

std::vector<rocksdb_store::aggregate_point> rocksdb_store::read_aggregate_history(
    int32_t partition, std::string_view aggregate_id, const std::vector<std::string>& measures,
    int64_t start_ms, int64_t end_ms, uint64_t after_version, size_t limit, bool& more,
    std::string& error) {
  more = false;
  std::string prefix;
  history_prefix(prefix, partition, aggregate_id);
  std::string upper = prefix;
  upper.back() = '\x01';
  rocksdb::Slice upper_slice{upper};
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(ro, history_)};
  std::string first = prefix;
  put_be32(first, core::aggregate_history_bit);
  std::vector<aggregate_point> points;
  auto wanted = [&](std::string_view name) {
    return measures.empty() || std::find(measures.begin(), measures.end(), name) != measures.end();
  };
  for (it->Seek(first); it->Valid(); it->Next()) {
    auto key = view(it->key());
    if (key.size() != prefix.size() + 4) {
      error = "measure history of \"" + std::string{aggregate_id} + "\": malformed key of " +
              std::to_string(key.size()) + " bytes";
      return {};
    }
    aggregate_point point;
    auto why = core::decode_history_segment(view(it->value()),
                                            [&](std::string_view name, core::history_point& p) {
                                              point.time_ms = p.source_time_ms;
                                              point.version = p.sequence;
                                              if (!wanted(name))
                                                return;
                                              double v = 0;
                                              if (const auto* d = std::get_if<double>(&p.val))
                                                v = *d;
                                              else if (const auto* i = std::get_if<int64_t>(&p.val))
                                                v = static_cast<double>(*i);
                                              else
                                                return;
                                              point.measures.emplace_back(std::string{name}, v);
                                            });
    if (why) {
      error = "measure history of \"" + std::string{aggregate_id} + "\" slot " +
              std::to_string(get_be32(key.data() + prefix.size()) & ~core::aggregate_history_bit) +
              " is corrupt: " + *why;
      return {};
    }
    if (point.version <= after_version)
      continue;
    if ((start_ms != 0 && point.time_ms < start_ms) || (end_ms != 0 && point.time_ms >= end_ms))
      continue;
    points.push_back(std::move(point));
  }
  if (!it->status().ok()) {
    error = "scanning measure history of \"" + std::string{aggregate_id} +
            "\": " + it->status().ToString();
    return {};
  }
  std::sort(points.begin(), points.end(),
            [](const auto& a, const auto& b) { return a.version < b.version; });
  if (limit != 0 && points.size() > limit) {
    points.resize(limit);
    more = true;
  }
  return points;
}

uint64_t rocksdb_store::estimate_twins() {
  uint64_t v = 0;
  if (!db_->GetIntProperty(twins_, rocksdb::DB::Properties::kEstimateNumKeys, &v))
    return 0;
  return v;
}

uint64_t rocksdb_store::stored_aggregates() {
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(ro, aggregates_)};
  uint64_t n = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next())
    ++n;
  return n;
}

store_stats rocksdb_store::stats() {
  using props = rocksdb::DB::Properties;
  store_stats s;
  uint64_t v = 0;
  if (db_->GetAggregatedIntProperty(props::kTotalSstFilesSize, &v))
    s.sst_bytes = v;
  if (db_->GetAggregatedIntProperty(props::kSizeAllMemTables, &v))
    s.memtable_bytes = v;
  if (db_->GetAggregatedIntProperty(props::kEstimatePendingCompactionBytes, &v))
    s.pending_compaction_bytes = v;
  if (db_->GetIntProperty(props::kIsWriteStopped, &v))
    s.write_stopped = v != 0;
  if (db_->GetIntProperty(props::kActualDelayedWriteRate, &v))
    s.delayed_write_rate = v;
  s.block_cache_bytes = cache_->GetUsage();
  s.stored_twins = stored_twins();
  s.stall_micros = statistics_->getTickerCount(rocksdb::STALL_MICROS);
  return s;
}

std::optional<std::string> rocksdb_store::drop_partition(int32_t partition) {
  if (partition < 0)
    return "invalid partition " + std::to_string(partition);
  auto begin = partition_prefix(partition);
  auto end = partition_end(partition);
  rocksdb::WriteBatch batch;
  auto st = batch.DeleteRange(twins_, begin, end);
  if (st.ok())
    st = batch.DeleteRange(history_, begin, end);
  if (st.ok())
    st = batch.DeleteRange(aggregates_, begin, end);
  if (st.ok())
    st = batch.DeleteRange(members_, begin, end);
  if (st.ok())
    st = batch.Delete(meta_, offset_key(partition));
  for (size_t slot = 0; slot < input_offset_prefixes.size() && st.ok(); ++slot)
    st = batch.Delete(meta_, input_offset_key(partition, slot));
  if (st.ok())
    st = batch.Delete(meta_, applied_key(partition));
  if (st.ok())
    st = batch.Delete(meta_, count_key(partition));
  if (st.ok())
    st = batch.Delete(meta_, changelog_key(partition));
  if (st.ok()) {
    rocksdb::WriteOptions wo;
    wo.sync = opts_.sync_commits;
    st = db_->Write(wo, &batch);
  }
  if (!st.ok())
    return "dropping partition " + std::to_string(partition) + ": " + st.ToString();
  std::lock_guard<std::mutex> guard{counts_mutex_};
  counts_.erase(partition);
  return std::nullopt;
}

std::optional<std::string> rocksdb_store::apply_changelog(
    int32_t partition, const std::vector<changelog_entry>& entries, int64_t next_offset) {
  // The batch is written sorted by column family and key, each key once (its
  // last record in the batch: a later record of a key replaces an earlier
  // one). A memtable inserts keys in ascending order from where the previous
  // insert ended instead of searching its whole skip list each time: in a
  // failover restore that search was the readers' largest cost (perf: 15% of
  // the node's CPU), and a changelog not compacted yet holds many versions
  // of a busy twin.
  struct op {
    uint32_t cf_rank;  // index into `cfs`
    uint32_t key_begin;
    uint32_t key_size;
    uint32_t entry;
  };
  thread_local std::string keys;
  thread_local std::vector<op> ops;
  thread_local std::vector<uint32_t> meta;
  keys.clear();
  ops.clear();
  meta.clear();
  ops.reserve(entries.size());
  const auto cfs = state_families();
  const auto prefix = partition_prefix(partition);
  for (uint32_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    if (e.key == changelog_checkpoint_key || e.key == changelog_applied_key ||
        std::find(changelog_input_keys.begin(), changelog_input_keys.end(), e.key) !=
            changelog_input_keys.end()) {
      meta.push_back(i);
      continue;
    }
    // Twin state is keyed by the asset id, a history slot by asset '\0' slot,
    // an aggregate's header and members behind a marker byte (see the
    // header); the store's keys are the same behind the partition prefix.
    uint32_t rank = 0;
    std::string_view rest = e.key;
    if (!rest.empty() && rest.front() == changelog_aggregate_marker) {
      rank = 2;
      rest.remove_prefix(1);
    } else if (!rest.empty() && rest.front() == changelog_member_marker) {
      rank = 3;
      rest.remove_prefix(1);
    } else if (rest.find('\0') != std::string_view::npos) {
      rank = 1;
    }
    const auto begin = static_cast<uint32_t>(keys.size());
    keys.append(prefix).append(rest);
    ops.push_back({rank, begin, static_cast<uint32_t>(keys.size() - begin), i});
  }
  const auto key_of = [](const op& o) {
    return std::string_view{keys.data() + o.key_begin, o.key_size};
  };
  std::stable_sort(ops.begin(), ops.end(), [&](const op& a, const op& b) {
    return a.cf_rank != b.cf_rank ? a.cf_rank < b.cf_rank : key_of(a) < key_of(b);
  });
  // Reused: a restore writes batches of megabytes, and a fresh one each time
  // was paged in and given back to the kernel each time (perf: 9% of the
  // node's CPU in page faults and madvise).
  thread_local rocksdb::WriteBatch batch;
  batch.Clear();
  rocksdb::Status st;
  for (size_t i = 0; i < ops.size() && st.ok(); ++i) {
    const auto& o = ops[i];
    const auto key = key_of(o);
    if (i + 1 < ops.size() && ops[i + 1].cf_rank == o.cf_rank && key_of(ops[i + 1]) == key)
      continue;  // the same key again later in the changelog (the sort is stable)
    const auto value = entries[o.entry].value;
    const rocksdb::Slice k{key.data(), key.size()};
    st = value.empty() ? batch.Delete(cfs[o.cf_rank], k)
                       : batch.Put(cfs[o.cf_rank], k, {value.data(), value.size()});
  }
  // Positions, in changelog order (a later one of a key wins).
  for (size_t i = 0; i < meta.size() && st.ok(); ++i) {
    const auto& e = entries[meta[i]];
    if (e.value.size() != 8)
      continue;
    if (e.key == changelog_checkpoint_key) {
      // The input offset the state written so far covers: it becomes the
      // partition's committed offset, so that a revival or a restart resumes
      // exactly after the restored state, never from the beginning.
      st = batch.Put(meta_, offset_key(partition), e.value);
    } else if (e.key == changelog_applied_key) {
      st = batch.Put(meta_, applied_key(partition), e.value);
    } else {
      const auto at = std::find(changelog_input_keys.begin(), changelog_input_keys.end(), e.key);
      st =
          batch.Put(meta_, input_offset_key(partition, at - changelog_input_keys.begin()), e.value);
    }
  }
  if (st.ok())
    st = batch.Put(meta_, changelog_key(partition), encode_offset(next_offset));
  if (st.ok()) {
    rocksdb::WriteOptions wo;
    wo.sync = opts_.sync_commits;
    st = db_->Write(wo, &batch);
  }
  // What a batch of unusually large records took is not kept for good.
  constexpr size_t kept_bytes = size_t{64} << 20;
  if (batch.GetDataSize() > kept_bytes)
    batch = rocksdb::WriteBatch{};
  if (keys.capacity() > kept_bytes)
    std::string{}.swap(keys);
  if (!st.ok())
    return "restoring partition " + std::to_string(partition) +
           " from the changelog: " + st.ToString();
  return std::nullopt;
}

void rocksdb_store::hold_compactions() {
  std::lock_guard<std::mutex> guard{holds_mutex_};
  if (compaction_holds_++ > 0)
    return;
  for (auto* cf : state_families())
    if (auto st = db_->SetOptions(cf, {{"disable_auto_compactions", "true"}}); !st.ok())
      spdlog::warn("event=compaction_hold_failed error=\"{}\"", st.ToString());
  spdlog::info("event=compactions_held reason=\"a changelog is being read in bulk\"");
}

void rocksdb_store::release_compactions() {
  std::lock_guard<std::mutex> guard{holds_mutex_};
  if (compaction_holds_ <= 0 || --compaction_holds_ > 0)
    return;
  for (auto* cf : state_families())
    if (auto st = db_->SetOptions(cf, {{"disable_auto_compactions", "false"}}); !st.ok())
      spdlog::warn("event=compaction_release_failed error=\"{}\"", st.ToString());
  spdlog::info("event=compactions_released level0_files={}", level0_files());
}

int rocksdb_store::level0_files() {
  int most = 0;
  for (auto* cf : state_families()) {
    std::string v;
    if (db_->GetProperty(cf, "rocksdb.num-files-at-level0", &v))
      most = std::max(most, std::atoi(v.c_str()));
  }
  return most;
}

std::optional<std::string> rocksdb_store::recount_partition(int32_t partition) {
  auto begin = partition_prefix(partition);
  auto end = partition_end(partition);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper{end};
  ro.iterate_upper_bound = &upper;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(ro, twins_)};
  uint64_t n = 0;
  for (it->Seek(begin); it->Valid(); it->Next())
    ++n;
  if (!it->status().ok())
    return "counting twins of partition " + std::to_string(partition) + ": " +
           it->status().ToString();
  rocksdb::WriteOptions wo;
  wo.sync = opts_.sync_commits;
  auto st = db_->Put(wo, meta_, count_key(partition), encode_offset(static_cast<int64_t>(n)));
  if (!st.ok())
    return "storing the twin count of partition " + std::to_string(partition) + ": " +
           st.ToString();
  std::lock_guard<std::mutex> guard{counts_mutex_};
  counts_[partition] = n;
  return std::nullopt;
}

std::map<int32_t, int64_t> rocksdb_store::stored_offsets() {
  std::map<int32_t, int64_t> out;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, meta_)};
  for (it->Seek(offset_key_prefix); it->Valid(); it->Next()) {
    auto key = view(it->key());
    if (!key.starts_with(offset_key_prefix))
      break;
    if (key.size() != offset_key_prefix.size() + partition_bytes || it->value().size() != 8)
      continue;
    auto partition = static_cast<int32_t>(get_be32(key.data() + offset_key_prefix.size()));
    out[partition] = decode_offset(view(it->value()));
  }
  return out;
}

std::optional<std::string> rocksdb_store::forget_positions() {
  rocksdb::WriteBatch batch;
  for (auto prefix : {offset_key_prefix, input_offset_prefixes[0], input_offset_prefixes[1],
                      applied_key_prefix, changelog_key_prefix}) {
    std::string end{prefix};
    end.back() = static_cast<char>(end.back() + 1);
    if (auto st = batch.DeleteRange(meta_, std::string{prefix}, end); !st.ok())
      return "forgetting stored Kafka positions: " + st.ToString();
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (auto st = db_->Write(wo, &batch); !st.ok())
    return "forgetting stored Kafka positions: " + st.ToString();
  return std::nullopt;
}

std::optional<std::string> rocksdb_store::load_setting(std::string_view name) {
  std::string key{setting_key_prefix};
  key.append(name);
  std::string value;
  auto st = db_->Get(rocksdb::ReadOptions{}, meta_, key, &value);
  if (!st.ok())
    return std::nullopt;
  return value;
}

std::optional<std::string> rocksdb_store::save_setting(std::string_view name,
                                                       std::string_view value) {
  std::string key{setting_key_prefix};
  key.append(name);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (auto st = db_->Put(wo, meta_, key, rocksdb::Slice{value.data(), value.size()}); !st.ok())
    return "saving " + std::string{name} + ": " + st.ToString();
  return std::nullopt;
}

}  // namespace fleettwin::storage

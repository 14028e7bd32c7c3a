// A changelog record as a restore meets it, through the real store: a key and a value
// (empty: a tombstone) written with rocksdb_store::apply_changelog into a RocksDB in a
// temp dir, then read back the way the node reads what the key names: a twin
// (load_twin), a history segment (read_history), an aggregate's header or member
// (load_aggregate), a partition checkpoint (load_offset). Whatever the bytes, the
// restore writes them and every load ends with a value or an error, never a crash.
// Then a tombstone deletes the key again, so every input starts from the same store.
// Input: the key as a piece, then the value.

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "services/storage/rocksdb_store.hpp"
#include "tests/fuzz/fuzz_support.hpp"

using namespace fleettwin;

namespace {

storage::rocksdb_store& store() {
  static std::unique_ptr<storage::rocksdb_store> s = [] {
    auto dir = std::filesystem::temp_directory_path() /
               ("fleettwin-changelog-fuzz-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    storage::store_options opts;
    opts.path = dir.string();
    opts.block_cache_bytes = 8 << 20;
    opts.write_buffer_bytes = 4 << 20;
    std::string error;
    auto opened = storage::rocksdb_store::open(opts, error);
    if (!opened)
      fuzz::invariant_failed(error.c_str());
    std::atexit([] {
      std::filesystem::remove_all(std::filesystem::temp_directory_path() /
                                  ("fleettwin-changelog-fuzz-" + std::to_string(::getpid())));
    });
    return opened;
  }();
  return *s;
}

void check_load(runtime::load_status status, const std::string& error) {
  FUZZ_CHECK(status != runtime::load_status::failed || !error.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static int64_t offset = 0;
  fuzz::pieces in{data, size};
  const auto key = in.piece();
  const auto value = in.rest();
  auto& s = store();
  const std::vector<storage::changelog_entry> entries{{key, value}};
  FUZZ_CHECK(!s.apply_changelog(0, entries, ++offset).has_value());

  std::string error;
  if (!key.empty() && (key.front() == storage::changelog_aggregate_marker ||
                       key.front() == storage::changelog_member_marker)) {
    auto id = key.substr(1);
    id = id.substr(0, id.find('\0'));
    runtime::stored_aggregate aggregate;
    check_load(s.load_aggregate(0, id, aggregate, error), error);
  } else if (auto zero = key.find('\0'); zero != std::string_view::npos && zero > 0) {
    (void)s.read_history(0, key.substr(0, zero), "speed", 0, 0, 0, error);
  } else if (!key.empty() && key.front() != '\0') {
    core::twin tw;
    check_load(s.load_twin(0, key, tw, error), error);
  } else {
    (void)s.load_offset(0);
    (void)s.load_input_offset(0, runtime::input::contributions);
    (void)s.load_contributions_applied(0);
  }

  const std::vector<storage::changelog_entry> tombstone{{key, {}}};
  FUZZ_CHECK(!s.apply_changelog(0, tombstone, ++offset).has_value());
  return 0;
}

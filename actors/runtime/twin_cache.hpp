#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "actors/core/twin.hpp"

namespace fleettwin::runtime {

/// Snapshots of recently read twins, readable from any thread. Only asset
/// actors write it: they publish the snapshot they build for a reader and
/// withdraw it when the twin changes or is passivated. A query that hits it
/// is answered without crossing into the actor system.
class twin_cache {
public:
  explicit twin_cache(size_t shards = 64) : shards_(shards) {}

  std::shared_ptr<const core::twin> find(std::string_view asset_id) const {
    auto& s = shard(asset_id);
    std::lock_guard<std::mutex> guard{s.mutex};
    auto it = s.map.find(asset_id);
    return it == s.map.end() ? nullptr : it->second;
  }

  void put(const std::string& asset_id, std::shared_ptr<const core::twin> tw) {
    auto& s = shard(asset_id);
    std::lock_guard<std::mutex> guard{s.mutex};
    s.map.insert_or_assign(asset_id, std::move(tw));
  }

  void erase(std::string_view asset_id) {
    auto& s = shard(asset_id);
    std::lock_guard<std::mutex> guard{s.mutex};
    if (auto it = s.map.find(asset_id); it != s.map.end())
      s.map.erase(it);
  }

  size_t size() const {
    size_t n = 0;
    for (auto& s : shards_) {
      std::lock_guard<std::mutex> guard{s.mutex};
      n += s.map.size();
    }
    return n;
  }

private:
  struct hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const {
      return std::hash<std::string_view>{}(s);
    }
  };
  struct shard_type {
    mutable std::mutex mutex;
    std::unordered_map<std::string, std::shared_ptr<const core::twin>, hash, std::equal_to<>> map;
  };

  shard_type& shard(std::string_view id) const {
    return shards_[std::hash<std::string_view>{}(id) % shards_.size()];
  }

  mutable std::vector<shard_type> shards_;
};

}  // namespace fleettwin::runtime

#include "actors/core/ordered_values.hpp"

#include <algorithm>
#include <iterator>

namespace fleettwin::core {

size_t ordered_values::block_for(double x) const {
  auto it = std::lower_bound(blocks_.begin(), blocks_.end(), x,
                             [](const std::vector<double>& b, double v) { return b.back() < v; });
  if (it == blocks_.end())
    return blocks_.size() - 1;
  return static_cast<size_t>(it - blocks_.begin());
}

void ordered_values::insert(double x) {
  ++size_;
  if (blocks_.empty()) {
    blocks_.emplace_back().reserve(max_block);
    blocks_.back().push_back(x);
    return;
  }
  const size_t at = block_for(x);
  auto& b = blocks_[at];
  b.insert(std::upper_bound(b.begin(), b.end(), x), x);
  if (b.size() <= max_block)
    return;
  // Full: the upper half becomes a block of its own.
  std::vector<double> upper;
  upper.reserve(max_block);
  upper.assign(b.begin() + static_cast<std::ptrdiff_t>(b.size() / 2), b.end());
  b.resize(b.size() / 2);
  blocks_.insert(blocks_.begin() + static_cast<std::ptrdiff_t>(at) + 1, std::move(upper));
}

bool ordered_values::erase(double x) {
  if (blocks_.empty())
    return false;
  const size_t at = block_for(x);
  auto& b = blocks_[at];
  auto it = std::lower_bound(b.begin(), b.end(), x);
  if (it == b.end() || *it != x)
    return false;
  b.erase(it);
  --size_;
  if (b.empty()) {
    blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(at));
    return true;
  }
  // A small block joins its successor when both fit in one: the number of
  // blocks stays about size / (max_block / 2).
  if (b.size() < max_block / 4 && at + 1 < blocks_.size() &&
      b.size() + blocks_[at + 1].size() <= max_block) {
    auto& next = blocks_[at + 1];
    b.insert(b.end(), next.begin(), next.end());
    blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  }
  return true;
}

double ordered_values::nth(size_t k) const {
  if (k >= size_ / 2) {
    // From the top: high percentiles walk few blocks.
    size_t from_top = size_ - 1 - k;
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
      if (from_top < it->size())
        return (*it)[it->size() - 1 - from_top];
      from_top -= it->size();
    }
  }
  for (const auto& b : blocks_) {
    if (k < b.size())
      return b[k];
    k -= b.size();
  }
  return blocks_.back().back();
}

std::vector<double> ordered_values::values() const {
  std::vector<double> out;
  out.reserve(size_);
  for (const auto& b : blocks_)
    out.insert(out.end(), b.begin(), b.end());
  return out;
}

}  // namespace fleettwin::core

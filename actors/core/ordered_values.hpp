#pragma once

// A multiset of doubles that answers the k-th smallest in O(n / B): what an
// aggregate keeps per series for min, max and exact percentiles. Values live
// in sorted blocks of at most `max_block` in a vector, so inserts and
// erases move a few kilobytes at most and stay in cache, and a percentile
// walks block sizes instead of tree nodes. Pure C++ (DESIGN.md, principle 4).

#include <cstddef>
#include <vector>

namespace fleettwin::core {

class ordered_values {
public:
  /// Adds one occurrence of `x` (not NaN).
  void insert(double x);
  /// Removes one occurrence of `x`; false when there is none.
  bool erase(double x);

  size_t size() const {
    return size_;
  }
  bool empty() const {
    return size_ == 0;
  }
  /// Smallest and largest value (not empty).
  double min() const {
    return blocks_.front().front();
  }
  double max() const {
    return blocks_.back().back();
  }
  /// The k-th smallest value, from 0 (k < size()).
  double nth(size_t k) const;

  /// Every value in ascending order (tests).
  std::vector<double> values() const;

  static constexpr size_t max_block = 1024;

private:
  /// The block that holds `x`, or where it goes: the first whose last value
  /// is >= x (the last block when none is).
  size_t block_for(double x) const;

  std::vector<std::vector<double>> blocks_;  // sorted, non-empty, in order
  size_t size_ = 0;
};

}  // namespace fleettwin::core

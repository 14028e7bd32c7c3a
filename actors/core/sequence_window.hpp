#pragma once

#include <cstdint>

namespace fleettwin::core {

/// Remembers which of the last 64 sequence numbers were applied (the
/// anti-replay window of IPsec): a duplicate is recognised even when records
/// arrive slightly out of order, in constant space per twin.
class sequence_window {
public:
  static constexpr uint64_t width = 64;

  enum class verdict : uint8_t { fresh, duplicate, too_old };

  /// Classifies `seq` without recording it. Sequence 0 means "none": fresh.
  verdict check(uint64_t seq) const {
    if (seq == 0 || seq > highest_)
      return verdict::fresh;
    uint64_t distance = highest_ - seq;
    if (distance >= width)
      return verdict::too_old;
    return (bits_ >> distance) & 1u ? verdict::duplicate : verdict::fresh;
  }

  /// Records `seq` as applied. Precondition: check(seq) == fresh.
  void mark(uint64_t seq) {
    if (seq == 0)
      return;
    if (seq > highest_) {
      uint64_t shift = seq - highest_;
      bits_ = shift >= width ? 0 : bits_ << shift;
      bits_ |= 1u;
      highest_ = seq;
    } else {
      bits_ |= uint64_t{1} << (highest_ - seq);
    }
  }

  uint64_t highest() const {
    return highest_;
  }

  uint64_t bits() const {
    return bits_;
  }

  /// Forgets every sequence: the source restarted its counter.
  void reset() {
    highest_ = 0;
    bits_ = 0;
  }

  /// Restores a window from storage.
  void restore(uint64_t highest, uint64_t bits) {
    highest_ = highest;
    bits_ = bits;
  }

  friend bool operator==(const sequence_window&, const sequence_window&) = default;

private:
  uint64_t highest_ = 0;
  uint64_t bits_ = 0;
};

}  // namespace fleettwin::core

#pragma once

// The simulator's randomness: splitmix64, tiny, seedable, and identical on
// every platform, unlike the distributions of <random>. Only + and * on
// doubles, so results do not depend on the libm in use.

#include <cstdint>

namespace fleettwin::sim {

/// The next value of the splitmix64 stream `s`.
inline uint64_t next_u64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// A well-mixed hash of `x` (stateless: the same input, the same output).
inline uint64_t mix64(uint64_t x) {
  return next_u64(x);
}

/// Uniform in [0, 1).
inline double uniform(uint64_t& s) {
  return static_cast<double>(next_u64(s) >> 11) * 0x1.0p-53;
}

/// Uniform in [lo, hi).
inline double uniform(uint64_t& s, double lo, double hi) {
  return lo + (hi - lo) * uniform(s);
}

/// Irwin-Hall approximation of a standard normal.
inline double normal(uint64_t& s) {
  double sum = uniform(s) + uniform(s) + uniform(s) + uniform(s);
  return (sum - 2.0) * 1.7320508075688772;
}

}  // namespace fleettwin::sim

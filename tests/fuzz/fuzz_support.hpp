#pragma once

// Shared by the libFuzzer targets: splitting one input into fields, and stopping
// with a message libFuzzer reports (and saves the input for) when an invariant fails.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace fleettwin::fuzz {

/// Takes length-prefixed pieces off the front of the input: one byte of length
/// (0..255), then that many bytes (fewer if the input ends).
class pieces {
public:
  pieces(const uint8_t* data, size_t size) : rest_{reinterpret_cast<const char*>(data), size} {}

  uint8_t byte() {
    if (rest_.empty()) {
      return 0;
    }
    auto b = static_cast<uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return b;
  }
  std::string_view piece() {
    size_t n = byte();
    n = n < rest_.size() ? n : rest_.size();
    auto p = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return p;
  }
  /// Everything not taken yet.
  std::string_view rest() const {
    return rest_;
  }

private:
  std::string_view rest_;
};

[[noreturn]] inline void invariant_failed(const char* what) {
  std::fprintf(stderr, "fuzz invariant failed: %s\n", what);
  std::abort();
}

}  // namespace fleettwin::fuzz

#define FUZZ_CHECK(condition)                          \
  do {                                                 \
    if (!(condition))                                  \
      ::fleettwin::fuzz::invariant_failed(#condition); \
  } while (false)

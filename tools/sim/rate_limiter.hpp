#pragma once

// Token bucket pacing for the simulator. The caller passes the time in, so the
// arithmetic is testable without a clock and the caller decides how to sleep.

#include <algorithm>
#include <chrono>

namespace fleettwin::sim {

class token_bucket {
public:
  using clock = std::chrono::steady_clock;

  /// `rate` tokens per second; at most `burst` tokens accumulate while idle.
  /// The bucket starts with one token, so a run begins at the steady rate.
  token_bucket(double rate, double burst, clock::time_point now)
      : rate_(rate), burst_(std::max(1.0, burst)), tokens_(1.0), last_(now) {}

  /// Takes one token at `now`. Returns how long the caller should wait before
  /// using it (zero when it is available right away). Tokens may go into debt,
  /// so a caller that sleeps only above some threshold still keeps the rate.
  clock::duration acquire(clock::time_point now) {
    if (now > last_) {
      tokens_ = std::min(burst_, tokens_ + seconds(now - last_) * rate_);
      last_ = now;
    }
    tokens_ -= 1.0;
    if (tokens_ >= 0) {
      return clock::duration::zero();
    }
    return std::chrono::duration_cast<clock::duration>(
        std::chrono::duration<double>(-tokens_ / rate_));
  }

  double tokens() const {
    return tokens_;
  }

private:
  static double seconds(clock::duration d) {
    return std::chrono::duration<double>(d).count();
  }

  double rate_;
  double burst_;
  double tokens_;
  clock::time_point last_;
};

}  // namespace fleettwin::sim

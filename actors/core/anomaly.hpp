#pragma once

// Online anomaly detection of one numeric property, with no training pass:
// O(1) time per sample and a fixed-size state stored with the twin. Pure
// C++ (DESIGN.md, principle 4).
//
// Each sample gets a score in [0, 1] (0.5 exactly at a detector's
// threshold) from the strongest of these detectors:
// - spike: the one-step forecast error (see forecast.hpp; seasonal where
//   the model declares a period) against a robust running spread, or a rate
//   of change above the model's maximum;
// - level shift and drift: a two-sided CUSUM of the samples against a slow
//   baseline (level and trend learnt from the series, seasons removed); an
//   alarm reached within a few samples, or by a sample far off the
//   baseline, is a level shift, a slower one a drift. A shift that persists becomes the new normal
//   after `adapt_after` samples;
// - variance change: the short-term mean squared forecast error rising
//   above the long-term one;
// - stuck: the same value repeated beyond the model's limit, by samples or
//   by time, by a property that has varied before.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fleettwin::core {

enum class anomaly_kind : uint8_t { none, spike, level_shift, drift, variance, stuck };

const char* to_string(anomaly_kind k);

/// Detector settings, from the property's model (defaults suit an unknown
/// series).
struct detector_params {
  /// Above 1 flags smaller deviations; below 1 only larger ones.
  double sensitivity = 1;
  /// Samples learnt from before any is scored.
  uint32_t warmup = 10;
  /// Identical consecutive values that make a property stuck...
  uint32_t stuck_samples = 10;
  /// ...or the time it may keep one value (0: by samples only).
  int64_t stuck_after_ms = 0;
  /// Faster change (units per second) is a spike (0: no limit).
  double max_rate_per_s = 0;
  /// Samples after which a persisting shift is the new normal.
  uint32_t adapt_after = 30;
  /// After a pause (the twin outside the property's operating states), how
  /// long the samples are learnt from but not scored: the transient of a
  /// machine starting up, a vehicle setting off.
  int64_t settle_ms = 0;
};

/// What the detector keeps per property (fixed size; see encode_detector).
struct detector_state {
  /// Robust spread of the forecast errors: their running mean absolute value.
  double spread = 0;
  /// Short- and long-term mean squared forecast errors.
  double var_short = 0;
  double var_long = 0;
  /// The slow baseline (seasons removed).
  double base_level = 0;
  double base_trend = 0;
  /// Robust spread of the samples around the baseline: how far a series
  /// that wanders (a random walk, a slow mean-reverting process) normally
  /// strays from it, which the one-step errors do not show.
  double base_spread = 0;
  /// The deviations from the baseline are autocorrelated in a series that
  /// wanders: the last standardized deviation, and running means of the
  /// products of successive ones and of their squares (their ratio is the
  /// lag-1 autocorrelation).
  double base_last_z = 0;
  double base_lag_product = 0;
  double base_square = 0;
  double cusum_up = 0;
  double cusum_down = 0;
  /// The current run of identical values.
  double run_value = 0;
  int64_t run_since_ms = 0;
  int64_t last_time_ms = 0;
  uint32_t run_length = 0;
  uint32_t samples = 0;
  /// Samples since the CUSUM left zero, and since it alarmed.
  uint16_t cusum_steps = 0;
  uint16_t shifted_for = 0;
  /// Samples the baseline has learnt from (since the start or a new normal).
  uint16_t base_samples = 0;
  /// level_shift or drift while the CUSUM alarms.
  anomaly_kind shift = anomaly_kind::none;
  /// The property has changed value at least once.
  bool varied = false;
  /// The last sample came while the twin was outside the property's
  /// operating states; the next one inside resumes (see resume_detector).
  bool paused = false;
  /// Resumed after a pause, and not yet settled.
  bool resuming = false;
  /// Samples before this time are settling after a pause: not scored.
  int64_t settle_until_ms = 0;
  /// The finest resolution the values are written in (0.1 for 14.6; 0:
  /// not known yet): a series that moves in steps of it (a battery
  /// reported to 0.1 %) does not spike by one step after a flat run.
  double quantum = 0;

  bool operator==(const detector_state&) const = default;
};

/// One sample's verdict.
struct anomaly_result {
  double score = 0;
  /// The strongest detector when the score is at least 0.5, else none.
  anomaly_kind kind = anomaly_kind::none;
  /// Each detector's score.
  double spike = 0, shift = 0, variance = 0, stuck = 0;
};

/// Scores a sample. `error` is its one-step forecast error (nullopt for the
/// first sample), `season` the forecaster's seasonal component at its time,
/// `level` its level after the sample and `slope` its estimate of the
/// series' slope per sample (the baseline learns from them).
anomaly_result detect(detector_state& s, const detector_params& p, double value, int64_t time_ms,
                      std::optional<double> error, double season, double level, double slope);

/// A sample outside the property's operating states: not scored and not
/// learnt from; the detector waits for the next one inside.
void pause_detector(detector_state& s, int64_t time_ms);

/// The first sample after a pause: the CUSUM and a run of repeated values
/// start afresh, the spreads and the baseline learnt stay; samples within
/// `settle_ms` only follow (settle_detector). The first sample after
/// that compares the forecaster's level with the old baseline: a series
/// that came back elsewhere starts a new normal there. Scores nothing.
void resume_detector(detector_state& s, int64_t settle_ms, double value, int64_t time_ms);

/// A sample within the settle time after a pause: not scored or learnt
/// from (a run of repeated values goes on).
void settle_detector(detector_state& s, double value, int64_t time_ms);

/// Bit-exact encoding of the state.
void encode_detector(const detector_state& s, std::string& out);
/// False when `in` is not an encoded state; consumes what it read.
bool decode_detector(std::string_view& in, detector_state& s);

}  // namespace fleettwin::core

#include "actors/core/anomaly.hpp"

#include <algorithm>
#include <cmath>

#include "actors/core/wire.hpp"

namespace fleettwin::core {

namespace {

/// Thresholds at sensitivity 1.
constexpr double spike_z = 5;
constexpr double cusum_slack = 0.5;
constexpr double cusum_limit = 10;
/// A variance ratio of 4 (twice the spread).
const double variance_log_ratio = std::log(4.0);
/// A shift reached within this many samples is a level shift, else a drift.
constexpr uint16_t level_shift_steps = 6;
/// Or whose alarming sample lies this many spreads off the baseline.
constexpr double jump_z = 2.5;
/// Forecast errors beyond this many spreads count as this many (a spike
/// moves neither the spread nor the baseline much).
constexpr double clip_z = 3;
constexpr double spread_weight = 0.05;
constexpr double short_weight = 0.1;
constexpr double long_weight = 0.01;
/// The baseline's smoothing in the long run; it starts as a running mean of
/// the samples (level) and of the forecaster's slope (trend), so a noisy
/// first estimate does not linger.
constexpr double base_alpha = 0.02;
constexpr double base_beta = 0.005;
/// A slope is a trend when it moves the series by more than two spreads
/// over this many samples.
constexpr double trend_evidence_samples = 20;
/// Samples the forecaster's trend needs to settle (about 3 / its beta).
constexpr uint32_t trend_settles = 50;
/// After a pause, a series this many baseline spreads from its old normal
/// has a new one.
constexpr double new_normal_z = 8;
/// Mean absolute deviation to standard deviation (normal errors).
constexpr double mad_to_sigma = 1.2533141373155003;

/// The forecast errors' spread is never taken below this many quanta of
/// the values' resolution (one step of it scores far below a spike).
constexpr double quantum_spread = 0.5;

/// The resolution `x` is written in: 10^-k for the fewest decimals k (up
/// to 6) that write it, 0 for a value finer than that.
double resolution(double x) {
  double scale = 1;
  for (int k = 0; k <= 6; ++k, scale *= 10) {
    const double y = x * scale;
    if (std::abs(y - std::round(y)) <= 1e-9 * std::max(1.0, std::abs(y)))
      return 1 / scale;
  }
  return 0;
}

/// 0 at 0, 0.5 at u = 1 (the threshold), towards 1 beyond.
double squash(double u) {
  if (!(u > 0))
    return 0;
  const double u4 = u * u * u * u;
  return std::isfinite(u4) ? u4 / (1 + u4) : 1.0;
}

}  // namespace

const char* to_string(anomaly_kind k) {
  switch (k) {
    case anomaly_kind::none:
      return "none";
    case anomaly_kind::spike:
      return "spike";
    case anomaly_kind::level_shift:
      return "level_shift";
    case anomaly_kind::drift:
      return "drift";
    case anomaly_kind::variance:
      return "variance";
    case anomaly_kind::stuck:
      return "stuck";
  }
  return "none";
}

anomaly_result detect(detector_state& s, const detector_params& p, double value, int64_t time_ms,
                      std::optional<double> error, double season, double level, double slope) {
  anomaly_result out;
  const double sensitivity = p.sensitivity > 0 ? p.sensitivity : 1.0;
  const bool first = s.samples == 0;
  const double previous = s.run_value;
  const int64_t previous_ms = s.last_time_ms;
  if (s.samples < UINT32_MAX)
    ++s.samples;
  s.last_time_ms = std::max(s.last_time_ms, time_ms);

  // Stuck: the same value again and again, by a property that has varied.
  if (first || value != s.run_value) {
    // A new value may be written finer than those before (a repeated one
    // tells nothing new).
    if (const double r = resolution(value); r > 0 && (s.quantum == 0 || r < s.quantum))
      s.quantum = r;
    s.varied |= !first;
    s.run_value = value;
    s.run_since_ms = time_ms;
    s.run_length = 1;
  } else if (s.run_length < UINT32_MAX) {
    ++s.run_length;
  }
  const bool repeating = !first && value == previous;
  if (s.varied && s.run_length > 1) {
    double u = p.stuck_samples > 0
                   ? static_cast<double>(s.run_length) / static_cast<double>(p.stuck_samples)
                   : 0.0;
    if (p.stuck_after_ms > 0)
      u = std::max(
          u, static_cast<double>(time_ms - s.run_since_ms) / static_cast<double>(p.stuck_after_ms));
    out.stuck = squash(u);
  }

  if (!first && error) {
    const double e = *error;
    if (s.spread == 0) {
      s.spread = std::abs(e);
      s.var_short = s.var_long = e * e;
    }
    const double sigma = std::max({mad_to_sigma * s.spread, quantum_spread * s.quantum,
                                   1e-9 * std::max(1.0, std::abs(value))});
    const double z = e / sigma;
    if (s.resuming) {
      // Settled. A series back at its old normal goes on against it (a
      // drift across stops is still found); one that came back elsewhere
      // (a battery charged while parked) starts a new normal from where
      // the forecaster now has it.
      s.resuming = false;
      const double base_sigma = std::max(sigma, mad_to_sigma * s.base_spread);
      if (s.base_samples > 0 &&
          std::abs(level - (s.base_level + s.base_trend)) > new_normal_z * base_sigma)
        s.base_level = level;
    }
    const bool scored = s.samples > p.warmup;

    // Spike: the forecast error, or the rate of change beyond the model's.
    double u_spike = std::abs(z) / (spike_z / sensitivity);
    if (p.max_rate_per_s > 0 && time_ms > previous_ms) {
      const double rate =
          std::abs(value - previous) / (static_cast<double>(time_ms - previous_ms) / 1000.0);
      u_spike = std::max(u_spike, rate / p.max_rate_per_s);
    }
    if (scored)
      out.spike = squash(u_spike);

    // Variance change: recent squared errors against the long run (spikes
    // clipped, so that one spike is not a variance change). Only a rise
    // counts: errors falling below their long-run level is what a forecaster
    // that is still learning shows (a sensor gone quiet is "stuck").
    const double e2 = std::min(e * e, clip_z * clip_z * sigma * sigma);
    // Running means at first, exponential weights later.
    const double errors = static_cast<double>(s.samples - 1);
    if (!repeating || !s.varied) {
      s.var_short += std::max(short_weight, 1 / errors) * (e2 - s.var_short);
      s.var_long += std::max(long_weight, 1 / errors) * (e2 - s.var_long);
    }
    if (scored && s.samples > 3 * p.warmup && s.var_long > 0 && s.var_short > 0)
      out.variance =
          squash(std::log(s.var_short / s.var_long) / (variance_log_ratio / sensitivity));

    // Level shift and drift: CUSUM against the slow baseline. The baseline
    // starts learning once the forecaster's trend has settled, and the
    // CUSUM once the baseline has learnt for 1 / base_alpha samples.
    if (s.samples > trend_settles) {
      if (s.base_samples == 0) {
        s.base_level = level;
        s.base_trend = slope;
      }
      if (s.base_samples < UINT16_MAX)
        ++s.base_samples;
    }
    const double n = s.base_samples;
    const double deseasoned = value - season;
    const double predicted = s.base_level + s.base_trend;
    // The baseline's own scale: a series that wanders strays further from
    // it than its one-step errors, and that is not a shift.
    if (s.base_samples > 0 && s.base_spread == 0)
      s.base_spread = s.spread;
    const double base_sigma = std::max(sigma, mad_to_sigma * s.base_spread);
    const double zb_raw = std::clamp((deseasoned - predicted) / base_sigma, -clip_z, clip_z);
    // Successive deviations of a wandering series go the same way: their sum
    // grows like that of far fewer independent ones. Scaled by the variance
    // inflation of the lag-1 autocorrelation, a run of them counts as much as
    // independent evidence would.
    // (Below 0.1 it is the estimate's own noise on independent samples.)
    const double rho =
        s.base_square > 0 ? std::clamp(s.base_lag_product / s.base_square - 0.1, 0.0, 0.95) : 0.0;
    const double zb = zb_raw / std::sqrt((1 + rho) / (1 - rho));
    if (scored && s.base_samples > 0 && n > 1 / base_alpha) {
      const bool was_zero = s.cusum_up == 0 && s.cusum_down == 0;
      s.cusum_up = std::max(0.0, s.cusum_up + zb - cusum_slack);
      s.cusum_down = std::max(0.0, s.cusum_down - zb - cusum_slack);
      const double c = std::max(s.cusum_up, s.cusum_down);
      if (c == 0)
        s.cusum_steps = 0;
      else if (was_zero)
        s.cusum_steps = 1;
      else if (s.cusum_steps < UINT16_MAX)
        ++s.cusum_steps;
      const double limit = cusum_limit / sensitivity;
      if (c >= limit) {
        // A jump: reached quickly, or by samples far off the baseline
        // (the CUSUM may have wandered above zero before it).
        if (s.shift == anomaly_kind::none)
          s.shift = s.cusum_steps <= level_shift_steps || std::abs(zb_raw) >= jump_z
                        ? anomaly_kind::level_shift
                        : anomaly_kind::drift;
        if (++s.shifted_for >= p.adapt_after && p.adapt_after > 0) {
          // It persisted: the new normal, learnt afresh from the forecaster.
          s.base_samples = 0;
          s.cusum_up = s.cusum_down = 0;
          s.cusum_steps = s.shifted_for = 0;
          s.shift = anomaly_kind::none;
        }
      } else if (c < limit / 2) {
        s.shift = anomaly_kind::none;
        s.shifted_for = 0;
      }
      out.shift = squash(std::max(s.cusum_up, s.cusum_down) / limit);
    }
    if (s.base_samples > 1 && s.shift == anomaly_kind::none) {
      const double w = std::max(base_alpha, 1 / n);
      s.base_spread +=
          w * (std::min(std::abs(deseasoned - predicted), clip_z * base_sigma) - s.base_spread);
      s.base_lag_product += w * (zb_raw * s.base_last_z - s.base_lag_product);
      s.base_square += w * (zb_raw * zb_raw - s.base_square);
    }
    s.base_last_z = zb_raw;
    if (s.base_samples > 1) {
      const double clipped =
          predicted + std::clamp(deseasoned - predicted, -clip_z * sigma, clip_z * sigma);
      s.base_level = predicted + std::max(base_alpha, 1 / n) * (clipped - predicted);
      // A slope within the noise is no trend: a stationary series' baseline
      // stays level (a wandering slope would drag it off, and a slow drift
      // would be learnt as normal rather than found).
      const double trend = std::abs(slope) * trend_evidence_samples > 2 * base_sigma ? slope : 0.0;
      s.base_trend += std::max(base_beta, 1 / n) * (trend - s.base_trend);
    }

    // The spread learns from clipped errors, and not from a repeated value
    // (a stuck sensor would shrink it to nothing).
    if (!repeating || !s.varied)
      s.spread +=
          std::max(spread_weight, 1 / errors) * (std::min(std::abs(e), clip_z * sigma) - s.spread);
  }

  out.score = std::max({out.spike, out.shift, out.variance, out.stuck});
  if (out.score >= 0.5) {
    // Stuck is the most specific diagnosis: it wins whenever it alarms.
    if (out.stuck >= 0.5)
      out.kind = anomaly_kind::stuck;
    else if (out.score == out.spike)
      out.kind = anomaly_kind::spike;
    else if (out.score == out.shift)
      out.kind = s.shift != anomaly_kind::none ? s.shift : anomaly_kind::level_shift;
    else
      out.kind = anomaly_kind::variance;
  }
  return out;
}

void pause_detector(detector_state& s, int64_t time_ms) {
  s.paused = true;
  s.last_time_ms = std::max(s.last_time_ms, time_ms);
}

void resume_detector(detector_state& s, int64_t settle_ms, double value, int64_t time_ms) {
  s.paused = false;
  s.resuming = true;
  s.last_time_ms = std::max(s.last_time_ms, time_ms);
  s.run_value = value;
  s.run_since_ms = time_ms;
  s.run_length = 1;
  s.base_last_z = 0;
  s.cusum_up = s.cusum_down = 0;
  s.cusum_steps = s.shifted_for = 0;
  s.shift = anomaly_kind::none;
  s.settle_until_ms = time_ms + std::max<int64_t>(0, settle_ms);
}

void settle_detector(detector_state& s, double value, int64_t time_ms) {
  s.last_time_ms = std::max(s.last_time_ms, time_ms);
  if (value != s.run_value) {
    s.run_value = value;
    s.run_since_ms = time_ms;
    s.run_length = 1;
  }
}

void encode_detector(const detector_state& s, std::string& out) {
  // format (1: without base_spread; 2: without the pause and quantum; 3: 8-byte doubles)
  out.push_back(4);
  for (double d :
       {s.spread, s.var_short, s.var_long, s.base_level, s.base_trend, s.cusum_up, s.cusum_down,
        s.run_value, s.base_spread, s.base_last_z, s.base_lag_product, s.base_square})
    wire::put_real(out, d);
  wire::put_signed(out, s.run_since_ms);
  wire::put_signed(out, s.last_time_ms);
  wire::put_varint(out, s.run_length);
  wire::put_varint(out, s.samples);
  wire::put_varint(out, s.cusum_steps);
  wire::put_varint(out, s.shifted_for);
  wire::put_varint(out, s.base_samples);
  out.push_back(static_cast<char>(s.shift));
  out.push_back(s.varied ? 1 : 0);
  out.push_back(static_cast<char>((s.paused ? 1 : 0) | (s.resuming ? 2 : 0)));
  wire::put_signed(out, s.settle_until_ms);
  wire::put_real(out, s.quantum);
}

bool decode_detector(std::string_view& in, detector_state& s) {
  wire::reader r{in};
  const auto format = r.byte();
  if (format < 1 || format > 4)
    return false;
  auto real = [&] { return format >= 4 ? r.compact_real() : r.real(); };
  detector_state d;
  for (double* f : {&d.spread, &d.var_short, &d.var_long, &d.base_level, &d.base_trend, &d.cusum_up,
                    &d.cusum_down, &d.run_value})
    *f = real();
  if (format >= 2)
    for (double* f : {&d.base_spread, &d.base_last_z, &d.base_lag_product, &d.base_square})
      *f = real();
  d.run_since_ms = r.signed_varint();
  d.last_time_ms = r.signed_varint();
  d.run_length = static_cast<uint32_t>(std::min<uint64_t>(r.varint(), UINT32_MAX));
  d.samples = static_cast<uint32_t>(std::min<uint64_t>(r.varint(), UINT32_MAX));
  d.cusum_steps = static_cast<uint16_t>(std::min<uint64_t>(r.varint(), UINT16_MAX));
  d.shifted_for = static_cast<uint16_t>(std::min<uint64_t>(r.varint(), UINT16_MAX));
  d.base_samples = static_cast<uint16_t>(std::min<uint64_t>(r.varint(), UINT16_MAX));
  const auto shift = r.byte();
  const auto varied = r.byte();
  uint8_t pause = 0;
  if (format >= 3) {
    pause = r.byte();
    d.settle_until_ms = r.signed_varint();
    d.quantum = real();
  }
  if (!r.ok || shift > static_cast<uint8_t>(anomaly_kind::stuck) || varied > 1 || pause > 3)
    return false;
  d.paused = (pause & 1) != 0;
  d.resuming = (pause & 2) != 0;
  d.shift = static_cast<anomaly_kind>(shift);
  d.varied = varied == 1;
  s = d;
  in = r.in;
  return true;
}

}  // namespace fleettwin::core

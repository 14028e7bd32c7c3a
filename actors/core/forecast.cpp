#include "actors/core/forecast.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "actors/core/wire.hpp"

namespace fleettwin::core {

namespace {

constexpr double interval_weight = 0.1;
constexpr double error_weight = 0.05;
/// The longest search of time_to_threshold, in sample steps.
constexpr int64_t max_steps = 200'000;
constexpr double z80 = 1.2815515655446004;
constexpr double z95 = 1.959963984540054;

size_t bucket(const forecast_params& p, int64_t time_ms) {
  const int64_t phase = ((time_ms % p.period_ms) + p.period_ms) % p.period_ms;
  return static_cast<size_t>((static_cast<__int128>(phase) * season_buckets) / p.period_ms);
}

double seasonal(const forecaster_state& s, const forecast_params& p, int64_t time_ms) {
  return p.period_ms > 0 ? static_cast<double>(s.season[bucket(p, time_ms)]) : 0.0;
}

/// phi + phi^2 + ... + phi^h.
double damped_sum(double phi, double h) {
  if (phi >= 1)
    return h;
  return phi * (1 - std::pow(phi, h)) / (1 - phi);
}

double step_ms(const forecaster_state& s) {
  return s.interval_ms > 0 ? s.interval_ms : 1000.0;
}

/// Walks the forecast one sample step at a time: value and 95 % half-width.
class walker {
public:
  walker(const forecaster_state& s, const forecast_params& p) : s_{s}, p_{p} {}

  /// Advances to `h` steps ahead (h only grows).
  void to(double h) {
    // Variance of the h-step error (ETS(A,Ad,.)): sigma^2 (1 + sum_{j<h} c_j^2),
    // c_j = alpha (1 + beta (phi + ... + phi^j)).
    while (static_cast<double>(j_ + 1) < h) {
      ++j_;
      const double c = p_.alpha * (1 + p_.beta * damped_sum(p_.phi, static_cast<double>(j_)));
      c2_sum_ += c * c;
    }
    h_ = h;
  }
  double value(int64_t time_ms) const {
    return forecast_origin(s_, p_) + damped_sum(p_.phi, h_) * s_.trend + seasonal(s_, p_, time_ms);
  }
  double sigma() const {
    return std::sqrt(std::max(0.0, s_.error_var) * (1 + c2_sum_));
  }

private:
  const forecaster_state& s_;
  const forecast_params& p_;
  double h_ = 0;
  int64_t j_ = 0;
  double c2_sum_ = 0;
};

}  // namespace

namespace {

/// The last value's share of the forecast's starting point: by the inverse
/// squares of the two starting points' recent errors.
double persistence_weight(const forecaster_state& s) {
  const double a = s.smooth_error * s.smooth_error;
  const double b = s.persist_error * s.persist_error;
  return a + b > 0 ? a / (a + b) : 0.0;
}

}  // namespace

double forecast_origin(const forecaster_state& s, const forecast_params& p) {
  const double w = persistence_weight(s);
  return (1 - w) * s.level + w * (s.last_value - seasonal(s, p, s.last_time_ms));
}

double steady_slope(const forecaster_state& s, const forecast_params& p) {
  return p.beta > 0 && p.phi < 1 ? s.trend * (p.phi + (1 - p.phi) / p.beta) : s.trend;
}

double seasonal_component(const forecaster_state& s, const forecast_params& p, int64_t time_ms) {
  return seasonal(s, p, time_ms);
}

std::optional<double> predict_next(const forecaster_state& s, const forecast_params& p,
                                   int64_t time_ms) {
  if (s.samples == 0)
    return std::nullopt;
  return forecast_origin(s, p) + p.phi * s.trend + seasonal(s, p, time_ms);
}

std::optional<double> update_forecaster(forecaster_state& s, const forecast_params& p, double value,
                                        int64_t time_ms) {
  if (s.samples == 0) {
    s.level = value - seasonal(s, p, time_ms);
    s.trend = 0;
    s.last_value = value;
    s.last_time_ms = time_ms;
    s.samples = 1;
    return std::nullopt;
  }
  // The prediction from each starting point (predict_next blends them), and
  // how each did.
  const double season = seasonal(s, p, time_ms);
  const double ahead = p.phi * s.trend + season;
  const double from_level = s.level + ahead;
  const double from_last = s.last_value - seasonal(s, p, s.last_time_ms) + ahead;
  const double w_last = persistence_weight(s);
  const double error = value - ((1 - w_last) * from_level + w_last * from_last);
  const double w = std::max(error_weight, 1.0 / static_cast<double>(s.samples));
  s.smooth_error += w * (std::abs(value - from_level) - s.smooth_error);
  s.persist_error += w * (std::abs(value - from_last) - s.persist_error);
  if (const auto dt = static_cast<double>(time_ms - s.last_time_ms); dt > 0)
    s.interval_ms = s.interval_ms > 0 ? s.interval_ms + interval_weight * (dt - s.interval_ms) : dt;
  s.abs_error_sum += std::abs(error);
  s.naive_abs_error_sum += std::abs(value - s.last_value);
  s.error_var =
      s.samples == 1 ? error * error : s.error_var + error_weight * (error * error - s.error_var);
  const double level = p.alpha * (value - season) + (1 - p.alpha) * (s.level + p.phi * s.trend);
  s.trend = p.beta * (level - s.level) + (1 - p.beta) * p.phi * s.trend;
  s.level = level;
  if (p.period_ms > 0) {
    // A slice of the period sees many samples when they come often: each
    // moves it by its share, so that a slice learns at the same pace per
    // period however often the property reports (and does not soak up a
    // change of level within one slice).
    const double slice_ms = static_cast<double>(p.period_ms) / season_buckets;
    const double gamma =
        s.interval_ms > 0 ? p.gamma * std::min(1.0, s.interval_ms / slice_ms) : p.gamma;
    auto& b = s.season[bucket(p, time_ms)];
    b = static_cast<float>(gamma * (value - level) + (1 - gamma) * static_cast<double>(b));
  }
  s.last_value = value;
  s.last_time_ms = std::max(s.last_time_ms, time_ms);
  if (s.samples < UINT32_MAX)
    ++s.samples;
  return error;
}

void follow_forecaster(forecaster_state& s, double value, int64_t time_ms) {
  if (s.samples == 0)
    return;
  s.last_value = value;
  s.last_time_ms = std::max(s.last_time_ms, time_ms);
}

void reanchor_forecaster(forecaster_state& s, const forecast_params& p, double value,
                         int64_t time_ms) {
  if (s.samples == 0) {
    update_forecaster(s, p, value, time_ms);
    return;
  }
  s.level = value - seasonal(s, p, time_ms);
  s.last_value = value;
  s.last_time_ms = std::max(s.last_time_ms, time_ms);
}

std::vector<forecast_point> forecast(const forecaster_state& s, const forecast_params& p,
                                     int64_t horizon_ms, int64_t step, size_t max_points) {
  std::vector<forecast_point> out;
  if (s.samples == 0 || horizon_ms <= 0)
    return out;
  const double interval = step_ms(s);
  if (step <= 0)
    step = std::max<int64_t>(1, static_cast<int64_t>(std::llround(interval)));
  walker w{s, p};
  for (int64_t t = step; t <= horizon_ms && out.size() < max_points; t += step) {
    w.to(static_cast<double>(t) / interval);
    forecast_point pt;
    pt.time_ms = s.last_time_ms + t;
    pt.value = w.value(pt.time_ms);
    const double sigma = w.sigma();
    pt.lower80 = pt.value - z80 * sigma;
    pt.upper80 = pt.value + z80 * sigma;
    pt.lower95 = pt.value - z95 * sigma;
    pt.upper95 = pt.value + z95 * sigma;
    out.push_back(pt);
  }
  return out;
}

threshold_crossing time_to_threshold(const forecaster_state& state, const forecast_params& params,
                                     double threshold, bool above, int64_t horizon_ms) {
  // Where the slope leads: undamped (damping would bend every linear
  // decline away from its threshold).
  auto s = state;
  s.trend = steady_slope(state, params);
  auto p = params;
  p.phi = 1;
  threshold_crossing out;
  if (s.samples == 0 || horizon_ms <= 0)
    return out;
  const double interval = step_ms(s);
  const int64_t steps = std::min<int64_t>(
      max_steps, static_cast<int64_t>(static_cast<double>(horizon_ms) / interval));
  auto beyond = [&](double v) { return above ? v >= threshold : v <= threshold; };
  walker w{s, p};
  for (int64_t h = 1; h <= steps && !out.latest_ms; ++h) {
    w.to(static_cast<double>(h));
    const auto t =
        s.last_time_ms + static_cast<int64_t>(std::llround(static_cast<double>(h) * interval));
    const double v = w.value(t);
    const double half = z95 * w.sigma();
    // The band's edge nearer the threshold crosses first, the farther last.
    if (!out.earliest_ms && beyond(above ? v + half : v - half))
      out.earliest_ms = t;
    if (!out.expected_ms && beyond(v))
      out.expected_ms = t;
    if (beyond(above ? v - half : v + half))
      out.latest_ms = t;
  }
  return out;
}

std::optional<double> mase(const forecaster_state& s) {
  if (s.samples < 3 || s.naive_abs_error_sum <= 0)
    return std::nullopt;
  return s.abs_error_sum / s.naive_abs_error_sum;
}

void encode_forecaster(const forecaster_state& s, std::string& out) {
  out.push_back(3);  // format (1: without smooth_error, persist_error; 2: 8-byte doubles)
  for (double d : {s.level, s.trend, s.error_var, s.interval_ms, s.abs_error_sum,
                   s.naive_abs_error_sum, s.last_value, s.smooth_error, s.persist_error})
    wire::put_real(out, d);
  wire::put_signed(out, s.last_time_ms);
  wire::put_varint(out, s.samples);
  const bool seasons = std::any_of(s.season.begin(), s.season.end(), [](float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    return bits != 0;
  });
  wire::put_varint(out, seasons ? season_buckets : 0);
  if (seasons)
    for (float f : s.season) {
      uint32_t bits;
      std::memcpy(&bits, &f, sizeof bits);
      wire::put_varint(out, bits);
    }
}

bool decode_forecaster(std::string_view& in, forecaster_state& s) {
  wire::reader r{in};
  const auto format = r.byte();
  if (format < 1 || format > 3)
    return false;
  auto real = [&] { return format >= 3 ? r.compact_real() : r.real(); };
  forecaster_state d;
  for (double* f : {&d.level, &d.trend, &d.error_var, &d.interval_ms, &d.abs_error_sum,
                    &d.naive_abs_error_sum, &d.last_value})
    *f = real();
  if (format >= 2)
    for (double* f : {&d.smooth_error, &d.persist_error})
      *f = real();
  d.last_time_ms = r.signed_varint();
  const auto samples = r.varint();
  d.samples = static_cast<uint32_t>(std::min<uint64_t>(samples, UINT32_MAX));
  const auto buckets = r.varint();
  if (buckets != 0 && buckets != season_buckets)
    return false;
  for (size_t i = 0; i < buckets && r.ok; ++i) {
    const auto bits = static_cast<uint32_t>(r.varint());
    std::memcpy(&d.season[i], &bits, sizeof bits);
  }
  if (!r.ok)
    return false;
  s = d;
  in = r.in;
  return true;
}

}  // namespace fleettwin::core

#include "tools/sim/fault.hpp"

#include <charconv>
#include <cmath>
#include <vector>

#include <fmt/format.h>

namespace fleettwin::sim {

namespace {

std::optional<double> parse_double(std::string_view s) {
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size() || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    auto pos = s.find(sep);
    out.push_back(s.substr(0, pos));
    if (pos == std::string_view::npos) {
      return out;
    }
    s.remove_prefix(pos + 1);
  }
}

int64_t seconds_to_ms(double s) {
  return std::llround(s * 1000.0);
}

}  // namespace

std::string_view to_string(fault_type t) {
  switch (t) {
    case fault_type::drift:
      return "drift";
    case fault_type::spike:
      return "spike";
    case fault_type::stuck:
      return "stuck";
    case fault_type::dropout:
      return "dropout";
    case fault_type::level_shift:
      return "level_shift";
    case fault_type::variance:
      return "variance";
  }
  return "unknown";
}

std::optional<fault_type> parse_fault_type(std::string_view s) {
  for (auto t : {fault_type::drift, fault_type::spike, fault_type::stuck, fault_type::dropout,
                 fault_type::level_shift, fault_type::variance}) {
    if (to_string(t) == s) {
      return t;
    }
  }
  return std::nullopt;
}

double default_magnitude(fault_type t) {
  switch (t) {
    case fault_type::drift:
    case fault_type::spike:
    case fault_type::level_shift:
      return 10.0;
    case fault_type::variance:
      return 5.0;
    default:
      return 0.0;
  }
}

std::optional<fault> parse_fault(std::string_view spec, std::string& error) {
  auto parts = split(spec, ':');
  if (parts.size() != 5 && parts.size() != 6) {
    error = fmt::format("fault '{}': expected TYPE:ASSET:PROPERTY:START_S:DURATION_S[:MAGNITUDE]",
                        spec);
    return std::nullopt;
  }
  fault f;
  auto type = parse_fault_type(parts[0]);
  if (!type) {
    error =
        fmt::format("fault '{}': unknown type '{}' (drift, spike, stuck, dropout)", spec, parts[0]);
    return std::nullopt;
  }
  f.type = *type;
  if (parts[1].empty()) {
    error = fmt::format("fault '{}': empty asset id", spec);
    return std::nullopt;
  }
  f.asset_id = parts[1];
  if (parts[2].empty()) {
    error = fmt::format("fault '{}': empty property (use '*' for all)", spec);
    return std::nullopt;
  }
  f.property = parts[2];
  auto start = parse_double(parts[3]);
  auto duration = parse_double(parts[4]);
  if (!start || *start < 0) {
    error = fmt::format("fault '{}': START_S must be a number >= 0", spec);
    return std::nullopt;
  }
  if (!duration || *duration < 0 || (*duration == 0 && f.type != fault_type::spike)) {
    error = fmt::format("fault '{}': DURATION_S must be a number > 0", spec);
    return std::nullopt;
  }
  f.start_ms = seconds_to_ms(*start);
  f.duration_ms = seconds_to_ms(*duration);
  f.magnitude = default_magnitude(f.type);
  if (parts.size() == 6) {
    auto magnitude = parse_double(parts[5]);
    if (!magnitude) {
      error = fmt::format("fault '{}': MAGNITUDE must be a finite number", spec);
      return std::nullopt;
    }
    f.magnitude = *magnitude;
  }
  return f;
}

std::string to_string(const fault& f) {
  return fmt::format("{}:{}:{}:{}:{}:{}", to_string(f.type), f.asset_id, f.property,
                     static_cast<double>(f.start_ms) / 1000.0,
                     static_cast<double>(f.duration_ms) / 1000.0, f.magnitude);
}

}  // namespace fleettwin::sim

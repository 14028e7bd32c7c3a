#pragma once

// Faults injected into the simulated fleet at known virtual times, so that
// anomaly detection and connectivity tracking can be tested against ground truth.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fleettwin::sim {

enum class fault_type : uint8_t {
  drift,        ///< offset growing linearly from 0 to `magnitude` over the window
  spike,        ///< one sample (the first at or after the start) multiplied by `magnitude`
  stuck,        ///< value frozen at its first in-window reading for the whole window
  dropout,      ///< no records at all for the asset during the window
  level_shift,  ///< `magnitude` added to every sample in the window, from its first on
  variance,     ///< zero-mean Gaussian noise of standard deviation `magnitude` added in the window
};

std::string_view to_string(fault_type t);
std::optional<fault_type> parse_fault_type(std::string_view s);

/// One fault. Times are offsets from the run's start time (virtual clock).
struct fault {
  fault_type type = fault_type::drift;
  std::string asset_id;
  /// A metric name, or "*" for every metric of the asset.
  std::string property;
  int64_t start_ms = 0;
  int64_t duration_ms = 0;
  /// drift: final offset, level_shift: offset, variance: noise deviation
  /// (metric units); spike: factor; unused otherwise.
  double magnitude = 0;

  /// Whether `offset_ms` lies in [start, start + duration).
  bool in_window(int64_t offset_ms) const {
    return offset_ms >= start_ms && offset_ms - start_ms < duration_ms;
  }

  /// Whether the fault concerns the metric `name`.
  bool applies_to(std::string_view name) const {
    return property == "*" || property == name;
  }

  /// The drift offset at `offset_ms` (meaningful inside the window).
  double drift_offset(int64_t offset_ms) const {
    if (duration_ms <= 0) {
      return magnitude;
    }
    return magnitude * static_cast<double>(offset_ms - start_ms) / static_cast<double>(duration_ms);
  }

  bool operator==(const fault&) const = default;
};

/// Default magnitude when the spec omits it: drift and level_shift +10
/// units, spike x10, variance 5 units.
double default_magnitude(fault_type t);

/// Parses `TYPE:ASSET:PROPERTY:START_S:DURATION_S[:MAGNITUDE]`; on failure
/// returns nullopt and sets `error` to what is wrong.
std::optional<fault> parse_fault(std::string_view spec, std::string& error);

/// The spec form of `f` (round-trips through `parse_fault`).
std::string to_string(const fault& f);

}  // namespace fleettwin::sim

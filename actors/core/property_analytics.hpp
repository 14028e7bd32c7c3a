#pragma once

// Per-sample analytics of one numeric property: the forecaster learns from
// the sample, and the detectors score its forecast error (and its value).
// Pure C++ (DESIGN.md, principle 4).

#include <cstdint>
#include <string>
#include <string_view>

#include "actors/core/anomaly.hpp"
#include "actors/core/forecast.hpp"

namespace fleettwin::core {

struct property_analytics_params {
  forecast_params forecast;
  detector_params detector;
};

/// What a twin keeps per numeric property.
struct property_analytics {
  forecaster_state forecast;
  detector_state detector;

  bool operator==(const property_analytics&) const = default;
};

static_assert(sizeof(detector_state) <= 256, "anomaly detection state is bounded per property");

/// Folds in a sample and scores it. A sample older than the last one is
/// not folded in (score 0). `in_state`: the twin is in one of the
/// property's operating states (always, where the model declares none); a
/// sample outside is neither learnt from nor scored, and the first one
/// back re-anchors the forecaster and the detectors (score 0).
anomaly_result analyze(property_analytics& a, const property_analytics_params& p, double value,
                       int64_t time_ms, bool in_state = true);

void encode_property_analytics(const property_analytics& a, std::string& out);
/// False when `in` is not an encoded state; consumes what it read.
bool decode_property_analytics(std::string_view& in, property_analytics& a);

}  // namespace fleettwin::core

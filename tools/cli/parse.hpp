#pragma once

// Turning command-line text into request fields: resource names, typed values, times.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "fleettwin/v1/telemetry.pb.h"

namespace fleettwin::cli {

/// A mistake in the command line that CLI11 cannot see; exits with the usage code.
class usage_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// "veh-1" -> "twins/veh-1"; a name that already has the prefix is kept.
std::string twin_name(std::string_view asset);

/// "fleets/north" -> "aggregates/fleets/north"; a name with the prefix is kept.
std::string aggregate_name(std::string_view id);

/// A twin or an aggregate: "twins/..." and "aggregates/..." are kept, an id
/// with a "/" is an aggregate, any other a twin.
std::string node_name(std::string_view id);

/// Infers the type of a desired value: true/false -> bool, integer -> int,
/// decimal or exponent -> double, "quoted" or anything else -> string.
v1::Value infer_value(std::string_view text);

/// Splits "key=value" into the key and its inferred value.
std::pair<std::string, v1::Value> parse_assignment(std::string_view text);

/// Parses a time as Unix ms: digits (Unix ms), ISO-8601 ("2026-11-24T10:00:00Z",
/// "2026-11-24T12:00:00.5+02:00", "2026-11-24"; UTC when no zone), "now", or relative
/// to now_ms ("-15m", "-2h", "-1h30m", "+30s"; units ms, s, m, h, d, w).
int64_t parse_time(std::string_view text, int64_t now_ms);

/// "1h", "90m", "2d" as milliseconds (units ms, s, m, h, d, w).
int64_t parse_span(const std::string& text);

}  // namespace fleettwin::cli

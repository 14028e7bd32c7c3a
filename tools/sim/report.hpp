#pragma once

// Counters of one simulator run and the JSON summary written by `--report`.

#include <cstdint>
#include <string>
#include <vector>

namespace fleettwin::sim {

class generator;

/// What happened to the generated records.
struct run_counts {
  /// Records handed to the producer (malformed included).
  uint64_t sent = 0;
  /// Records whose delivery report succeeded (malformed included).
  uint64_t delivered = 0;
  /// Records that failed to produce or whose delivery report failed.
  uint64_t failed = 0;
  uint64_t malformed_sent = 0;
  uint64_t malformed_delivered = 0;
  /// Successfully delivered valid records per asset index.
  std::vector<uint64_t> per_asset;
};

/// The `--report` document:
/// {"records_sent":..,"records_delivered":..,"delivery_failures":..,
///  "malformed_sent":..,"malformed_delivered":..,"elapsed_seconds":..,
///  "per_asset":{"veh-000001":N,...}}
std::string report_json(const run_counts& counts, const generator& gen, double elapsed_seconds);

}  // namespace fleettwin::sim

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
  /// Aggregate attribute records and relation records (also in sent/delivered).
  uint64_t aggregates_sent = 0;
  uint64_t aggregates_delivered = 0;
  uint64_t relations_sent = 0;
  uint64_t relations_delivered = 0;
  /// Successfully delivered valid records per asset index.
  std::vector<uint64_t> per_asset;
};

/// The `--report` document:
/// {"records_sent":..,"records_delivered":..,"delivery_failures":..,
///  "malformed_sent":..,"malformed_delivered":..,"aggregate_records_sent":..,
///  "aggregate_records_delivered":..,"relation_records_sent":..,
///  "relation_records_delivered":..,"elapsed_seconds":..,
///  "per_asset":{"veh-000001":N,...}}
/// (per_asset counts the assets' own valid records, not relation records)
std::string report_json(const run_counts& counts, const generator& gen, double elapsed_seconds);

}  // namespace fleettwin::sim

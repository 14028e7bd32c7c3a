#pragma once

// A labelled corpus from the fleet simulator (tools/sim): every numeric
// series of a set of vehicles, machines and meters, one fault injected per
// asset (drift, spike, stuck, dropout, level_shift, variance, in turn), with
// magnitudes set from each series' own noise, written as
// DIR/<kind>/<asset>.<property>.csv with the fault's type as the label of
// the rows it affects (a dropout labels the first row after it). The same
// options give the same corpus, byte for byte.

#include <cstdint>
#include <string>

namespace fleettwin::analytics {

struct corpus_options {
  std::string dir;
  uint64_t seed = 7;
  uint32_t assets = 30;
  /// Virtual hours of data, and seconds between an asset's samples.
  double hours = 8;
  double interval_s = 5;
};

/// Writes the corpus; false with `error`. `summary` says what was written.
bool write_corpus(const corpus_options& o, std::string& summary, std::string& error);

}  // namespace fleettwin::analytics

#pragma once

#include <string>

namespace fleettwin::bench {

struct flood_options {
  /// A real Kafka's bootstrap (the node's input must not live in the node's memory, as
  /// the embedded Kafka's does).
  std::string kafka;
  /// The fleettwin-node binary the flood runs against (its own process: its RSS alone).
  std::string node_binary;
  double seconds = 30;
  int record_threads = 2;
  int request_threads = 16;
  int watchers = 200;
  int twins = 10'000;
};

/// `fleettwin-bench flood`: a node under a flood of bad records and requests far beyond
/// what it processes; samples its resident memory before, during and after.
int run_flood(const flood_options& o);

}  // namespace fleettwin::bench

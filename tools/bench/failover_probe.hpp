#pragma once

#include <string>
#include <vector>

namespace fleettwin::bench {

struct failover_probe_options {
  /// The surviving node's gRPC endpoint.
  std::string server;
  /// Its node id (its member record in GetCluster).
  std::string node_id;
  /// Partitions of the topic.
  int partitions = 0;
  /// The victim's partitions: the survivor holding one of them means the group moved them.
  std::vector<int> victim_partitions;
  /// "asset_id version" lines: twins of the victim and their versions before the kill.
  std::string sample_file;
  double poll_seconds = 0.05;
  double timeout_seconds = 1800;
};

/// `fleettwin-bench failover-probe` (tools/bench/failover.sh): one long-lived client of the
/// survivor. It connects, prints "ready", waits for a line "go T0" on stdin (T0: the kill's
/// CLOCK_MONOTONIC time in seconds) and then polls GetCluster and BatchGetTwins every
/// poll_seconds until the survivor serves every partition and every sampled twin answers
/// with its version; prints the times since T0 as one JSON line. One channel instead of a
/// CLI process per poll: those took about 0.6 of the machine's 2 cores from the node being
/// measured.
int run_failover_probe(const failover_probe_options& o);

}  // namespace fleettwin::bench

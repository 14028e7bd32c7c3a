#pragma once

// CPU time of processes and of this process's threads, read from /proc, for
// the benchmarks' CPU per record (the node in this process, a broker in
// another).

#include <sys/types.h>

#include <map>
#include <string>

namespace fleettwin::bench {

/// User + system CPU seconds process `pid` has used so far; -1 if it cannot
/// be read (no such process).
double process_cpu_seconds_of(pid_t pid);

/// CPU seconds per thread of this process, keyed by thread id, with the
/// thread's name.
struct thread_cpu {
  std::string name;
  double seconds = 0;
};
std::map<pid_t, thread_cpu> thread_cpu_seconds();

/// What each kind of thread used between two snapshots: threads grouped by
/// name with trailing digits and separators dropped ("rdk:broker12" and
/// "rdk:broker3" are "rdk:broker"); a thread that started in between counts
/// from 0, one that ended in between is missing from `after` and not counted.
std::map<std::string, double> cpu_by_thread_kind(const std::map<pid_t, thread_cpu>& before,
                                                 const std::map<pid_t, thread_cpu>& after);

}  // namespace fleettwin::bench

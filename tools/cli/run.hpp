#pragma once

// The fleettwin command-line client as a function, so tests can run it in-process.

#include <cstdint>
#include <functional>
#include <ostream>

#include <grpcpp/support/status.h>

namespace fleettwin::cli {

class interrupter;

/// Process exit codes; documented in the --help footer.
enum exit_code : int {
  exit_ok = 0,
  exit_failure = 1,
  exit_usage = 2,
  exit_not_found = 3,
  exit_invalid_argument = 4,
  exit_aborted = 5,
  exit_unavailable = 6,
  exit_interrupted = 130,
};

/// NOT_FOUND -> 3, INVALID_ARGUMENT -> 4, ABORTED -> 5, UNAVAILABLE and
/// DEADLINE_EXCEEDED -> 6, anything else -> 1.
int exit_code_for(grpc::StatusCode code);

struct run_options {
  /// Cancels a running watch; the process-wide instance when null.
  interrupter* interrupt = nullptr;
  /// Unix ms now, for relative times; the system clock when empty.
  std::function<int64_t()> clock;
};

/// Parses argv (argv[0] is the program name), runs the command, writes results to
/// `out` and diagnostics to `err`, and returns the exit code.
int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err,
            const run_options& options = {});

}  // namespace fleettwin::cli

#pragma once

// Processes, ports, temp dirs and polling for tests that run real binaries
// (integration and cluster suites).

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace fleettwin::test {

/// A free TCP port on 127.0.0.1 (bound and released).
int free_port();

/// True when something accepts TCP connections on 127.0.0.1:port.
bool port_open(int port);

/// Polls `cond` every `interval` until true or the deadline; false on timeout.
bool eventually(const std::function<bool()>& cond,
                std::chrono::milliseconds timeout = std::chrono::seconds{60},
                std::chrono::milliseconds interval = std::chrono::milliseconds{20});

/// Runs a shell command; returns {exit status (-1: not exited), stdout}.
std::pair<int, std::string> run_command(const std::string& command);

/// Creates and returns a new dir <tmp>/fleettwin-<name>-<pid>-<n>.
std::string make_temp_dir(const std::string& name);

/// The last `lines` lines of a text file ("" when it cannot be read).
std::string file_tail(const std::string& path, size_t lines);

/// A child process with stdout and stderr appended to a log file. The child gets
/// SIGKILL when the thread that started it exits (PR_SET_DEATHSIG), so a crashed test
/// leaves nothing behind: start children from the test's main thread.
class child_process {
public:
  child_process() = default;
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  /// fork/exec of args[0] with `args`; throws std::runtime_error when fork fails.
  /// With `max_file_bytes` > 0 the child cannot grow any file beyond it
  /// (RLIMIT_FSIZE): a full disk, for fault tests.
  void start(std::vector<std::string> args, const std::string& log_path,
             uint64_t max_file_bytes = 0);
  /// SIGSTOP / SIGCONT: a frozen process (long GC pause, VM freeze).
  void pause();
  void resume();
  /// SIGKILL and reap: a crash, no chance to flush.
  void kill9();
  /// SIGTERM and wait up to `timeout`, then SIGKILL. Returns the exit status,
  /// 128 + signal when killed by one, -1 when not running, -2 when it had to be
  /// killed after the timeout.
  int terminate(std::chrono::milliseconds timeout = std::chrono::seconds{30});
  /// Reaps the child when it exited on its own.
  bool running();
  int pid() const {
    return pid_;
  }
  /// How the last child ended, as "exit status N" or "signal N" ("" while running).
  const std::string& ended() const {
    return ended_;
  }

private:
  void reaped(int status);

  int pid_ = -1;
  std::string ended_;
};

}  // namespace fleettwin::test

// fleettwin: the command-line client of a FleetTwin node. See --help.

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

#include <pthread.h>

#include "tools/cli/interrupter.hpp"
#include "tools/cli/run.hpp"

namespace {

/// Ctrl-C must cancel a watch through gRPC, which is not async-signal-safe; so signals
/// are blocked in every thread and taken by one thread with sigwait instead.
void handle_signals_in_thread() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::thread{[signals] {
    int signal = 0;
    sigwait(&signals, &signal);
    if (!fleettwin::cli::default_interrupter().interrupt()) {
      std::_Exit(fleettwin::cli::exit_interrupted);
    }
    // A second Ctrl-C while the watch winds down.
    sigwait(&signals, &signal);
    std::_Exit(fleettwin::cli::exit_interrupted);
  }}.detach();
}

}  // namespace

int main(int argc, char** argv) {
  handle_signals_in_thread();
  return fleettwin::cli::run_cli(argc, argv, std::cout, std::cerr);
}

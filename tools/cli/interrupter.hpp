#pragma once

// Ctrl-C while a call is in flight: the signal thread cancels the call, the command
// sees the cancellation and ends cleanly.

#include <atomic>
#include <mutex>

namespace grpc {
class ClientContext;
}

namespace fleettwin::cli {

class interrupter {
public:
  /// Registers a call for the lifetime of the guard; cancels it at once when an
  /// interrupt already arrived.
  class guard {
  public:
    guard(interrupter& owner, grpc::ClientContext& context);
    ~guard();
    guard(const guard&) = delete;
    guard& operator=(const guard&) = delete;

  private:
    interrupter& owner_;
  };

  /// Cancels the registered call. Returns false when no call is registered, in which
  /// case the caller decides (the executable exits with 130).
  bool interrupt();

  bool interrupted() const {
    return interrupted_.load();
  }

private:
  std::mutex mutex_;
  grpc::ClientContext* active_ = nullptr;
  std::atomic<bool> interrupted_{false};
};

/// The process-wide instance the signal thread of the executable uses.
interrupter& default_interrupter();

}  // namespace fleettwin::cli

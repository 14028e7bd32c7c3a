#include "tools/cli/interrupter.hpp"

#include <grpcpp/client_context.h>

namespace fleettwin::cli {

interrupter::guard::guard(interrupter& owner, grpc::ClientContext& context) : owner_(owner) {
  std::lock_guard lock{owner_.mutex_};
  owner_.active_ = &context;
  if (owner_.interrupted_) {
    context.TryCancel();
  }
}

interrupter::guard::~guard() {
  std::lock_guard lock{owner_.mutex_};
  owner_.active_ = nullptr;
}

bool interrupter::interrupt() {
  std::lock_guard lock{mutex_};
  interrupted_ = true;
  if (active_ == nullptr) {
    return false;
  }
  active_->TryCancel();
  return true;
}

interrupter& default_interrupter() {
  static interrupter instance;
  return instance;
}

}  // namespace fleettwin::cli

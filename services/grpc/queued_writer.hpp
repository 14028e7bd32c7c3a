#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/grpcpp.h>

namespace fleettwin::grpc_api {

/// A server stream that queues messages pushed from any thread and writes
/// them one at a time; a client that falls `max_queued` behind is ended with
/// RESOURCE_EXHAUSTED rather than buffered without bound. Deletes itself
/// when done. Subclasses stop being fed in `detach`.
template <class Message>
class queued_writer : public ::grpc::ServerWriteReactor<Message> {
public:
  explicit queued_writer(size_t max_queued) : max_queued_(max_queued) {}

  /// Queues a message (any thread; never blocks).
  void enqueue(const Message& m) {
    std::lock_guard<std::mutex> guard{mutex_};
    if (finished_)
      return;
    if (queue_.size() >= max_queued_) {
      if (on_overflow_)
        on_overflow_();
      finish_locked(::grpc::Status{::grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   "watcher fell more than " + std::to_string(max_queued_) +
                                       " changes behind; reconnect and narrow the watch"});
      return;
    }
    queue_.push_back(m);
    if (!writing_) {
      writing_ = true;
      this->StartWrite(&queue_.front());
    }
  }

  /// Called when the stream is ended because its client fell behind (once;
  /// with the stream's lock held: keep it short).
  void on_overflow(std::function<void()> f) {
    on_overflow_ = std::move(f);
  }

  /// Keeps `h` (e.g. the caller's watch stream slot) until the stream is deleted.
  void hold(std::shared_ptr<void> h) {
    held_ = std::move(h);
  }

  /// Called once when the stream is done (before it is deleted).
  void on_done(std::function<void()> f) {
    on_done_ = std::move(f);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> guard{mutex_};
    if (!queue_.empty())
      queue_.pop_front();
    writing_ = false;
    if (!ok && !finished_) {
      finished_ = true;
      final_status_ = ::grpc::Status::CANCELLED;
    }
    if (finished_) {
      queue_.clear();
      this->Finish(final_status_);
      return;
    }
    if (!queue_.empty()) {
      writing_ = true;
      this->StartWrite(&queue_.front());
    }
  }

  void OnCancel() override {
    detach();
    std::lock_guard<std::mutex> guard{mutex_};
    finish_locked(::grpc::Status::CANCELLED);
  }

  void OnDone() override {
    detach();
    if (on_done_)
      on_done_();
    delete this;
  }

protected:
  /// Stops whatever feeds the stream (may be called more than once).
  virtual void detach() = 0;

private:
  void finish_locked(::grpc::Status status) {
    if (finished_)
      return;
    finished_ = true;
    final_status_ = std::move(status);
    if (writing_) {
      // Keep the message in flight; OnWriteDone finishes the call.
      while (queue_.size() > 1)
        queue_.pop_back();
      return;
    }
    queue_.clear();
    this->Finish(final_status_);
  }

  size_t max_queued_;
  std::mutex mutex_;
  std::deque<Message> queue_;
  bool writing_ = false;
  bool finished_ = false;
  ::grpc::Status final_status_;
  std::function<void()> on_done_;
  std::function<void()> on_overflow_;
  std::shared_ptr<void> held_;
};

/// A stream refused at its start (bad request): finishes with `s`.
template <class Message>
class failed_stream final : public ::grpc::ServerWriteReactor<Message> {
public:
  explicit failed_stream(::grpc::Status s) {
    this->Finish(std::move(s));
  }
  void OnDone() override {
    delete this;
  }
};

}  // namespace fleettwin::grpc_api

#ifndef OFFLOAD_DETAIL_TASK_CHANNEL_OPS_HPP
#define OFFLOAD_DETAIL_TASK_CHANNEL_OPS_HPP

/// @file detail/task/channel_ops.hpp
/// The coroutines behind `co_await rx.next()` and `co_await tx.send_async(v)`.
///
/// Each is a loop: try the operation; if it cannot go on, wait (ChannelAwaiter) until the
/// channel says something changed, then try again. The channel lists the waiting coroutine
/// where a thread would sleep (detail/channel/wait_queue.hpp, rendezvous_channel.hpp) and
/// wakes it by posting its resumption to its executor, so it goes on where it runs (the
/// resume rule). A stop request takes it off the list and resumes it with TaskCancelled; the
/// list's lock decides between a stop request and a wake-up, so each resumes it at most once.

#include <coroutine>
#include <optional>
#include <stop_token>
#include <utility>

#include "../../channel.hpp"
#include "../../errors.hpp"
#include "../../event_loop.hpp"
#include "executor.hpp"
#include "promise.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// One attempt of a coroutine's channel operation: completes at once, or suspends until the
/// channel wakes it (then the caller tries again), or throws TaskCancelled.
template <class T>
class ChannelAwaiter {
 public:
  ChannelAwaiter(ChannelCore<T>& core, std::optional<T>* out, T* value) noexcept : core_(core) {
    op_.receiving = out != nullptr;
    op_.out = out;
    op_.value = value;
    op_.link.wake = &ChannelAwaiter::wake;
    op_.link.context = this;
  }
  ChannelAwaiter(const ChannelAwaiter&) = delete;
  ChannelAwaiter& operator=(const ChannelAwaiter&) = delete;

  bool await_ready() const noexcept { return false; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> self) {
    static_assert(OffloadPromise<Promise>,
                  "offload: rx.next() and tx.send_async() can be awaited only inside an "
                  "offload::Task: its executor is where it resumes");
    TaskPromiseBase& promise = self.promise();
    self_ = self;
    executor_ = promise.executor;
    hold_ = executor_.hold();
    // Before the operation starts: a stop request that comes while it starts is then seen
    // by the channel (cancel_async under the list's lock), never lost in between.
    const std::stop_token& stop = promise.stop_token();
    if (stop.stop_possible()) stop_.emplace(stop, Cancel{this});
    const AsyncStep step = core_.start_async(op_, status_);
    if (step == AsyncStep::waiting) return true;  // from here the channel may resume us
    step_ = step;
    hold_ = {};
    return false;
  }

  /// ok / closed when the operation is done; empty (receive) or full (send) when the caller
  /// should try again.
  ChannelStatus await_resume() {
    stop_.reset();  // waits for a stop callback running elsewhere to finish
    if (step_ == AsyncStep::done) return status_;
    if (step_ == AsyncStep::cancelled || cancelled_) throw TaskCancelled();
    if (op_.outcome != ChannelStatus::empty) return op_.outcome;  // a partner completed it
    return op_.receiving ? ChannelStatus::empty : ChannelStatus::full;
  }

 private:
  struct Cancel {
    ChannelAwaiter* awaiter;
    void operator()() const noexcept {
      if (!awaiter->core_.cancel_async(awaiter->op_)) return;  // woken already, or not waiting
      awaiter->cancelled_ = true;
      awaiter->resume();
    }
  };

  static void wake(AsyncLink& link) noexcept { static_cast<ChannelAwaiter*>(link.context)->resume(); }

  /// Posts the resumption (once: the list's lock gave it to a wake-up or a stop request).
  /// Allocation failure here has no one left to tell, so it ends the program (noexcept).
  void resume() noexcept { executor_.post(self_, std::move(hold_)); }

  ChannelCore<T>& core_;
  AsyncOperation<T> op_;
  ChannelStatus status_ = ChannelStatus::empty;
  AsyncStep step_ = AsyncStep::waiting;  // as started, unless it waited
  bool cancelled_ = false;               // resumed by a stop request
  std::coroutine_handle<> self_;
  ExecutorRef executor_;
  CoroutineHold hold_;  // keeps a loop's run() going while the coroutine waits
  std::optional<std::stop_callback<Cancel>> stop_;
};

template <class T>
Task<std::optional<T>> receive_next(Receiver<T> rx) {
  ChannelCore<T>& core = ChannelAccess::core(rx);
  for (;;) {
    std::optional<T> out;
    const ChannelStatus status = co_await ChannelAwaiter<T>(core, &out, nullptr);
    if (status == ChannelStatus::ok) co_return out;
    if (status == ChannelStatus::closed) co_return std::nullopt;
  }
}

template <class T>
Task<typename status_of<T>::type> send_next(Sender<T> tx, T value) {
  ChannelCore<T>& core = ChannelAccess::core(tx);
  for (;;) {
    const ChannelStatus status = co_await ChannelAwaiter<T>(core, nullptr, &value);
    if (status == ChannelStatus::ok || status == ChannelStatus::closed) co_return status;
  }
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_TASK_CHANNEL_OPS_HPP

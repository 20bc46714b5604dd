#ifndef OFFLOAD_DETAIL_TASK_AWAITERS_HPP
#define OFFLOAD_DETAIL_TASK_AWAITERS_HPP

/// @file detail/task/awaiters.hpp
/// What a coroutine can await besides Tasks: Futures, resume_on(), yield(), sleep_for() and
/// this_task::stop_token(). Each resumes the coroutine on its executor (API.md's resume rule).

#include <atomic>
#include <chrono>
#include <coroutine>
#include <optional>
#include <stop_token>

#include "../../errors.hpp"
#include "../../event_loop.hpp"
#include "../../future.hpp"
#include "../shared_state.hpp"
#include "executor.hpp"
#include "promise.hpp"
#include "trampoline.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// What `co_await future` uses: resumes the coroutine on its own executor once the future is
/// ready (not at all when it already is), and passes a stop request of the coroutine on to
/// the future (a queued pool job then never starts).
template <class T>
class FutureAwaiter {
 public:
  explicit FutureAwaiter(Future<T>& future) : state_(FutureAccess::take_state(future)) {}
  FutureAwaiter(const FutureAwaiter&) = delete;
  FutureAwaiter& operator=(const FutureAwaiter&) = delete;

  bool await_ready() const noexcept { return state_->ready(); }

  template <class Promise>
  void await_suspend(std::coroutine_handle<Promise> self) {
    static_assert(OffloadPromise<Promise>,
                  "offload::Future can be awaited only inside an offload::Task (a coroutine "
                  "returning offload::Task<T>): its executor is where it resumes");
    TaskPromiseBase& promise = self.promise();
    const std::stop_token& stop = promise.stop_token();
    if (stop.stop_possible()) stop_.emplace(stop, StopFuture{state_.get()});
    // From here on another thread may resume us: nothing below touches the frame.
    state_->set_continuation(Resumer(promise.executor, self));
  }

  T await_resume() {
    stop_.reset();  // waits for a stop callback running elsewhere to finish
    return state_->take();
  }

 private:
  struct StopFuture {
    StateBase* state;
    void operator()() const noexcept { state->request_stop(); }
  };

  StatePtr<SharedState<T>> state_;
  std::optional<std::stop_callback<StopFuture>> stop_;  // destroyed before state_
};

/// What `co_await resume_on(executor)` uses.
class ResumeOnAwaiter {
 public:
  explicit ResumeOnAwaiter(const ExecutorRef& target) noexcept : target_(target) {}
  bool await_ready() const noexcept { return false; }
  template <class Promise>
  void await_suspend(std::coroutine_handle<Promise> self) {
    static_assert(OffloadPromise<Promise>,
                  "offload::resume_on can be awaited only inside an offload::Task");
    self.promise().move_to(target_);  // before the post: the coroutine may resume at once
    target_.post(self);
  }
  void await_resume() const noexcept {}

 private:
  ExecutorRef target_;
};

/// What `co_await yield(loop)` uses: goes on in a later tick of the loop, after the timers
/// and posted callbacks due by then. Two immediates in a row: an immediate queued by a timer or
/// a posted callback runs in the same tick, only one queued by an immediate waits for the next
/// (event_loop.hpp), and the coroutine may have been resumed by either. A stop request is seen
/// when it resumes.
class YieldAwaiter {
 public:
  explicit YieldAwaiter(EventLoop& loop) noexcept : loop_(loop) {}
  bool await_ready() const noexcept { return false; }
  template <class Promise>
  void await_suspend(std::coroutine_handle<Promise> self) {
    static_assert(OffloadPromise<Promise>,
                  "offload::yield can be awaited only inside an offload::Task");
    stop_ = self.promise().stop_token();
    self.promise().move_to(executor_of(loop_));
    loop_.set_immediate([&loop = loop_, self] { loop.set_immediate(ResumeCoroutine{self}); });
  }
  void await_resume() const {
    if (stop_.stop_requested()) throw TaskCancelled();
  }

 private:
  EventLoop& loop_;
  std::stop_token stop_;
};

/// What `co_await sleep_for(loop, duration)` uses: a loop timer; a stop request wakes it at
/// once (it then throws TaskCancelled). Timer and stop request race for the one resumption.
class SleepAwaiter {
 public:
  SleepAwaiter(EventLoop& loop, std::chrono::nanoseconds duration) noexcept
      : loop_(loop), duration_(duration) {}
  SleepAwaiter(const SleepAwaiter&) = delete;
  SleepAwaiter& operator=(const SleepAwaiter&) = delete;

  bool await_ready() const noexcept { return false; }

  template <class Promise>
  void await_suspend(std::coroutine_handle<Promise> self) {
    static_assert(OffloadPromise<Promise>,
                  "offload::sleep_for can be awaited only inside an offload::Task");
    self_ = self;
    self.promise().move_to(executor_of(loop_));
    timer_ = loop_.set_timeout(duration_, [this] {
      if (!woken_.exchange(true, std::memory_order_acq_rel)) resume_here(self_);
    });
    const std::stop_token& stop = self.promise().stop_token();
    if (stop.stop_possible()) stop_.emplace(stop, WakeOnStop{this});
  }

  void await_resume() {
    stop_.reset();        // waits for a stop callback running elsewhere to finish
    loop_.clear(timer_);  // on the loop's thread: a timer not yet fired never will
    if (cancelled_.load(std::memory_order_acquire)) throw TaskCancelled();
  }

 private:
  struct WakeOnStop {
    SleepAwaiter* sleep;
    void operator()() const {
      // acq_rel: the winner of the exchange owns the one resumption.
      if (sleep->woken_.exchange(true, std::memory_order_acq_rel)) return;
      sleep->cancelled_.store(true, std::memory_order_release);
      sleep->loop_.post(ResumeCoroutine{sleep->self_});
    }
  };

  EventLoop& loop_;
  std::chrono::nanoseconds duration_;
  std::coroutine_handle<> self_;
  TimerId timer_{};
  std::atomic<bool> woken_{false};
  std::atomic<bool> cancelled_{false};
  std::optional<std::stop_callback<WakeOnStop>> stop_;
};

/// What `co_await this_task::stop_token()` uses: reads the token without suspending.
struct StopTokenAwaiter {
  std::stop_token token;
  bool await_ready() const noexcept { return false; }
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> self) noexcept {
    static_assert(OffloadPromise<Promise>,
                  "offload::this_task::stop_token can be awaited only inside an offload::Task");
    token = self.promise().stop_token();
    return false;  // go on at once
  }
  std::stop_token await_resume() noexcept { return std::move(token); }
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_TASK_AWAITERS_HPP

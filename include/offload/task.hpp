#ifndef OFFLOAD_TASK_HPP
#define OFFLOAD_TASK_HPP

/// @file task.hpp
/// Coroutines: Task<T>, co_await on Futures and Tasks, and the ways to run a Task on an event
/// loop, on a pool, or on the calling thread.
///
/// ```cpp
/// offload::Task<std::string> run(offload::ThreadPool& pool, offload::EventLoop& loop) {
///   std::string result = co_await offload::run_service(pool, hello, std::string("world"));
///   co_await offload::sleep_for(loop, 10ms);      // a loop timer, like setTimeout
///   co_return result;                             // back on the loop's thread all along
/// }
/// offload::Future<std::string> f = offload::spawn(loop, run(pool, loop));
/// loop.run();
/// ```
///
/// The resume rule (Node's): a coroutine goes on on the executor it runs on (the loop's
/// thread after spawn(loop, ...) or resume_on(loop), a worker of that pool, or the thread in
/// sync_wait()), never on whichever thread completed what it awaited. Exceptions travel up
/// (co_await, sync_wait and spawn's Future rethrow them); stop requests travel down (spawn's
/// Future::request_stop() reaches every task it awaits, and the Futures they await).
///
/// Stack safety does not depend on the compiler making symmetric transfer a tail call (g++ 12
/// does not at -O0 or under sanitizers): every hand-over goes through a per-thread trampoline
/// (detail/task/trampoline.hpp), so a million tasks awaited in a row, or a chain of them
/// 100,000 deep, run in constant stack.

#include <atomic>
#include <chrono>
#include <coroutine>
#include <exception>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "detail/shared_state.hpp"
#include "detail/task/executor.hpp"
#include "detail/task/promise.hpp"
#include "detail/task/trampoline.hpp"
#include "errors.hpp"
#include "event_loop.hpp"
#include "future.hpp"
#include "thread_pool.hpp"

namespace offload {
inline namespace v0 {

/**
 * @brief A lazy coroutine that produces a T (the return type of a function that uses
 * co_await / co_return).
 *
 * Nothing runs until the task is awaited (`co_await task` inside another Task), spawned on a
 * loop or pool (spawn()), or run with sync_wait(). Move-only; awaited at most once (awaiting
 * consumes it). Destroying a task that never started destroys its frame and runs nothing. A
 * Task is not thread-safe: one owner at a time.
 */
template <class T = void>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::TaskPromise<T>;
  using value_type = T;

  /// An empty task (moved from): awaiting it throws std::logic_error.
  Task() noexcept = default;
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { reset(); }

  /// True while the task holds a coroutine that nobody has started.
  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(handle_); }

  class Awaiter;
  /// Runs the task as a child of the awaiting coroutine, on its executor, with its stop
  /// token; the parent goes on when it returns, with its value or its exception.
  Awaiter operator co_await() && noexcept { return Awaiter(std::exchange(handle_, {})); }
  Awaiter operator co_await() & noexcept { return Awaiter(std::exchange(handle_, {})); }

 private:
  friend promise_type;

  explicit Task(std::coroutine_handle<promise_type> handle) noexcept : handle_(handle) {}

  void reset() noexcept {
    if (handle_) std::exchange(handle_, {}).destroy();
  }

  std::coroutine_handle<promise_type> handle_;
};

/// What `co_await task` uses; owns the child coroutine until the parent has its result.
template <class T>
class Task<T>::Awaiter {
 public:
  explicit Awaiter(std::coroutine_handle<promise_type> child) noexcept : child_(child) {}
  Awaiter(const Awaiter&) = delete;
  Awaiter& operator=(const Awaiter&) = delete;
  ~Awaiter() {
    if (child_) child_.destroy();
  }

  bool await_ready() const noexcept { return !child_; }  // empty: await_resume() says so

  template <class Parent>
  void await_suspend(std::coroutine_handle<Parent> parent) {
    static_assert(detail::OffloadPromise<Parent>,
                  "offload::Task can be awaited only inside an offload::Task (a coroutine "
                  "returning offload::Task<T>): the child runs on its parent's executor");
    promise_type& child = child_.promise();
    detail::TaskPromiseBase& caller = parent.promise();
    child.executor = caller.executor;
    child.stop = caller.stop;
    child.continuation = parent;
    child.continuation_executor = caller.executor;
    detail::resume_here(child_);  // runs once the parent has suspended (trampoline.hpp)
  }

  T await_resume() {
    if (!child_) throw std::logic_error("offload: co_await of an empty (moved-from) Task");
    return child_.promise().take();
  }

 private:
  std::coroutine_handle<promise_type> child_;
};

namespace detail {

template <class T>
auto TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise>::from_promise(*this));
}
inline auto TaskPromise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<TaskPromise>::from_promise(*this));
}

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
    if (promise.stop.stop_possible()) stop_.emplace(promise.stop, StopFuture{state_.get()});
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
  explicit ResumeOnAwaiter(const Executor& target) noexcept : target_(target) {}
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
  Executor target_;
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
    stop_ = self.promise().stop;
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
    const std::stop_token& stop = self.promise().stop;
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
    token = self.promise().stop;
    return false;  // go on at once
  }
  std::stop_token await_resume() noexcept { return std::move(token); }
};

/// Runs `task` to its end and hands the outcome to `done(value)` / `failed(error)`; the root
/// of spawn() and sync_wait().
template <class T, class Sink>
RootCoroutine run_root(Task<T> task, Sink sink) {
  std::exception_ptr error;
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(task);
      sink.done();
    } else {
      sink.done(co_await std::move(task));
    }
  } catch (...) {
    error = std::current_exception();
  }
  // Outside the handler: see errors.hpp's make_error() on exceptions and ThreadSanitizer.
  if (error) sink.failed(std::move(error));
}

/// spawn()'s sink: completes the Future's shared state.
template <class T>
struct StateSink {
  StatePtr<SharedState<T>> state;
  template <class... V>
  void done(V&&... value) {
    state->set_value(std::forward<V>(value)...);
  }
  void failed(std::exception_ptr error) { state->set_exception(std::move(error)); }
};

/// sync_wait()'s sink: keeps the outcome for the waiting thread and ends its loop.
template <class T>
struct WaitSink {
  std::optional<value_or_monostate_t<T>>* value;
  std::exception_ptr* error;
  SyncWaitDriver* driver;
  template <class... V>
  void done(V&&... result) {
    value->emplace(std::forward<V>(result)...);
    driver->finish();
  }
  void failed(std::exception_ptr failure) {
    *error = std::move(failure);
    driver->finish();
  }
};

template <class T>
Future<T> spawn_on(const Executor& executor, Task<T> task) {
  StatePtr<SharedState<T>> state(new SharedState<T>());
  std::stop_token stop = state->make_stop_token();
  Future<T> future = FutureAccess::make<T>(StatePtr<SharedState<T>>(state));
  run_root(std::move(task), StateSink<T>{std::move(state)}).start(executor, std::move(stop));
  return future;
}

}  // namespace detail

/// Awaits a Future inside a Task (consuming it): no suspension when it is ready; otherwise the
/// coroutine resumes on its own executor once the Future completes. Rethrows its exception.
template <class T>
detail::FutureAwaiter<T> operator co_await(Future<T>&& future) {
  return detail::FutureAwaiter<T>(future);
}
template <class T>
detail::FutureAwaiter<T> operator co_await(Future<T>& future) {
  return detail::FutureAwaiter<T>(future);
}

/**
 * @brief Runs `task` on `loop`'s thread; its Future completes with the task's value or
 * exception. request_stop() on the Future requests the task's stop token. The loop's run()
 * does not return while the task is pending (see EventLoop::Hold). Thread-safe; allocates the
 * Future's state and the root coroutine.
 */
template <class T>
Future<T> spawn(EventLoop& loop, Task<T> task) {
  return detail::spawn_on(detail::executor_of(loop), std::move(task));
}

/// @brief Runs `task` on `pool`'s workers (it resumes on one of them after each suspension);
/// otherwise as spawn(loop, task). @throws PoolClosed after the pool's shutdown.
template <class Scheduler, class T>
Future<T> spawn(BasicThreadPool<Scheduler>& pool, Task<T> task) {
  return detail::spawn_on(detail::pool_executor(pool), std::move(task));
}

/**
 * @brief Runs `task` on the calling thread until it ends, and returns its value (or rethrows
 * its exception). The thread blocks between resumptions; whatever the task awaits resumes it
 * here. Do not call it on a loop's thread for a task that awaits that loop (it would wait for
 * itself). Allocates the root coroutine.
 */
template <class T>
T sync_wait(Task<T> task) {
  detail::SyncWaitDriver driver;
  std::optional<detail::value_or_monostate_t<T>> value;
  std::exception_ptr error;
  detail::run_root(std::move(task), detail::WaitSink<T>{&value, &error, &driver})
      .start(driver.executor(), {});
  driver.run();
  if (error) std::rethrow_exception(std::move(error));
  if constexpr (!std::is_void_v<T>) return std::move(*value);
}

/// `co_await resume_on(loop)`: the coroutine goes on on the loop's thread (and stays there).
inline detail::ResumeOnAwaiter resume_on(EventLoop& loop) noexcept {
  return detail::ResumeOnAwaiter(detail::executor_of(loop));
}
/// `co_await resume_on(pool)`: the coroutine goes on on a worker of the pool.
template <class Scheduler>
detail::ResumeOnAwaiter resume_on(BasicThreadPool<Scheduler>& pool) noexcept {
  return detail::ResumeOnAwaiter(detail::pool_executor(pool));
}

/// `co_await yield(loop)`: lets the loop run its due timers and posted callbacks, then goes
/// on on the loop's thread (like setImmediate). Throws TaskCancelled if a stop was requested.
inline detail::YieldAwaiter yield(EventLoop& loop) noexcept { return detail::YieldAwaiter(loop); }

/// `co_await sleep_for(loop, duration)`: goes on on the loop's thread after `duration` (a loop
/// timer, like setTimeout). A stop request wakes it at once with TaskCancelled.
template <class Rep, class Period>
detail::SleepAwaiter sleep_for(EventLoop& loop, std::chrono::duration<Rep, Period> duration) {
  return detail::SleepAwaiter(loop,
                              std::chrono::duration_cast<std::chrono::nanoseconds>(duration));
}

namespace this_task {
/// `co_await this_task::stop_token()`: the running task's stop token (no suspension).
inline detail::StopTokenAwaiter stop_token() noexcept { return {}; }
}  // namespace this_task

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_TASK_HPP

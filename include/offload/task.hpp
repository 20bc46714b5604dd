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
#include <functional>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/shared_state.hpp"
#include "channel.hpp"
#include "detail/task/awaiters.hpp"
#include "detail/task/channel_ops.hpp"
#include "detail/task/executor.hpp"
#include "detail/task/promise.hpp"
#include "detail/task/root.hpp"
#include "detail/task/trampoline.hpp"
#include "detail/task/when.hpp"
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
template <class T>  // T = void: declared in detail/task/promise.hpp
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
  friend detail::TaskAccess;

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
    detail::TaskPromiseBase& caller = parent.promise();
    detail::adopt(child_.promise(), caller, parent, caller.stop, /*join=*/nullptr, 0);
    detail::TaskPromiseBase::hand_over(caller, child_, child_.promise());
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

/// async()'s coroutine: `fn` and `args` are parameters, so they live in this frame, and the
/// task `fn` returns (which may refer to them) runs while they are alive.
template <class F, class... Args>
auto call_in_frame(F fn, Args... args) -> Task<task_value_t<std::invoke_result_t<F&, Args...>>> {
  using Result = std::invoke_result_t<F&, Args...>;
  static_assert(is_task<Result>,
                "offload::async(executor, fn, args...) takes a function that returns an "
                "offload::Task; for a plain function use the pool's submit()");
  if constexpr (std::is_void_v<typename Result::value_type>) {
    co_await std::invoke(fn, std::move(args)...);
  } else {
    co_return co_await std::invoke(fn, std::move(args)...);
  }
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
 * @brief Runs `task` on `executor`'s thread: an EventLoop, an Asio io_context or strand
 * (asio.hpp), a uv_loop_t* (uv.hpp), any type with executor_traits (executor.hpp). Its Future
 * completes with the task's value or exception; request_stop() on the Future requests the
 * task's stop token. The executor is kept running (its run() does not return) while the task
 * is pending. The executor is referred to, not copied: it must outlive the task (a pointer
 * names what it points to). Thread-safe; allocates the Future's state and the root coroutine.
 */
template <class E, class T>
  requires Executor<detail::executor_named_t<E>>
Future<T> spawn(E&& executor, Task<T> task) {
  return detail::spawn_on(detail::executor_ref_for(std::forward<E>(executor)), std::move(task));
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

/// `co_await resume_on(executor)`: the coroutine goes on on the executor's thread (and stays
/// there): an EventLoop, an io_context, a uv_loop_t*, any type with executor_traits. The
/// executor is referred to, not copied: it must outlive the coroutine's stay on it.
template <class E>
  requires Executor<detail::executor_named_t<E>>
detail::ResumeOnAwaiter resume_on(E&& executor) noexcept {
  return detail::ResumeOnAwaiter(detail::executor_ref_for(std::forward<E>(executor)));
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

/**
 * @brief `co_await when_all(a, b, ...)`: runs the Tasks (and Futures) side by side and gives a
 * std::tuple of their values in argument order (a void result is std::monostate).
 *
 * Inside a Task that runs on a pool this is fork-join: the first child runs at once on this
 * worker, the others wait in its own deque where an idle worker may steal them, and no Future
 * is made for any of them. On a loop the children take turns on the loop's thread. Every child
 * ends before the awaiting task goes on; then the exception of the first child (in argument
 * order) that failed is rethrown. Children inherit the task's stop token. At least one
 * argument is a Task (when_all of Futures alone is future.hpp's, which is awaitable too).
 * @throws std::logic_error for an empty (moved-from) Task.
 */
template <class... Children>
  requires(detail::is_task<std::remove_cvref_t<Children>> || ...)
auto when_all(Children&&... children) {
  return detail::WhenAllAwaiter<typename detail::as_task_t<Children>::value_type...>(
      detail::as_task(std::forward<Children>(children))...);
}

/// `co_await when_all(std::move(tasks))`: as when_all(a, b, ...), giving a std::vector of the
/// values in the tasks' order (nothing for Task<void>). Allocates the vector.
template <class T>
detail::WhenAllVectorAwaiter<T> when_all(std::vector<Task<T>> tasks) {
  return detail::WhenAllVectorAwaiter<T>(std::move(tasks));
}

/**
 * @brief `co_await when_any(a, b, ...)`: runs the Tasks and Futures side by side; the first to
 * end wins. Gives a WhenAny with the winner's index and value (its exception is rethrown if it
 * failed). The others are asked to stop (their stop token; a Future's request_stop()) and
 * goes on once they have all ended, so no child outlives the call. Allocates one stop state.
 * @throws std::logic_error for an empty (moved-from) Task.
 */
template <class... Children>
auto when_any(Children&&... children) {
  return detail::WhenAnyAwaiter<typename detail::as_task_t<Children>::value_type...>(
      detail::as_task(std::forward<Children>(children))...);
}

/**
 * @brief Runs `fn(args...)`, a function that returns a Task (a coroutine lambda, typically), on
 * `executor`, keeping `fn` and `args` alive in the task's frame until it ends.
 *
 * The safe way to start a coroutine lambda: a lambda's captures live in the lambda object,
 * not in the coroutine's frame, so `spawn(loop, [s] () -> Task<> { ... }())` reads `s` after
 * the temporary lambda died at the end of the statement. async() copies (or moves) the lambda
 * and the arguments into a frame that lives as long as the task.
 * @return the Future of the task's value, as spawn().
 */
template <class Where, class F, class... Args>
auto async(Where&& executor, F&& fn, Args&&... args) {
  return spawn(executor, detail::call_in_frame(std::decay_t<F>(std::forward<F>(fn)),
                                               std::decay_t<Args>(std::forward<Args>(args))...));
}

namespace this_task {
/// `co_await this_task::stop_token()`: the running task's stop token (no suspension).
inline detail::StopTokenAwaiter stop_token() noexcept { return {}; }
}  // namespace this_task

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_TASK_HPP

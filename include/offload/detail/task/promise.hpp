#ifndef OFFLOAD_DETAIL_TASK_PROMISE_HPP
#define OFFLOAD_DETAIL_TASK_PROMISE_HPP

/// @file detail/task/promise.hpp
/// The promise behind offload::Task<T>: the result, who awaits it, and the executor and stop
/// token the task inherits from its parent.

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <variant>

#include "executor.hpp"
#include "../block_cache.hpp"
#include "trampoline.hpp"

namespace offload {
inline namespace v0 {
template <class T = void>
class Task;  // task.hpp

namespace detail {

class TaskPromiseBase;

/// How many hand-overs between Tasks resume inside one another (TaskPromiseBase::hand_over())
/// before the next one is queued in the trampoline instead.
inline constexpr unsigned max_nested_resumptions = 8;

/**
 * What the children of one when_all() / when_any() share: how many are still running, and the
 * parent to resume when the last one ends. Lives in the parent's awaiter, so joining costs no
 * allocation.
 *
 * The children 1..n-1 are forked, child 0 runs at once. When child k ends on the thread that
 * forked child k+1, and nobody took that fork yet (ExecutorRef::reclaim()), child k runs it itself
 * and hands on its arrival instead of counting it (`credit` in the promise): a family that
 * runs wholly on one thread, the common case of fine-grained fork-join, ends without one
 * atomic operation. Children that were taken elsewhere, or whose predecessor moved away,
 * count on the atomic `remaining_`, with the credit they carry.
 */
class Join {
 public:
  Join(const Join&) = delete;
  Join& operator=(const Join&) = delete;

  [[nodiscard]] std::size_t size() const noexcept { return children_; }
  [[nodiscard]] std::coroutine_handle<> handle(std::size_t index) const noexcept {
    return handles_[index];
  }
  [[nodiscard]] TaskPromiseBase& promise(std::size_t index) const noexcept {
    return *promises_[index];
  }

  /// Child `index` has ended; with it `credit` siblings whose ends it carries. True for the
  /// last one (which then resumes the parent).
  bool arrive(std::size_t index, std::size_t credit) noexcept {
    if (arrival_hook_ != nullptr) arrival_hook_(*this, index);
    const std::size_t arrivals = credit + 1;
    if (arrivals == children_) return true;  // all ended here, one after another: no race
    // acq_rel: the last child sees every other child's result before the parent reads them.
    return remaining_.fetch_sub(arrivals, std::memory_order_acq_rel) == arrivals;
  }

  /// Child `index` has ended and runs its next sibling itself (see the class comment).
  void hand_on(std::size_t index) noexcept {
    if (arrival_hook_ != nullptr) arrival_hook_(*this, index);
  }

 protected:
  /// `handles` and `promises` (of `children` children) live in the derived awaiter.
  Join(std::size_t children, const std::coroutine_handle<>* handles,
       TaskPromiseBase* const* promises) noexcept
      : children_(children), handles_(handles), promises_(promises), remaining_(children) {}
  ~Join() = default;

  /// Called once per child as it ends, with its index: how when_any() learns its winner.
  /// when_all() sets none (a fork costs a few nanoseconds).
  using ArrivalHook = void (*)(Join& join, std::size_t index) noexcept;
  void set_arrival_hook(ArrivalHook hook) noexcept { arrival_hook_ = hook; }

 private:
  std::size_t children_;
  const std::coroutine_handle<>* handles_;
  TaskPromiseBase* const* promises_;
  ArrivalHook arrival_hook_ = nullptr;
  std::atomic<std::size_t> remaining_;
};

/// What every offload coroutine knows: where it runs, what stops it, who goes on after it.
class TaskPromiseBase : public Recycled {
 public:
  ExecutorRef executor;  // set before it starts; changed by resume_on()
  /// Its parent's token (spawn()'s Future's, or a when_any()'s), held by pointer: the token
  /// lives in the root's frame or the when_any awaiter, which outlive the task, and copying it
  /// would be an atomic increment on one shared counter per child, fought over by every
  /// worker of a fork-join. Null: nothing can stop it.
  const std::stop_token* stop = nullptr;
  std::coroutine_handle<> continuation;              // the parent awaiting it; empty for a root
  TaskPromiseBase* continuation_promise = nullptr;  // the parent's promise
  ExecutorRef continuation_executor;                   // where the parent runs (and resumes)
  CoroutineHold home_hold;  // keeps the parent's loop alive while this task runs elsewhere
  Join* join = nullptr;         // set for a child of when_all()/when_any(): the parent waits on it
  std::size_t join_index = 0;   // this child's place among its siblings
  std::size_t join_credit = 0;  // earlier siblings whose end this child carries (see Join)
  /// How many hand-overs deep it was last resumed (at least how deep it runs now: a
  /// resumption from a loop is shallower than any recorded, so the bound holds).
  unsigned nest = 0;

  /**
   * Resumes `next` (promise `to`) from inside the running coroutine `from`, which then
   * suspends: at once, nested, while at most max_nested_resumptions are nested, else queued
   * in the thread's trampoline. The nesting reads nothing thread-local: the depth travels in
   * the promises.
   */
  static void hand_over(const TaskPromiseBase& from, std::coroutine_handle<> next,
                        TaskPromiseBase& to) noexcept {
    if (from.nest < max_nested_resumptions) {
      to.nest = from.nest + 1;
      next.resume();  // coroutines never throw out of resume(): their promises catch
      return;
    }
    to.nest = 0;  // the trampoline resumes it from the bottom of the stack
    resume_here(next);
  }

  /// Moves this coroutine to `target` (resume_on()); the caller then posts it there. A task
  /// leaving its parent's executor holds that executor until it hands control back.
  void move_to(const ExecutorRef& target) {
    if (continuation && !home_hold && executor == continuation_executor) {
      home_hold = continuation_executor.hold();
    }
    executor = target;
  }

  /// The stop token the task sees (an empty one when nothing can stop it).
  [[nodiscard]] const std::stop_token& stop_token() const noexcept {
    static const std::stop_token none;
    return stop != nullptr ? *stop : none;
  }

  /// Lazy: nothing runs until the task is awaited, spawned or sync_waited.
  std::suspend_always initial_suspend() const noexcept { return {}; }

  /// Hands control to the parent (or, in a fork-join, to the next sibling): hand_over() on
  /// the same executor, else posted to the parent's.
  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    void await_suspend(std::coroutine_handle<Promise> self) const noexcept {
      TaskPromiseBase& promise = self.promise();
      std::coroutine_handle<> parent = promise.continuation;
      if (!parent) return;
      if (promise.join != nullptr) {
        if (run_next_sibling(promise)) return;
        if (!promise.join->arrive(promise.join_index, promise.join_credit)) return;
      }
      if (promise.executor == promise.continuation_executor) {
        // The parent runs here too: on this thread, without a hop.
        hand_over(promise, parent, *promise.continuation_promise);
      } else {
        // Back to the parent's executor: the resume rule. Allocation failure here has no
        // one left to tell, so it ends the program (noexcept).
        promise.continuation_executor.post(parent, std::move(promise.home_hold));
      }
    }
    void await_resume() const noexcept {}

    /// A child of when_all() that ends where its next sibling was forked, before anyone took
    /// that fork, runs the sibling itself and hands on its arrival (see Join).
    static bool run_next_sibling(TaskPromiseBase& promise) noexcept {
      Join& join = *promise.join;
      const std::size_t next = promise.join_index + 1;
      if (next == join.size() || !promise.executor.reclaim(join.handle(next))) return false;
      join.hand_on(promise.join_index);
      join.promise(next).join_credit = promise.join_credit + 1;
      hand_over(promise, join.handle(next), join.promise(next));
      return true;
    }
  };
  FinalAwaiter final_suspend() const noexcept { return {}; }
};

/// The promise of a Task<T>: the value or exception it ended with.
template <class T>
class TaskPromise;

template <class T>
class TaskResult : public TaskPromiseBase {
 public:
  void unhandled_exception() noexcept { result_.template emplace<2>(std::current_exception()); }

  /// The value, or the exception rethrown (moved out: only the awaiting thread owns it).
  T take() {
    if (result_.index() == 2) std::rethrow_exception(std::exchange(std::get<2>(result_), nullptr));
    if constexpr (!std::is_void_v<T>) return std::move(std::get<1>(result_));
  }

 protected:
  using Stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
  std::variant<std::monostate, Stored, std::exception_ptr> result_;
};

template <class T>
class TaskPromise final : public TaskResult<T> {
 public:
  auto get_return_object() noexcept;
  template <class V>
    requires std::is_convertible_v<V&&, T>
  void return_value(V&& value) {
    this->result_.template emplace<1>(std::forward<V>(value));
  }
};

template <>
class TaskPromise<void> final : public TaskResult<void> {
 public:
  auto get_return_object() noexcept;
  void return_void() noexcept { result_.emplace<1>(); }
};

/// True when awaiting from a coroutine with promise P can find its executor.
template <class P>
concept OffloadPromise = std::is_base_of_v<TaskPromiseBase, P>;

/**
 * A coroutine that runs a root task for spawn() and sync_wait(): started by posting it to its
 * executor, it awaits the task, hands the outcome to `finish`, and frees itself.
 */
class RootCoroutine {
 public:
  class promise_type : public TaskPromiseBase {
   public:
    std::stop_token own_stop;  // what every task of the tree points to

    RootCoroutine get_return_object() noexcept {
      return RootCoroutine(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_never final_suspend() const noexcept { return {}; }  // frees the frame
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }  // the body catches all
  };

  explicit RootCoroutine(std::coroutine_handle<promise_type> handle) noexcept : handle_(handle) {}
  RootCoroutine(RootCoroutine&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  RootCoroutine& operator=(RootCoroutine&&) = delete;
  ~RootCoroutine() {
    if (handle_) handle_.destroy();  // never started
  }

  /// Starts it on `executor` with `stop`: posted, so it runs on the executor's thread.
  void start(const ExecutorRef& executor, std::stop_token stop) && {
    promise_type& promise = handle_.promise();
    promise.executor = executor;
    promise.own_stop = std::move(stop);
    promise.stop = &promise.own_stop;
    executor.post(std::exchange(handle_, {}));
  }

 private:
  std::coroutine_handle<promise_type> handle_;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_TASK_PROMISE_HPP

#ifndef OFFLOAD_DETAIL_TASK_EXECUTOR_HPP
#define OFFLOAD_DETAIL_TASK_EXECUTOR_HPP

/// @file detail/task/executor.hpp
/// Where a coroutine runs: an executor's thread (an EventLoop, an io_context, any type with
/// executor_traits), a pool's workers, or the thread blocked in sync_wait(). A coroutine
/// always resumes there (API.md's resume rule), never on whichever thread completed what it
/// awaited: that thread only posts the resumption.

#include <condition_variable>
#include <coroutine>
#include <mutex>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "../../executor.hpp"
#include "../executor/destination.hpp"
#include "../unique_function.hpp"
#include "trampoline.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// What keeps an executor running while one of its coroutines waits elsewhere, and posts
/// that coroutine back once, when called (then it keeps nothing). Empty for executors that
/// never run dry (a pool, sync_wait()). Destroyed uncalled, it only lets the executor go.
using CoroutineHold = UniqueFunction<void(std::coroutine_handle<>), 24>;

/// What an executor can do, as plain functions (one static table per kind of executor).
struct ExecutorOps {
  /// Resumes `coroutine` later on the executor's thread(s), from any thread, through `hold`
  /// (the one taken when the coroutine suspended) or, when it is empty, a fresh one.
  void (*post)(void* target, std::coroutine_handle<> coroutine, CoroutineHold hold);
  /// A hold on the executor (see CoroutineHold), or an empty one.
  CoroutineHold (*hold)(void* target);
  /// Queues a child of when_all() that has not started, where an idle thread of the
  /// executor may take it (a pool worker's fork deque). Null: post() it.
  void (*fork)(void* target, std::coroutine_handle<> coroutine) = nullptr;
  /// Takes back a fork this thread queued that nobody took yet, so the caller runs it
  /// itself; false if it was taken. Null: never (the fork simply runs where it was posted).
  bool (*reclaim)(void* target, std::coroutine_handle<> coroutine) noexcept = nullptr;
};

/// An executor: a target (a loop, a pool, a sync_wait driver) and what to do with it. Copied
/// into every coroutine that runs there; the target must outlive them.
struct ExecutorRef {
  void* target = nullptr;
  const ExecutorOps* ops = nullptr;

  [[nodiscard]] explicit operator bool() const noexcept { return ops != nullptr; }
  bool operator==(const ExecutorRef&) const noexcept = default;
  void post(std::coroutine_handle<> coroutine, CoroutineHold hold = {}) const {
    ops->post(target, coroutine, std::move(hold));
  }
  [[nodiscard]] CoroutineHold hold() const { return ops->hold(target); }
  void fork(std::coroutine_handle<> coroutine) const {
    if (ops->fork != nullptr) {
      ops->fork(target, coroutine);
    } else {
      ops->post(target, coroutine, {});
    }
  }
  [[nodiscard]] bool reclaim(std::coroutine_handle<> coroutine) const noexcept {
    return ops->reclaim != nullptr && ops->reclaim(target, coroutine);
  }
};

/// Posts one coroutine to its executor, once, from whatever thread completes what it awaits.
/// Holds the executor's keep-alive meanwhile.
class Resumer {
 public:
  Resumer(const ExecutorRef& executor, std::coroutine_handle<> coroutine)
      : executor_(executor), hold_(executor.hold()), coroutine_(coroutine) {}

  void operator()() noexcept { executor_.post(coroutine_, std::move(hold_)); }

 private:
  ExecutorRef executor_;
  CoroutineHold hold_;
  std::coroutine_handle<> coroutine_;
};

// --- the executors ------------------------------------------------------------------------------

inline CoroutineHold no_hold(void*) { return {}; }

/// A hold on executor E: its keep-alive (executor_traits), through which the resumption is
/// posted. Taken also for a post without one, so that the posting thread is done with the
/// executor before the loop can run dry: the loop's thread may run the coroutine to its end,
/// return from run() and destroy the loop while post() is still returning here.
template <class E>
CoroutineHold hold_on(void* target) {
  return [destination = Destination<E, false>(*static_cast<E*>(target))](
             std::coroutine_handle<> coroutine) mutable {
    std::move(destination).post(ResumeCoroutine{coroutine});
  };
}

/// Any executor with executor_traits (EventLoop, Asio, libuv, a user's loop).
template <class E>
inline constexpr ExecutorOps executor_ops{
    [](void* target, std::coroutine_handle<> coroutine, CoroutineHold hold) {
      if (!hold) hold = hold_on<E>(target);
      hold(coroutine);
    },
    &hold_on<E>};

template <class E>
ExecutorRef executor_of(E& executor) noexcept {
  return {&executor, &executor_ops<E>};
}

/// The executor that argument `arg` of spawn() or resume_on() names, referred to: an lvalue,
/// or a pointer to one. A temporary (an Asio executor made in the call) would be gone before
/// the coroutine resumes on it.
template <class Arg>
ExecutorRef executor_ref_for(Arg&& arg) noexcept {
  static_assert(std::is_lvalue_reference_v<Arg> || std::is_pointer_v<std::remove_cvref_t<Arg>>,
                "offload: spawn() and resume_on() refer to their executor for as long as the "
                "coroutine runs on it, so it cannot be a temporary: name it (an io_context, a "
                "strand or an executor in a variable that outlives the coroutine's stay)");
  return executor_of(named_executor(arg));
}

/// Reaches BasicThreadPool's coroutine hooks, which only coroutines should call.
struct PoolCoroutines {
  template <class Pool>
  static void post(Pool& pool, std::coroutine_handle<> coroutine, bool fresh_fork) {
    pool.post_coroutine(coroutine, fresh_fork);
  }
  template <class Pool>
  static bool reclaim(Pool& pool, std::coroutine_handle<> coroutine) noexcept {
    return pool.reclaim_fork(coroutine);
  }
};

/// Posts to a pool; after its shutdown the pool takes no job from outside, and the coroutine
/// goes on inline on the completing thread rather than never.
template <class Pool>
void post_to_pool(void* target, std::coroutine_handle<> coroutine, bool fresh_fork) {
  try {
    PoolCoroutines::post(*static_cast<Pool*>(target), coroutine, fresh_fork);
  } catch (const PoolClosed&) {
    resume_here(coroutine);
  }
}

/// A thread pool (any scheduler): a resumption or a fork goes into the posting worker's own
/// fork deque (where the worker takes a fork back if nobody stole it), or from another thread
/// is a detached job.
template <class Pool>
inline constexpr ExecutorOps pool_ops{
    [](void* target, std::coroutine_handle<> coroutine, CoroutineHold) {
      post_to_pool<Pool>(target, coroutine, false);
    },
    &no_hold,
    [](void* target, std::coroutine_handle<> coroutine) {
      post_to_pool<Pool>(target, coroutine, true);
    },
    [](void* target, std::coroutine_handle<> coroutine) noexcept {
      return PoolCoroutines::reclaim(*static_cast<Pool*>(target), coroutine);
    }};

template <class Pool>
ExecutorRef pool_executor(Pool& pool) noexcept {
  return {&pool, &pool_ops<Pool>};
}

/**
 * The executor of a thread blocked in sync_wait(): resumptions posted from other threads
 * queue here, and run() resumes them on the waiting thread until the task is done.
 * Thread-safe (post from any thread); run() blocks; allocates as its queue grows.
 */
class SyncWaitDriver {
 public:
  ExecutorRef executor() noexcept { return {this, &ops}; }

  /// Resumes posted coroutines on this thread until finish() was called. Blocks.
  void run() {
    std::vector<std::coroutine_handle<>> batch;
    for (;;) {
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return finished_ || !posted_.empty(); });
        if (posted_.empty()) return;  // finished, and nothing left to resume
        batch.swap(posted_);
      }
      for (std::coroutine_handle<> coroutine : batch) resume_here(coroutine);
      batch.clear();
    }
  }

  /// The task is done: run() returns once what was posted has run. Thread-safe.
  void finish() {
    std::lock_guard lock(mutex_);
    finished_ = true;
    ready_.notify_one();
  }

 private:
  static void post(void* target, std::coroutine_handle<> coroutine, CoroutineHold) {
    auto* driver = static_cast<SyncWaitDriver*>(target);
    std::lock_guard lock(driver->mutex_);
    driver->posted_.push_back(coroutine);
    driver->ready_.notify_one();
  }
  static constexpr ExecutorOps ops{&SyncWaitDriver::post, &no_hold};

  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<std::coroutine_handle<>> posted_;
  bool finished_ = false;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_TASK_EXECUTOR_HPP

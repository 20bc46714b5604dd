#ifndef OFFLOAD_DETAIL_TASK_EXECUTOR_HPP
#define OFFLOAD_DETAIL_TASK_EXECUTOR_HPP

/// @file detail/task/executor.hpp
/// Where a coroutine runs: an event loop's thread, a pool's workers, or the thread blocked in
/// sync_wait(). A coroutine always resumes there (API.md's resume rule), never on whichever
/// thread completed what it awaited: that thread only posts the resumption.

#include <condition_variable>
#include <coroutine>
#include <mutex>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "../../event_loop.hpp"
#include "trampoline.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// What an executor can do, as plain functions (one static table per kind of executor).
struct ExecutorOps {
  /// Resumes `coroutine` later on the executor's thread(s), from any thread. `hold` is the
  /// one taken by hold() when the coroutine suspended (or empty), released as it is queued.
  void (*post)(void* target, std::coroutine_handle<> coroutine, EventLoop::Hold hold);
  /// What keeps the executor from running dry while a coroutine of it waits elsewhere: an
  /// event loop's Hold (a pool or sync_wait() never runs dry by itself), or an empty one.
  EventLoop::Hold (*hold)(void* target);
  /// Queues a child of when_all() that has not started, where an idle thread of the
  /// executor may take it (a pool worker's fork deque). Null: post() it.
  void (*fork)(void* target, std::coroutine_handle<> coroutine) = nullptr;
  /// Takes back a fork this thread queued that nobody took yet, so the caller runs it
  /// itself; false if it was taken. Null: never (the fork simply runs where it was posted).
  bool (*reclaim)(void* target, std::coroutine_handle<> coroutine) noexcept = nullptr;
};

/// An executor: a target (a loop, a pool, a sync_wait driver) and what to do with it. Copied
/// into every coroutine that runs there; the target must outlive them.
struct Executor {
  void* target = nullptr;
  const ExecutorOps* ops = nullptr;

  [[nodiscard]] explicit operator bool() const noexcept { return ops != nullptr; }
  bool operator==(const Executor&) const noexcept = default;
  void post(std::coroutine_handle<> coroutine, EventLoop::Hold hold = {}) const {
    ops->post(target, coroutine, std::move(hold));
  }
  [[nodiscard]] EventLoop::Hold hold() const { return ops->hold(target); }
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
  Resumer(const Executor& executor, std::coroutine_handle<> coroutine)
      : executor_(executor), hold_(executor.hold()), coroutine_(coroutine) {}

  void operator()() noexcept { executor_.post(coroutine_, std::move(hold_)); }

 private:
  Executor executor_;
  EventLoop::Hold hold_;
  std::coroutine_handle<> coroutine_;
};

// --- the executors ------------------------------------------------------------------------------

inline EventLoop::Hold no_hold(void*) { return {}; }

/// An EventLoop: resumptions are posted callbacks; a waiting coroutine holds the loop. The
/// post always goes through a Hold, whose reference keeps the loop's core alive while the
/// posting thread still touches it: the loop thread may run the coroutine to its end, return
/// from run() and destroy the loop before post() has returned here.
inline constexpr ExecutorOps event_loop_ops{
    [](void* target, std::coroutine_handle<> coroutine, EventLoop::Hold hold) {
      if (!hold) hold = static_cast<EventLoop*>(target)->hold();
      std::move(hold).post(ResumeCoroutine{coroutine});
    },
    [](void* target) { return static_cast<EventLoop*>(target)->hold(); }};

inline Executor executor_of(EventLoop& loop) noexcept { return {&loop, &event_loop_ops}; }

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
    [](void* target, std::coroutine_handle<> coroutine, EventLoop::Hold) {
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
Executor pool_executor(Pool& pool) noexcept {
  return {&pool, &pool_ops<Pool>};
}

/**
 * The executor of a thread blocked in sync_wait(): resumptions posted from other threads
 * queue here, and run() resumes them on the waiting thread until the task is done.
 * Thread-safe (post from any thread); run() blocks; allocates as its queue grows.
 */
class SyncWaitDriver {
 public:
  Executor executor() noexcept { return {this, &ops}; }

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
  static void post(void* target, std::coroutine_handle<> coroutine, EventLoop::Hold) {
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

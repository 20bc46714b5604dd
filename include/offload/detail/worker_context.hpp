#ifndef OFFLOAD_DETAIL_WORKER_CONTEXT_HPP
#define OFFLOAD_DETAIL_WORKER_CONTEXT_HPP

/// @file worker_context.hpp
/// What a pool worker thread knows about itself. Futures read it so that get()/wait() called
/// on a worker run other queued tasks instead of blocking the worker (nested submit + get would
/// otherwise deadlock a small pool).

namespace offload {
inline namespace v0 {
namespace detail {

class WorkerContext {
 public:
  WorkerContext(const void* pool, unsigned index) noexcept : pool_(pool), index_(index) {}

  /// Runs one queued task of this worker's pool, if any; returns whether it ran one.
  virtual bool help_one() = 0;

  [[nodiscard]] const void* pool() const noexcept { return pool_; }
  [[nodiscard]] unsigned index() const noexcept { return index_; }

  /// How many of its next tasks this worker ends with a yield: set when it woke a sleeping
  /// event loop (see BasicThreadPool::yield_to_woken_loop()). Only its own thread touches it.
  unsigned yields_owed = 0;

 protected:
  ~WorkerContext() = default;
  WorkerContext(const WorkerContext&) = delete;
  WorkerContext& operator=(const WorkerContext&) = delete;

 private:
  const void* pool_;
  unsigned index_;
};

/// The context of the pool worker running on this thread; null on other threads.
inline thread_local WorkerContext* current_worker = nullptr;

/// current_worker, read through a call that is never inlined and never assumed free of side
/// effects (the empty asm): clang before 17 may keep a thread_local's address across a
/// suspension point of a coroutine, which may resume on another thread, and it would also
/// merge two calls of a function it could prove reads nothing else.
[[gnu::noinline]] inline WorkerContext* this_thread_worker() noexcept {
  asm volatile("" ::: "memory");
  return current_worker;
}

/// How many task ends a worker that woke a loop yields at: the first comes right after the
/// wake-up, too early for the loop's thread to be owed time; the later ones let it in.
inline constexpr unsigned yields_after_waking_a_loop = 4;

/// Records that this thread just woke a sleeping loop's thread, if it is a pool worker. Not
/// inlined, for the reason this_thread_worker() is not (it may run inside a coroutine).
[[gnu::noinline]] inline void note_loop_woken() noexcept {
  asm volatile("" ::: "memory");
  if (current_worker != nullptr) current_worker->yields_owed = yields_after_waking_a_loop;
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_WORKER_CONTEXT_HPP

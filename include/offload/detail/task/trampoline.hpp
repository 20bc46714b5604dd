#ifndef OFFLOAD_DETAIL_TASK_TRAMPOLINE_HPP
#define OFFLOAD_DETAIL_TASK_TRAMPOLINE_HPP

/// @file detail/task/trampoline.hpp
/// Where every coroutine of offload is resumed: a loop per thread that resumes them one after
/// another, so the stack never grows however they hand control to each other.
///
/// Why not symmetric transfer alone: returning the next coroutine's handle from await_suspend
/// is meant to be a tail call, but g++ 12 does not make it one at -O0 or under the sanitizers
/// (GCC PR 100897), and then every hand-over (a parent starting its child, a child finishing
/// and resuming its parent) nests a frame: a loop over a million quick child tasks overflows
/// the stack. Here a coroutine that hands over queues the next one and suspends; its resume()
/// returns into this loop, which resumes the next. Depth stays constant on every compiler.
/// (A hand-over between two offload Tasks may instead resume the next one nested, a bounded
/// number of levels deep: TaskPromiseBase::hand_over(); that spares fine-grained fork-join
/// this queue's push and pop, and the thread-local lookup, on most hops.)
///
/// The thread-local state is reached only through a function that is never inlined, and whose
/// calls are never merged (an empty asm with a memory clobber): clang before 17 may keep a
/// thread_local's address across a suspension point of the coroutine it is inlined into, or
/// merge two calls of a function it can prove reads nothing, and the coroutine may resume on
/// another thread.

#include <coroutine>
#include <cstddef>
#include <vector>

namespace offload {
inline namespace v0 {
namespace detail {

/// This thread's queue of coroutines to resume, and whether its loop is running.
struct TrampolineState {
  std::vector<std::coroutine_handle<>> ready;  // keeps its capacity: no allocation once warm
  std::size_t next = 0;
  bool running = false;
};

[[gnu::noinline]] inline TrampolineState& this_thread_trampoline() noexcept {
  asm volatile("" ::: "memory");  // never assumed free of side effects: calls are not merged
  thread_local TrampolineState state;
  return state;
}

/// Resumes `coroutine`, then everything queued meanwhile, with this thread's loop marked
/// running. Kept out of resume_here() so that queueing, the common case, saves no registers.
[[gnu::noinline]] inline void run_trampoline(TrampolineState& trampoline,
                                             std::coroutine_handle<> coroutine) {
  trampoline.running = true;
  coroutine.resume();  // coroutines never throw out of resume(): their promises catch
  while (trampoline.next < trampoline.ready.size()) trampoline.ready[trampoline.next++].resume();
  trampoline.ready.clear();
  trampoline.next = 0;
  trampoline.running = false;
}

/**
 * Resumes `coroutine` on this thread: inside the running loop, queued to run as soon as the
 * coroutine now running suspends; otherwise at once, in a loop that also runs everything the
 * coroutines it resumes hand over, until nothing is left. Never inlined (see the file
 * comment). Not thread-safe by design: each thread has its own loop. Allocates only while
 * the queue grows past its largest size so far (the number of coroutines waiting at once).
 */
[[gnu::noinline]] inline void resume_here(std::coroutine_handle<> coroutine) {
  TrampolineState& trampoline = this_thread_trampoline();
  if (!trampoline.running) return run_trampoline(trampoline, coroutine);
  // Everything queued has been resumed: start the queue over, so a coroutine that hands
  // over a million times in one run reuses the same slot instead of growing the queue.
  if (trampoline.next == trampoline.ready.size()) {
    trampoline.ready.clear();
    trampoline.next = 0;
  }
  trampoline.ready.push_back(coroutine);
}

/// The callable posted to an executor (a loop callback, a pool job): resumes the coroutine
/// in the trampoline of the thread that runs it.
struct ResumeCoroutine {
  std::coroutine_handle<> coroutine;
  void operator()() const { resume_here(coroutine); }
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_TASK_TRAMPOLINE_HPP

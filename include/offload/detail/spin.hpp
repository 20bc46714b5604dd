#ifndef OFFLOAD_DETAIL_SPIN_HPP
#define OFFLOAD_DETAIL_SPIN_HPP

/// @file spin.hpp
/// Polite busy-waits, for the short spins that come before parking a thread.

#include <algorithm>
#include <chrono>
#include <thread>

namespace offload {
inline namespace v0 {
namespace detail {

/// Tells the CPU we are spinning (frees pipeline resources for the sibling hyper-thread).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::this_thread::yield();
#endif
}

using SpinClock = std::chrono::steady_clock;

/// Checks `ready()` after every pause until it holds (true) or `until` has passed (false).
/// A pause costs 10-140 cycles, so the clock is read once per 16 checks.
template <class Ready>
bool pause_until(const Ready& ready, SpinClock::time_point until) noexcept {
  do {
    for (int i = 0; i < 16; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
  } while (SpinClock::now() < until);
  return false;
}

/// How long spin_before_sleeping() checks in place before its one yield.
inline constexpr std::chrono::microseconds pause_before_yield{1};

/// The bounded wait a thread makes before it sleeps, when what it waits for usually comes
/// within microseconds (a futex sleep and wake-up costs several, tens in a VM): checks
/// `ready()` in place for 1 us, yields once, checks in place again until `stop_pausing`, then
/// checks between yields until `limit`. True as soon as `ready()` holds.
///
/// Why the yield after 1 us: with as many busy threads as cores, the thread that will make
/// `ready()` true may be queued on this very CPU, and checking in place only delays it; when
/// nothing else waits here, a yield returns at once (a system call, 0.3-0.5 us in a VM). Not
/// first: a round trip's answer on another core comes a fraction of a microsecond after the
/// question, and a yield in progress would make it wait for the system call's return.
template <class Ready>
bool spin_before_sleeping(const Ready& ready, SpinClock::time_point start,
                          SpinClock::time_point stop_pausing, SpinClock::time_point limit) noexcept {
  if (pause_until(ready, std::min(stop_pausing, start + pause_before_yield))) return true;
  std::this_thread::yield();
  if (pause_until(ready, stop_pausing)) return true;
  while (SpinClock::now() < limit) {
    if (ready()) return true;
    std::this_thread::yield();
  }
  return ready();
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_SPIN_HPP

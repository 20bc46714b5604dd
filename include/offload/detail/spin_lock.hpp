#ifndef OFFLOAD_DETAIL_SPIN_LOCK_HPP
#define OFFLOAD_DETAIL_SPIN_LOCK_HPP

/// @file spin_lock.hpp
/// A test-and-test-and-set lock for critical sections of a few dozen instructions (queue
/// push/pop), where a futex-based mutex would cost more in the contended case than the work.
/// It yields the CPU after a short spin so an oversubscribed machine still makes progress.

#include <atomic>
#include <thread>

#include "spin.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

class SpinLock {
 public:
  void lock() noexcept {
    for (;;) {
      // Acquire: the critical section must see what the previous holder wrote.
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      int spins = 0;
      // Spin on a plain load so the cache line stays shared until the lock looks free.
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins < 64) {
          cpu_relax();
        } else {
          std::this_thread::yield();  // the holder may be descheduled: let it run
        }
      }
    }
  }
  bool try_lock() noexcept {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  // Release: publishes the critical section's writes to the next holder.
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_SPIN_LOCK_HPP

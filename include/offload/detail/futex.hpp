#ifndef OFFLOAD_DETAIL_FUTEX_HPP
#define OFFLOAD_DETAIL_FUTEX_HPP

/// @file futex.hpp
/// Wait on / wake a 32-bit atomic word, with a timeout and a count of threads woken.
/// std::atomic::wait has neither, so: the futex system call on Linux, and a small parking lot
/// (a table of mutex-guarded waiter lists keyed by address) everywhere else.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "timespec.hpp"
#else
#include <condition_variable>
#include <mutex>
#endif

namespace offload {
inline namespace v0 {
namespace detail {

enum class FutexWait { woken, not_equal, timed_out };

/// Deadline type used throughout: a point on the monotonic clock, or none (wait forever).
using Deadline = std::optional<std::chrono::steady_clock::time_point>;

template <class Rep, class Period>
Deadline deadline_after(std::chrono::duration<Rep, Period> timeout) {
  const auto now = std::chrono::steady_clock::now();
  if (timeout > std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(
                    std::chrono::steady_clock::time_point::max() - now)) {
    return std::nullopt;  // so far away that it means "forever"; avoids overflow
  }
  return now + std::chrono::ceil<std::chrono::steady_clock::duration>(timeout);
}

#if defined(__linux__)

inline std::uint32_t* futex_address(std::atomic<std::uint32_t>& word) noexcept {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  return reinterpret_cast<std::uint32_t*>(&word);
}

/// Blocks while `word == expected`, until woken or `deadline` passes. May wake spuriously
/// (callers re-check their condition). Thread-safe; blocks; never allocates.
inline FutexWait futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                            const Deadline& deadline = std::nullopt) noexcept {
  timespec relative{};
  timespec* timeout = nullptr;
  if (deadline) {
    const auto left = *deadline - std::chrono::steady_clock::now();
    if (left <= left.zero()) return word.load(std::memory_order_acquire) == expected
                                        ? FutexWait::timed_out
                                        : FutexWait::not_equal;
    relative = to_timespec(left);
    timeout = &relative;
  }
  // FUTEX_PRIVATE_FLAG: the word is never shared between processes, so skip the global hash.
  const long rc = syscall(SYS_futex, futex_address(word), FUTEX_WAIT | FUTEX_PRIVATE_FLAG,
                          expected, timeout, nullptr, 0);
  if (rc == 0) return FutexWait::woken;
  if (errno == EAGAIN) return FutexWait::not_equal;
  if (errno == ETIMEDOUT) return FutexWait::timed_out;
  return FutexWait::woken;  // EINTR: report a (spurious) wake-up; the caller re-checks
}

/// Wakes up to `count` threads blocked in futex_wait on `word`; returns how many it woke.
/// Thread-safe; never blocks; never allocates.
inline std::size_t futex_wake(std::atomic<std::uint32_t>& word,
                              std::size_t count = std::numeric_limits<std::size_t>::max()) noexcept {
  const int n = count > static_cast<std::size_t>(std::numeric_limits<int>::max())
                    ? std::numeric_limits<int>::max()
                    : static_cast<int>(count);
  const long rc =
      syscall(SYS_futex, futex_address(word), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, nullptr, nullptr, 0);
  return rc > 0 ? static_cast<std::size_t>(rc) : 0;
}

#else  // portable parking lot

struct ParkedThread {
  const void* address;
  bool woken = false;
  std::condition_variable cv;
  ParkedThread* next = nullptr;
};

struct ParkingBucket {
  std::mutex mutex;
  ParkedThread* head = nullptr;
};

inline ParkingBucket& parking_bucket(const void* address) noexcept {
  static ParkingBucket buckets[64];
  const auto bits = reinterpret_cast<std::uintptr_t>(address);
  return buckets[(bits >> 4) % 64];
}

inline FutexWait futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                            const Deadline& deadline = std::nullopt) noexcept {
  ParkingBucket& bucket = parking_bucket(&word);
  std::unique_lock lock(bucket.mutex);
  // Checked under the bucket lock: a waker changes the word first, then takes this lock, so
  // it cannot slip between this check and our enqueueing.
  if (word.load(std::memory_order_acquire) != expected) return FutexWait::not_equal;
  ParkedThread self{&word};
  self.next = bucket.head;
  bucket.head = &self;
  bool woken = true;
  if (deadline) {
    woken = self.cv.wait_until(lock, *deadline, [&] { return self.woken; });
  } else {
    self.cv.wait(lock, [&] { return self.woken; });
  }
  if (!self.woken) {  // timed out: unlink ourselves
    for (ParkedThread** link = &bucket.head; *link != nullptr; link = &(*link)->next) {
      if (*link == &self) {
        *link = self.next;
        break;
      }
    }
  }
  return woken ? FutexWait::woken : FutexWait::timed_out;
}

inline std::size_t futex_wake(std::atomic<std::uint32_t>& word,
                              std::size_t count = std::numeric_limits<std::size_t>::max()) noexcept {
  ParkingBucket& bucket = parking_bucket(&word);
  std::lock_guard lock(bucket.mutex);
  std::size_t woken = 0;
  for (ParkedThread** link = &bucket.head; *link != nullptr && woken < count;) {
    ParkedThread* parked = *link;
    if (parked->address != &word) {
      link = &parked->next;
      continue;
    }
    *link = parked->next;  // unlink before waking: the waiter's node dies when it returns
    parked->woken = true;
    parked->cv.notify_one();
    ++woken;
  }
  return woken;
}

#endif

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_FUTEX_HPP

#ifndef OFFLOAD_DETAIL_CHANNEL_WAIT_QUEUE_HPP
#define OFFLOAD_DETAIL_CHANNEL_WAIT_QUEUE_HPP

/// @file detail/channel/wait_queue.hpp
/// Where blocked channel operations sleep, and the spin-then-sleep loop that sends them there.
///
/// The protocol that keeps wake-ups from being lost lives in the buffers (BoundedRing,
/// SegmentedQueue): a thread about to sleep first reads the WaitQueue's ticket, then announces
/// itself with a read-modify-write that sets a "waiting" flag in the very word the other side
/// claims positions with, and sleeps only if that RMW shows nothing it could use, now or in
/// flight. Whoever later claims a position sees the flag in its own claim (no extra atomic
/// operation on the fast path), clears it, finishes, and wakes the queue. Because the ticket
/// was read before the announcement, which the waker's claim read, the waker's epoch bump
/// comes after the ticket, so the futex wait cannot miss it.
///
/// A coroutine waits the same way (rx.next(), tx.send_async()), except that instead of the
/// futex wait it enlists an AsyncLink with the ticket it read: enlisting fails if the epoch
/// has moved since (under the list's lock, which wake_all() takes after its epoch bump), so
/// that wake-up cannot be missed either. wake_all() then calls each enlisted link's wake(),
/// which posts the coroutine's resumption; the coroutine tries again when it resumes.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <mutex>
#include <thread>

#include "../futex.hpp"
#include "../parking_spot.hpp"
#include "../spin.hpp"
#include "../spin_lock.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// A coroutine waiting for a channel operation to become possible. Lives in its awaiter.
/// `listed` and `cancelled` are guarded by the lock of the list it is in.
struct AsyncLink {
  AsyncLink* previous = nullptr;
  AsyncLink* next = nullptr;
  bool listed = false;
  bool cancelled = false;  // a stop request came: do not enlist it any more
  void (*wake)(AsyncLink&) noexcept = nullptr;  // posts the coroutine's resumption
  void* context = nullptr;                       // what wake() needs: the awaiter
};

class WaitQueue {
 public:
  using Ticket = std::uint32_t;

  /// Read before announcing a sleep; pass to wait(). Thread-safe; never blocks.
  [[nodiscard]] Ticket ticket() const noexcept {
    // acquire: if a waker already bumped the epoch, its progress is visible to our re-try.
    return epoch_.load(std::memory_order_acquire);
  }

  /// Sleeps until a wake_all() after `ticket` was read, the deadline, or a spurious wake-up;
  /// the caller re-tries in every case. Thread-safe; blocks.
  FutexWait wait(Ticket ticket, const Deadline& deadline) noexcept {
    return futex_wait(epoch_, ticket, deadline);
  }

  /// Wakes every sleeper. Called only by a thread that saw a waiting flag, and on close.
  /// Thread-safe; never blocks; one system call.
  void wake_all() noexcept {
    // release: a sleeper that reads the new epoch as its ticket also sees our progress.
    epoch_.fetch_add(1, std::memory_order_release);
    futex_wake(epoch_, std::numeric_limits<std::size_t>::max());
    wake_coroutines();
  }

  /// Lists a waiting coroutine, unless the epoch moved since `ticket` was read (something
  /// changed: try again) or its wait was cancelled. Thread-safe; never blocks.
  bool enlist(AsyncLink& link, Ticket ticket) noexcept {
    std::lock_guard lock(lock_);
    // relaxed: the lock orders this read after a wake_all() that took the lock before us.
    if (link.cancelled || epoch_.load(std::memory_order_relaxed) != ticket) return false;
    coroutines_.push_back(&link);
    link.listed = true;
    return true;
  }

  /// A stop request: marks `link` cancelled and takes it off the list. True if it was listed
  /// (the caller then resumes the coroutine); false if a wake_all() took it first, or it
  /// never got listed. Thread-safe; never blocks.
  bool cancel(AsyncLink& link) noexcept {
    std::lock_guard lock(lock_);
    link.cancelled = true;
    if (!link.listed) return false;
    coroutines_.erase(&link);
    link.listed = false;
    return true;
  }

 private:
  /// Takes every listed coroutine off the list, then wakes them outside the lock (a wake
  /// posts to an executor, which may take locks of its own).
  void wake_coroutines() noexcept {
    IntrusiveFifo<AsyncLink> woken;
    {
      std::lock_guard lock(lock_);
      while (AsyncLink* link = coroutines_.pop_front()) {
        link->listed = false;
        woken.push_back(link);
      }
    }
    // Off the list before its wake: the coroutine may resume, and its awaiter die, at once.
    while (AsyncLink* link = woken.pop_front()) link->wake(*link);
  }

  std::atomic<std::uint32_t> epoch_{0};  ///< the futex word sleepers wait on
  SpinLock lock_;                        ///< guards coroutines_ and their links' flags
  IntrusiveFifo<AsyncLink> coroutines_;
};

/**
 * Runs `attempt` until `is_blocked(result)` is false or `deadline` passes: a few tries with a
 * growing pause, a couple of yields, then sleeping on `queue` between tries whenever
 * `announce_sleep()` (the buffer's flag-setting RMW) says that is safe, yielding otherwise
 * (another thread's operation is in flight and about to finish). Returns the last result:
 * still blocked means the deadline ran out. Blocks; never allocates.
 */
template <class AttemptFn, class IsBlocked, class AnnounceSleep>
auto retry_until(WaitQueue& queue, const Deadline& deadline, AttemptFn&& attempt,
                 IsBlocked&& is_blocked, AnnounceSleep&& announce_sleep) -> decltype(attempt()) {
  auto status = attempt();
  // Spin first: the other side is usually running and about to make progress; a futex round
  // trip costs microseconds.
  constexpr unsigned spin_rounds = 7;  // 1 + 2 + ... + 64 pauses
  constexpr unsigned yield_rounds = 2;
  for (unsigned round = 0; is_blocked(status) && round < spin_rounds + yield_rounds; ++round) {
    if (round < spin_rounds) {
      for (unsigned pause = 0; pause < (1U << round); ++pause) cpu_relax();
    } else {
      std::this_thread::yield();
    }
    status = attempt();
  }
  while (is_blocked(status)) {
    if (deadline && std::chrono::steady_clock::now() >= *deadline) break;
    const WaitQueue::Ticket ticket = queue.ticket();
    if (announce_sleep()) {
      queue.wait(ticket, deadline);
    } else {
      std::this_thread::yield();
    }
    status = attempt();
  }
  return status;
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CHANNEL_WAIT_QUEUE_HPP

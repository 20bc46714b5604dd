#ifndef OFFLOAD_DETAIL_LOOP_SLEEPER_HPP
#define OFFLOAD_DETAIL_LOOP_SLEEPER_HPP

/// @file detail/loop/sleeper.hpp
/// How an EventLoop's thread sleeps until a wake-up or its next timer's deadline.
///
/// Why not a futex wait with a timeout: it arms a kernel timer on every sleep and cancels it
/// on every early wake-up, and on a VM each of those reprograms the virtual timer device. A
/// loop woken by pool results several times per tick paid 18-21 us of CPU per sleep that
/// way, against 9 us without the timeout (2-vCPU development VM, both cores busy). So on
/// Linux a sleep with a deadline keeps it in a timerfd that is re-armed only when the
/// deadline changes (once per tick for an interval), and sleeps in poll() on it and on an
/// eventfd that wake() writes: 10-11 us per sleep. A sleep without a deadline stays on the
/// futex word, which has no timer to arm and wakes 0.5 us sooner than poll(). Elsewhere, or
/// when the process has no file descriptors to spare, every sleep is on the futex word.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include "../futex.hpp"
#include "../timespec.hpp"
#include "timer_queue.hpp"

#if defined(__linux__)
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>
#endif

namespace offload {
inline namespace v0 {
namespace detail {

/// One loop's sleep. prepare() and sleep() are for the loop's thread only; wake() is
/// thread-safe and never blocks. The protocol against lost wake-ups: the loop prepares, under
/// the lock that wakers take, the sleep it is about to take (its ticket and how it sleeps),
/// and a wake() by a thread that took the lock after that makes the sleep return at once.
/// A wake() that comes later, when the loop already runs again and may next sleep the other
/// way, wakes nothing or makes one later sleep return early; the loop re-checks either way.
class LoopSleeper {
 public:
  using Ticket = std::uint32_t;

  LoopSleeper() noexcept { open_descriptors(); }
  ~LoopSleeper() { close_descriptors(); }
  LoopSleeper(const LoopSleeper&) = delete;
  LoopSleeper& operator=(const LoopSleeper&) = delete;

  Ticket prepare(const std::optional<LoopClock::time_point>& deadline) noexcept {
#if defined(__linux__)
    // Relaxed: a waker reads it after taking the lock the loop releases after this.
    on_descriptors_.store(uses_descriptors() && deadline.has_value(), std::memory_order_relaxed);
#else
    (void)deadline;
#endif
    return word_.load(std::memory_order_relaxed);
  }

  /// Sleeps until a wake() after `ticket` was taken or until `deadline`, the one given to the
  /// prepare() that took it. May return early (a stale timer, a signal): the loop re-checks
  /// what it waits for.
  void sleep(Ticket ticket, const std::optional<LoopClock::time_point>& deadline) noexcept {
#if defined(__linux__)
    if (on_descriptors_.load(std::memory_order_relaxed)) {
      sleep_on_descriptors(*deadline);
      return;
    }
#endif
    futex_wait(word_, ticket, deadline);
  }

  void wake() noexcept {
#if defined(__linux__)
    if (on_descriptors_.load(std::memory_order_relaxed)) {
      const std::uint64_t one = 1;
      // Cannot fail: the counter would need 2^64 - 2 unread wake-ups to overflow.
      (void)!::write(wake_fd_, &one, sizeof one);
      return;
    }
#endif
    // Relaxed: what the loop wakes for is published by the loop's mutex; the word only has
    // to change so that a futex sleep prepared before it cannot block.
    word_.fetch_add(1, std::memory_order_relaxed);
    futex_wake(word_, 1);
  }

 private:
#if defined(__linux__)
  bool uses_descriptors() const noexcept { return timer_fd_ >= 0; }

  void open_descriptors() noexcept {
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) return;
    timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (timer_fd_ < 0) close_descriptors();  // the futex it is, then
  }

  void close_descriptors() noexcept {
    if (wake_fd_ >= 0) ::close(wake_fd_);
    if (timer_fd_ >= 0) ::close(timer_fd_);
    wake_fd_ = timer_fd_ = -1;
  }

  void sleep_on_descriptors(LoopClock::time_point deadline) noexcept {
    int timeout_ms = -1;  // poll() itself arms no timer: the timerfd keeps the deadline
    // A timer cancelled since the timerfd was armed for it is not disarmed: its expiry makes
    // at most one sleep return early, which costs less than a disarming system call.
    if (deadline != armed_ && !arm(deadline)) timeout_ms = poll_timeout(deadline);
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {timer_fd_, POLLIN, 0}};
    if (::poll(fds, 2, timeout_ms) <= 0) return;  // timed out, or EINTR: the loop re-checks
    if (fds[0].revents != 0) drain(wake_fd_);
    if (fds[1].revents != 0) {
      drain(timer_fd_);
      armed_.reset();
    }
  }

  /// Sets the timerfd to expire at `deadline` (on CLOCK_MONOTONIC, steady_clock's clock).
  bool arm(LoopClock::time_point deadline) noexcept {
    if (!set_timerfd(timer_fd_, deadline.time_since_epoch(), TFD_TIMER_ABSTIME)) {
      armed_.reset();
      return false;
    }
    armed_ = deadline;
    return true;
  }

  /// Only if the timerfd refused a deadline: poll()'s own timeout, rounded up to whole ms.
  static int poll_timeout(LoopClock::time_point deadline) noexcept {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - LoopClock::now());
    if (left.count() <= 0) return 0;
    return left.count() > 1'000'000 ? 1'000'000 : static_cast<int>(left.count());
  }

  static void drain(int fd) noexcept {
    std::uint64_t count = 0;
    (void)!::read(fd, &count, sizeof count);  // nonblocking: an empty one just says EAGAIN
  }

  int wake_fd_ = -1;
  int timer_fd_ = -1;
  std::optional<LoopClock::time_point> armed_;  // the loop thread's: the timerfd's deadline
  std::atomic<bool> on_descriptors_{false};     // how the prepared sleep sleeps
#else
  void open_descriptors() noexcept {}
  void close_descriptors() noexcept {}
#endif
  std::atomic<std::uint32_t> word_{0};  // the futex sleep's, and the ticket's
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_LOOP_SLEEPER_HPP

#ifndef OFFLOAD_DETAIL_POOL_PARKER_HPP
#define OFFLOAD_DETAIL_POOL_PARKER_HPP

/// @file detail/pool/parker.hpp
/// Parks idle threads without losing wake-ups (an "event count").
///
/// A thread that found no work calls prepare(), looks for work once more, and only then
/// commit()s to sleep. A producer publishes its work first and then calls notify_one().
/// Either the producer sees the sleeper announced by prepare() and bumps the epoch (so the
/// sleeper's futex wait returns at once), or the sleeper's second look sees the work. That
/// "neither is impossible" argument needs the work to be published with a seq_cst store and
/// re-checked with a seq_cst load (the classic store-load pattern; no standalone fences, which
/// ThreadSanitizer does not model). When nobody sleeps, notify costs one load: no system call.

#include <atomic>
#include <cstdint>
#include <limits>

#include "../futex.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

class Parker {
 public:
  /// Announces a sleeper; returns the epoch to pass to commit(). Then re-check for work.
  std::uint32_t prepare() noexcept {
    // seq_cst: the announcement must precede the caller's seq_cst re-check of the queues in
    // the single total order (pairs with the load in notify()).
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    return epoch_.load(std::memory_order_seq_cst);
  }

  /// The re-check found work: withdraw the announcement.
  void cancel() noexcept { sleepers_.fetch_sub(1, std::memory_order_relaxed); }

  /// Sleeps until notified (or spuriously). Returns with the announcement withdrawn.
  void commit(std::uint32_t epoch, const Deadline& deadline = std::nullopt) noexcept {
    futex_wait(epoch_, epoch, deadline);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
  }

  /// Wakes one sleeper, if any. Call after publishing the work.
  void notify_one() noexcept { notify(1); }

  /// Wakes every sleeper.
  void notify_all() noexcept { notify(std::numeric_limits<std::size_t>::max()); }

 private:
  void notify(std::size_t count) noexcept {
    // seq_cst: must come after the caller's seq_cst publication in the total order.
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    // seq_cst: a sleeper that reads the new epoch in prepare() must also see the work.
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(epoch_, count);
  }

  std::atomic<std::uint32_t> epoch_{0};
  std::atomic<std::uint32_t> sleepers_{0};
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_POOL_PARKER_HPP

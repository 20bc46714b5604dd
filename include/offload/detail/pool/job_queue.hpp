#ifndef OFFLOAD_DETAIL_POOL_JOB_QUEUE_HPP
#define OFFLOAD_DETAIL_POOL_JOB_QUEUE_HPP

/// @file detail/pool/job_queue.hpp
/// A lock-guarded double-ended queue of Jobs with a lock-free size, used as a worker's own
/// deque (owner pushes/pops at the back, thieves take from the front) and as the pool's
/// injection queue. Critical sections are a few dozen instructions, hence a spin lock.

#include <atomic>
#include <cstddef>
#include <mutex>

#include "../spin_lock.hpp"
#include "ring_deque.hpp"
#include "job.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

class alignas(64) JobQueue {  // one cache line of its own: owners and thieves hammer it
 public:
  /// Thread-safe; allocates only when the ring grows.
  void push(Job&& job) {
    std::lock_guard lock(lock_);
    const bool was_empty = jobs_.empty();
    jobs_.push_back(std::move(job));
    publish_size(was_empty);
  }

  /// Pushes `count` jobs under one lock acquisition, the last of `jobs` first (so pop_back
  /// returns them in their original order). Thread-safe; allocates only when the ring grows.
  void push_reversed(Job* jobs, std::size_t count) {
    std::lock_guard lock(lock_);
    const bool was_empty = jobs_.empty();
    for (std::size_t i = count; i-- > 0;) jobs_.push_back(std::move(jobs[i]));
    publish_size(was_empty);
  }

  /// Takes the newest job (LIFO: best locality for the owner). Thread-safe; never blocks
  /// beyond the short critical section.
  bool pop_back(Job& out) {
    if (looks_empty()) return false;
    std::lock_guard lock(lock_);
    if (jobs_.empty()) return false;
    jobs_.pop_back(out);
    shrink_size();
    return true;
  }

  /// Takes the oldest job (FIFO: for thieves and the injection queue).
  bool pop_front(Job& out) {
    if (looks_empty()) return false;
    std::lock_guard lock(lock_);
    if (jobs_.empty()) return false;
    jobs_.pop_front(out);
    shrink_size();
    return true;
  }

  /// Takes up to `capacity` of the oldest jobs into `out` (in order); returns how many.
  std::size_t pop_front_batch(Job* out, std::size_t capacity, unsigned consumers) {
    if (looks_empty()) return 0;
    std::lock_guard lock(lock_);
    // Take a fair share, so one consumer does not hoard work the others could start now.
    std::size_t share = (jobs_.size() + consumers - 1) / consumers;
    if (share > capacity) share = capacity;
    for (std::size_t i = 0; i < share; ++i) jobs_.pop_front(out[i]);
    shrink_size();
    return share;
  }

  /// A lock-free glance: may be stale by the time the caller acts on it.
  [[nodiscard]] bool looks_empty() const noexcept {
    // seq_cst: the re-check before parking must be ordered after Parker::prepare().
    return size_.load(std::memory_order_seq_cst) == 0;
  }
  [[nodiscard]] std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }

 private:
  void publish_size(bool was_empty) noexcept {
    // A sleeper only needs to see the empty -> non-empty transition: that store is seq_cst,
    // the publication half of the Parker protocol (a sleeper re-checks this value). Until a
    // pop empties the queue again, later pushes leave it non-zero, so a sleeper re-checking
    // in between sees work either way, and the relaxed store spares a full barrier per push.
    // (All stores happen under the lock, so the transitions are totally ordered.)
    size_.store(jobs_.size(), was_empty ? std::memory_order_seq_cst : std::memory_order_relaxed);
  }
  void shrink_size() noexcept {
    // Relaxed: a sleeper that misses a decrease only looks once more and finds nothing.
    size_.store(jobs_.size(), std::memory_order_relaxed);
  }

  SpinLock lock_;
  std::atomic<std::size_t> size_{0};
  RingDeque<Job> jobs_;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_POOL_JOB_QUEUE_HPP

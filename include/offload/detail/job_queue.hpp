#ifndef OFFLOAD_DETAIL_JOB_QUEUE_HPP
#define OFFLOAD_DETAIL_JOB_QUEUE_HPP

/// @file job_queue.hpp
/// A lock-guarded double-ended queue of Jobs with a lock-free size, used as a worker's own
/// deque (owner pushes/pops at the back, thieves take from the front) and as the pool's
/// injection queue. Critical sections are a few dozen instructions, hence a spin lock.

#include <atomic>
#include <cstddef>
#include <mutex>

#include "ring_deque.hpp"
#include "spin_lock.hpp"
#include "task.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

class alignas(64) JobQueue {  // one cache line of its own: owners and thieves hammer it
 public:
  /// Thread-safe; allocates only when the ring grows.
  void push(Job&& job) {
    std::lock_guard lock(lock_);
    jobs_.push_back(std::move(job));
    publish_size();
  }

  /// Pushes `count` jobs under one lock acquisition, the last of `jobs` first (so pop_back
  /// returns them in their original order). Thread-safe; allocates only when the ring grows.
  void push_reversed(Job* jobs, std::size_t count) {
    std::lock_guard lock(lock_);
    for (std::size_t i = count; i-- > 0;) jobs_.push_back(std::move(jobs[i]));
    publish_size();
  }

  /// Takes the newest job (LIFO: best locality for the owner). Thread-safe; never blocks
  /// beyond the short critical section.
  bool pop_back(Job& out) {
    if (looks_empty()) return false;
    std::lock_guard lock(lock_);
    if (jobs_.empty()) return false;
    out = jobs_.pop_back();
    shrink_size();
    return true;
  }

  /// Takes the oldest job (FIFO: for thieves and the injection queue).
  bool pop_front(Job& out) {
    if (looks_empty()) return false;
    std::lock_guard lock(lock_);
    if (jobs_.empty()) return false;
    out = jobs_.pop_front();
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
    for (std::size_t i = 0; i < share; ++i) out[i] = jobs_.pop_front();
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
  void publish_size() noexcept {
    // seq_cst: publication half of the Parker protocol (a sleeper re-checks this value).
    size_.store(jobs_.size(), std::memory_order_seq_cst);
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

#endif  // OFFLOAD_DETAIL_JOB_QUEUE_HPP

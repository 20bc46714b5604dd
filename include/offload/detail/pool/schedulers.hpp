#ifndef OFFLOAD_DETAIL_POOL_SCHEDULERS_HPP
#define OFFLOAD_DETAIL_POOL_SCHEDULERS_HPP

/// @file detail/pool/schedulers.hpp
/// The queues behind the two scheduling policies of BasicThreadPool. Both offer the same
/// operations: push(job, priority, worker-or-none), pop(worker, out), has_work(), size().

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "../spin_lock.hpp"
#include "handle_deque.hpp"
#include "job_queue.hpp"
#include "job_ring.hpp"
#include "job.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// Work stealing: each worker owns a deque; outside submissions go to a shared injection
/// queue (a lock-free ring, with a locked overflow queue for bursts larger than the ring);
/// an idle worker steals the oldest job of a busy one. Each worker also owns a lock-free deque
/// of the coroutines its fork-joins fork (HandleDeque), tried before anything else.
class WorkStealingQueues {
 public:
  explicit WorkStealingQueues(unsigned workers)
      : locals_(workers), forks_(workers), ring_(ring_capacity) {}

  /// A coroutine forked on `worker` (its own thread only); true when that worker's forks
  /// looked empty before. Throws std::bad_alloc.
  bool push_fork(unsigned worker, void* coroutine) { return forks_[worker].push(coroutine); }

  /// `worker`'s own newest fork.
  bool pop_fork(unsigned worker, void*& out) noexcept {
    return forks_[worker].pop(out);
  }

  /// The oldest fork of another worker.
  bool steal_fork(unsigned worker, void*& out) noexcept {
    const std::size_t count = forks_.size();
    for (std::size_t step = 1; step < count; ++step) {
      if (forks_[(worker + step) % count].steal(out)) return true;
    }
    return false;
  }

  void push(Job&& job, int /*priority*/, std::optional<unsigned> worker) {
    if (worker) {
      locals_[*worker].push(std::move(job));  // nested spawn: stays local, cache-hot
      return;
    }
    // While older jobs wait in the overflow queue, newer ones queue behind them there, so
    // the ring cannot overtake them indefinitely.
    if (overflow_.looks_empty() && ring_.try_push(job)) return;
    overflow_.push(std::move(job));
  }

  bool pop(unsigned worker, Job& out) {
    return locals_[worker].pop_back(out) || ring_.try_pop(out) || take_overflow(worker, out) ||
           steal(worker, out);
  }

  [[nodiscard]] bool has_work() const noexcept {
    if (!ring_.looks_empty() || !overflow_.looks_empty()) return true;
    return std::any_of(locals_.begin(), locals_.end(),
                       [](const JobQueue& queue) { return !queue.looks_empty(); }) ||
           std::any_of(forks_.begin(), forks_.end(),
                       [](const HandleDeque& forks) { return !forks.looks_empty(); });
  }

  [[nodiscard]] std::size_t size() const noexcept {
    std::size_t total = ring_.size() + overflow_.size();
    for (const JobQueue& queue : locals_) total += queue.size();
    for (const HandleDeque& forks : forks_) total += forks.size();
    return total;
  }

 private:
  static constexpr std::size_t ring_capacity = 1024;
  static constexpr std::size_t max_batch = 32;

  /// Moves a batch from the overflow queue into our deque, keeping one to run now. A batch
  /// amortises the shared queue's lock over many jobs.
  bool take_overflow(unsigned worker, Job& out) {
    Job batch[max_batch];
    const auto consumers = static_cast<unsigned>(locals_.size());
    const std::size_t taken = overflow_.pop_front_batch(batch, max_batch, consumers);
    if (taken == 0) return false;
    out = std::move(batch[0]);
    // Pushed newest first, so the owner's LIFO pops replay them in submission order.
    if (taken > 1) locals_[worker].push_reversed(batch + 1, taken - 1);
    return true;
  }

  bool steal(unsigned thief, Job& out) {
    const std::size_t count = locals_.size();
    for (std::size_t step = 1; step < count; ++step) {
      if (locals_[(thief + step) % count].pop_front(out)) return true;
    }
    return false;
  }

  std::vector<JobQueue> locals_;
  std::vector<HandleDeque> forks_;
  JobRing ring_;
  JobQueue overflow_;
};

/// Priorities: one heap; larger priority first, FIFO among equal priorities.
class PriorityQueues {
 public:
  explicit PriorityQueues(unsigned /*workers*/) {}

  void push(Job&& job, int priority, std::optional<unsigned> /*worker*/) {
    std::lock_guard lock(lock_);
    heap_.push_back(Entry{priority, next_sequence_++, std::move(job)});
    std::push_heap(heap_.begin(), heap_.end(), runs_later);
    // seq_cst: publication half of the Parker protocol.
    size_.store(heap_.size(), std::memory_order_seq_cst);
  }

  bool pop(unsigned /*worker*/, Job& out) {
    if (!has_work()) return false;
    std::lock_guard lock(lock_);
    if (heap_.empty()) return false;
    std::pop_heap(heap_.begin(), heap_.end(), runs_later);
    out = std::move(heap_.back().job);
    heap_.pop_back();
    size_.store(heap_.size(), std::memory_order_seq_cst);
    return true;
  }

  [[nodiscard]] bool has_work() const noexcept {
    return size_.load(std::memory_order_seq_cst) != 0;
  }
  [[nodiscard]] std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }

 private:
  struct Entry {
    int priority;
    std::uint64_t sequence;
    Job job;
  };
  /// Heap order: the top is the largest priority, then the smallest sequence number.
  static bool runs_later(const Entry& a, const Entry& b) noexcept {
    return a.priority != b.priority ? a.priority < b.priority : a.sequence > b.sequence;
  }

  SpinLock lock_;
  std::vector<Entry> heap_;
  std::uint64_t next_sequence_ = 0;
  std::atomic<std::size_t> size_{0};
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_POOL_SCHEDULERS_HPP

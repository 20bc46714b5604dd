#ifndef OFFLOAD_DETAIL_POOL_JOB_RING_HPP
#define OFFLOAD_DETAIL_POOL_JOB_RING_HPP

/// @file detail/pool/job_ring.hpp
/// A bounded lock-free multi-producer multi-consumer ring of Jobs: the fast path of a pool's
/// injection queue. Each slot carries a sequence number that says whose turn it is (a
/// producer's, to fill it in lap L, or a consumer's, to empty it), so producers and consumers
/// only contend on their own counter and never wait for each other beyond a slot handoff.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>

#include "ring_deque.hpp"
#include "job.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

class JobRing {
 public:
  /// `capacity` must be a power of two.
  explicit JobRing(std::size_t capacity) : slots_(new Slot[capacity]), mask_(capacity - 1) {
    for (std::size_t i = 0; i < capacity; ++i) {
      slots_[i].sequence.store(i, std::memory_order_relaxed);
    }
  }
  JobRing(const JobRing&) = delete;
  JobRing& operator=(const JobRing&) = delete;
  ~JobRing() {
    Job job;
    while (try_pop(job)) job.task.reset();  // abandons tasks nobody ran (only on failure paths)
  }

  /// Moves `job` in unless the ring is full. Thread-safe, lock-free, never allocates.
  bool try_push(Job& job) noexcept {
    std::size_t position = tail_.load(std::memory_order_relaxed);
    for (;;) {
      Slot& slot = slots_[position & mask_];
      // Acquire: the consumer that emptied this slot in the previous lap is done with it.
      const std::size_t sequence = slot.sequence.load(std::memory_order_acquire);
      const auto lag = static_cast<std::intptr_t>(sequence - position);
      if (lag == 0) {
        // seq_cst: claiming the slot is the publication half of the Parker protocol: a
        // sleeper's re-check (looks_empty) must see it once it is ordered before our load of
        // the sleeper count.
        if (tail_.compare_exchange_weak(position, position + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
          ::new (static_cast<void*>(slot.storage)) Job(std::move(job));
          // Release: hands the filled slot to the consumer of this position.
          slot.sequence.store(position + 1, std::memory_order_release);
          return true;
        }
      } else if (lag < 0) {
        return false;  // the slot still holds last lap's job: full
      } else {
        position = tail_.load(std::memory_order_relaxed);  // another producer took it
      }
    }
  }

  /// Moves the oldest job into `out` unless the ring is (or looks) empty. Thread-safe,
  /// lock-free. A job whose producer is still writing it counts as not there yet.
  bool try_pop(Job& out) noexcept {
    std::size_t position = head_.load(std::memory_order_relaxed);
    for (;;) {
      Slot& slot = slots_[position & mask_];
      // Acquire: see the job its producer wrote before publishing the sequence.
      const std::size_t sequence = slot.sequence.load(std::memory_order_acquire);
      const auto lag = static_cast<std::intptr_t>(sequence - (position + 1));
      if (lag == 0) {
        // Relaxed: the slot's sequence, not the head, carries the data handoff.
        if (head_.compare_exchange_weak(position, position + 1, std::memory_order_relaxed)) {
          relocate_into(out, *std::launder(reinterpret_cast<Job*>(slot.storage)));
          // Release: the slot is free for the producer of the next lap.
          slot.sequence.store(position + mask_ + 1, std::memory_order_release);
          return true;
        }
      } else if (lag < 0) {
        return false;
      } else {
        position = head_.load(std::memory_order_relaxed);
      }
    }
  }

  /// True when no job is claimed-but-not-taken. seq_cst: the re-check half of the Parker
  /// protocol.
  [[nodiscard]] bool looks_empty() const noexcept {
    return head_.load(std::memory_order_seq_cst) == tail_.load(std::memory_order_seq_cst);
  }

  [[nodiscard]] std::size_t size() const noexcept {
    const std::size_t head = head_.load(std::memory_order_relaxed);
    const std::size_t tail = tail_.load(std::memory_order_relaxed);
    return tail > head ? tail - head : 0;
  }

 private:
  struct Slot {
    std::atomic<std::size_t> sequence;
    alignas(Job) unsigned char storage[sizeof(Job)];
  };

  std::unique_ptr<Slot[]> slots_;
  const std::size_t mask_;
  alignas(64) std::atomic<std::size_t> tail_{0};  // producers' counter, own cache line
  alignas(64) std::atomic<std::size_t> head_{0};  // consumers' counter, own cache line
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_POOL_JOB_RING_HPP

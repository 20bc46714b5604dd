#ifndef OFFLOAD_DETAIL_PARKING_SPOT_HPP
#define OFFLOAD_DETAIL_PARKING_SPOT_HPP

/// @file parking_spot.hpp
/// One parked thread waiting for a verdict from another, plus an intrusive FIFO of them.
///
/// Used where waiters sit in a list under a mutex (rendezvous channels, SharedBuffer::wait).
/// The waker removes a waiter from its list and signals it *while holding the list's mutex*;
/// the waiter, once it sees a verdict, takes that mutex once before returning. So the waker is
/// done touching the spot before the waiter's stack frame (where the spot lives) goes away.

#include <atomic>
#include <cstdint>

#include "futex.hpp"
#include "spin.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

class ParkingSpot {
 public:
  static constexpr std::uint32_t no_verdict = 0;

  /// Waits for signal() or the deadline; returns the verdict, or no_verdict on timeout.
  /// Spins briefly before sleeping. Called by the owning thread only; blocks.
  std::uint32_t wait(const Deadline& deadline) noexcept {
    for (int spin = 0; spin < 64; ++spin) {
      // acquire: the signaller's hand-off (e.g. a moved value) is visible with the verdict.
      const std::uint32_t verdict = state_.load(std::memory_order_acquire);
      if (verdict != no_verdict) return verdict;
      cpu_relax();
    }
    for (;;) {
      const std::uint32_t verdict = state_.load(std::memory_order_acquire);  // acquire: as above
      if (verdict != no_verdict) return verdict;
      if (futex_wait(state_, no_verdict, deadline) == FutexWait::timed_out) {
        return state_.load(std::memory_order_acquire);  // acquire: as above
      }
    }
  }

  /// Hands the verdict (non-zero) to the waiter and wakes it. Call with the list's mutex held.
  /// Thread-safe; never blocks.
  void signal(std::uint32_t verdict) noexcept {
    // release: what the signaller did for the waiter is visible with the verdict.
    state_.store(verdict, std::memory_order_release);
    futex_wake(state_, 1);
  }

  /// The verdict so far (no_verdict if none). Thread-safe; never blocks.
  std::uint32_t verdict() const noexcept {
    return state_.load(std::memory_order_acquire);  // acquire: as in wait()
  }

 private:
  std::atomic<std::uint32_t> state_{no_verdict};
};

/// An intrusive doubly-linked FIFO of `Node`s, which have `Node* previous, * next` members.
/// Not thread-safe: the owner guards it with a mutex. Never allocates.
template <class Node>
class IntrusiveFifo {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  Node* front() const noexcept { return head_; }

  void push_back(Node* node) noexcept {
    node->previous = tail_;
    node->next = nullptr;
    (tail_ != nullptr ? tail_->next : head_) = node;
    tail_ = node;
  }

  void erase(Node* node) noexcept {
    (node->previous != nullptr ? node->previous->next : head_) = node->next;
    (node->next != nullptr ? node->next->previous : tail_) = node->previous;
    node->previous = node->next = nullptr;
  }

  Node* pop_front() noexcept {
    Node* node = head_;
    if (node != nullptr) erase(node);
    return node;
  }

 private:
  Node* head_ = nullptr;
  Node* tail_ = nullptr;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PARKING_SPOT_HPP

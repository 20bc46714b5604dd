#ifndef OFFLOAD_DETAIL_CHANNEL_CLOSABLE_TAIL_HPP
#define OFFLOAD_DETAIL_CHANNEL_CLOSABLE_TAIL_HPP

/// @file detail/channel/closable_tail.hpp
/// The tail word of a channel buffer (BoundedRing, SegmentedQueue) and its closing protocol.
///
/// The word holds the next position to write plus closed_bit and waiting_bit (receivers
/// sleep; see wait_queue.hpp). Closing sets closed_bit with an RMW on this same word, so every
/// send either claimed its position before the close (and its value will be received) or
/// sees the bit and fails: no value is accepted and then lost.

#include <atomic>
#include <cstdint>

#include "channel_status.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

class ClosableTail {
 public:
  /// The word itself, for the buffer's claims (read it, then CAS it to the next position).
  std::atomic<std::uint64_t>& word() noexcept { return word_; }
  const std::atomic<std::uint64_t>& word() const noexcept { return word_; }

  /// Marks the buffer closed; returns true for the call that closed it. Thread-safe.
  bool close() noexcept {
    // release: what the closer did before close() is visible to whoever sees it closed.
    const bool first = (word_.fetch_or(closed_bit, std::memory_order_release) & closed_bit) == 0;
    // release: pairs with empty_or_closed(); set after the bit, so it never claims too early.
    closed_hint_.store(true, std::memory_order_release);
    return first;
  }

  /// Thread-safe; never blocks.
  [[nodiscard]] bool is_closed() const noexcept {
    // acquire: pairs with close().
    return (word_.load(std::memory_order_acquire) & closed_bit) != 0;
  }

  /// A receiver about to sleep announces itself. Returns true if it may sleep: nothing is
  /// buffered or being written (the tail is at `head`) and the buffer is open, so the next
  /// claim will see the flag. Thread-safe; never blocks.
  bool announce_sleeping_receiver(const std::atomic<std::uint64_t>& head) noexcept {
    // acq_rel: release publishes the sleeper's ticket read to the claimer that sees the flag.
    const std::uint64_t tail = word_.fetch_or(waiting_bit, std::memory_order_acq_rel);
    if ((tail & closed_bit) != 0) return false;
    // relaxed: a stale (smaller) head only makes us not sleep.
    return (tail & position_mask) == (head.load(std::memory_order_relaxed) & position_mask);
  }

  /// What a receive that found the slot at `head_position` empty reports: closed once the
  /// buffer is closed and drained, else empty. Thread-safe; never blocks.
  [[nodiscard]] ChannelStatus empty_or_closed(std::uint64_t head_position) const noexcept {
    // The hint spares an empty-spinning consumer from reading the producers' hot tail line.
    // acquire: pairs with close().
    if (!closed_hint_.load(std::memory_order_acquire)) return ChannelStatus::empty;
    // relaxed: only positions matter. If the tail (read after the slot) equals our head, no
    // send claimed a later position, so a closed buffer is drained.
    const std::uint64_t tail = word_.load(std::memory_order_relaxed);
    const bool drained = (tail & position_mask) == head_position;
    return (tail & closed_bit) != 0 && drained ? ChannelStatus::closed : ChannelStatus::empty;
  }

 private:
  alignas(64) std::atomic<std::uint64_t> word_{0};    ///< next position to write, + flags
  alignas(64) std::atomic<bool> closed_hint_{false};  ///< set once, after closed_bit
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CHANNEL_CLOSABLE_TAIL_HPP

#ifndef OFFLOAD_DETAIL_CHANNEL_BOUNDED_RING_HPP
#define OFFLOAD_DETAIL_CHANNEL_BOUNDED_RING_HPP

/// @file detail/channel/bounded_ring.hpp
/// The buffer of a bounded channel: a lock-free multi-producer multi-consumer ring with one
/// sequence number ("stamp") per slot, after Dmitry Vyukov's bounded MPMC queue.
///
/// A position is `lap * one_lap + index` with one_lap a power of two above the capacity, so
/// the capacity is exact and no division is needed. A slot whose stamp equals a position is
/// free for the producer of that position; stamp == position + 1 means it holds that
/// position's value; a consumer frees it for the next lap with stamp = position + one_lap.
/// Producers and consumers claim positions with a CAS on tail / head after reading the stamp,
/// so a try operation never waits for another thread: a slot still being written reads as
/// empty, a slot still being read as full.
///
/// The tail word also carries closed_bit and waiting_bit (receivers sleep; closing and
/// sleeping receivers: closable_tail.hpp), the head word waiting_bit (senders sleep); see
/// wait_queue.hpp for the sleeping protocol.

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>

#include "channel_status.hpp"
#include "closable_tail.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

template <class T>
class BoundedRing {
 public:
  /// Allocates `capacity` slots (capacity >= 1). Throws std::length_error if absurdly large,
  /// std::bad_alloc if memory runs out.
  explicit BoundedRing(std::size_t capacity)
      : capacity_(checked(capacity)),
        one_lap_(std::bit_ceil(capacity_ + 1)),
        slots_(std::make_unique<Slot[]>(capacity)) {
    for (std::size_t i = 0; i < capacity; ++i) slots_[i].stamp.store(i, std::memory_order_relaxed);
  }

  BoundedRing(const BoundedRing&) = delete;
  BoundedRing& operator=(const BoundedRing&) = delete;

  /// Destroys the values still buffered. Not thread-safe (the last owner calls it).
  ~BoundedRing() { drain(); }

  /// Moves `value` into a free slot: ok (moved from `value`), full or closed (untouched).
  /// Thread-safe; never waits for another thread; never allocates. If T's move constructor
  /// throws, the exception propagates and the slot is marked for consumers to skip.
  PushOutcome try_push(T& value) {
    // relaxed: the word is a guess that the slot's stamp and the CAS validate.
    std::uint64_t tail = tail_.word().load(std::memory_order_relaxed);
    for (;;) {
      if ((tail & closed_bit) != 0) return {ChannelStatus::closed, false};
      const std::uint64_t position = tail & position_mask;
      Slot& slot = slots_[position & (one_lap_ - 1)];
      // acquire: the consumer that emptied this slot a lap ago has finished with it.
      const std::uint64_t stamp = slot.stamp.load(std::memory_order_acquire);
      if (stamp == position) {
        // acquire on success: we read the waiting flag a sleeper set with a release RMW.
        // The claim clears the flag: we take on waking the sleepers.
        if (tail_.word().compare_exchange_weak(tail, next_position(position),
                                               std::memory_order_acquire,
                                               std::memory_order_relaxed)) {
          write(slot, position, value);
          return {ChannelStatus::ok, (tail & waiting_bit) != 0};
        }
      } else if (static_cast<std::int64_t>(stamp - position) < 0) {
        return {ChannelStatus::full, false};  // the slot still holds (or is giving up) a value
      } else {
        tail = tail_.word().load(std::memory_order_relaxed);  // another producer took this position
      }
    }
  }

  /// Moves the oldest value into `out`: ok, empty, or closed once closed and drained.
  /// Thread-safe; never waits for another thread; never allocates. If T's move constructor
  /// throws, that value is destroyed and the exception propagates.
  PopOutcome try_pop(std::optional<T>& out) {
    return pop_with([&out](T& value) { out.emplace(std::move(value)); });
  }

  /// A receiver about to sleep announces itself. Returns true if it may sleep: nothing is
  /// buffered or being written and the ring is open, so the next claim will see the flag.
  /// Thread-safe; never blocks.
  bool announce_sleeping_receiver() noexcept { return tail_.announce_sleeping_receiver(head_); }

  /// A sender about to sleep announces itself. Returns true if it may sleep: the ring is full
  /// and no consumer is freeing a slot, so the next claim will see the flag. Thread-safe.
  bool announce_sleeping_sender() noexcept {
    // acq_rel: as in announce_sleeping_receiver().
    const std::uint64_t head = head_.fetch_or(waiting_bit, std::memory_order_acq_rel);
    // relaxed: a newer tail only reflects slots that claims after our flag will report.
    const std::uint64_t tail = tail_.word().load(std::memory_order_relaxed);
    if ((tail & closed_bit) != 0) return false;
    // Full exactly when the oldest unclaimed value sits one lap behind the tail.
    return (head & position_mask) + one_lap_ <= (tail & position_mask);
  }

  /// Marks the ring closed; returns true for the call that closed it. Thread-safe.
  bool close() noexcept { return tail_.close(); }

  /// Thread-safe; never blocks.
  bool is_closed() const noexcept { return tail_.is_closed(); }

  /// Destroys every value published so far. Thread-safe; never blocks.
  void drain() noexcept {
    while (pop_with([](T&) noexcept {}).status == ChannelStatus::ok) {
    }
  }

  /// After close(): destroys every value, waiting (yielding) for sends that claimed a slot
  /// before the close to finish writing it. Returns whether a sender must be woken.
  bool discard_all() noexcept {
    bool wake_senders = false;
    for (;;) {
      const PopOutcome outcome = pop_with([](T&) noexcept {});
      wake_senders = wake_senders || outcome.wake_senders;
      if (outcome.status == ChannelStatus::closed) return wake_senders;
      if (outcome.status == ChannelStatus::empty) std::this_thread::yield();  // a send in flight
    }
  }

 private:
  struct Slot {
    std::atomic<std::uint64_t> stamp{0};
    bool abandoned = false;  ///< the producer's move constructor threw: there is no value
    alignas(T) std::byte storage[sizeof(T)];

    T* value() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
  };

  /// Frees a slot for the next lap when it goes out of scope, even if taking the value threw.
  struct FreeSlotOnExit {
    Slot& slot;
    std::uint64_t next_stamp;
    ~FreeSlotOnExit() {
      std::destroy_at(slot.value());
      // release: our use of the value happens before the next producer writes the slot.
      slot.stamp.store(next_stamp, std::memory_order_release);
    }
  };

  static std::size_t checked(std::size_t capacity) {
    if (capacity == 0) throw std::invalid_argument("offload: a bounded ring needs capacity >= 1");
    if (capacity > (std::size_t{1} << 48)) {
      throw std::length_error("offload::channel: capacity is larger than any machine's memory");
    }
    return capacity;
  }

  std::uint64_t next_position(std::uint64_t position) const noexcept {
    const std::uint64_t index = position & (one_lap_ - 1);
    return index + 1 < capacity_ ? position + 1 : (position & ~(one_lap_ - 1)) + one_lap_;
  }

  void write(Slot& slot, std::uint64_t position, T& value) {
    if constexpr (std::is_nothrow_move_constructible_v<T>) {
      ::new (static_cast<void*>(slot.storage)) T(std::move(value));
    } else {
      try {
        ::new (static_cast<void*>(slot.storage)) T(std::move(value));
      } catch (...) {
        slot.abandoned = true;
        slot.stamp.store(position + 1, std::memory_order_release);  // release: as below
        throw;
      }
    }
    // release: the value is fully built before a consumer that reads this stamp touches it.
    slot.stamp.store(position + 1, std::memory_order_release);
  }

  template <class Consume>
  PopOutcome pop_with(Consume&& consume) {
    bool wake_senders = false;
    // relaxed: the word is a guess that the slot's stamp and the CAS validate.
    std::uint64_t head = head_.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint64_t position = head & position_mask;
      Slot& slot = slots_[position & (one_lap_ - 1)];
      // acquire: the producer's value is visible once we read its stamp.
      const std::uint64_t stamp = slot.stamp.load(std::memory_order_acquire);
      if (stamp == position + 1) {
        // acquire on success: as in try_push, for the senders' waiting flag.
        if (head_.compare_exchange_weak(head, next_position(position), std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
          wake_senders = wake_senders || (head & waiting_bit) != 0;
          if (take(slot, position, consume)) return {ChannelStatus::ok, wake_senders};
          head = head_.load(std::memory_order_relaxed);  // skipped an abandoned slot
        }
      } else if (static_cast<std::int64_t>(stamp - (position + 1)) < 0) {
        return {tail_.empty_or_closed(position), wake_senders};  // nothing published here yet
      } else {
        head = head_.load(std::memory_order_relaxed);  // another consumer took this position
      }
    }
  }

  /// Hands the slot's value to `consume` and frees the slot. Returns false for an abandoned slot.
  template <class Consume>
  bool take(Slot& slot, std::uint64_t position, Consume& consume) {
    if constexpr (!std::is_nothrow_move_constructible_v<T>) {
      if (slot.abandoned) {
        slot.abandoned = false;
        // release: our reset of `abandoned` happens before the next producer uses the slot.
        slot.stamp.store(position + one_lap_, std::memory_order_release);
        return false;
      }
    }
    FreeSlotOnExit free_slot{slot, position + one_lap_};
    consume(*slot.value());
    return true;
  }

  const std::uint64_t capacity_;
  const std::uint64_t one_lap_;
  const std::unique_ptr<Slot[]> slots_;
  ClosableTail tail_;                               ///< next position to write, + flags
  alignas(64) std::atomic<std::uint64_t> head_{0};  ///< next position to read, + waiting_bit
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CHANNEL_BOUNDED_RING_HPP

#ifndef OFFLOAD_DETAIL_CHANNEL_SEGMENTED_QUEUE_HPP
#define OFFLOAD_DETAIL_CHANNEL_SEGMENTED_QUEUE_HPP

/// @file detail/channel/segmented_queue.hpp
/// The buffer of an unbounded channel: a linked list of fixed-size segments, each slot used
/// once, with the same stamp protocol as BoundedRing on absolute indices (index = stamp: free
/// for that index; index + 1: holds that index's value). Claims are CASes on the global
/// head / tail indices, made after reading the slot's stamp, so try operations never wait for
/// another thread.
///
/// Moving the head or the tail from one segment to the next (once per segment) happens under
/// a mutex, with a short critical section that never blocks on anything else. The tail word
/// carries closed_bit and waiting_bit like BoundedRing's (closable_tail.hpp, wait_queue.hpp).
///
/// Memory: a segment whose slots have all been read, and which the head has left, goes to a
/// free list and is reused for a later range of indices; segments are only freed when the
/// queue is destroyed (as in moodycamel::ConcurrentQueue). This keeps every segment pointer a
/// thread may still hold valid memory. A thread holding a stale pointer (to a segment since
/// reused) cannot be fooled: a stamp equal to an index (or index + 1) exists only in the one
/// slot that really holds that index, and the claim is a CAS on the index itself.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include "channel_status.hpp"
#include "closable_tail.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

template <class T>
class SegmentedQueue {
 public:
  /// Allocates the first segment. Throws std::bad_alloc if memory runs out.
  SegmentedQueue() {
    Segment* first = allocate_segment();
    prepare(first, 0);
    head_segment_.store(first, std::memory_order_relaxed);
    tail_segment_.store(first, std::memory_order_relaxed);
  }

  SegmentedQueue(const SegmentedQueue&) = delete;
  SegmentedQueue& operator=(const SegmentedQueue&) = delete;

  /// Destroys the values still buffered and frees every segment. Not thread-safe.
  ~SegmentedQueue() {
    drain();
    while (allocated_ != nullptr) delete std::exchange(allocated_, allocated_->next_allocated);
  }

  /// Moves `value` in. Returns ok (moved from `value`) or closed (untouched). Thread-safe;
  /// never waits for another thread except, once per segment, for the short segment-switch
  /// critical section; allocates a segment when the free list is empty (std::bad_alloc then
  /// propagates with `value` untouched). If T's move constructor throws, the exception
  /// propagates and the slot is marked for consumers to skip.
  PushOutcome try_push(T& value) {
    for (;;) {
      // relaxed: a guess that the slot's stamp and the CAS validate.
      std::uint64_t tail_word = tail_.word().load(std::memory_order_relaxed);
      if ((tail_word & closed_bit) != 0) return {ChannelStatus::closed, false};
      const std::uint64_t tail = tail_word & position_mask;
      // acquire: a segment published by advance_tail() is seen fully prepared.
      Segment* segment = tail_segment_.load(std::memory_order_acquire);
      // relaxed: if the segment was reused since, the stamp check below rejects it.
      const std::uint64_t first = segment->first.load(std::memory_order_relaxed);
      const std::uint64_t offset = tail - first;
      if (offset < segment_size) {
        Slot& slot = segment->slots[offset];
        // acquire (stamp): pairs with the release that prepared the slot. acquire (CAS): we
        // read the waiting flag a sleeper set with a release RMW; the claim clears it and we
        // take on waking the sleepers.
        if (slot.stamp.load(std::memory_order_acquire) == tail &&
            tail_.word().compare_exchange_strong(tail_word, tail + 1, std::memory_order_acquire,
                                                 std::memory_order_relaxed)) {
          write(slot, tail, value);
          return {ChannelStatus::ok, (tail_word & waiting_bit) != 0};
        }
      } else if (offset == segment_size) {
        advance_tail(segment, first);
      }
      // Otherwise our snapshot was stale: another thread moved on. Look again.
    }
  }

  /// Moves the oldest value into `out`. Returns ok, empty, or closed once closed and drained.
  /// Thread-safe; never waits for another thread except, once per segment, for the short
  /// segment-switch critical section; never allocates. If T's move constructor throws, that
  /// value is destroyed and the exception propagates.
  PopOutcome try_pop(std::optional<T>& out) {
    return pop_with([&out](T& value) { out.emplace(std::move(value)); });
  }

  /// A receiver about to sleep announces itself. Returns true if it may sleep: nothing is
  /// buffered or being written and the queue is open, so the next claim will see the flag.
  /// Thread-safe; never blocks.
  bool announce_sleeping_receiver() noexcept { return tail_.announce_sleeping_receiver(head_); }

  /// Marks the queue closed; returns true for the call that closed it. Thread-safe.
  bool close() noexcept { return tail_.close(); }

  /// Thread-safe; never blocks.
  bool is_closed() const noexcept { return tail_.is_closed(); }

  /// Destroys every value published so far. Thread-safe.
  void drain() noexcept {
    while (pop_with([](T&) noexcept {}).status == ChannelStatus::ok) {
    }
  }

  /// After close(): destroys every value, waiting (yielding) for sends that claimed a slot
  /// before the close to finish writing it. Returns false: no sender ever sleeps here.
  bool discard_all() noexcept {
    for (;;) {
      const ChannelStatus status = pop_with([](T&) noexcept {}).status;
      if (status == ChannelStatus::closed) return false;
      if (status == ChannelStatus::empty) std::this_thread::yield();  // a send in flight
    }
  }

 private:
  struct Slot {
    std::atomic<std::uint64_t> stamp{0};
    bool abandoned = false;  ///< the producer's move constructor threw: there is no value
    alignas(T) std::byte storage[sizeof(T)];

    T* value() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
  };

  /// About 16 KiB per segment, between 16 and 1024 slots.
  static constexpr std::size_t segment_size =
      std::clamp<std::size_t>(16384 / sizeof(Slot), 16, 1024);

  struct Segment {
    std::atomic<std::uint64_t> first{0};     ///< index held by slots[0]; rises on each reuse
    std::atomic<Segment*> next{nullptr};     ///< set once the tail moves past this segment
    std::atomic<std::uint32_t> releases{0};  ///< slots emptied, + 1 when the head moves on
    Segment* next_free = nullptr;            ///< free-list link; guarded by mutex_
    Segment* next_allocated = nullptr;       ///< list of all segments; guarded by mutex_
    Slot slots[segment_size];
  };

  /// Frees a slot when it goes out of scope, even if taking the value threw.
  struct ReleaseSlotOnExit {
    SegmentedQueue& queue;
    Segment& segment;
    Slot& slot;
    ~ReleaseSlotOnExit() {
      std::destroy_at(slot.value());
      queue.release(segment);
    }
  };

  Segment* allocate_segment() {
    auto* segment = new Segment;
    std::lock_guard lock(mutex_);
    segment->next_allocated = allocated_;
    allocated_ = segment;
    return segment;
  }

  /// Readies a segment (fresh or reused) to hold indices [first, first + segment_size).
  /// Called before the segment is published; stale readers may still look at it.
  static void prepare(Segment* segment, std::uint64_t first) noexcept {
    // relaxed: published by the release stores below and by the caller's release store.
    segment->first.store(first, std::memory_order_relaxed);
    segment->releases.store(0, std::memory_order_relaxed);
    for (std::size_t i = 0; i < segment_size; ++i) {
      segment->slots[i].abandoned = false;
      // release: a stale producer that reads this stamp sees the slot reset.
      segment->slots[i].stamp.store(first + i, std::memory_order_release);
    }
    // release: a consumer that reads this null also reads the new `first` (see pop_with).
    segment->next.store(nullptr, std::memory_order_release);
  }

  void write(Slot& slot, std::uint64_t index, T& value) {
    if constexpr (std::is_nothrow_move_constructible_v<T>) {
      ::new (static_cast<void*>(slot.storage)) T(std::move(value));
    } else {
      try {
        ::new (static_cast<void*>(slot.storage)) T(std::move(value));
      } catch (...) {
        slot.abandoned = true;
        slot.stamp.store(index + 1, std::memory_order_release);  // release: as below
        throw;
      }
    }
    // release: the value is fully built before a consumer that reads this stamp touches it.
    slot.stamp.store(index + 1, std::memory_order_release);
  }

  template <class Consume>
  PopOutcome pop_with(Consume&& consume) {
    for (;;) {
      // relaxed: a guess that the slot's stamp and the CAS validate.
      std::uint64_t head = head_.load(std::memory_order_relaxed);
      // acquire: a segment published by advance_head() is seen fully prepared.
      Segment* segment = head_segment_.load(std::memory_order_acquire);
      // relaxed: a reused segment is caught by the stamp check, or by the re-read below.
      const std::uint64_t first = segment->first.load(std::memory_order_relaxed);
      const std::uint64_t offset = head - first;
      if (offset < segment_size) {
        Slot& slot = segment->slots[offset];
        // acquire: the producer's value is visible once we read its stamp.
        const std::uint64_t stamp = slot.stamp.load(std::memory_order_acquire);
        if (stamp == head + 1) {
          // relaxed: the claim publishes nothing.
          if (head_.compare_exchange_strong(head, head + 1, std::memory_order_relaxed,
                                            std::memory_order_relaxed) &&
              take(*segment, slot, consume)) {
            return {ChannelStatus::ok, false};
          }
        } else if (stamp == head) {
          return {tail_.empty_or_closed(head), false};  // nothing published at this index yet
        }
      } else if (offset == segment_size) {
        // acquire: pairs with the release of `next` in advance_tail() and prepare().
        Segment* next = segment->next.load(std::memory_order_acquire);
        if (next != nullptr) {
          advance_head(segment, first);
        } else if (segment->first.load(std::memory_order_relaxed) == first) {
          return {tail_.empty_or_closed(head), false};  // the tail has not left this segment
        }
      }
      // Otherwise our snapshot was stale: another thread moved on. Look again.
    }
  }

  /// Hands the slot's value to `consume` and frees the slot. Returns false for an abandoned slot.
  template <class Consume>
  bool take(Segment& segment, Slot& slot, Consume& consume) {
    if constexpr (!std::is_nothrow_move_constructible_v<T>) {
      if (slot.abandoned) {
        release(segment);
        return false;
      }
    }
    ReleaseSlotOnExit release_slot{*this, segment, slot};
    consume(*slot.value());
    return true;
  }

  /// One vote to recycle `segment`: one per slot read, one from the head moving on.
  void release(Segment& segment) noexcept {
    // acq_rel: every reader's use of its slot happens before the last voter recycles it.
    if (segment.releases.fetch_add(1, std::memory_order_acq_rel) + 1 == segment_size + 1) {
      std::lock_guard lock(mutex_);
      segment.next_free = free_;
      free_ = &segment;
    }
  }

  /// The tail reached the end of `segment` (whose first index was `first`): link a next one.
  void advance_tail(Segment* segment, std::uint64_t first) {
    Segment* fresh = nullptr;
    {
      std::lock_guard lock(mutex_);
      if (!is_tail_segment(segment, first)) return;
      if (free_ != nullptr) fresh = std::exchange(free_, free_->next_free);
    }
    if (fresh == nullptr) fresh = allocate_segment();  // outside the lock: malloc may be slow
    std::lock_guard lock(mutex_);
    if (!is_tail_segment(segment, first)) {  // another thread did it meanwhile
      fresh->next_free = free_;
      free_ = fresh;
      return;
    }
    prepare(fresh, first + segment_size);
    // release: whoever follows these pointers sees the segment prepared.
    segment->next.store(fresh, std::memory_order_release);
    tail_segment_.store(fresh, std::memory_order_release);
  }

  /// Every index of `segment` (whose first index was `first`) has been claimed: move on.
  void advance_head(Segment* segment, std::uint64_t first) {
    {
      std::lock_guard lock(mutex_);
      // relaxed: these fields only change under mutex_.
      if (head_segment_.load(std::memory_order_relaxed) != segment ||
          segment->first.load(std::memory_order_relaxed) != first) {
        return;  // another thread did it meanwhile
      }
      // release: readers of head_segment_ see the next segment prepared.
      head_segment_.store(segment->next.load(std::memory_order_relaxed), std::memory_order_release);
    }
    release(*segment);
  }

  bool is_tail_segment(Segment* segment, std::uint64_t first) const noexcept {
    // relaxed: these fields only change under mutex_, which the caller holds.
    return tail_segment_.load(std::memory_order_relaxed) == segment &&
           segment->first.load(std::memory_order_relaxed) == first;
  }

  ClosableTail tail_;                               ///< next index to write, + flags
  std::atomic<Segment*> tail_segment_{nullptr};     ///< segment holding tail_ (or just before)
  alignas(64) std::atomic<std::uint64_t> head_{0};  ///< next index to read
  std::atomic<Segment*> head_segment_{nullptr};     ///< segment holding head_ (or just before)
  alignas(64) std::mutex mutex_;                    ///< guards segment switches and the lists
  Segment* free_ = nullptr;                         ///< segments ready for reuse
  Segment* allocated_ = nullptr;                    ///< every segment, for the destructor
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CHANNEL_SEGMENTED_QUEUE_HPP

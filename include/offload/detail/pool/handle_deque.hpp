#ifndef OFFLOAD_DETAIL_POOL_HANDLE_DEQUE_HPP
#define OFFLOAD_DETAIL_POOL_HANDLE_DEQUE_HPP

/// @file detail/pool/handle_deque.hpp
/// A worker's deque of coroutines forked by when_all() (and resumed there): the owner pushes
/// and pops at the bottom without a lock, idle workers steal from the top (the Chase-Lev
/// deque). It holds addresses as given; the pool tags fresh forks in the low bit.
///
/// Why apart from the worker's JobQueue: a fork is the hottest path of fine-grained
/// fork-join (fib with no cutoff forks tens of millions of times a second per core), and a coroutine
/// handle is one pointer, so the owner's push and pop can be a store and a load on its own
/// cache line, instead of a spin lock and a 64-byte Job moved in and out.
///
/// Every operation on `top_` and `bottom_` is sequentially consistent rather than the
/// classic fences (ThreadSanitizer does not model standalone fences): the owner's pop stores
/// `bottom_` and then loads `top_`, a thief loads `top_` and then `bottom_`, and the single
/// total order makes them agree on who takes the last element (which they then settle with
/// a compare-exchange on `top_`). push() needs only release, except onto an empty deque,
/// where its seq_cst store is the publication half of the pool's Parker protocol (an idle
/// worker re-checks has_work()).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace offload {
inline namespace v0 {
namespace detail {

class alignas(64) HandleDeque {
 public:
  HandleDeque() {
    auto first = std::make_unique<Array>(initial_capacity);
    array_.store(first.get(), std::memory_order_relaxed);
    retired_.push_back(std::move(first));
  }
  HandleDeque(const HandleDeque&) = delete;
  HandleDeque& operator=(const HandleDeque&) = delete;

  /// The owner adds a coroutine at the bottom; true when the deque looked empty before.
  /// Owner only; allocates when the array grows (then throws std::bad_alloc, and nothing was
  /// pushed).
  bool push(void* coroutine) {
    const std::int64_t bottom = bottom_.load(std::memory_order_relaxed);
    // acquire: a slot a thief freed by advancing top_ is free for us to write.
    const std::int64_t top = top_.load(std::memory_order_acquire);
    Array* array = array_.load(std::memory_order_relaxed);
    if (bottom - top >= static_cast<std::int64_t>(array->capacity)) array = grow(array, top, bottom);
    array->put(bottom, coroutine);
    // release: publishes the slot (and the coroutine's frame) to thieves. Onto an empty
    // deque, seq_cst: the store half of the pool's Parker protocol, for the wake-up the
    // caller then considers; a push onto a non-empty deque wakes nobody (see
    // BasicThreadPool::post_coroutine), and a full barrier per fork would cost more than the
    // fork itself.
    const bool was_empty = bottom <= top;
    bottom_.store(bottom + 1, was_empty ? std::memory_order_seq_cst : std::memory_order_release);
    return was_empty;
  }

  /// The owner takes the newest coroutine back (LIFO); false when none is left. Owner only.
  bool pop(void*& out) noexcept {
    const std::int64_t bottom = bottom_.load(std::memory_order_relaxed) - 1;
    Array* array = array_.load(std::memory_order_relaxed);
    bottom_.store(bottom, std::memory_order_seq_cst);  // claims the slot, then looks at top
    std::int64_t top = top_.load(std::memory_order_seq_cst);
    if (top > bottom) {  // it was empty
      bottom_.store(bottom + 1, std::memory_order_relaxed);
      return false;
    }
    void* address = array->get(bottom);
    if (top == bottom) {  // the last one: a thief may be taking it too
      const bool won = top_.compare_exchange_strong(top, top + 1, std::memory_order_seq_cst,
                                                    std::memory_order_relaxed);
      bottom_.store(bottom + 1, std::memory_order_relaxed);
      if (!won) return false;
    }
    out = address;
    return true;
  }

  /// Another worker takes the oldest coroutine (FIFO); false when none is left or another
  /// thief or the owner won it. Any thread; never blocks.
  bool steal(void*& out) noexcept {
    std::int64_t top = top_.load(std::memory_order_seq_cst);
    const std::int64_t bottom = bottom_.load(std::memory_order_seq_cst);
    if (top >= bottom) return false;
    // acquire: the array the owner grew into, with the slots it copied.
    Array* array = array_.load(std::memory_order_acquire);
    void* address = array->get(top);
    if (!top_.compare_exchange_strong(top, top + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      return false;
    }
    out = address;
    return true;
  }

  /// A lock-free glance, as JobQueue::looks_empty(). seq_cst: the re-check before parking.
  [[nodiscard]] bool looks_empty() const noexcept {
    return bottom_.load(std::memory_order_seq_cst) <= top_.load(std::memory_order_seq_cst);
  }
  [[nodiscard]] std::size_t size() const noexcept {
    const std::int64_t n = bottom_.load(std::memory_order_relaxed) - top_.load(std::memory_order_relaxed);
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }

 private:
  static constexpr std::size_t initial_capacity = 256;

  /// A ring of slots; its capacity is a power of two. Slots are atomics: a thief may read
  /// one the owner is about to reuse (it then loses the compare-exchange and drops it).
  struct Array {
    explicit Array(std::size_t size) : capacity(size), slots(new std::atomic<void*>[size]) {}
    void put(std::int64_t index, void* address) noexcept {
      slots[static_cast<std::size_t>(index) & (capacity - 1)].store(address, std::memory_order_relaxed);
    }
    void* get(std::int64_t index) const noexcept {
      return slots[static_cast<std::size_t>(index) & (capacity - 1)].load(std::memory_order_relaxed);
    }
    const std::size_t capacity;
    std::unique_ptr<std::atomic<void*>[]> slots;
  };

  /// Doubles the array. The old one is kept until the deque dies: a thief that loaded it
  /// before the switch may still read from it.
  Array* grow(Array* old, std::int64_t top, std::int64_t bottom) {
    auto bigger = std::make_unique<Array>(old->capacity * 2);
    for (std::int64_t i = top; i < bottom; ++i) bigger->put(i, old->get(i));
    retired_.reserve(retired_.size() + 1);  // so the emplace below cannot throw
    Array* raw = bigger.get();
    retired_.emplace_back(std::move(bigger));
    // release: thieves that load the new array see the slots copied into it.
    array_.store(raw, std::memory_order_release);
    return raw;
  }

  alignas(64) std::atomic<std::int64_t> top_{0};     // thieves' end
  alignas(64) std::atomic<std::int64_t> bottom_{0};  // the owner's end
  std::atomic<Array*> array_;
  std::vector<std::unique_ptr<Array>> retired_;  // every array ever used, the current last
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_POOL_HANDLE_DEQUE_HPP

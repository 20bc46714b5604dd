#ifndef OFFLOAD_SHARED_BUFFER_HPP
#define OFFLOAD_SHARED_BUFFER_HPP

/// @file shared_buffer.hpp
/// SharedBuffer<T>: memory shared between threads on purpose (the SharedArrayBuffer model).
/// Copies of a SharedBuffer are handles to the same zero-filled array; threads read and write
/// it in place, use std::atomic_ref on its elements, and wait for / notify one another on an
/// element as with JavaScript's Atomics.wait / Atomics.notify.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "detail/futex.hpp"
#include "detail/parking_spot.hpp"

namespace offload {
inline namespace v0 {

/// How SharedBuffer::wait() ended.
enum class WaitResult {
  ok,         ///< woken by notify()
  not_equal,  ///< the element did not hold `expected` when wait() was called
  timed_out   ///< the timeout passed first
};

namespace detail {

/// The alignment every element needs for std::atomic_ref (without extra errors for a T that
/// SharedBuffer rejects anyway).
template <class T>
constexpr std::size_t atomic_element_alignment() noexcept {
  if constexpr (std::is_trivially_copyable_v<T>) {
    return std::max(alignof(T), std::atomic_ref<T>::required_alignment);
  } else {
    return alignof(T);
  }
}

}  // namespace detail

/**
 * @brief A fixed-size, zero-filled array of `T` shared by every copy of the handle.
 *
 * The handle is cheap to copy (a reference count) and Sendable: sending it shares the memory
 * on purpose. Plain access through span() is the caller's to keep race-free (disjoint ranges,
 * or synchronisation); atomic(i) gives an std::atomic_ref; wait()/notify() park threads on an
 * element. Every member is thread-safe on distinct handles; on one handle every const member
 * is, but assignment and destruction are not. T must be trivially copyable.
 */
template <class T>
class SharedBuffer {
  static_assert(std::is_trivially_copyable_v<T>,
                "offload::SharedBuffer<T>: T must be trivially copyable (numbers, or structs and "
                "arrays of them), because threads read and write it in place and through "
                "std::atomic_ref");
  static_assert(!std::is_const_v<T> && !std::is_volatile_v<T>,
                "offload::SharedBuffer<T>: T must not be const or volatile: use "
                "SharedBuffer<int>, not SharedBuffer<const int>");
  static_assert(sizeof(T) % detail::atomic_element_alignment<T>() == 0,
                "offload::SharedBuffer<T>: sizeof(T) must be a multiple of "
                "std::atomic_ref<T>::required_alignment, so that every element can be used "
                "atomically");

 public:
  using value_type = T;

  /// notify()'s default count: wake every waiter.
  static constexpr std::size_t all = std::numeric_limits<std::size_t>::max();

  /// The alignment of every element: enough for std::atomic_ref<T>. The array itself also
  /// starts on a cache line.
  static constexpr std::size_t element_alignment = detail::atomic_element_alignment<T>();

  /// A buffer with no elements. Never allocates.
  SharedBuffer() noexcept = default;

  /**
   * @brief Allocates `size` zero-filled elements.
   * @throws std::length_error if the size cannot be allocated on this machine; std::bad_alloc.
   */
  explicit SharedBuffer(std::size_t size) : block_(Block::create(size)) {}

  /// Another handle to the same memory. Never blocks; never allocates.
  SharedBuffer(const SharedBuffer& other) noexcept : block_(other.block_) {
    // relaxed: the copied handle keeps the block alive; nothing to publish.
    if (block_ != nullptr) block_->references.fetch_add(1, std::memory_order_relaxed);
  }

  SharedBuffer(SharedBuffer&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}

  SharedBuffer& operator=(SharedBuffer other) noexcept {
    std::swap(block_, other.block_);
    return *this;
  }

  /// Drops this handle; the last one frees the memory. Never blocks.
  ~SharedBuffer() {
    // acq_rel: every handle's use of the memory happens before the last one frees it.
    if (block_ != nullptr && block_->references.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      Block::destroy(block_);
    }
  }

  /// Number of elements. Never blocks.
  [[nodiscard]] std::size_t size() const noexcept { return block_ == nullptr ? 0 : block_->size; }

  /// How many handles share this memory (0 for an empty buffer). A snapshot. Never blocks.
  [[nodiscard]] std::size_t use_count() const noexcept {
    // relaxed: a snapshot for diagnostics.
    return block_ == nullptr ? 0 : block_->references.load(std::memory_order_relaxed);
  }

  /// Plain access to every element. Concurrent writes to one element, or a write concurrent
  /// with a read, are data races: keep them disjoint or use atomic(). Never blocks.
  [[nodiscard]] std::span<T> span() const noexcept {
    return block_ == nullptr ? std::span<T>() : std::span<T>(block_->data(), block_->size);
  }

  /**
   * @brief Atomic access to element `index`.
   * @throws std::out_of_range if index >= size().
   */
  [[nodiscard]] std::atomic_ref<T> atomic(std::size_t index) const {
    return std::atomic_ref<T>(element(index));
  }

  /**
   * @brief Sleeps while element `index` holds `expected`, until notify() wakes this thread.
   * @return ok when woken by notify(); not_equal if the element did not hold `expected` (the
   *         bytes are compared, as std::atomic::wait does).
   * @throws std::out_of_range if index >= size().
   * Thread-safe; blocks; never allocates.
   */
  WaitResult wait(std::size_t index, T expected) const {
    return wait_until(index, expected, std::nullopt);
  }

  /**
   * @brief Like wait(index, expected), giving up after `timeout` with timed_out.
   * @throws std::out_of_range if index >= size().
   */
  template <class Rep, class Period>
  WaitResult wait(std::size_t index, T expected, std::chrono::duration<Rep, Period> timeout) const {
    return wait_until(index, expected, detail::deadline_after(timeout));
  }

  /**
   * @brief Wakes up to `count` threads waiting on element `index`, oldest first.
   * @return how many it woke: exactly the number of wait() calls that will return ok.
   * @throws std::out_of_range if index >= size().
   * Thread-safe; never sleeps (takes a short internal lock); never allocates.
   */
  std::size_t notify(std::size_t index, std::size_t count = all) const {
    check(index);
    std::lock_guard lock(block_->mutex);
    std::size_t woken = 0;
    for (Waiter* waiter = block_->waiters.front(); waiter != nullptr && woken < count;) {
      Waiter* const next = waiter->next;
      if (waiter->index == index) {
        block_->waiters.erase(waiter);
        waiter->spot.signal(woken_by_notify);
        ++woken;
      }
      waiter = next;
    }
    return woken;
  }

  /**
   * @brief How many threads are waiting on element `index` right now (a snapshot).
   * @throws std::out_of_range if index >= size().
   */
  [[nodiscard]] std::size_t waiters(std::size_t index) const {
    check(index);
    std::lock_guard lock(block_->mutex);
    std::size_t count = 0;
    for (const Waiter* waiter = block_->waiters.front(); waiter != nullptr; waiter = waiter->next) {
      if (waiter->index == index) ++count;
    }
    return count;
  }

 private:
  static constexpr std::uint32_t woken_by_notify = 1;

  /// A thread inside wait(), parked on its own futex word. Lives on that thread's stack.
  struct Waiter {
    std::size_t index = 0;
    detail::ParkingSpot spot;
    Waiter* previous = nullptr;
    Waiter* next = nullptr;
  };

  /// One allocation: this header, then (cache-line aligned) the elements.
  struct Block {
    std::atomic<std::size_t> references{1};
    std::size_t size = 0;
    std::mutex mutex;                       ///< guards `waiters`
    detail::IntrusiveFifo<Waiter> waiters;  ///< every thread in wait(), oldest first

    T* data() noexcept;
    static Block* create(std::size_t size);
    static void destroy(Block* block) noexcept;
  };

  static constexpr std::size_t block_alignment =
      std::max<std::size_t>({alignof(Block), element_alignment, 64});
  static constexpr std::size_t data_offset =
      (sizeof(Block) + block_alignment - 1) / block_alignment * block_alignment;

  void check(std::size_t index) const {
    if (index >= size()) {
      throw std::out_of_range("offload::SharedBuffer: index " + std::to_string(index) +
                              " is out of range for a buffer of " + std::to_string(size()) +
                              " elements");
    }
  }

  T& element(std::size_t index) const {
    check(index);
    return block_->data()[index];
  }

  WaitResult wait_until(std::size_t index, const T& expected,
                        const detail::Deadline& deadline) const {
    T& target = element(index);
    Waiter self;
    self.index = index;
    std::unique_lock lock(block_->mutex);
    // Checked under the mutex that notify() takes: a writer stores, then notifies; if its
    // notify comes after our check we are already queued, otherwise we see its store.
    // acquire: a waiter that sees the new value also sees what the writer did before it.
    const T current = std::atomic_ref<T>(target).load(std::memory_order_acquire);
    if (std::memcmp(&current, &expected, sizeof(T)) != 0) return WaitResult::not_equal;
    if (deadline && std::chrono::steady_clock::now() >= *deadline) return WaitResult::timed_out;
    block_->waiters.push_back(&self);
    lock.unlock();
    std::uint32_t verdict = self.spot.wait(deadline);
    lock.lock();  // notify() signals under the mutex: once we hold it, it is done with `self`
    if (verdict == detail::ParkingSpot::no_verdict) verdict = self.spot.verdict();
    if (verdict == detail::ParkingSpot::no_verdict) {
      block_->waiters.erase(&self);
      return WaitResult::timed_out;
    }
    return WaitResult::ok;
  }

  Block* block_ = nullptr;
};

template <class T>
T* SharedBuffer<T>::Block::data() noexcept {
  return std::launder(reinterpret_cast<T*>(reinterpret_cast<std::byte*>(this) + data_offset));
}

template <class T>
auto SharedBuffer<T>::Block::create(std::size_t size) -> Block* {
  if (size > (std::numeric_limits<std::size_t>::max() - data_offset) / sizeof(T)) {
    throw std::length_error("offload::SharedBuffer: " + std::to_string(size) + " elements of " +
                            std::to_string(sizeof(T)) + " bytes do not fit in memory");
  }
  void* memory = ::operator new (data_offset + size * sizeof(T), std::align_val_t{block_alignment});
  auto* block = ::new (memory) Block;
  block->size = size;
  // Trivially copyable types are implicit-lifetime: zeroed storage holds zero-valued Ts.
  std::memset(static_cast<std::byte*>(memory) + data_offset, 0, size * sizeof(T));
  return block;
}

template <class T>
void SharedBuffer<T>::Block::destroy(Block* block) noexcept {
  block->~Block();
  ::operator delete (static_cast<void*>(block), std::align_val_t{block_alignment});
}

template <class T>
struct is_sendable;  // <offload/sendable.hpp>

/// SharedBuffer shares memory on purpose: sending a handle is explicit sharing.
template <class T>
struct is_sendable<SharedBuffer<T>> : std::true_type {};

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_SHARED_BUFFER_HPP

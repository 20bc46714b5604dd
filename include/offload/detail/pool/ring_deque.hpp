#ifndef OFFLOAD_DETAIL_POOL_RING_DEQUE_HPP
#define OFFLOAD_DETAIL_POOL_RING_DEQUE_HPP

/// @file detail/pool/ring_deque.hpp
/// A growable circular double-ended queue. Unlike std::deque it never frees and re-allocates
/// blocks as it drains and refills, so a steady queue allocates nothing. Not thread-safe.

#include <bit>
#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace offload {
inline namespace v0 {
namespace detail {

/// Moves `from` into `out` and ends `from`'s lifetime (the caller must not destroy it). Uses
/// `out.relocate_from(from)` when T has it: a relocation that need not write to `from`.
template <class T>
void relocate_into(T& out, T& from) noexcept {
  if constexpr (requires { out.relocate_from(from); }) {
    out.relocate_from(from);
  } else {
    out = std::move(from);
    from.~T();
  }
}

template <class T>
class RingDeque {
 public:
  RingDeque() = default;
  RingDeque(const RingDeque&) = delete;
  RingDeque& operator=(const RingDeque&) = delete;
  ~RingDeque() {
    for (; size_ != 0; --size_, head_ = (head_ + 1) & (capacity_ - 1)) slot(head_)->~T();
  }

  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

  /// Appends at the back; allocates only when full (capacity doubles).
  void push_back(T&& value) {
    if (size_ == capacity_) grow();
    ::new (static_cast<void*>(slot(head_ + size_))) T(std::move(value));
    ++size_;
  }

  /// Removes the newest element into `out`. Precondition: not empty.
  void pop_back(T& out) noexcept {
    --size_;
    relocate_into(out, *slot(head_ + size_));
  }

  /// Removes the oldest element into `out`. Precondition: not empty.
  void pop_front(T& out) noexcept {
    relocate_into(out, *slot(head_));
    head_ = (head_ + 1) & (capacity_ - 1);
    --size_;
  }

 private:
  T* slot(std::size_t index) noexcept {
    return std::launder(reinterpret_cast<T*>(storage_.get()) + (index & (capacity_ - 1)));
  }

  static T take(T* element) noexcept {
    T value = std::move(*element);
    element->~T();
    return value;
  }

  void grow() {
    const std::size_t capacity = capacity_ == 0 ? 64 : capacity_ * 2;
    auto storage = std::make_unique<Storage[]>(capacity);
    for (std::size_t i = 0; i < size_; ++i) {
      ::new (static_cast<void*>(&storage[i])) T(take(slot(head_ + i)));
    }
    storage_ = std::move(storage);
    capacity_ = capacity;
    head_ = 0;
  }

  struct alignas(T) Storage {
    unsigned char bytes[sizeof(T)];
  };

  std::unique_ptr<Storage[]> storage_;
  std::size_t capacity_ = 0;  // always zero or a power of two
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_POOL_RING_DEQUE_HPP

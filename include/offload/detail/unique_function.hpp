#ifndef OFFLOAD_DETAIL_UNIQUE_FUNCTION_HPP
#define OFFLOAD_DETAIL_UNIQUE_FUNCTION_HPP

/// @file unique_function.hpp
/// A move-only type-erased callable with small-buffer storage (std::move_only_function is C++23
/// and missing from g++ 12). Callables up to `InlineBytes` that are nothrow-movable live inside
/// the object, so queueing a small lambda costs no allocation; larger ones go to the heap.

#include <cstddef>
#include <cstring>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

namespace offload {
inline namespace v0 {
namespace detail {

template <class Signature, std::size_t InlineBytes = 48>
class UniqueFunction;

template <class R, class... Args, std::size_t InlineBytes>
class UniqueFunction<R(Args...), InlineBytes> {
 public:
  UniqueFunction() noexcept = default;

  template <class F, class D = std::decay_t<F>>
    requires(!std::is_same_v<D, UniqueFunction> && std::is_invocable_r_v<R, D&, Args...>)
  UniqueFunction(F&& f) {  // NOLINT(google-explicit-constructor): a callable converts implicitly
    if constexpr (stored_inline<D>) {
      ::new (static_cast<void*>(storage_)) D(std::forward<F>(f));
      ops_ = &inline_ops<D>;
    } else {
      *reinterpret_cast<D**>(storage_) = new D(std::forward<F>(f));
      ops_ = &heap_ops<D>;
    }
  }

  UniqueFunction(UniqueFunction&& other) noexcept { take(other); }
  UniqueFunction& operator=(UniqueFunction&& other) noexcept {
    if (this != &other) {
      reset();
      take(other);
    }
    return *this;
  }
  UniqueFunction(const UniqueFunction&) = delete;
  UniqueFunction& operator=(const UniqueFunction&) = delete;
  ~UniqueFunction() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }

  /// Calls the stored callable. Precondition: not empty.
  R operator()(Args... args) { return ops_->invoke(storage_, std::forward<Args>(args)...); }

  /// Takes `other`'s callable and ends `other`'s lifetime: the caller must not use or destroy
  /// it afterwards. Unlike a move, a byte-copyable callable is taken without writing to
  /// `other` at all, which matters when `other` sits in a queue slot another core just wrote
  /// (a write would cost a second cache-line transfer).
  void relocate_from(UniqueFunction& other) noexcept {
    reset();
    if (other.ops_ == nullptr) return;
    if (other.ops_->relocate != nullptr) {
      other.ops_->relocate(other.storage_, storage_);
    } else {
      std::memcpy(storage_, other.storage_, InlineBytes);
    }
    ops_ = other.ops_;
  }

  void reset() noexcept {
    if (ops_ != nullptr) {
      ops_->destroy(storage_);
      ops_ = nullptr;
    }
  }

  /// True when a callable of type F would be stored without allocating.
  template <class F>
  static constexpr bool stored_inline = sizeof(F) <= InlineBytes &&
                                        alignof(F) <= alignof(std::max_align_t) &&
                                        std::is_nothrow_move_constructible_v<F>;

 private:
  struct Ops {
    R (*invoke)(void* storage, Args&&... args);
    // Move-construct into `to` and destroy `from`; null when a byte copy does that (trivially
    // copyable callables: the common lambda capturing pointers and numbers), saving a call.
    void (*relocate)(void* from, void* to) noexcept;
    void (*destroy)(void* storage) noexcept;
  };

  template <class D>
  static constexpr Ops inline_ops{
      [](void* s, Args&&... args) -> R {
        return std::invoke(*std::launder(static_cast<D*>(s)), std::forward<Args>(args)...);
      },
      std::is_trivially_copyable_v<D> ? nullptr : +[](void* from, void* to) noexcept {
        D* source = std::launder(static_cast<D*>(from));
        ::new (to) D(std::move(*source));
        source->~D();
      },
      [](void* s) noexcept { std::launder(static_cast<D*>(s))->~D(); }};

  template <class D>
  static constexpr Ops heap_ops{
      [](void* s, Args&&... args) -> R {
        return std::invoke(**static_cast<D**>(s), std::forward<Args>(args)...);
      },
      nullptr,  // the pointer is copied as bytes
      [](void* s) noexcept { delete *static_cast<D**>(s); }};

  void take(UniqueFunction& other) noexcept {
    if (other.ops_ != nullptr) {
      if (other.ops_->relocate != nullptr) {
        other.ops_->relocate(other.storage_, storage_);
      } else {
        std::memcpy(storage_, other.storage_, InlineBytes);
      }
      ops_ = std::exchange(other.ops_, nullptr);
    }
  }

  alignas(std::max_align_t) unsigned char storage_[InlineBytes];
  const Ops* ops_ = nullptr;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_UNIQUE_FUNCTION_HPP

#ifndef OFFLOAD_DETAIL_EXECUTOR_DESTINATION_HPP
#define OFFLOAD_DETAIL_EXECUTOR_DESTINATION_HPP

/// @file detail/executor/destination.hpp
/// How then() and coroutines post to an executor named by executor_traits (executor.hpp):
/// the keep-alive taken when the continuation is registered, and the one post made when the
/// future completes.

#include <cstddef>
#include <type_traits>
#include <utility>

#include "../unique_function.hpp"

namespace offload {
inline namespace v0 {

template <class E>
struct executor_traits;  // executor.hpp

namespace detail {

/// A keep-alive object that can post the function it waits for (see executor.hpp).
template <class K>
concept PostingKeepAlive = requires(K&& keep, UniqueFunction<void()> f) {
  std::move(keep).post(std::move(f));
};

/// The executor an argument names: itself, or what a pointer points to.
template <class Arg>
using executor_named_t = std::remove_cvref_t<std::remove_pointer_t<std::remove_cvref_t<Arg>>>;

/// The executor `arg` names, as an lvalue.
template <class Arg>
decltype(auto) named_executor(Arg& arg) noexcept {
  if constexpr (std::is_pointer_v<std::remove_cvref_t<Arg>>) {
    return *arg;
  } else {
    return (arg);
  }
}

/**
 * Where one function will be posted, once: the executor's keep-alive, taken now, and what is
 * needed to post later. Movable; post() consumes it. When the keep-alive cannot post, it
 * keeps the executor by reference (an lvalue argument) or by value (an rvalue).
 */
template <class E, bool ByValue>
class Destination {
  using Traits = executor_traits<E>;
  using KeepAlive = decltype(Traits::keep_alive(std::declval<E&>()));
  static constexpr bool posts_through_keep_alive = PostingKeepAlive<KeepAlive>;
  using Stored = std::conditional_t<posts_through_keep_alive, std::nullptr_t,
                                    std::conditional_t<ByValue, E, E*>>;

 public:
  explicit Destination(E& executor)
      : keep_(Traits::keep_alive(executor)), executor_(store(executor)) {}

  /// Posts `f` (run on the executor's thread, or destroyed unrun if the executor is gone).
  /// The keep-alive is released after the post, so the loop never runs dry in between.
  template <class F>
  void post(F&& f) && {
    if constexpr (posts_through_keep_alive) {
      std::move(keep_).post(std::forward<F>(f));
    } else {
      Traits::post(executor(), UniqueFunction<void()>(std::forward<F>(f)));
      KeepAlive released = std::move(keep_);
    }
  }

 private:
  static Stored store(E& executor) {
    if constexpr (posts_through_keep_alive) {
      return nullptr;
    } else if constexpr (ByValue) {
      static_assert(std::is_move_constructible_v<E>,
                    "offload: an executor passed as an rvalue is moved into the continuation; "
                    "this one is not movable: pass an lvalue that outlives the continuation");
      return std::move(executor);
    } else {
      return &executor;
    }
  }

  E& executor() noexcept {
    if constexpr (ByValue) {
      return executor_;
    } else {
      return *executor_;
    }
  }

  KeepAlive keep_;
  [[no_unique_address]] Stored executor_;
};

/// The Destination for argument `arg` of then(): an rvalue executor is kept by value.
template <class Arg>
auto destination_for(Arg&& arg) {
  using E = executor_named_t<Arg>;
  constexpr bool by_value =
      !std::is_lvalue_reference_v<Arg> && !std::is_pointer_v<std::remove_cvref_t<Arg>>;
  return Destination<E, by_value>(named_executor(arg));
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_EXECUTOR_DESTINATION_HPP

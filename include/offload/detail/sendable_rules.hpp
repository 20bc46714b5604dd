#ifndef OFFLOAD_DETAIL_SENDABLE_RULES_HPP
#define OFFLOAD_DETAIL_SENDABLE_RULES_HPP

/// @file sendable_rules.hpp
/// The rules behind offload::Sendable: what makes a type unsafe to hand to another thread,
/// which parts of a type are checked recursively, and the one static_assert that explains a
/// rejection in words.

#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

namespace offload {
inline namespace v0 {

template <class T>
struct is_sendable;  // defined in <offload/sendable.hpp>; users may specialise it

namespace detail {

/// Why a type may not cross to another thread. `none` means it may.
enum class Unsendable {
  none,
  reference,
  raw_pointer,
  reference_wrapper,
  string_view,
  span,
  shared_ptr_to_mutable,
  weak_ptr,
  not_move_constructible,
  opted_out,
};

template <class T>
inline constexpr bool is_reference_wrapper = false;
template <class T>
inline constexpr bool is_reference_wrapper<std::reference_wrapper<T>> = true;

template <class T>
inline constexpr bool is_string_view = false;
template <class Char, class Traits>
inline constexpr bool is_string_view<std::basic_string_view<Char, Traits>> = true;

template <class T>
inline constexpr bool is_span = false;
template <class Element, std::size_t Extent>
inline constexpr bool is_span<std::span<Element, Extent>> = true;

template <class T>
inline constexpr bool is_shared_ptr_to_mutable = false;
template <class Element>
inline constexpr bool is_shared_ptr_to_mutable<std::shared_ptr<Element>> =
    !std::is_const_v<Element>;

template <class T>
inline constexpr bool is_weak_ptr = false;
template <class Element>
inline constexpr bool is_weak_ptr<std::weak_ptr<Element>> = true;

/// A pointer to data. Function pointers are not: code is immutable and shared by every thread.
template <class T>
inline constexpr bool is_data_pointer =
    std::is_pointer_v<T> && !std::is_function_v<std::remove_pointer_t<T>>;

/// What is wrong with `T` itself, before looking at what it contains.
template <class T>
constexpr Unsendable own_problem() noexcept {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_reference_v<T>)
    return Unsendable::reference;
  else if constexpr (is_data_pointer<U>)
    return Unsendable::raw_pointer;
  else if constexpr (is_reference_wrapper<U>)
    return Unsendable::reference_wrapper;
  else if constexpr (is_string_view<U>)
    return Unsendable::string_view;
  else if constexpr (is_span<U>)
    return Unsendable::span;
  else if constexpr (is_shared_ptr_to_mutable<U>)
    return Unsendable::shared_ptr_to_mutable;
  else if constexpr (is_weak_ptr<U>)
    return Unsendable::weak_ptr;
  else
    return Unsendable::none;
}

template <class... Parts>
struct TypeList {};

/// The parts of `T` that travel with it and so are checked too. Smart pointers and classes
/// the library cannot see into are leaves: a unique_ptr is a transfer, whatever it owns.
template <class T>
struct PartsOf {
  using type = TypeList<>;
};

/// Allocator-aware containers: vector, deque, list, forward_list, (multi)set, (multi)map,
/// unordered_*, basic_string, their pmr versions. A map's value_type is pair<const K, V>.
template <class T>
concept allocator_aware_container = requires(T& container) {
  typename T::value_type;
  typename T::allocator_type;
  container.begin();
  container.end();
};

/// Container adaptors: queue, stack, priority_queue.
template <class T>
concept container_adaptor = requires {
  typename T::container_type;
};

template <allocator_aware_container T>
struct PartsOf<T> {
  using type = TypeList<typename T::value_type>;
};
template <container_adaptor T>
requires(!allocator_aware_container<T>) struct PartsOf<T> {
  using type = TypeList<typename T::container_type>;
};
template <class Element, std::size_t N>
struct PartsOf<std::array<Element, N>> {
  using type = TypeList<Element>;
};
template <class Value>
struct PartsOf<std::optional<Value>> {
  using type = TypeList<Value>;
};
template <class First, class Second>
struct PartsOf<std::pair<First, Second>> {
  using type = TypeList<First, Second>;
};
template <class... Elements>
struct PartsOf<std::tuple<Elements...>> {
  using type = TypeList<Elements...>;
};
template <class... Alternatives>
struct PartsOf<std::variant<Alternatives...>> {
  using type = TypeList<Alternatives...>;
};

template <class List>
struct AllSendable;
template <class... Parts>
struct AllSendable<TypeList<Parts...>> : std::bool_constant<(is_sendable<Parts>::value && ...)> {};

/// The rule applied when nobody specialised is_sendable<T>.
template <class T>
constexpr bool follows_sendable_rules() noexcept {
  if constexpr (std::is_const_v<T> || std::is_volatile_v<T>) {
    return is_sendable<std::remove_cv_t<T>>::value;  // cv never changes the verdict
  } else if constexpr (own_problem<T>() != Unsendable::none) {
    return false;
  } else {
    return AllSendable<typename PartsOf<T>::type>::value && std::is_move_constructible_v<T>;
  }
}

template <class... Parts>
struct FirstUnsendablePart {
  using type = void;  // every part is fine
};
template <class Part, class... Rest>
struct FirstUnsendablePart<Part, Rest...> {
  using type = std::conditional_t<is_sendable<Part>::value,
                                  typename FirstUnsendablePart<Rest...>::type, Part>;
};

template <class List>
struct FirstUnsendableIn;
template <class... Parts>
struct FirstUnsendableIn<TypeList<Parts...>> : FirstUnsendablePart<Parts...> {};

/// The part of `T` to blame (void when `T` itself is to blame).
template <class T>
using part_to_blame = std::conditional_t<
    own_problem<T>() == Unsendable::none,
    typename FirstUnsendableIn<typename PartsOf<std::remove_cvref_t<T>>::type>::type, void>;

template <class T, class BadPart = part_to_blame<T>>
struct Diagnosis;

/// `T` is to blame: for what it is, or because it cannot be moved, or because a user said so.
template <class T>
struct Diagnosis<T, void> {
  using culprit = T;
  static constexpr Unsendable problem = [] {
    if constexpr (own_problem<T>() != Unsendable::none)
      return own_problem<T>();
    else if constexpr (!std::is_move_constructible_v<T>)
      return Unsendable::not_move_constructible;
    else
      return Unsendable::opted_out;  // the rules accept T: is_sendable<T> was specialised
  }();
};

/// One of `T`'s parts is to blame: follow it down to the innermost culprit.
template <class T, class BadPart>
struct Diagnosis : Diagnosis<BadPart> {};

/// Instantiated only for a rejected type: its static_asserts are the compile error a user sees.
/// The compiler prints this class's name with `Culprit` (the innermost offending type) and
/// `SentType` (what was being sent) spelled out, then the one message below that applies.
template <class Culprit, class SentType, Unsendable why>
struct this_type_cannot_be_sent {
  static_assert(why != Unsendable::reference,
                "offload: a reference cannot be sent to another thread: it would point into the "
                "sender's memory. Send the value itself (it is moved or copied).");
  static_assert(why != Unsendable::raw_pointer,
                "offload: a raw pointer cannot be sent to another thread: both threads would reach "
                "the same object without synchronisation. Send the value, a std::unique_ptr<T> "
                "(a transfer) or a std::shared_ptr<const T> (immutable sharing).");
  static_assert(why != Unsendable::reference_wrapper,
                "offload: std::reference_wrapper refers to an object it does not own: send the "
                "object itself.");
  static_assert(why != Unsendable::string_view,
                "offload: std::string_view refers to memory it does not own: send a std::string.");
  static_assert(why != Unsendable::span,
                "offload: std::span refers to memory it does not own: send a std::vector, or an "
                "offload::SharedBuffer to share memory on purpose.");
  static_assert(why != Unsendable::shared_ptr_to_mutable,
                "offload: std::shared_ptr<T> with a non-const T shares a mutable object between "
                "threads: send a std::shared_ptr<const T>, a std::unique_ptr<T> or a copy.");
  static_assert(why != Unsendable::weak_ptr,
                "offload: std::weak_ptr refers to an object shared between threads: send a "
                "std::shared_ptr<const T> or a copy.");
  static_assert(why != Unsendable::not_move_constructible,
                "offload: this type is not move-constructible, so it cannot be moved into a "
                "channel or a worker.");
  static_assert(why != Unsendable::opted_out,
                "offload: offload::is_sendable is specialised to false for this type.");
  static constexpr bool reported = true;
};

/**
 * @brief Reports, as one static_assert naming the culprit and the reason, why `T` cannot be
 *        sent; does nothing when `T` is Sendable.
 *
 * Call it as a statement, then guard the rest with `if constexpr (Sendable<T>)` so that nothing
 * else is instantiated for a rejected type and the user reads exactly one error:
 * @code
 *   detail::check_sendable<T>();
 *   if constexpr (Sendable<T>) { ... } else { return {}; }
 * @endcode
 */
template <class T>
constexpr void check_sendable() noexcept {
  if constexpr (!is_sendable<T>::value) {
    using Why = Diagnosis<T>;
    static_assert(this_type_cannot_be_sent<typename Why::culprit, T, Why::problem>::reported);
  }
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_SENDABLE_RULES_HPP

#ifndef OFFLOAD_SENDABLE_HPP
#define OFFLOAD_SENDABLE_HPP

/// @file sendable.hpp
/// offload::Sendable<T>: may a value of type T cross to another thread through a channel or
/// run_service? Values that cross are moved or copied, never shared behind the user's back.
///
/// Rejected: references, raw pointers to data, std::reference_wrapper, std::string_view,
/// std::span, std::shared_ptr<T> with non-const T, std::weak_ptr, types that cannot be
/// move-constructed, and any std container, container adaptor, std::array, std::optional,
/// std::variant, std::pair or std::tuple that holds one of these (checked recursively).
/// Accepted: everything else, including std::unique_ptr (a transfer), std::shared_ptr<const T>
/// (immutable sharing), function pointers (code is immutable) and offload::SharedBuffer<T>
/// (sharing on purpose). Classes offload cannot see into (your own types, std::function,
/// std::any) are judged as a whole; specialise offload::is_sendable to opt one in or out.

#include <type_traits>

#include "detail/sendable_rules.hpp"

namespace offload {
inline namespace v0 {

/**
 * @brief Whether values of type `T` may be sent to another thread. Specialise it to opt a type
 *        in (`: std::true_type`) or out (`: std::false_type`); containers of that type follow.
 */
template <class T>
struct is_sendable : std::bool_constant<detail::follows_sendable_rules<T>()> {};

/// Shorthand for is_sendable<T>::value.
template <class T>
inline constexpr bool is_sendable_v = is_sendable<T>::value;

/**
 * @brief A type whose values may cross to another thread by move or copy. Use it in
 *        constraints; entry points that reject a type use detail::check_sendable<T>() instead,
 *        whose error message says which part of the type is at fault and why.
 */
template <class T>
concept Sendable = is_sendable<T>::value;

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_SENDABLE_HPP

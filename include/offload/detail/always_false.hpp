#ifndef OFFLOAD_DETAIL_ALWAYS_FALSE_HPP
#define OFFLOAD_DETAIL_ALWAYS_FALSE_HPP

/// @file always_false.hpp
/// A false that depends on template arguments, so a static_assert fires only when the template
/// holding it is instantiated (the usual way to write "this overload must not be chosen").

namespace offload {
inline namespace v0 {
namespace detail {

template <class...>
inline constexpr bool always_false = false;

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_ALWAYS_FALSE_HPP

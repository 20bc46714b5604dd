#ifndef OFFLOAD_DETAIL_TIMESPEC_HPP
#define OFFLOAD_DETAIL_TIMESPEC_HPP

/// @file timespec.hpp
/// A std::chrono duration as the POSIX timespec that futexes and timerfds take.

#include <chrono>
#include <ctime>

#if defined(__linux__)
#include <sys/timerfd.h>
#endif

namespace offload {
inline namespace v0 {
namespace detail {

/// `span` (>= 0) split into whole seconds and the nanoseconds left over.
inline timespec to_timespec(std::chrono::nanoseconds span) noexcept {
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(span);
  timespec spec{};
  spec.tv_sec = static_cast<time_t>(secs.count());
  spec.tv_nsec = static_cast<long>((span - secs).count());
  return spec;
}

#if defined(__linux__)
/// Sets timerfd `timer` to expire once at `value`: a span from now, or with
/// TFD_TIMER_ABSTIME in `flags` a point on the timer's clock. A zero value would disarm the
/// timer, so it is made the smallest one, which expires at once. Returns false if the
/// kernel refused it. Thread-safe; never blocks.
inline bool set_timerfd(int timer, std::chrono::nanoseconds value, int flags) noexcept {
  if (value.count() <= 0) value = std::chrono::nanoseconds(1);
  itimerspec spec{};
  spec.it_value = to_timespec(value);
  return ::timerfd_settime(timer, flags, &spec, nullptr) == 0;
}
#endif

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_TIMESPEC_HPP

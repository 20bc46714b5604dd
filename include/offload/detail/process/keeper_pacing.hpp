#ifndef OFFLOAD_DETAIL_PROCESS_KEEPER_PACING_HPP
#define OFFLOAD_DETAIL_PROCESS_KEEPER_PACING_HPP

/// @file detail/process/keeper_pacing.hpp
/// How eagerly the scheduler runs a ProcessPool keeper thread (Linux; elsewhere a no-op).
///
/// A keeper sleeps almost always, and when its worker wakes it (a reply with no call left,
/// or the last call begun: see worker.hpp) it must run at once: the caller waits for
/// the result, or the worker for its next calls. So it asks for short time slices (EEVDF,
/// Linux 6.12+; older kernels ignore the request), which lets its wake-up preempt a thread
/// that computes on that CPU instead of waiting for that thread's slice to end.
/// Only a thread whose policy is SCHED_OTHER is changed; the nice value is kept.

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

namespace offload {
inline namespace v0 {
namespace detail {

class KeeperPacing {
 public:
  /// Asks for short slices for the calling thread (if its policy is SCHED_OTHER). Never
  /// fails: a refused request (an old kernel, a seccomp filter) only makes it slower.
  KeeperPacing() noexcept {
#if defined(__linux__) && defined(SYS_sched_getattr) && defined(SYS_sched_setattr)
    SchedAttributes attributes{};
    if (::syscall(SYS_sched_getattr, 0, &attributes, sizeof attributes, 0) != 0 ||
        attributes.sched_policy != SCHED_OTHER) {
      return;
    }
    attributes.size = sizeof attributes;
    attributes.sched_runtime = short_slice_ns;  // the same nice value and flags
    ::syscall(SYS_sched_setattr, 0, &attributes, 0);
#endif
  }

  KeeperPacing(const KeeperPacing&) = delete;
  KeeperPacing& operator=(const KeeperPacing&) = delete;

 private:
  /// struct sched_attr of sched_setattr(2) (not in glibc's headers).
  struct SchedAttributes {
    std::uint32_t size;
    std::uint32_t sched_policy;
    std::uint64_t sched_flags;
    std::int32_t sched_nice;
    std::uint32_t sched_priority;
    std::uint64_t sched_runtime;
    std::uint64_t sched_deadline;
    std::uint64_t sched_period;
  };

  /// The shortest slice the kernel allows, in nanoseconds.
  static constexpr std::uint64_t short_slice_ns = 100'000;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_KEEPER_PACING_HPP

#ifndef OFFLOAD_DETAIL_KEEPER_PACING_HPP
#define OFFLOAD_DETAIL_KEEPER_PACING_HPP

/// @file keeper_pacing.hpp
/// How eagerly the scheduler runs a ProcessPool keeper thread (Linux; elsewhere a no-op).
///
/// A keeper sleeps almost always and runs for microseconds when its worker replies. Two paces:
/// - prompt: short time slices (EEVDF, Linux 6.12+; older kernels ignore the request). A reply
///   wakes the keeper at once, even on a CPU where another thread spins or computes, so a
///   caller waiting for the result is not held up by a whole time slice.
/// - batched (SCHED_BATCH): a reply does not preempt the thread running on that CPU. Used only
///   while the worker has its next call already (sent ahead): the worker keeps computing, and
///   the keeper runs when that CPU frees up (the worker runs out of calls, or at the next tick)
///   and then completes the futures of every call answered meanwhile (two or more). On a
///   machine whose every core runs a worker, that cuts the keeper's wake-ups, each of which
///   costs two context switches.
/// Only a thread whose policy is SCHED_OTHER is ever changed; the nice value is kept.

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

namespace offload {
inline namespace v0 {
namespace detail {

class KeeperPacing {
 public:
  enum class Pace { prompt, batched };

  /// Sets the calling thread's pace to prompt (if its policy is SCHED_OTHER). Call it on the
  /// keeper thread; every member acts on the calling thread.
  KeeperPacing() noexcept {
#if defined(__linux__) && defined(SYS_sched_getattr) && defined(SYS_sched_setattr)
    adjustable_ = ::syscall(SYS_sched_getattr, 0, &initial_, sizeof initial_, 0) == 0 &&
                  initial_.sched_policy == SCHED_OTHER;
    initial_.size = sizeof initial_;
#endif
    apply(Pace::prompt);
  }

  KeeperPacing(const KeeperPacing&) = delete;
  KeeperPacing& operator=(const KeeperPacing&) = delete;

  /// Switches to `pace`; a system call only when it changes. Never fails: a refused request
  /// (a seccomp filter, say) leaves the thread as it was, which is only slower.
  void set(Pace pace) noexcept {
    if (pace != current_) apply(pace);
  }

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

  void apply(Pace pace) noexcept {
    current_ = pace;
#if defined(__linux__) && defined(SYS_sched_getattr) && defined(SYS_sched_setattr)
    if (!adjustable_) return;
    SchedAttributes attributes = initial_;  // the same nice value and flags
    if (pace == Pace::prompt) {
      attributes.sched_policy = SCHED_OTHER;
      attributes.sched_runtime = short_slice_ns;
    } else {
      attributes.sched_policy = SCHED_BATCH;
      attributes.sched_runtime = 0;  // the default slice
    }
    ::syscall(SYS_sched_setattr, 0, &attributes, 0);
#endif
  }

  SchedAttributes initial_{};
  bool adjustable_ = false;
  Pace current_ = Pace::prompt;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_KEEPER_PACING_HPP

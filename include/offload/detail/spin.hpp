#ifndef OFFLOAD_DETAIL_SPIN_HPP
#define OFFLOAD_DETAIL_SPIN_HPP

/// @file spin.hpp
/// A polite busy-wait step, for the short spins that come before parking a thread.

#include <thread>

namespace offload {
inline namespace v0 {
namespace detail {

/// Tells the CPU we are spinning (frees pipeline resources for the sibling hyper-thread).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::this_thread::yield();
#endif
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_SPIN_HPP

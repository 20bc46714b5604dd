#ifndef OFFLOAD_TESTS_CURRENT_THREAD_HPP
#define OFFLOAD_TESTS_CURRENT_THREAD_HPP

#include <thread>

namespace offload_test {

/// The calling thread's id, read through a call that is never inlined nor merged with another
/// (the empty asm): clang before 17 may compute std::this_thread::get_id() once and reuse it
/// across a suspension point, after which the coroutine may run on another thread
/// (docs/task.md).
[[gnu::noinline]] inline std::thread::id current_thread() {
  asm volatile("" ::: "memory");
  return std::this_thread::get_id();
}

}  // namespace offload_test

#endif  // OFFLOAD_TESTS_CURRENT_THREAD_HPP

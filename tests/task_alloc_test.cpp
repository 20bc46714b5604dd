// Coroutine frames come from a per-thread recycling cache: in steady state a fork-join spawn,
// or a child task awaited in a loop, takes nothing from the global heap. A program of its own,
// because it counts every allocation the program makes: with a replaced global operator new,
// or under a sanitizer (whose runtime owns operator new and malloc; clang links them in
// statically, so they cannot be replaced) with the sanitizer's allocation hook.

#include <offload/task.hpp>

#include <atomic>
#include <cstdlib>
#include <new>

#include "catch.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define OFFLOAD_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define OFFLOAD_TEST_SANITIZED 1
#endif
#endif

namespace {
std::atomic<long> allocations{0};
}  // namespace

#ifdef OFFLOAD_TEST_SANITIZED
// From the sanitizers' common interface (<sanitizer/allocator_interface.h>, which clang ships
// and g++ 12 does not); every sanitizer runtime exports it.
extern "C" int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void*, std::size_t), void (*free_hook)(const volatile void*));

namespace {
void count_allocation(const volatile void*, std::size_t) {
  allocations.fetch_add(1, std::memory_order_relaxed);
}
void ignore_free(const volatile void*) {}
// Installed before main(): every allocation from then on, operator new's included, is seen.
const bool hooks_installed = __sanitizer_install_malloc_and_free_hooks(count_allocation,
                                                                       ignore_free) != 0;
}  // namespace
#else
// Every form that pairs with free() (the aligned forms are left to the library: they pair
// among themselves).
void* operator new(std::size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return ::operator new(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
  return ::operator new(size, tag);
}
// g++ cannot tell that these frees pair with the mallocs above, and warns.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#pragma GCC diagnostic pop
#endif

TEST_CASE("the allocation counter counts", "[task][alloc]") {
#ifdef OFFLOAD_TEST_SANITIZED
  REQUIRE(hooks_installed);
#endif
  const long before = allocations.load();
  void* block = ::operator new(64);
  asm volatile("" : : "r"(block) : "memory");  // not optimised away
  ::operator delete(block);
  CHECK(allocations.load() - before == 1);
}

namespace {

using offload::Task;

Task<long> fib(int n) {
  if (n < 2) co_return n;
  auto [a, b] = co_await offload::when_all(fib(n - 1), fib(n - 2));
  co_return a + b;
}

Task<int> one() { co_return 1; }

/// Runs fib(n) inside a task on the pool and counts the allocations made while it runs.
Task<long> allocations_during_fib(offload::ThreadPool& pool, int n, long expected) {
  co_await offload::resume_on(pool);
  const long before = allocations.load();
  const long value = co_await fib(n);
  const long made = allocations.load() - before;
  CHECK(value == expected);
  co_return made;
}

}  // namespace

TEST_CASE("steady-state fork-join spawns allocate nothing", "[task][alloc]") {
  offload::ThreadPool pool({.threads = 2});
  // Warm-up: the frame caches, the workers' deques and the trampolines reach their sizes.
  for (int round = 0; round < 20; ++round) CHECK(offload::spawn(pool, fib(20)).get() == 6765);
  // A round may still add a few frames (a worker ran dry while its peer held spare frames
  // below the depot's batch size); the population stops growing, and whole rounds then
  // allocate nothing at all.
  long fewest = -1;
  for (int round = 0; round < 10 && fewest != 0; ++round) {
    const long made = offload::sync_wait(allocations_during_fib(pool, 20, 6765));
    if (fewest < 0 || made < fewest) fewest = made;
  }
  CHECK(fewest == 0);
}

TEST_CASE("a child task awaited in a loop allocates nothing", "[task][alloc]") {
  auto loop_of_children = [](int count) -> Task<long> {
    long sum = 0;
    for (int i = 0; i < count; ++i) sum += co_await one();
    co_return sum;
  };
  auto measured = [&]() -> Task<long> {
    co_await loop_of_children(1000);  // warms this thread's frame cache and trampoline
    const long before = allocations.load();
    const long sum = co_await loop_of_children(100'000);
    CHECK(allocations.load() - before == 0);
    co_return sum;
  };
  CHECK(offload::sync_wait(measured()) == 100'000);
}

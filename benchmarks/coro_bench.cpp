// Workload 10 (fine-grained fork-join) and the costs of offload's coroutines: fib(30) with no
// cutoff on 2 workers by coroutine when_all, by nested submit + get, and by oneTBB's
// task_group when installed; a co_await of a ready Future; a spawn onto a running loop and
// back; global allocations per fork-join spawn (operator new is replaced here to count them).
//
//   coro_bench [--quick] [--json FILE]

#include <offload/offload.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"

#if __has_include(<tbb/task_group.h>) && defined(OFFLOAD_BENCH_HAVE_TBB)
#include <tbb/task_arena.h>
#include <tbb/task_group.h>
#define OFFLOAD_BENCH_TBB 1
#endif

// --- counting global allocations ---------------------------------------------------------------
namespace {
std::atomic<long> global_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  global_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
// g++ cannot tell that these frees pair with the mallocs above, and warns.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace {

using offload::Task;
using Clock = std::chrono::steady_clock;

double seconds_of(auto&& fn) {
  const auto start = Clock::now();
  fn();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

long fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }
/// Calls with n >= 2: the ones that fork (BENCHMARKS.md, workload 10).
long forks(int n) { return n < 2 ? 0 : 1 + forks(n - 1) + forks(n - 2); }

Task<long> fib_fork_join(int n) {
  if (n < 2) co_return n;
  auto [a, b] = co_await offload::when_all(fib_fork_join(n - 1), fib_fork_join(n - 2));
  co_return a + b;
}

long fib_nested(offload::ThreadPool& pool, int n) {
  if (n < 2) return n;
  auto child = pool.submit([&pool, n] { return fib_nested(pool, n - 1); });
  const long other = fib_nested(pool, n - 2);
  return child.get() + other;
}

#ifdef OFFLOAD_BENCH_TBB
long fib_tbb(int n) {
  if (n < 2) return n;
  long a = 0;
  tbb::task_group group;
  group.run([&] { a = fib_tbb(n - 1); });
  const long b = fib_tbb(n - 2);
  group.wait();
  return a + b;
}
#endif

void check(long got, long expected) {
  if (got != expected) {
    std::fprintf(stderr, "wrong result: %ld, expected %ld\n", got, expected);
    std::exit(1);
  }
}

/// Global allocations made while fib(n) forks and joins inside a task on `pool`.
Task<long> allocations_during(offload::ThreadPool& pool, int n, long expected) {
  co_await offload::resume_on(pool);
  const long before = global_allocations.load();
  const long result = co_await fib_fork_join(n);
  const long made = global_allocations.load() - before;
  check(result, expected);
  co_return made;
}

/// ns per co_await of a ready Future<int>. Made in batches of 1,000 before each timed loop
/// (so their states are in cache, as a result just produced is); freeing each one's state is
/// part of its await (the awaiter takes the state over).
double ready_await_ns(int count) {
  constexpr int batch = 1000;
  auto body = [](int rounds) -> Task<double> {
    std::vector<offload::Future<int>> futures;
    futures.reserve(batch);
    double seconds = 0;
    long sum = 0;
    for (int round = 0; round < rounds; ++round) {
      for (int i = 0; i < batch; ++i) {
        offload::Promise<int> promise;
        futures.push_back(promise.get_future());
        promise.set_value(1);
      }
      const auto start = Clock::now();
      for (auto& future : futures) sum += co_await std::move(future);
      seconds += std::chrono::duration<double>(Clock::now() - start).count();
      futures.clear();
    }
    check(sum, long{rounds} * batch);
    co_return seconds;
  };
  return offload::sync_wait(body(count / batch)) * 1e9 / count;
}

/// ns per co_await of a Task that ends without suspending (a child started and joined).
double ready_task_ns(int count) {
  auto one = []() -> Task<int> { co_return 1; };
  auto body = [&](int n) -> Task<double> {
    long sum = 0;
    const auto start = Clock::now();
    for (int i = 0; i < n; ++i) sum += co_await one();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    check(sum, n);
    co_return s;
  };
  return offload::sync_wait(body(count)) * 1e9 / count;
}

/// Median ns from spawn() on an outside thread to its Future's value, with the loop running.
double spawn_round_trip_ns(int rounds) {
  offload::EventLoop loop;
  offload::EventLoop::Hold hold = loop.hold();
  std::thread runner([&] { loop.run(); });
  auto trivial = []() -> Task<int> { co_return 1; };
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(rounds));
  for (int i = 0; i < rounds; ++i) {
    const auto start = Clock::now();
    check(offload::spawn(loop, trivial()).get(), 1);
    samples.push_back(std::chrono::duration<double, std::nano>(Clock::now() - start).count());
  }
  hold = {};
  runner.join();
  return bench::median(samples);
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options options = bench::parse_options(argc, argv);
  const int reps = options.quick ? 3 : 7;
  const int fib_n = options.quick ? 25 : 30;
  const long expected = fib_serial(fib_n);
  const double spawns = double(forks(fib_n));
  constexpr unsigned threads = 2;

  bench::Report report("Coroutines: fork-join and await costs (2 workers)");
  auto rep = [&](auto measure) {
    std::vector<double> v;
    for (int r = 0; r < reps; ++r) v.push_back(measure());
    return bench::median(v);
  };

  const std::string w10 = "10. fork-join fib(" + std::to_string(fib_n) + "), no cutoff (ns/spawn)";
  double allocations_per_spawn = -1;  // the fewest of any repetition: the steady state
  {
    offload::ThreadPool pool({.threads = threads});
    report.add(w10, "offload when_all (coroutines)", rep([&] {
                 long result = 0;
                 const double s = seconds_of([&] { result = offload::spawn(pool, fib_fork_join(fib_n)).get(); });
                 check(result, expected);
                 return s * 1e9 / spawns;
               }),
               "ns");
    // Counted inside a task on the pool, around the fork-join alone: the root spawn from
    // outside (its stop state, its frame made here and freed on a worker) is not a fork.
    for (int r = 0; r < reps; ++r) {
      const long made = offload::sync_wait(allocations_during(pool, fib_n, expected));
      const double per_spawn = double(made) / spawns;
      if (allocations_per_spawn < 0 || per_spawn < allocations_per_spawn) {
        allocations_per_spawn = per_spawn;
      }
    }
    report.add(w10, "offload nested submit + get", rep([&] {
                 long result = 0;
                 const double s = seconds_of([&] {
                   result = pool.submit([&] { return fib_nested(pool, fib_n); }).get();
                 });
                 check(result, expected);
                 return s * 1e9 / spawns;
               }),
               "ns");
  }
#ifdef OFFLOAD_BENCH_TBB
  {
    tbb::task_arena arena(static_cast<int>(threads));
    report.add(w10, "oneTBB task_group", rep([&] {
                 long result = 0;
                 const double s = seconds_of([&] { arena.execute([&] { result = fib_tbb(fib_n); }); });
                 check(result, expected);
                 return s * 1e9 / spawns;
               }),
               "ns");
  }
#endif
  report.add("global allocations per fork-join spawn, steady state", "offload when_all",
             allocations_per_spawn, "allocs");

  const int awaits = options.quick ? 100'000 : 1'000'000;
  const std::string wa = "co_await, nothing to wait for (ns)";
  report.add(wa, "offload co_await ready Future", rep([&] { return ready_await_ns(awaits); }), "ns");
  report.add(wa, "offload co_await Task (no suspension)", rep([&] { return ready_task_ns(awaits); }), "ns");

  const std::string wr = "spawn onto a running loop, Future back (median ns)";
  report.add(wr, "offload spawn(loop) + get", rep([&] { return spawn_round_trip_ns(options.quick ? 2'000 : 20'000); }), "ns");

#ifdef OFFLOAD_BENCH_TBB
  report.claim("fork-join ns/spawn vs oneTBB task_group",
               report.value(w10, "offload when_all (coroutines)") / report.value(w10, "oneTBB task_group"),
               "<= 0.55");
#endif
  report.claim("global allocations per fork-join spawn", allocations_per_spawn, "= 0");
  report.claim("ns per co_await of a ready Future", report.value(wa, "offload co_await ready Future"),
               "< 10");

  report.print();
  if (options.json) report.write_json(*options.json);
  return 0;
}

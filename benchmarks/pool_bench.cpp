// Thread-pool benchmarks: BENCHMARKS.md workloads 1-4, 8 and 11, every contender in one run.
//
//   pool_bench [--quick] [--json FILE]
//
// Each figure is the median of several repetitions; the claims are ratios against baselines
// measured in this same process.

#include <offload/event_loop.hpp>
#include <offload/thread_pool.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#if __has_include(<boost/asio/thread_pool.hpp>) && defined(OFFLOAD_BENCH_HAVE_BOOST)
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#define OFFLOAD_BENCH_BOOST 1
#endif
#if __has_include(<tbb/task_group.h>) && defined(OFFLOAD_BENCH_HAVE_TBB)
#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>
#define OFFLOAD_BENCH_TBB 1
#endif

#include "bench_common.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using bench::median;
using bench::Report;

unsigned workers() { return std::max(1u, std::thread::hardware_concurrency()); }

// --- the textbook pool: one mutex, one condition variable, a queue of std::function --------
class TextbookPool {
 public:
  explicit TextbookPool(unsigned n) {
    for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~TextbookPool() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void post(std::function<void()> task) {
    {
      std::lock_guard lock(mutex_);
      tasks_.push(std::move(task));
      ++pending_;
    }
    cv_.notify_one();
  }
  template <class F>
  auto submit(F f) -> std::future<decltype(f())> {
    auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::move(f));
    auto future = task->get_future();
    post([task] { (*task)(); });
    return future;
  }
  void wait() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [&] { return pending_ == 0; });
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
        if (stop_ && tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop();
      }
      task();
      std::lock_guard lock(mutex_);
      if (--pending_ == 0) idle_.notify_all();
    }
  }
  std::mutex mutex_;
  std::condition_variable cv_, idle_;
  std::queue<std::function<void()>> tasks_;
  std::size_t pending_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](timeval t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

template <class F>
double seconds_of(F&& f) {
  const auto start = Clock::now();
  f();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

#ifdef OFFLOAD_BENCH_BOOST
/// Asio's pool returns no future: the usual packaged_task wrapper.
template <class F>
std::future<int> asio_submit(boost::asio::thread_pool& asio, F f) {
  auto task = std::make_shared<std::packaged_task<int()>>(std::move(f));
  auto future = task->get_future();
  boost::asio::post(asio, [task] { (*task)(); });
  return future;
}
#endif

// --- workload 1: tiny detached tasks --------------------------------------------------------
template <class Post, class Wait>
double detached_ns(int tasks, Post post, Wait wait) {
  std::atomic<long> counter{0};
  const double s = seconds_of([&] {
    for (int i = 0; i < tasks; ++i) post([&counter] { counter.fetch_add(1, std::memory_order_relaxed); });
    wait();
  });
  if (counter.load() != tasks) std::fprintf(stderr, "lost tasks!\n"), std::exit(1);
  return s * 1e9 / tasks;
}

// --- workload 2: tiny tasks with futures ----------------------------------------------------
template <class Submit>
double futures_ns(int tasks, Submit submit) {
  long sum = 0;
  const double s = seconds_of([&] {
    using F = decltype(submit([] { return 1; }));
    std::vector<F> futures;
    futures.reserve(static_cast<std::size_t>(tasks));
    for (int i = 0; i < tasks; ++i) futures.push_back(submit([] { return 1; }));
    for (auto& f : futures) sum += f.get();
  });
  if (sum != tasks) std::fprintf(stderr, "lost futures!\n"), std::exit(1);
  return s * 1e9 / tasks;
}

// --- workload 3: round trip -----------------------------------------------------------------
template <class Submit>
double round_trip_median_ns(int rounds, Submit submit) {
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(rounds));
  for (int i = 0; i < rounds; ++i) {
    const auto start = Clock::now();
    const int value = submit([i] { return i; }).get();
    samples.push_back(std::chrono::duration<double, std::nano>(Clock::now() - start).count());
    if (value != i) std::fprintf(stderr, "wrong round trip!\n"), std::exit(1);
  }
  return median(samples);
}

/// Where a round trip's time goes: the medians of submit() alone, submit() to the task's start,
/// and the task's start to get() returning (docs/thread_pool.md, "How long a round trip takes").
struct RoundTripPhases {
  double submit_ns, to_start_ns, start_to_get_ns;
};

RoundTripPhases round_trip_phases(offload::ThreadPool& pool, int rounds) {
  std::vector<double> submit, to_start, start_to_get;
  for (int i = 0; i < rounds; ++i) {
    Clock::time_point started;
    const auto before = Clock::now();
    auto future = pool.submit([&started, i] {
      started = Clock::now();
      return i;
    });
    const auto submitted = Clock::now();
    if (future.get() != i) std::fprintf(stderr, "wrong round trip!\n"), std::exit(1);
    const auto got = Clock::now();  // get() synchronises with the task: `started` is visible
    submit.push_back(std::chrono::duration<double, std::nano>(submitted - before).count());
    to_start.push_back(std::chrono::duration<double, std::nano>(started - before).count());
    start_to_get.push_back(std::chrono::duration<double, std::nano>(got - started).count());
  }
  return {median(submit), median(to_start), median(start_to_get)};
}

/// The way back to a loop: the loop's thread submits a task, its continuation comes back on
/// the loop with then(loop, f) and submits the next. Median ns per round trip, and how often
/// the loop's thread slept (voluntary context switches: futex waits) per round trip.
struct LoopRoundTrip {
  double median_ns, sleeps_per_round;
};

LoopRoundTrip loop_round_trip(offload::ThreadPool& pool, int rounds) {
  offload::EventLoop loop;
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(rounds));
  long sleeps_before = 0, sleeps_after = 0;
  std::function<void(int)> next = [&](int i) {
    if (i == rounds) {
      sleeps_after = bench::ThreadUsage::now().sleeps;
      return;
    }
    const auto start = Clock::now();
    pool.submit([i] { return i; }).then(loop, [&, i, start](int value) {
      samples.push_back(std::chrono::duration<double, std::nano>(Clock::now() - start).count());
      if (value != i) std::fprintf(stderr, "wrong loop round trip!\n"), std::exit(1);
      next(i + 1);
    });
  };
  loop.post([&] {
    sleeps_before = bench::ThreadUsage::now().sleeps;
    next(0);
  });
  loop.run();
  return {median(samples), double(sleeps_after - sleeps_before) / rounds};
}

/// Workload 11's burst: workload 2's 200,000 futures submitted and collected, so every worker
/// is awake and its queues and caches are full of other work's traces.
void burst(offload::ThreadPool& pool) {
  (void)futures_ns(200'000, [&pool](auto f) { return pool.submit(f); });
}

#ifdef OFFLOAD_BENCH_TBB
/// oneTBB measured the way its fastest round trip goes: task_arena::enqueue of a task that
/// stores into an atomic while the caller spins on it (then atomic::wait, as a bounded spin).
double tbb_round_trip_median_ns(tbb::task_arena& arena, int rounds) {
  std::atomic<int> done{-1};
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(rounds));
  for (int i = 0; i < rounds; ++i) {
    const auto start = Clock::now();
    arena.enqueue([&done, i] {
      done.store(i, std::memory_order_release);
      done.notify_one();
    });
    for (int spin = 0; done.load(std::memory_order_acquire) != i; ++spin) {
      if (spin < 20'000) {
        offload::detail::cpu_relax();
      } else {
        const int seen = done.load(std::memory_order_acquire);
        if (seen != i) done.wait(seen, std::memory_order_acquire);
      }
    }
    samples.push_back(std::chrono::duration<double, std::nano>(Clock::now() - start).count());
  }
  return median(samples);
}
#endif

/// The floor: two threads handing a counter back and forth through one atomic, spinning
/// (with the pool's own pause instruction, as its spinners do).
double ping_pong_median_ns(int rounds) {
  std::atomic<int> ball{0};
  std::thread partner([&ball, rounds] {
    for (int expect = 1; expect < 2 * rounds; expect += 2) {
      while (ball.load(std::memory_order_acquire) != expect) offload::detail::cpu_relax();
      ball.store(expect + 1, std::memory_order_release);
    }
  });
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(rounds));
  for (int i = 0; i < rounds; ++i) {
    const auto start = Clock::now();
    ball.store(2 * i + 1, std::memory_order_release);
    while (ball.load(std::memory_order_acquire) != 2 * i + 2) offload::detail::cpu_relax();
    samples.push_back(std::chrono::duration<double, std::nano>(Clock::now() - start).count());
  }
  partner.join();
  return median(samples);
}

// --- workload 4: spawn inside workers (fib with nested get) --------------------------------
constexpr int fib_cutoff = 12;

long fib_serial(int n) { return n < 2 ? n : fib_serial(n - 1) + fib_serial(n - 2); }

long spawned_tasks(int n) { return n <= fib_cutoff ? 0 : 1 + spawned_tasks(n - 1) + spawned_tasks(n - 2); }

long fib_offload(offload::ThreadPool& pool, int n) {
  if (n <= fib_cutoff) return fib_serial(n);
  auto child = pool.submit([&pool, n] { return fib_offload(pool, n - 1); });
  const long other = fib_offload(pool, n - 2);
  return child.get() + other;
}

#ifdef OFFLOAD_BENCH_TBB
long fib_tbb(int n) {
  if (n <= fib_cutoff) return fib_serial(n);
  long child = 0;
  tbb::task_group group;
  group.run([&] { child = fib_tbb(n - 1); });
  const long other = fib_tbb(n - 2);
  group.wait();
  return child + other;
}
#endif

// --- workload 8: idle cost ------------------------------------------------------------------
/// CPU time the process burns over `idle` while the pool sits idle, starting `settle` after a
/// burst of work, as a percentage of one core.
template <class Burst>
double idle_cpu_percent(Burst burst, std::chrono::milliseconds settle, std::chrono::milliseconds idle) {
  burst();
  std::this_thread::sleep_for(settle);
  const double before = cpu_seconds();
  std::this_thread::sleep_for(idle);
  const double used = cpu_seconds() - before;
  return 100.0 * used / std::chrono::duration<double>(idle).count();
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options options = bench::parse_options(argc, argv);
  const int scale = options.quick ? 10 : 1;
  const int reps = options.quick ? 3 : 5;
  const int detached_tasks = 1'000'000 / scale;
  const int future_tasks = 200'000 / scale;
  const int rounds = 20'000 / scale;
  const int thread_tasks = 10'000 / scale;  // a thread per task is far too slow for 10^6
  const int fib_n = options.quick ? 24 : 27;
  const unsigned n = workers();

  Report report("Thread pool: offload vs baselines (" + std::to_string(n) + " workers)");
  auto row = [&](const std::string& workload, const std::string& contender, double value,
                 const std::string& unit) { report.add(workload, contender, value, unit); };
  auto rep = [&](auto measure) {
    std::vector<double> v;
    for (int r = 0; r < reps; ++r) v.push_back(measure());
    return median(v);
  };

  // Workload 1.
  {
    const std::string w = "1. tiny detached tasks (ns/task)";
    row(w, "plain loop (inline)", rep([&] {
          std::atomic<long> c{0};
          return seconds_of([&] {
                   for (int i = 0; i < detached_tasks; ++i) c.fetch_add(1, std::memory_order_relaxed);
                 }) * 1e9 / detached_tasks;
        }), "ns");
    offload::ThreadPool pool({.threads = n});
    row(w, "offload::ThreadPool", rep([&] {
          return detached_ns(detached_tasks, [&](auto f) { pool.detach(f); }, [&] { pool.wait(); });
        }), "ns");
    TextbookPool textbook(n);
    row(w, "textbook pool", rep([&] {
          return detached_ns(detached_tasks, [&](auto f) { textbook.post(f); }, [&] { textbook.wait(); });
        }), "ns");
    row(w, "std::thread per task", rep([&] {
          std::vector<std::thread> threads;
          auto r = detached_ns(thread_tasks, [&](auto f) { threads.emplace_back(f); },
                               [&] { for (auto& t : threads) t.join(); });
          return r;
        }), "ns");
    row(w, "std::async", rep([&] {
          std::vector<std::future<void>> fs;
          return detached_ns(thread_tasks, [&](auto f) { fs.push_back(std::async(std::launch::async, f)); },
                             [&] { for (auto& f : fs) f.get(); });
        }), "ns");
#ifdef OFFLOAD_BENCH_TBB
    tbb::task_arena arena(static_cast<int>(n));
    row(w, "oneTBB task_group", rep([&] {
          tbb::task_group group;
          return detached_ns(detached_tasks, [&](auto f) { arena.execute([&] { group.run(f); }); },
                             [&] { arena.execute([&] { group.wait(); }); });
        }), "ns");
#endif
#ifdef OFFLOAD_BENCH_BOOST
    boost::asio::thread_pool asio(n);
    row(w, "Boost.Asio thread_pool", rep([&] {
          // Asio's pool has no "wait for idle" short of join: count completions instead.
          std::atomic<long> done{0};
          auto s = detached_ns(detached_tasks, [&](auto f) { boost::asio::post(asio, [f, &done] { f(); done.fetch_add(1, std::memory_order_release); }); },
                               [&] { while (done.load(std::memory_order_acquire) != detached_tasks) std::this_thread::yield(); });
          return s;
        }), "ns");
#endif
  }

  // Workload 2.
  {
    const std::string w = "2. tiny tasks with futures (ns/task)";
    offload::ThreadPool pool({.threads = n});
    row(w, "offload::ThreadPool", rep([&] {
          return futures_ns(future_tasks, [&](auto f) { return pool.submit(f); });
        }), "ns");
    TextbookPool textbook(n);
    row(w, "textbook pool + packaged_task", rep([&] {
          return futures_ns(future_tasks, [&](auto f) { return textbook.submit(f); });
        }), "ns");
    row(w, "std::async", rep([&] {
          return futures_ns(thread_tasks, [&](auto f) { return std::async(std::launch::async, f); });
        }), "ns");
#ifdef OFFLOAD_BENCH_BOOST
    boost::asio::thread_pool asio(n);
    row(w, "Boost.Asio + packaged_task", rep([&] {
          return futures_ns(future_tasks, [&](auto f) { return asio_submit(asio, f); });
        }), "ns");
#endif
  }

  // Workload 3.
  {
    const std::string w = "3. round trip, median (ns)";
    offload::ThreadPool pool({.threads = n});
    row(w, "offload::ThreadPool", rep([&] {
          return round_trip_median_ns(rounds, [&](auto f) { return pool.submit(f); });
        }), "ns");
    TextbookPool textbook(n);
    row(w, "textbook pool + packaged_task", rep([&] {
          return round_trip_median_ns(rounds, [&](auto f) { return textbook.submit(f); });
        }), "ns");
    row(w, "std::async", rep([&] {
          return round_trip_median_ns(thread_tasks, [&](auto f) { return std::async(std::launch::async, f); });
        }), "ns");
#ifdef OFFLOAD_BENCH_BOOST
    boost::asio::thread_pool asio(n);
    row(w, "Boost.Asio + packaged_task", rep([&] {
          return round_trip_median_ns(rounds, [&](auto f) { return asio_submit(asio, f); });
        }), "ns");
#endif
  }

  // Workload 11: the round trip with 1, 2 and 4 workers, fresh (a new pool, its workers
  // asleep) and right after a burst, beside oneTBB's and the floor, all in this run. offload's
  // and oneTBB's repetitions alternate, so that a slow spell of the machine (this VM's floor
  // has been seen 4x slower for a few seconds) falls on both alike.
  double worst_round_trip = 0, worst_vs_tbb = 0;
  for (const unsigned w : {1u, 2u, 4u}) {
    for (const bool after_burst : {false, true}) {
      const std::string name = "11. round trip, " + std::to_string(w) + (w == 1 ? " worker, " : " workers, ") +
                               (after_burst ? "after a burst" : "fresh") + " (median ns)";
      const auto offload_once = [&] {
        offload::ThreadPool pool({.threads = w});
        if (after_burst) {
          burst(pool);
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));  // past every spin: asleep
        }
        return round_trip_median_ns(rounds, [&](auto f) { return pool.submit(f); });
      };
      std::vector<double> offload_samples;
#ifdef OFFLOAD_BENCH_TBB
      tbb::task_arena arena(static_cast<int>(w), 0);
      const auto tbb_once = [&] {
        if (after_burst) {
          arena.execute([] {
            tbb::task_group group;
            for (int i = 0; i < 200'000; ++i) group.run([] {});
            group.wait();
          });
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return tbb_round_trip_median_ns(arena, rounds);
      };
      std::vector<double> tbb_samples;
      for (int r = 0; r < reps; ++r) {
        offload_samples.push_back(offload_once());
        tbb_samples.push_back(tbb_once());
      }
#else
      for (int r = 0; r < reps; ++r) offload_samples.push_back(offload_once());
#endif
      const double offload_ns = median(offload_samples);
      row(name, "offload::ThreadPool", offload_ns, "ns");
      worst_round_trip = std::max(worst_round_trip, offload_ns);
#ifdef OFFLOAD_BENCH_TBB
      const double tbb_ns = median(tbb_samples);
      row(name, "oneTBB task_arena::enqueue, caller spinning", tbb_ns, "ns");
      worst_vs_tbb = std::max(worst_vs_tbb, offload_ns / tbb_ns);
#endif
    }
  }
  row("11. round trip floor: two threads, one atomic (median ns)", "spin ping-pong", rep([&] {
        return ping_pong_median_ns(rounds);
      }), "ns");
  {
    // Where the time goes, 2 workers after a burst (docs/thread_pool.md).
    offload::ThreadPool pool({.threads = 2});
    std::vector<RoundTripPhases> phases;
    for (int r = 0; r < reps; ++r) {
      burst(pool);
      phases.push_back(round_trip_phases(pool, rounds));
    }
    const auto median_of = [&](double RoundTripPhases::*field) {
      std::vector<double> v;
      for (const RoundTripPhases& p : phases) v.push_back(p.*field);
      return median(v);
    };
    const std::string w = "11. round trip phases, 2 workers, after a burst (median ns)";
    row(w, "submit() returns", median_of(&RoundTripPhases::submit_ns), "ns");
    row(w, "submit() to the task's start", median_of(&RoundTripPhases::to_start_ns), "ns");
    row(w, "the task's start to get() returning", median_of(&RoundTripPhases::start_to_get_ns), "ns");
  }
  {
    // The way back to a loop: then(loop, f) from the loop's own thread, 2 workers.
    offload::ThreadPool pool({.threads = 2});
    std::vector<LoopRoundTrip> trips;
    for (int r = 0; r < reps; ++r) trips.push_back(loop_round_trip(pool, rounds));
    std::sort(trips.begin(), trips.end(),
              [](const LoopRoundTrip& a, const LoopRoundTrip& b) { return a.median_ns < b.median_ns; });
    const LoopRoundTrip& middle = trips[trips.size() / 2];
    const std::string w = "11. back to the loop: the loop submits, then(loop) continues (median ns)";
    row(w, "offload::EventLoop + ThreadPool", middle.median_ns, "ns");
    row("11. back to the loop: times the loop's thread slept, per round trip", "offload::EventLoop + ThreadPool",
        middle.sleeps_per_round, "sleeps");
  }

  // Workload 4.
  {
    const std::string w = "4. spawn inside workers, fib(" + std::to_string(fib_n) + ") (ns/spawn)";
    const double spawns = double(spawned_tasks(fib_n));
    const long expected = fib_serial(fib_n);
    offload::ThreadPool pool({.threads = n});
    row(w, "offload::ThreadPool", rep([&] {
          long result = 0;
          const double s = seconds_of([&] { result = pool.submit([&] { return fib_offload(pool, fib_n); }).get(); });
          if (result != expected) std::fprintf(stderr, "wrong fib!\n"), std::exit(1);
          return s * 1e9 / spawns;
        }), "ns");
    report.add_text(w, "textbook pool", "deadlocks (no help while waiting)");
#ifdef OFFLOAD_BENCH_TBB
    tbb::task_arena arena(static_cast<int>(n));
    row(w, "oneTBB task_group", rep([&] {
          long result = 0;
          const double s = seconds_of([&] { arena.execute([&] { result = fib_tbb(fib_n); }); });
          if (result != expected) std::fprintf(stderr, "wrong fib!\n"), std::exit(1);
          return s * 1e9 / spawns;
        }), "ns");
#endif
#ifdef OFFLOAD_BENCH_BOOST
    report.add_text(w, "Boost.Asio thread_pool", "deadlocks (no help while waiting)");
#endif
  }

  // Workload 8.
  {
    const std::string w = "8. idle CPU, 5 ms after a burst, over 1 s (% of a core)";
    const auto settle = std::chrono::milliseconds(5);
    const auto idle = std::chrono::milliseconds(options.quick ? 200 : 1000);
    offload::ThreadPool pool({.threads = n});
    row(w, "offload::ThreadPool", idle_cpu_percent([&] {
          for (int i = 0; i < 100'000; ++i) pool.detach([] {});
          pool.wait();
        }, settle, idle), "%");
    TextbookPool textbook(n);
    row(w, "textbook pool", idle_cpu_percent([&] {
          for (int i = 0; i < 100'000; ++i) textbook.post([] {});
          textbook.wait();
        }, settle, idle), "%");
#ifdef OFFLOAD_BENCH_TBB
    tbb::task_arena arena(static_cast<int>(n));
    row(w, "oneTBB task_group", idle_cpu_percent([&] {
          tbb::task_group group;
          arena.execute([&] {
            for (int i = 0; i < 100'000; ++i) group.run([] {});
            group.wait();
          });
        }, settle, idle), "%");
#endif
  }

  // The claims, as ratios measured in this run.
  const double offload_detached = report.value("1. tiny detached tasks (ns/task)", "offload::ThreadPool");
  const double textbook_detached = report.value("1. tiny detached tasks (ns/task)", "textbook pool");
  report.claim("tiny detached tasks: offload / textbook ns per task", offload_detached / textbook_detached, "<= 0.5");
  report.claim("round trip median (us)", report.value("3. round trip, median (ns)", "offload::ThreadPool") / 1000.0, "<= 5");
  report.claim("round trip median, worst of 1/2/4 workers fresh and after a burst (us)",
               worst_round_trip / 1000.0, "<= 0.5");
#ifdef OFFLOAD_BENCH_TBB
  report.claim("round trip: offload / oneTBB, worst of the six", worst_vs_tbb, "< 1");
#endif
  report.claim("back to the loop: the loop's sleeps per round trip (each one a wake-up)",
               report.value("11. back to the loop: times the loop's thread slept, per round trip",
                            "offload::EventLoop + ThreadPool"),
               "< 0.1");
  report.claim("spawn inside workers completes", 1.0, "= 1 (yes)");
  report.claim("idle CPU (% of a core)", report.value("8. idle CPU, 5 ms after a burst, over 1 s (% of a core)", "offload::ThreadPool"), "< 1");
  report.print();
  if (options.json) report.write_json(*options.json);
  return 0;
}

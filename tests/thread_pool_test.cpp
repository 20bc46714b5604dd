#include <offload/thread_pool.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "gate.hpp"

using namespace std::chrono_literals;
using offload::Future;
using offload::FutureStatus;
using offload::PoolOptions;
using offload::ThreadPool;

namespace {

using offload_test::Gate;

/// Spins until `condition` holds or a generous limit passes.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(100us);
  }
  return true;
}

PoolOptions threads(unsigned count) {
  PoolOptions options;
  options.threads = count;
  return options;
}

int fib(ThreadPool& pool, int n, int depth_left) {
  if (n < 2 || depth_left == 0) return n < 2 ? n : fib(pool, n - 1, 0) + fib(pool, n - 2, 0);
  auto child = pool.submit([&pool, n, depth_left] { return fib(pool, n - 1, depth_left - 1); });
  const int other = fib(pool, n - 2, depth_left - 1);
  return child.get() + other;
}

}  // namespace

TEST_CASE("submit returns the task's result", "[thread_pool]") {
  ThreadPool pool(threads(2));
  CHECK(pool.size() == 2);
  auto sum = pool.submit([](int a, int b) { return a + b; }, 40, 2);
  CHECK(sum.get() == 42);

  auto text = pool.submit([](std::string s) { return s + " world"; }, std::string("hello"));
  CHECK(text.get() == "hello world");

  std::atomic<int> calls{0};
  Future<void> nothing = pool.submit([&] { calls.fetch_add(1); });
  nothing.get();
  CHECK(calls.load() == 1);
}

TEST_CASE("a default pool has hardware_concurrency workers", "[thread_pool]") {
  ThreadPool pool;
  CHECK(pool.size() == std::max(1u, std::thread::hardware_concurrency()));
}

TEST_CASE("arguments are copied or moved into the task; move-only works", "[thread_pool]") {
  ThreadPool pool(threads(2));
  auto owned = std::make_unique<int>(7);
  auto doubled = pool.submit([](std::unique_ptr<int> p) { return *p * 2; }, std::move(owned));
  CHECK(doubled.get() == 14);

  auto box = std::make_unique<int>(5);
  auto callable = [box = std::move(box)]() { return *box + 1; };  // move-only callable
  CHECK(pool.submit(std::move(callable)).get() == 6);

  auto result = pool.submit([] { return std::make_unique<std::string>("moved out"); });
  CHECK(*result.get() == "moved out");

  std::atomic<int> seen{0};
  auto payload = std::make_unique<int>(3);
  pool.detach([&seen](std::unique_ptr<int> p) { seen.store(*p); }, std::move(payload));
  pool.wait();
  CHECK(seen.load() == 3);

  int local = 1;
  auto copied = pool.submit([](int value) { return value; }, local);  // decay-copied
  local = 2;
  CHECK(copied.get() == 1);
}

TEST_CASE("exceptions reach the right place", "[thread_pool]") {
  SECTION("a submitted task's exception is rethrown by get") {
    ThreadPool pool(threads(2));
    auto failing = pool.submit([]() -> int { throw std::runtime_error("task failed"); });
    CHECK_THROWS_WITH(failing.get(), "task failed");
  }
  SECTION("a detached task's exception goes to on_unhandled_exception") {
    std::mutex mutex;
    std::vector<std::string> messages;
    PoolOptions options = threads(2);
    options.on_unhandled_exception = [&](std::exception_ptr error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        std::lock_guard lock(mutex);
        messages.emplace_back(e.what());
      }
    };
    {
      ThreadPool pool(options);
      for (int i = 0; i < 10; ++i) {
        pool.detach([i] {
          if (i % 2 == 0) throw std::runtime_error("detached " + std::to_string(i));
        });
      }
      pool.wait();
      const auto stats = pool.stats();
      CHECK(stats.failed == 5);
      CHECK(stats.completed == 5);
    }
    std::sort(messages.begin(), messages.end());
    CHECK(messages == std::vector<std::string>{"detached 0", "detached 2", "detached 4",
                                               "detached 6", "detached 8"});
  }
  SECTION("a continuation's exception fails its future, not the pool") {
    ThreadPool pool(threads(2));
    auto chained = pool.submit([] { return 1; }).then([](int) -> int {
      throw std::logic_error("continuation failed");
    });
    CHECK_THROWS_WITH(chained.get(), "continuation failed");
    CHECK(pool.submit([] { return 2; }).get() == 2);  // the pool still works
  }
}

TEST_CASE("then on a pool future runs after the task", "[thread_pool]") {
  ThreadPool pool(threads(2));
  auto result = pool.submit([] { return 20; }).then([](int x) { return x + 1; }).then([](int x) {
    return x * 2;
  });
  CHECK(result.get() == 42);
}

TEST_CASE("cancellation", "[thread_pool]") {
  SECTION("a task cancelled before it starts never runs") {
    ThreadPool pool(threads(1));
    Gate gate;
    std::atomic<bool> blocker_started{false};
    auto blocker = pool.submit([&] {
      blocker_started = true;
      gate.wait();
    });
    REQUIRE(eventually([&] { return blocker_started.load(); }));
    std::atomic<int> runs{0};
    auto victim = pool.submit([&] {
      runs.fetch_add(1);
      return 1;
    });
    CHECK(victim.request_stop());
    gate.open();
    blocker.get();
    CHECK_THROWS_AS(victim.get(), offload::TaskCancelled);
    pool.wait();
    CHECK(runs.load() == 0);
    const auto stats = pool.stats();
    CHECK(stats.cancelled == 1);
    CHECK(stats.completed == 1);
  }
  SECTION("a running task observes its stop_token") {
    ThreadPool pool(threads(2));
    std::atomic<bool> started{false};
    auto worker = pool.submit([&](std::stop_token token, int limit) {
      started = true;
      int rounds = 0;
      while (!token.stop_requested() && rounds < limit) {
        std::this_thread::sleep_for(1ms);
        ++rounds;
      }
      return token.stop_requested();
    }, 10000);
    REQUIRE(eventually([&] { return started.load(); }));
    CHECK(worker.request_stop());
    CHECK(worker.get() == true);  // it stopped because of the token, long before 10 s
  }
  SECTION("stop_token callback fires") {
    ThreadPool pool(threads(2));
    std::atomic<bool> started{false};
    auto task = pool.submit([&](std::stop_token token) {
      std::mutex m;
      std::condition_variable_any cv;
      started = true;
      std::unique_lock lock(m);
      return cv.wait_for(lock, token, 10s, [] { return false; }) ? 0 : (token.stop_requested() ? 1 : 2);
    });
    REQUIRE(eventually([&] { return started.load(); }));
    task.request_stop();
    CHECK(task.get() == 1);
  }
}

TEST_CASE("nested submit + get 10 deep on a 2-thread pool does not deadlock", "[thread_pool]") {
  ThreadPool pool(threads(2));
  std::function<int(int)> nest = [&](int depth) -> int {
    if (depth == 0) return 0;
    auto child = pool.submit(nest, depth - 1);
    return child.get() + 1;
  };
  auto top = pool.submit(nest, 10);
  REQUIRE(top.wait_for(30s) == FutureStatus::ready);
  CHECK(top.get() == 10);

  // A wider tree: every task spawns children and waits on them.
  auto tree = pool.submit([&] { return fib(pool, 20, 10); });
  REQUIRE(tree.wait_for(60s) == FutureStatus::ready);
  CHECK(tree.get() == 6765);
}

TEST_CASE("blocking calls from a worker of the same pool throw WouldDeadlock", "[thread_pool]") {
  ThreadPool pool(threads(2));
  auto from_worker = pool.submit([&] {
    try {
      pool.wait();
    } catch (const offload::WouldDeadlock&) {
      return 1;
    }
    return 0;
  });
  CHECK(from_worker.get() == 1);
  auto wait_for_from_worker = pool.submit([&] {
    try {
      (void)pool.wait_for(1ms);
    } catch (const offload::WouldDeadlock&) {
      return 1;
    }
    return 0;
  });
  CHECK(wait_for_from_worker.get() == 1);
  auto shutdown_from_worker = pool.submit([&] {
    try {
      pool.shutdown();
    } catch (const offload::WouldDeadlock&) {
      return 1;
    }
    return 0;
  });
  CHECK(shutdown_from_worker.get() == 1);

  // Another pool's worker may wait on this one.
  ThreadPool other(threads(1));
  pool.detach([] { std::this_thread::sleep_for(5ms); });
  auto cross = other.submit([&] {
    pool.wait();
    return 1;
  });
  CHECK(cross.get() == 1);
}

TEST_CASE("this_worker::index", "[thread_pool]") {
  CHECK_FALSE(offload::this_worker::index().has_value());
  ThreadPool pool(threads(3));
  std::set<unsigned> seen;
  for (int round = 0; round < 50; ++round) {
    auto index = pool.submit([] { return offload::this_worker::index(); }).get();
    REQUIRE(index.has_value());
    CHECK(*index < 3u);
    seen.insert(*index);
  }
  CHECK_FALSE(seen.empty());
}

TEST_CASE("bounded queue applies back-pressure", "[thread_pool]") {
  PoolOptions options = threads(1);
  options.max_queue = 2;
  ThreadPool pool(options);
  Gate gate;
  std::atomic<bool> started{false};
  auto blocker = pool.submit([&] {
    started = true;
    gate.wait();
  });
  REQUIRE(eventually([&] { return started.load(); }));  // the worker is busy, the queue empty

  std::atomic<int> ran{0};
  auto first = pool.try_submit([&] { ran.fetch_add(1); });
  auto second = pool.try_submit([&] { ran.fetch_add(1); });
  REQUIRE(first.has_value());
  REQUIRE(second.has_value());
  auto third = pool.try_submit([&] { ran.fetch_add(1); });
  CHECK_FALSE(third.has_value());  // full: empty, and the task was not queued

  std::atomic<bool> submit_returned{false};
  std::thread producer([&] {
    pool.submit([&] { ran.fetch_add(1); });  // blocks until a slot frees
    submit_returned = true;
  });
  std::this_thread::sleep_for(50ms);
  CHECK_FALSE(submit_returned.load());
  gate.open();
  producer.join();
  CHECK(submit_returned.load());
  pool.wait();
  CHECK(ran.load() == 3);
  CHECK(pool.stats().completed == 4);
}

TEST_CASE("a submit blocked on a full queue throws PoolClosed at shutdown", "[thread_pool]") {
  PoolOptions options = threads(1);
  options.max_queue = 1;
  ThreadPool pool(options);
  Gate gate;
  std::atomic<bool> started{false};
  pool.detach([&] {
    started = true;
    gate.wait();
  });
  REQUIRE(eventually([&] { return started.load(); }));
  pool.detach([] {});  // fills the queue
  std::atomic<int> outcome{0};
  std::thread producer([&] {
    try {
      pool.detach([] {});
      outcome = 1;
    } catch (const offload::PoolClosed&) {
      outcome = 2;
    }
  });
  std::this_thread::sleep_for(20ms);
  std::thread closer([&] { pool.shutdown(); });
  REQUIRE(eventually([&] { return outcome.load() != 0; }));
  gate.open();
  closer.join();
  producer.join();
  CHECK(outcome.load() == 2);
  CHECK(pool.stats().completed == 2);
}

TEST_CASE("shutdown and the destructor run every queued task", "[thread_pool]") {
  std::atomic<int> ran{0};
  SECTION("destructor") {
    {
      ThreadPool pool(threads(2));
      for (int i = 0; i < 1000; ++i) {
        pool.detach([&] {
          std::this_thread::sleep_for(10us);
          ran.fetch_add(1);
        });
      }
    }
    CHECK(ran.load() == 1000);
  }
  SECTION("shutdown, twice, then submit throws PoolClosed") {
    ThreadPool pool(threads(2));
    std::vector<Future<int>> futures;
    for (int i = 0; i < 500; ++i) {
      futures.push_back(pool.submit([&ran, i] {
        ran.fetch_add(1);
        return i;
      }));
    }
    pool.shutdown();
    CHECK(ran.load() == 500);
    pool.shutdown();  // idempotent
    for (int i = 0; i < 500; ++i) CHECK(futures[static_cast<std::size_t>(i)].get() == i);
    CHECK_THROWS_AS(pool.submit([] { return 1; }), offload::PoolClosed);
    CHECK_THROWS_AS(pool.detach([] {}), offload::PoolClosed);
    CHECK_THROWS_AS(pool.try_submit([] {}), offload::PoolClosed);
    CHECK_THROWS_AS(pool.parallel_for(0, 10, [](int) {}), offload::PoolClosed);
    const auto stats = pool.stats();
    CHECK(stats.submitted == 500);
    CHECK(stats.completed == 500);
  }
  SECTION("tasks running during shutdown may still spawn sub-tasks") {
    ThreadPool pool(threads(2));
    std::atomic<int> children{0};
    for (int i = 0; i < 20; ++i) {
      pool.detach([&] {
        std::this_thread::sleep_for(1ms);
        pool.detach([&] { children.fetch_add(1); });
      });
    }
    pool.shutdown();
    CHECK(children.load() == 20);
  }
}

TEST_CASE("1,000,000 tasks from 4 producer threads are counted exactly", "[thread_pool]") {
  ThreadPool pool(threads(2));
  constexpr int producers = 4;
  constexpr int per_producer = 250'000;
  std::atomic<std::int64_t> sum{0};
  std::atomic<int> count{0};
  std::vector<std::thread> threads_list;
  for (int p = 0; p < producers; ++p) {
    threads_list.emplace_back([&, p] {
      for (int i = 0; i < per_producer; ++i) {
        const std::int64_t value = std::int64_t{p} * per_producer + i;
        pool.detach([&sum, &count, value] {
          sum.fetch_add(value, std::memory_order_relaxed);
          count.fetch_add(1, std::memory_order_relaxed);
        });
      }
    });
  }
  for (auto& t : threads_list) t.join();
  pool.wait();
  constexpr std::int64_t total = std::int64_t{producers} * per_producer;
  CHECK(count.load() == total);
  CHECK(sum.load() == total * (total - 1) / 2);
  const auto stats = pool.stats();
  CHECK(stats.submitted == static_cast<std::uint64_t>(total));
  CHECK(stats.completed == static_cast<std::uint64_t>(total));
  CHECK(stats.queued == 0);
}

TEST_CASE("priorities are observable with one worker", "[thread_pool]") {
  offload::PriorityThreadPool pool(threads(1));
  Gate gate;
  std::atomic<bool> started{false};
  pool.detach(100, [&] {
    started = true;
    gate.wait();
  });
  REQUIRE(eventually([&] { return started.load(); }));
  std::mutex mutex;
  std::vector<std::string> order;
  auto record = [&](std::string name) {
    std::lock_guard lock(mutex);
    order.push_back(std::move(name));
  };
  pool.detach(1, record, "low-a");
  pool.detach(5, record, "high-a");
  pool.detach(1, record, "low-b");
  auto mid = pool.submit(3, [&] {
    record("mid");
    return 3;
  });
  pool.detach(5, record, "high-b");
  pool.detach(record, "default");  // priority 0
  pool.detach(-2, record, "negative");
  gate.open();
  CHECK(mid.get() == 3);
  pool.wait();
  CHECK(order == std::vector<std::string>{"high-a", "high-b", "mid", "low-a", "low-b", "default",
                                          "negative"});
}

TEST_CASE("stats agree with what ran", "[thread_pool]") {
  ThreadPool pool(threads(2));
  std::vector<Future<int>> futures;
  for (int i = 0; i < 300; ++i) {
    futures.push_back(pool.submit([i] {
      if (i % 3 == 0) throw std::runtime_error("every third");
      return i;
    }));
  }
  for (int i = 0; i < 100; ++i) pool.detach([] {});
  pool.wait();
  int failures = 0;
  for (auto& f : futures) {
    try {
      f.get();
    } catch (const std::runtime_error&) {
      ++failures;
    }
  }
  CHECK(failures == 100);
  const auto stats = pool.stats();
  CHECK(stats.submitted == 400);
  CHECK(stats.completed == 300);
  CHECK(stats.failed == 100);
  CHECK(stats.cancelled == 0);
  CHECK(stats.queued == 0);
  CHECK(stats.busy == 0);
  // About one in 16 submissions per thread is timed: 400 submissions give 25 samples.
  CHECK(stats.run_time.samples == 25);
  CHECK(stats.queue_wait.samples == 25);
  CHECK(stats.run_time.p50 <= stats.run_time.p90);
  CHECK(stats.run_time.p90 <= stats.run_time.p99);
  CHECK(stats.queue_wait.p50 <= stats.queue_wait.p99);
}

TEST_CASE("stats report busy workers and queued tasks", "[thread_pool]") {
  ThreadPool pool(threads(2));
  Gate gate;
  std::atomic<int> started{0};
  for (int i = 0; i < 2; ++i) {
    pool.detach([&] {
      started.fetch_add(1);
      gate.wait();
    });
  }
  REQUIRE(eventually([&] { return started.load() == 2; }));
  for (int i = 0; i < 5; ++i) pool.detach([] {});
  auto stats = pool.stats();
  CHECK(stats.busy == 2);
  CHECK(stats.queued == 5);
  CHECK(stats.submitted == 7);
  gate.open();
  pool.wait();
  stats = pool.stats();
  CHECK(stats.busy == 0);
  CHECK(stats.queued == 0);
  CHECK(stats.completed == 7);
}

TEST_CASE("thread hooks run once per worker thread", "[thread_pool]") {
  std::mutex mutex;
  std::multiset<unsigned> started, stopped;
  std::set<std::thread::id> start_threads;
  PoolOptions options = threads(3);
  options.on_thread_start = [&](unsigned index) {
    std::lock_guard lock(mutex);
    started.insert(index);
    start_threads.insert(std::this_thread::get_id());
  };
  options.on_thread_stop = [&](unsigned index) {
    std::lock_guard lock(mutex);
    stopped.insert(index);
  };
  {
    ThreadPool pool(options);
    for (int i = 0; i < 100; ++i) pool.detach([] {});
    pool.wait();
  }
  CHECK(started == std::multiset<unsigned>{0, 1, 2});
  CHECK(stopped == std::multiset<unsigned>{0, 1, 2});
  CHECK(start_threads.size() == 3);
  CHECK(start_threads.count(std::this_thread::get_id()) == 0);
}

TEST_CASE("a throwing hook is reported, not fatal", "[thread_pool]") {
  std::atomic<int> reported{0};
  PoolOptions options = threads(2);
  options.on_thread_start = [](unsigned) { throw std::runtime_error("hook"); };
  options.on_unhandled_exception = [&](std::exception_ptr) { reported.fetch_add(1); };
  {
    ThreadPool pool(options);
    CHECK(pool.submit([] { return 1; }).get() == 1);
  }
  CHECK(reported.load() == 2);
}

TEST_CASE("parallel_for covers each index exactly once", "[thread_pool]") {
  ThreadPool pool(threads(2));
  auto check_sizes = [&](std::size_t n, std::optional<std::size_t> grain) {
    std::vector<std::uint8_t> hits(n, 0);
    auto body = [&hits](std::size_t i) { ++hits[i]; };  // disjoint indices: no race
    Future<void> done = grain ? pool.parallel_for(std::size_t{0}, n, *grain, body)
                              : pool.parallel_for(std::size_t{0}, n, body);
    done.get();
    return std::all_of(hits.begin(), hits.end(), [](std::uint8_t h) { return h == 1; });
  };
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7919}, std::size_t{10'000'000}}) {
    INFO("n = " << n);
    CHECK(check_sizes(n, std::nullopt));
    CHECK(check_sizes(n, std::size_t{1000}));
    if (n < 100'000) CHECK(check_sizes(n, std::size_t{1}));
    CHECK(check_sizes(n, std::size_t{1} << 40));  // one chunk
  }
}

TEST_CASE("parallel_for with signed and offset ranges", "[thread_pool]") {
  ThreadPool pool(threads(2));
  std::atomic<std::int64_t> sum{0};
  pool.parallel_for(-50, 51, 7, [&](int i) { sum.fetch_add(i); }).get();
  CHECK(sum.load() == 0);
  std::atomic<int> count{0};
  pool.parallel_for(std::int8_t{-128}, std::int8_t{127}, [&](std::int8_t) { count.fetch_add(1); }).get();
  CHECK(count.load() == 255);
}

TEST_CASE("parallel_for errors", "[thread_pool]") {
  ThreadPool pool(threads(2));
  CHECK_THROWS_AS(pool.parallel_for(5, 4, [](int) {}), std::invalid_argument);
  CHECK_THROWS_AS(pool.parallel_for(0, 4, 0, [](int) {}), std::invalid_argument);

  std::atomic<int> visited{0};
  auto failing = pool.parallel_for(0, 100000, 100, [&](int i) {
    visited.fetch_add(1);
    if (i == 500) throw std::runtime_error("index 500");
  });
  CHECK_THROWS_WITH(failing.get(), "index 500");
  CHECK(visited.load() < 100000);  // chunks after the failure were skipped

  // Cancelled before the runners start: no index runs.
  ThreadPool single(threads(1));
  Gate gate;
  std::atomic<bool> started{false};
  single.detach([&] {
    started = true;
    gate.wait();
  });
  REQUIRE(eventually([&] { return started.load(); }));
  std::atomic<int> runs{0};
  auto cancelled = single.parallel_for(0, 1000, [&](int) { runs.fetch_add(1); });
  CHECK(cancelled.request_stop());
  gate.open();
  CHECK_THROWS_AS(cancelled.get(), offload::TaskCancelled);
  CHECK(runs.load() == 0);
}

TEST_CASE("parallel_for nested inside a task", "[thread_pool]") {
  ThreadPool pool(threads(2));
  auto outer = pool.submit([&] {
    std::atomic<int> count{0};
    pool.parallel_for(0, 1000, 10, [&](int) { count.fetch_add(1); }).get();
    return count.load();
  });
  CHECK(outer.get() == 1000);
}

TEST_CASE("wait and wait_for", "[thread_pool]") {
  ThreadPool pool(threads(2));
  pool.wait();  // an idle pool returns at once
  CHECK(pool.wait_for(0ms));
  Gate gate;
  pool.detach([&] { gate.wait(); });
  CHECK_FALSE(pool.wait_for(20ms));
  gate.open();
  CHECK(pool.wait_for(10s));

  std::atomic<int> done{0};
  for (int i = 0; i < 100; ++i) {
    pool.detach([&] {
      std::this_thread::sleep_for(100us);
      done.fetch_add(1);
    });
  }
  pool.wait();
  CHECK(done.load() == 100);
}

TEST_CASE("work submitted while a worker spins still reaches a sleeping peer", "[thread_pool]") {
  // Regression: submitters do not wake anyone while a worker spins; when that spinner then
  // takes one task, it must wake a peer for the next, or two blocking tasks never run at once.
  int stuck_rounds = 0;
  for (int round = 0; round < 1000; ++round) {
    std::atomic<int> started{0};
    std::atomic<bool> release{false};  // declared before the pool: outlives its tasks
    ThreadPool pool(threads(2));
    // Sweep the submission time across the end of the workers' start-up spin.
    std::this_thread::sleep_for(std::chrono::microseconds(round % 250));
    for (int i = 0; i < 2; ++i) {
      pool.detach([&] {
        started.fetch_add(1);
        while (!release.load()) std::this_thread::sleep_for(50us);
      });
    }
    if (!eventually([&] { return started.load() == 2; }, 5s)) ++stuck_rounds;
    release = true;
  }
  CHECK(stuck_rounds == 0);
}

TEST_CASE("an idle pool wakes for new work", "[thread_pool]") {
  ThreadPool pool(threads(2));
  for (int round = 0; round < 5; ++round) {
    std::this_thread::sleep_for(20ms);  // long enough for every worker to park
    CHECK(pool.submit([round] { return round; }).get() == round);
  }
}

TEST_CASE("futures are waited on from many threads while the pool runs", "[thread_pool]") {
  ThreadPool pool(threads(2));
  std::vector<std::thread> waiters;
  std::atomic<int> total{0};
  for (int t = 0; t < 4; ++t) {
    waiters.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) total.fetch_add(pool.submit([t, i] { return t + i; }).get());
    });
  }
  for (auto& w : waiters) w.join();
  int expected = 0;
  for (int t = 0; t < 4; ++t) {
    for (int i = 0; i < 500; ++i) expected += t + i;
  }
  CHECK(total.load() == expected);
}

TEST_CASE("when_all over pool futures", "[thread_pool]") {
  ThreadPool pool(threads(2));
  std::vector<Future<int>> futures;
  for (int i = 0; i < 100; ++i) futures.push_back(pool.submit([i] { return i; }));
  const auto values = offload::when_all(std::move(futures)).get();
  std::vector<int> expected(100);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(values == expected);
}

#include <offload/event_loop.hpp>
#include <offload/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <exception>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"

#if defined(__linux__)
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>
#endif

using namespace std::chrono_literals;
using offload::EventLoop;
using offload::TimerId;

namespace {

/// Stops the loop if a test has not finished after `limit`, so a lost wake-up or a loop that
/// never runs dry fails the test (`fired()`) instead of hanging it.
class Watchdog {
 public:
  explicit Watchdog(EventLoop& loop, std::chrono::milliseconds limit = 20s)
      : thread_([this, &loop, limit] {
          std::unique_lock lock(mutex_);
          if (!done_cv_.wait_for(lock, limit, [this] { return done_; })) {
            fired_ = true;
            loop.stop();
          }
        }) {}
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog() { dismiss(); }

  /// Ends the watch; true when the watchdog had to stop the loop.
  bool dismiss() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    done_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    return fired_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  bool fired_ = false;  // written by the watchdog thread before join(), read after it
  std::thread thread_;
};

/// Counts how often instances of it were destroyed and called (a callable for the loop).
struct CountingCallback {
  std::shared_ptr<std::atomic<int>> destroyed;
  std::shared_ptr<std::atomic<int>> called;
  bool armed = true;  // false once moved from, so only the last owner counts its destruction

  CountingCallback(std::shared_ptr<std::atomic<int>> d, std::shared_ptr<std::atomic<int>> c)
      : destroyed(std::move(d)), called(std::move(c)) {}
  CountingCallback(CountingCallback&& other) noexcept
      : destroyed(other.destroyed), called(other.called), armed(std::exchange(other.armed, false)) {}
  CountingCallback& operator=(CountingCallback&&) = delete;
  ~CountingCallback() {
    if (armed) ++*destroyed;
  }
  void operator()() const { ++*called; }
};

}  // namespace

TEST_CASE("run() returns at once when nothing is pending", "[event_loop]") {
  EventLoop loop;
  loop.run();
  loop.run();  // and again: an idle loop is reusable
  SUCCEED("run() returned");
}

TEST_CASE("posted callbacks run in FIFO order on the thread calling run()", "[event_loop]") {
  EventLoop loop;
  std::vector<int> order;
  std::vector<std::thread::id> threads;
  for (int i = 0; i < 5; ++i) {
    loop.post([&, i] {
      order.push_back(i);
      threads.push_back(std::this_thread::get_id());
    });
  }
  CHECK_FALSE(loop.is_loop_thread());
  loop.run();
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
  for (const auto& id : threads) CHECK(id == std::this_thread::get_id());
}

TEST_CASE("callbacks may be move-only and their results are discarded", "[event_loop]") {
  EventLoop loop;
  int seen = 0;
  auto value = std::make_unique<int>(42);
  loop.post([&seen, value = std::move(value)]() mutable {
    seen = *value;
    return std::move(value);  // a result, ignored by the loop
  });
  loop.run();
  CHECK(seen == 42);
}

TEST_CASE("timers fire in deadline order, equal delays in the order set", "[event_loop]") {
  EventLoop loop;
  std::vector<std::string> order;
  loop.set_timeout(30ms, [&] { order.emplace_back("30ms"); });
  loop.set_timeout(10ms, [&] { order.emplace_back("10ms-a"); });
  loop.set_timeout(20ms, [&] { order.emplace_back("20ms"); });
  loop.set_timeout(10ms, [&] { order.emplace_back("10ms-b"); });
  loop.set_timeout(0ms, [&] { order.emplace_back("0ms"); });
  loop.set_timeout(-5ms, [&] { order.emplace_back("negative"); });  // counts as zero
  loop.set_timeout(10ms, [&] { order.emplace_back("10ms-c"); });
  loop.run();
  CHECK(order == std::vector<std::string>{"0ms", "negative", "10ms-a", "10ms-b", "10ms-c",
                                          "20ms", "30ms"});
}

TEST_CASE("a timer never fires before its delay", "[event_loop]") {
  EventLoop loop;
  const auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration fired_after{};
  loop.set_timeout(40ms, [&] { fired_after = std::chrono::steady_clock::now() - start; });
  loop.run();
  CHECK(fired_after >= 40ms);
}

TEST_CASE("an idle loop sleeps instead of polling", "[event_loop]") {
  // Waiting 300 ms for a timer must cost next to no CPU time; a polling loop would burn all
  // of it. (No other thread of this program runs meanwhile, so process CPU time is the loop's.)
  EventLoop loop;
  bool fired = false;
  loop.set_timeout(300ms, [&] { fired = true; });
  const std::clock_t cpu_before = std::clock();
  loop.run();
  const double cpu_seconds = double(std::clock() - cpu_before) / CLOCKS_PER_SEC;
  CHECK(fired);
  CHECK(cpu_seconds < 0.1);
}

TEST_CASE("TimerQueue breaks deadline ties by insertion order and skips cancelled timers",
          "[event_loop][detail]") {
  using offload::detail::LoopClock;
  offload::detail::TimerQueue timers;
  std::vector<int> fired;
  const auto deadline = LoopClock::now();
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 200; ++i) {
    // Three distinct deadlines, many exact ties within each.
    const auto when = deadline + std::chrono::microseconds(i % 3);
    auto task = offload::detail::make_loop_task([&fired, i] { fired.push_back(i); });
    ids.push_back(timers.add(when, LoopClock::duration::zero(), false, task));
    CHECK(task == nullptr);  // taken over
  }
  for (std::size_t i = 0; i < ids.size(); i += 2) CHECK(timers.cancel(ids[i]).found);
  CHECK_FALSE(timers.cancel(ids[0]).found);  // twice: unknown now
  CHECK_FALSE(timers.cancel(0).found);       // never issued

  const auto mark = timers.sequence_mark();
  while (auto due = timers.pop_due(deadline + 1s, mark)) {
    due->task->run();
    CHECK(timers.finish(std::move(*due), deadline) != nullptr);  // one-shot: handed back
  }
  CHECK(timers.empty());
  std::vector<int> expected;
  for (int remainder = 0; remainder < 3; ++remainder) {
    for (int i = 1; i < 200; i += 2) {
      if (i % 3 == remainder) expected.push_back(i);
    }
  }
  CHECK(fired == expected);
}

TEST_CASE("TimerQueue re-arms an interval on its rhythm, for the next tick only",
          "[event_loop][detail]") {
  using offload::detail::LoopClock;
  offload::detail::TimerQueue timers;
  const auto start = LoopClock::now();
  auto ticking_task = offload::detail::make_loop_task([] {});
  const auto every_10ms = timers.add(start, 10ms, true, ticking_task);
  auto zero_task = offload::detail::make_loop_task([] {});
  const auto zero_period = timers.add(start + 1h, 0ms, true, zero_task);

  // On time: the next deadline keeps the rhythm, whenever within the period the run ended.
  auto due = timers.pop_due(start, timers.sequence_mark());
  REQUIRE(due);
  CHECK(due->id == every_10ms);
  CHECK(timers.finish(std::move(*due), start + 3ms) == nullptr);  // re-armed, task kept
  CHECK(timers.next_deadline() == start + 10ms);

  // Late (a starved loop): one call, then a period from now; no burst of catch-up calls.
  due = timers.pop_due(start + 25ms, timers.sequence_mark());
  REQUIRE(due);
  CHECK(timers.finish(std::move(*due), start + 25ms) == nullptr);
  CHECK(timers.next_deadline() == start + 35ms);
  CHECK_FALSE(timers.pop_due(start + 25ms, timers.sequence_mark()));

  // A zero period re-armed during a tick is due again at once, but not in the same tick, even
  // when the clock has not moved: the tick's sequence mark excludes it.
  CHECK(timers.cancel(every_10ms).found);
  const auto far = start + 2h;
  const auto tick_mark = timers.sequence_mark();
  due = timers.pop_due(far, tick_mark);
  REQUIRE(due);
  CHECK(due->id == zero_period);
  CHECK(timers.finish(std::move(*due), far) == nullptr);
  CHECK_FALSE(timers.pop_due(far, tick_mark));           // this tick: no
  CHECK(timers.pop_due(far, timers.sequence_mark()));    // next tick: yes
  CHECK_FALSE(timers.empty());                           // still live (it is running now)
}

TEST_CASE("clear() cancels timers, also from inside callbacks", "[event_loop]") {
  EventLoop loop;
  Watchdog watchdog(loop);

  SECTION("a cleared timer never fires; clearing twice or an unknown id returns false") {
    bool fired = false;
    const TimerId id = loop.set_timeout(0ms, [&] { fired = true; });
    CHECK(loop.clear(id));
    CHECK_FALSE(loop.clear(id));
    CHECK_FALSE(loop.clear(TimerId{}));
    loop.run();
    CHECK_FALSE(fired);
  }

  SECTION("a callback clears a timer due in the same tick") {
    std::vector<std::string> order;
    TimerId second{};
    loop.set_timeout(0ms, [&] {
      order.emplace_back("first");
      CHECK(loop.clear(second));
    });
    second = loop.set_timeout(0ms, [&] { order.emplace_back("second"); });
    loop.set_timeout(0ms, [&] { order.emplace_back("third"); });
    loop.run();
    CHECK(order == std::vector<std::string>{"first", "third"});
  }

  SECTION("an interval clears itself and run() then returns") {
    int calls = 0;
    TimerId id{};
    id = loop.set_interval(1ms, [&] {
      if (++calls == 3) CHECK(loop.clear(id));
    });
    loop.run();  // returns only because the interval is gone
    CHECK(calls == 3);
    CHECK_FALSE(loop.clear(id));
  }

  SECTION("a one-shot timer clearing itself gets false: it has already fired") {
    TimerId id{};
    bool cleared = true;
    id = loop.set_timeout(0ms, [&] { cleared = loop.clear(id); });
    loop.run();
    CHECK_FALSE(cleared);
  }

  SECTION("many long timers set and cleared leave nothing pending") {
    std::vector<TimerId> ids;
    for (int i = 0; i < 1000; ++i) ids.push_back(loop.set_timeout(1h, [] {}));
    int fired = 0;
    loop.set_timeout(1ms, [&] { ++fired; });
    for (const TimerId id : ids) CHECK(loop.clear(id));
    loop.run();
    CHECK(fired == 1);
  }
  CHECK_FALSE(watchdog.dismiss());
}

TEST_CASE("an interval re-armed during a tick waits for the next tick", "[event_loop]") {
  EventLoop loop;
  Watchdog watchdog(loop);
  int calls = 0;
  int posted_runs = 0;
  int repeats_within_a_tick = 0;
  TimerId id{};
  // A zero period: due again at once, yet it must fire once per tick (the post made by the
  // previous call runs in between), not spin inside one tick.
  id = loop.set_interval(0ms, [&] {
    if (posted_runs != calls) ++repeats_within_a_tick;
    ++calls;
    loop.post([&] { ++posted_runs; });
    if (calls == 5) loop.clear(id);
  });
  loop.run();
  CHECK_FALSE(watchdog.dismiss());
  CHECK(calls == 5);
  CHECK(posted_runs == 5);
  CHECK(repeats_within_a_tick == 0);
}

TEST_CASE("immediates run after the tick's work; chained immediates yield to timers",
          "[event_loop]") {
  EventLoop loop;
  std::vector<std::string> order;

  SECTION("queued from a posted callback: the same tick, before a zero timeout") {
    loop.post([&] {
      order.emplace_back("post");
      loop.set_timeout(0ms, [&] { order.emplace_back("timeout"); });
      loop.set_immediate([&] { order.emplace_back("immediate"); });
    });
    loop.run();
    CHECK(order == std::vector<std::string>{"post", "immediate", "timeout"});
  }

  SECTION("queued from an immediate: the next tick, after its timers and posts") {
    loop.set_immediate([&] {
      order.emplace_back("immediate-1");
      loop.set_timeout(0ms, [&] { order.emplace_back("timeout"); });
      loop.post([&] { order.emplace_back("post"); });
      loop.set_immediate([&] { order.emplace_back("immediate-2"); });
    });
    loop.run();
    CHECK(order == std::vector<std::string>{"immediate-1", "timeout", "post", "immediate-2"});
  }
}

TEST_CASE("posts from many threads while the loop runs: every one runs exactly once, in "
          "each thread's order",
          "[event_loop]") {
  EventLoop loop;
  constexpr int producers = 4;
  constexpr int per_producer = 20000;
  std::vector<int> next_expected(producers, 0);  // touched only on the loop thread
  int out_of_order = 0;
  int total = 0;

  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    // Each producer holds the loop until it has posted everything, so run() cannot run dry
    // between two posts.
    threads.emplace_back([&, p, hold = loop.hold()]() mutable {
      for (int i = 0; i < per_producer; ++i) {
        loop.post([&, p, i] {
          if (next_expected[static_cast<std::size_t>(p)] != i) ++out_of_order;
          next_expected[static_cast<std::size_t>(p)] = i + 1;
          ++total;
        });
      }
      if (p % 2 == 0) hold.reset();  // half release explicitly, half by destruction
    });
  }
  Watchdog watchdog(loop);
  loop.run();
  CHECK_FALSE(watchdog.dismiss());
  for (auto& thread : threads) thread.join();
  CHECK(total == producers * per_producer);
  CHECK(out_of_order == 0);
  for (const int next : next_expected) CHECK(next == per_producer);
}

TEST_CASE("run() does not return before an outstanding Hold is released", "[event_loop]") {
  EventLoop loop;
  Watchdog watchdog(loop);

  SECTION("released by destruction on another thread") {
    std::atomic<bool> released{false};
    std::thread worker([&released, hold = loop.hold()]() mutable {
      std::this_thread::sleep_for(50ms);
      released.store(true, std::memory_order_release);
      hold = EventLoop::Hold{};  // releases
    });
    loop.run();
    const bool was_released = released.load(std::memory_order_acquire);
    worker.join();
    CHECK(was_released);
  }

  SECTION("released by posting the work that comes back to the loop") {
    std::thread::id ran_on{};
    bool ran_in_loop = false;
    std::thread worker([&, hold = loop.hold()]() mutable {
      std::this_thread::sleep_for(50ms);
      std::move(hold).post([&] {
        ran_on = std::this_thread::get_id();
        ran_in_loop = loop.is_loop_thread();
      });
    });
    loop.run();
    worker.join();
    CHECK(ran_on == std::this_thread::get_id());
    CHECK(ran_in_loop);
  }

  SECTION("a hold taken and released by callbacks") {
    int steps = 0;
    loop.post([&] {
      ++steps;
      auto hold = std::make_shared<EventLoop::Hold>(loop.hold());
      loop.set_timeout(20ms, [&steps, hold] {
        ++steps;
        std::move(*hold).post([&steps] { ++steps; });
      });
    });
    loop.run();
    CHECK(steps == 3);
  }
  CHECK_FALSE(watchdog.dismiss());
}

TEST_CASE("Hold is movable, and misuse is reported", "[event_loop]") {
  EventLoop loop;
  EventLoop::Hold first = loop.hold();
  CHECK(first.active());
  EventLoop::Hold second = std::move(first);
  CHECK_FALSE(first.active());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  CHECK(second.active());
  CHECK_THROWS_AS(std::move(first).post([] {}), std::logic_error);
  second = loop.hold();  // move-assigning releases the hold it replaces
  bool ran = false;
  std::move(second).post([&] { ran = true; });
  CHECK_FALSE(second.active());
  loop.run();  // nothing held any more: returns after running the callback
  CHECK(ran);
}

TEST_CASE("a Hold that outlives its loop drops its callback", "[event_loop]") {
  auto destroyed = std::make_shared<std::atomic<int>>(0);
  auto called = std::make_shared<std::atomic<int>>(0);
  EventLoop::Hold orphan;
  {
    EventLoop loop;
    orphan = loop.hold();
  }
  std::move(orphan).post(CountingCallback{destroyed, called});
  CHECK(destroyed->load() == 1);
  CHECK(called->load() == 0);
}

TEST_CASE("destroying a loop destroys what is queued, without running it", "[event_loop]") {
  auto destroyed = std::make_shared<std::atomic<int>>(0);
  auto called = std::make_shared<std::atomic<int>>(0);
  {
    EventLoop loop;
    loop.post(CountingCallback{destroyed, called});
    loop.set_immediate(CountingCallback{destroyed, called});
    loop.set_timeout(1h, CountingCallback{destroyed, called});
    loop.set_interval(1h, CountingCallback{destroyed, called});
    const TimerId cleared = loop.set_timeout(1h, CountingCallback{destroyed, called});
    CHECK(loop.clear(cleared));
    CHECK(destroyed->load() == 1);  // clear() destroys its callback at once
  }
  CHECK(destroyed->load() == 5);
  CHECK(called->load() == 0);
}

TEST_CASE("stop() ends run(); what is pending stays for the next run()", "[event_loop]") {
  EventLoop loop;

  SECTION("from another thread, while an interval keeps the loop busy forever") {
    std::atomic<int> ticks{0};
    const TimerId interval = loop.set_interval(1ms, [&] { ticks.fetch_add(1); });
    std::thread stopper([&] {
      while (ticks.load() < 3) std::this_thread::sleep_for(1ms);
      loop.stop();
    });
    Watchdog watchdog(loop);
    loop.run();
    stopper.join();
    CHECK_FALSE(watchdog.dismiss());
    CHECK(ticks.load() >= 3);
    CHECK(loop.clear(interval));  // still live after the stop
  }

  SECTION("from another thread, waking a loop asleep on a hold") {
    auto hold = loop.hold();
    std::thread stopper([&] {
      std::this_thread::sleep_for(30ms);
      loop.stop();
    });
    Watchdog watchdog(loop);
    loop.run();
    stopper.join();
    CHECK_FALSE(watchdog.dismiss());
  }

  SECTION("from a callback: later callbacks of the same tick wait for the next run()") {
    std::vector<int> order;
    loop.post([&] {
      order.push_back(1);
      loop.stop();
    });
    loop.post([&] { order.push_back(2); });
    loop.set_immediate([&] { order.push_back(3); });
    loop.run();
    CHECK(order == std::vector<int>{1});
    loop.run();
    CHECK(order == std::vector<int>{1, 2, 3});
  }

  SECTION("before run(): the next run() returns at once, and only that one") {
    bool ran = false;
    loop.post([&] { ran = true; });
    loop.stop();
    loop.run();
    CHECK_FALSE(ran);
    loop.run();
    CHECK(ran);
  }
}

TEST_CASE("a throwing callback makes run() rethrow; a later run() carries on", "[event_loop]") {
  EventLoop loop;
  Watchdog watchdog(loop);
  std::vector<std::string> order;

  SECTION("posted") {
    loop.post([&] { order.emplace_back("a"); });
    loop.post([] { throw std::runtime_error("boom"); });
    loop.post([&] { order.emplace_back("b"); });
    loop.set_immediate([&] { order.emplace_back("immediate"); });
    CHECK_THROWS_WITH(loop.run(), "boom");
    CHECK(order == std::vector<std::string>{"a"});
    loop.run();
    CHECK(order == std::vector<std::string>{"a", "b", "immediate"});
  }

  SECTION("immediate") {
    loop.set_immediate([] { throw std::runtime_error("boom"); });
    loop.set_immediate([&] { order.emplace_back("after"); });
    CHECK_THROWS_WITH(loop.run(), "boom");
    CHECK(order.empty());
    loop.run();
    CHECK(order == std::vector<std::string>{"after"});
  }

  SECTION("timeout, with another timer due in the same tick") {
    loop.set_timeout(0ms, [] { throw std::runtime_error("boom"); });
    loop.set_timeout(0ms, [&] { order.emplace_back("second timer"); });
    CHECK_THROWS_WITH(loop.run(), "boom");
    CHECK(order.empty());
    loop.run();
    CHECK(order == std::vector<std::string>{"second timer"});
  }

  SECTION("an interval that throws stays armed") {
    int calls = 0;
    TimerId id{};
    id = loop.set_interval(1ms, [&] {
      if (++calls == 1) throw std::runtime_error("boom");
      loop.clear(id);
    });
    CHECK_THROWS_WITH(loop.run(), "boom");
    CHECK(calls == 1);
    loop.run();
    CHECK(calls == 2);
  }
  CHECK_FALSE(watchdog.dismiss());
}

TEST_CASE("run() while the loop already runs is a logic_error", "[event_loop]") {
  EventLoop loop;

  SECTION("recursively, from a callback") {
    bool threw = false;
    bool after = false;
    loop.post([&] {
      try {
        loop.run();
      } catch (const std::logic_error&) {
        threw = true;
      }
    });
    loop.post([&] { after = true; });
    loop.run();
    CHECK(threw);
    CHECK(after);  // the outer run() carried on
  }

  SECTION("from a second thread") {
    std::exception_ptr second_error;
    std::atomic<bool> second_done{false};
    auto hold = std::make_shared<EventLoop::Hold>(loop.hold());
    loop.post([&] {
      std::thread second([&] {
        try {
          loop.run();
        } catch (...) {
          second_error = std::current_exception();
        }
        second_done.store(true);
      });
      second.join();
      hold->reset();
    });
    Watchdog watchdog(loop);
    loop.run();
    CHECK_FALSE(watchdog.dismiss());
    CHECK(second_done.load());
    REQUIRE(second_error != nullptr);
    CHECK_THROWS_AS(std::rethrow_exception(second_error), std::logic_error);
  }
}

namespace {

/// The loop sleeps on a far-away timer; posts, immediates and new earlier timers from another
/// thread must each wake it (a lost wake-up would leave it asleep until the watchdog).
void check_wakes_for_work_from_another_thread(EventLoop& loop) {
  const TimerId far = loop.set_timeout(1h, [] {});
  std::atomic<int> step{0};
  std::thread other([&] {
    std::this_thread::sleep_for(20ms);
    loop.post([&] { step.store(1); });
    while (step.load() != 1) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(20ms);
    loop.set_immediate([&] { step.store(2); });
    while (step.load() != 2) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(20ms);
    loop.set_timeout(1ms, [&] { step.store(3); });
    while (step.load() != 3) std::this_thread::sleep_for(1ms);
    loop.clear(far);
  });
  Watchdog watchdog(loop);
  loop.run();
  other.join();
  CHECK_FALSE(watchdog.dismiss());
  CHECK(step.load() == 3);
}

#if defined(__linux__)
/// Lowers the soft limit on open files to 0 for its lifetime: every new descriptor fails.
class NoFileDescriptors {
 public:
  NoFileDescriptors() {
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
    rlimit none = saved_;
    none.rlim_cur = 0;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &none) == 0);
  }
  NoFileDescriptors(const NoFileDescriptors&) = delete;
  NoFileDescriptors& operator=(const NoFileDescriptors&) = delete;
  ~NoFileDescriptors() { ::setrlimit(RLIMIT_NOFILE, &saved_); }

 private:
  rlimit saved_{};
};
#endif

}  // namespace

TEST_CASE("an idle loop wakes at once for work from another thread", "[event_loop]") {
  EventLoop loop;
  check_wakes_for_work_from_another_thread(loop);
}

#if defined(__linux__)
TEST_CASE("a loop made when no file descriptor is left sleeps, wakes and keeps its timers",
          "[event_loop]") {
  // On Linux a loop sleeping toward a deadline waits on a timerfd and an eventfd; a loop that
  // could not open them must fall back to its futex, not fail or sleep past its deadline.
  std::optional<EventLoop> loop;
  bool descriptors_refused = false;
  {
    NoFileDescriptors none;
    const int probe = ::eventfd(0, EFD_CLOEXEC);
    descriptors_refused = probe < 0;
    if (probe >= 0) ::close(probe);
    loop.emplace();
  }
  REQUIRE(descriptors_refused);
  check_wakes_for_work_from_another_thread(*loop);

  const auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration fired_after{};
  loop->set_timeout(30ms, [&] { fired_after = std::chrono::steady_clock::now() - start; });
  Watchdog watchdog(*loop);
  loop->run();
  CHECK_FALSE(watchdog.dismiss());
  CHECK(fired_after >= 30ms);
}
#endif

TEST_CASE("a timer cleared while the loop sleeps toward it leaves later timers on time",
          "[event_loop]") {
  // The loop sleeps toward the first timer's deadline; another thread clears that timer. Its
  // deadline may still wake the loop once, but nothing may fire then, and the later timer
  // fires at its own deadline, not before and not never.
  EventLoop loop;
  const auto start = std::chrono::steady_clock::now();
  std::atomic<bool> first_fired{false};
  std::chrono::steady_clock::duration second_after{};
  const TimerId first = loop.set_timeout(40ms, [&] { first_fired.store(true); });
  loop.set_timeout(80ms, [&] { second_after = std::chrono::steady_clock::now() - start; });
  std::thread other([&] {
    std::this_thread::sleep_for(10ms);
    loop.clear(first);
  });
  Watchdog watchdog(loop);
  loop.run();
  other.join();
  CHECK_FALSE(watchdog.dismiss());
  CHECK_FALSE(first_fired.load());
  CHECK(second_after >= 80ms);
}

TEST_CASE("for_each_chunked visits every element once, in order, yielding between chunks",
          "[event_loop][for_each_chunked]") {
  EventLoop loop;
  std::vector<int> items(1000);
  std::iota(items.begin(), items.end(), 0);
  constexpr std::size_t chunk = 7;
  std::vector<int> visited;
  std::size_t visited_when_early_timer_fired = 0;
  std::size_t visited_when_inner_timer_fired = 0;
  int chunk_starts_seen_by_posts = 0;

  // Set before the walk: it must get its turn before the walk ends.
  loop.set_timeout(0ms, [&] { visited_when_early_timer_fired = visited.size(); });
  auto done = offload::for_each_chunked(loop, items, chunk, [&](int& item) {
    visited.push_back(item);
    item *= 2;  // elements are passed by reference
    if (visited.size() == 1) {
      // Due at once, yet it can only run once this chunk has yielded.
      loop.set_timeout(0ms, [&] { visited_when_inner_timer_fired = visited.size(); });
    }
    if (visited.size() % chunk == 1) {
      // Posted at the start of a chunk: it runs between this chunk and the next one.
      loop.post([&, at = visited.size()] {
        if (visited.size() == at + chunk - 1 || visited.size() == items.size()) {
          ++chunk_starts_seen_by_posts;
        }
      });
    }
  });
  CHECK_FALSE(done.ready());  // nothing runs before run()
  loop.run();
  REQUIRE(done.ready());
  CHECK_NOTHROW(done.get());

  std::vector<int> expected(1000);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(visited == expected);
  for (std::size_t i = 0; i < items.size(); ++i) CHECK(items[i] == 2 * static_cast<int>(i));
  CHECK(visited_when_early_timer_fired < items.size());
  CHECK(visited_when_inner_timer_fired == chunk);  // after the first chunk, before the second
  CHECK(chunk_starts_seen_by_posts == static_cast<int>((items.size() + chunk - 1) / chunk));
}

TEST_CASE("for_each_chunked works on const and empty ranges", "[event_loop][for_each_chunked]") {
  EventLoop loop;
  const std::vector<int> items{3, 1, 4, 1, 5};
  int sum = 0;
  auto whole = offload::for_each_chunked(loop, items, 100, [&](const int& item) { sum += item; });
  std::vector<int> none;
  int calls = 0;
  auto empty = offload::for_each_chunked(loop, none, 1, [&](int) { ++calls; });
  loop.run();
  CHECK_NOTHROW(whole.get());
  CHECK_NOTHROW(empty.get());
  CHECK(sum == 14);
  CHECK(calls == 0);
}

TEST_CASE("for_each_chunked: an exception in a chunk fails the future and stops the walk",
          "[event_loop][for_each_chunked]") {
  EventLoop loop;
  std::vector<int> items(100);
  std::iota(items.begin(), items.end(), 0);
  std::vector<int> visited;
  bool other_work_ran = false;
  auto done = offload::for_each_chunked(loop, items, 10, [&](int item) {
    visited.push_back(item);
    if (item == 15) throw std::runtime_error("bad item");
  });
  loop.set_timeout(5ms, [&] { other_work_ran = true; });
  CHECK_NOTHROW(loop.run());  // the exception goes to the future, not to run()
  REQUIRE(done.ready());
  CHECK_THROWS_WITH(done.get(), "bad item");
  std::vector<int> expected(16);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(visited == expected);
  CHECK(other_work_ran);
}

TEST_CASE("for_each_chunked: request_stop() ends the walk between chunks",
          "[event_loop][for_each_chunked]") {
  EventLoop loop;
  std::vector<int> items(100);
  int visited = 0;
  offload::Future<void> done;
  done = offload::for_each_chunked(loop, items, 10, [&](int) {
    if (++visited == 25) done.request_stop();
  });
  loop.run();
  CHECK(visited == 30);  // the chunk in progress finishes
  REQUIRE(done.ready());
  CHECK_THROWS_AS(done.get(), offload::TaskCancelled);
}

TEST_CASE("for_each_chunked with a chunk of 0 is an error", "[event_loop][for_each_chunked]") {
  EventLoop loop;
  std::vector<int> items{1, 2, 3};
  CHECK_THROWS_AS(offload::for_each_chunked(loop, items, 0, [](int) {}), std::invalid_argument);
  loop.run();  // nothing was queued
}

namespace {

/// A continuation whose move constructor throws on the `throw_on`-th move after it is armed.
struct ThrowsOnMove {
  int* moves_left;  // counts down on each move while positive; the move that reaches 0 throws
  explicit ThrowsOnMove(int* moves) : moves_left(moves) {}
  ThrowsOnMove(const ThrowsOnMove&) = delete;
  ThrowsOnMove(ThrowsOnMove&& other) : moves_left(other.moves_left) {
    if (*moves_left > 0 && --*moves_left == 0) throw std::runtime_error("move failed");
  }
  ThrowsOnMove& operator=(ThrowsOnMove&&) = delete;
  int operator()(int value) const { return value + 1; }
};

}  // namespace

TEST_CASE("a continuation whose move throws while it is posted fails its future, never loses it",
          "[event_loop][then]") {
  // Each move made once the task completed (building the posted continuation, queueing it on
  // the loop) in turn: the future carries the move's exception; past the last, f runs.
  bool ran = false;
  int rounds_thrown = 0;
  for (int throw_on = 1; !ran && throw_on <= 10; ++throw_on) {
    INFO("the move that throws: " << throw_on);
    EventLoop loop;
    offload::Promise<int> promise;
    int moves_left = 0;  // disarmed while then() takes f
    auto result = promise.get_future().then(loop, ThrowsOnMove(&moves_left));
    moves_left = throw_on;
    promise.set_value(1);  // the continuation is posted from here
    loop.run();
    REQUIRE(result.wait_for(std::chrono::seconds(5)) == offload::FutureStatus::ready);
    if (moves_left == 0) {
      CHECK_THROWS_WITH(result.get(), "move failed");
      ++rounds_thrown;
    } else {
      CHECK(result.get() == 2);
      ran = true;
    }
  }
  CHECK(ran);
  CHECK(rounds_thrown >= 1);  // some move after completion did throw
}

TEST_CASE("Future::then(loop, f) runs f on the loop thread; run() waits for it",
          "[event_loop][future]") {
  EventLoop loop;
  offload::ThreadPool pool{{.threads = 2}};
  std::atomic<bool> release_task{false};
  std::thread::id task_thread{};
  std::thread::id continuation_thread{};
  bool continuation_on_loop = false;
  int seen = 0;

  auto task = pool.submit([&] {
    // Holds the pool task back until the loop has been idle for a while: run() must not
    // return meanwhile, because the continuation's hold is outstanding.
    while (!release_task.load()) std::this_thread::sleep_for(1ms);
    task_thread = std::this_thread::get_id();
    return 21;
  });
  auto doubled = std::move(task).then(loop, [&](int value) {
    continuation_thread = std::this_thread::get_id();
    continuation_on_loop = loop.is_loop_thread();
    seen = value;
    return value * 2;
  });
  loop.set_timeout(30ms, [&] { release_task.store(true); });
  Watchdog watchdog(loop);
  loop.run();
  CHECK_FALSE(watchdog.dismiss());
  CHECK(seen == 21);
  CHECK(continuation_thread == std::this_thread::get_id());
  CHECK(continuation_on_loop);
  CHECK(task_thread != std::this_thread::get_id());
  REQUIRE(doubled.ready());
  CHECK(doubled.get() == 42);

  SECTION("an exception in the task skips f and reaches the returned future") {
    bool called = false;
    auto failing = pool.submit([]() -> int { throw std::runtime_error("task failed"); })
                       .then(loop, [&](int) {
                         called = true;
                         return 0;
                       });
    loop.run();
    CHECK_FALSE(called);
    CHECK_THROWS_WITH(failing.get(), "task failed");
  }
}

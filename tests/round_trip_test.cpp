// Round trips: one task submitted, its future waited for, again and again, a million times,
// with every combination of a worker that spins or sleeps when the task arrives and a waiter
// that spins or sleeps when the result does. A lost wake-up shows as a wait that never ends;
// each wait is bounded, so the test fails instead of hanging.
#include <offload/event_loop.hpp>
#include <offload/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "catch.hpp"

using namespace std::chrono_literals;

namespace {

/// Longer than any spin before a sleep (workers, waiters and loops spin at most about 50 us), so a
/// pause this long before a submission finds the workers asleep, and a task this long finds
/// its waiter asleep.
constexpr auto past_any_spin = 200us;

/// A cheap, reproducible stream of draws (xorshift32) that picks each round's case.
struct Pattern {
  std::uint32_t state;
  explicit Pattern(std::uint32_t seed) : state(seed) {}
  std::uint32_t next() {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
  }
};

/// Runs `rounds` round trips on `pool`; one in `sleepy` lets the workers fall asleep first,
/// one in `slow` makes its task outlast the waiter's spin. Returns how many came back right;
/// stops at the first round trip that does not complete within 30 s (a lost wake-up). Makes no
/// Catch assertion, so any thread may call it.
std::uint64_t round_trips(offload::ThreadPool& pool, int rounds, std::uint32_t sleepy, std::uint32_t slow,
                          std::uint32_t seed) {
  Pattern pattern(seed);
  std::uint64_t right = 0;
  for (int i = 0; i < rounds; ++i) {
    const std::uint32_t draw = pattern.next();
    if (draw % sleepy == 0) std::this_thread::sleep_for(past_any_spin);
    const bool long_task = (draw / sleepy) % slow == 0;
    offload::Future<int> future = pool.submit([i, long_task] {
      if (long_task) std::this_thread::sleep_for(past_any_spin);
      return i;
    });
    // Bounded: a lost wake-up fails the caller's check instead of hanging the suite.
    if (future.wait_for(30s) != offload::FutureStatus::ready) return right;
    if (future.get() == i) ++right;
  }
  return right;
}

}  // namespace

TEST_CASE("a million round trips, workers and waiters spinning or asleep, lose no wake-up",
          "[thread_pool][round_trip]") {
  // 1, 2 and 4 workers on whatever cores the machine has (2 in CI: with 4, workers outnumber
  // cores and spin against each other). The mixes: mostly warm (everyone spinning), and
  // often cold on either side.
  struct Case {
    unsigned workers;
    int rounds;
    std::uint32_t sleepy, slow;
  };
  const Case cases[] = {
      {1, 300'000, 200, 200}, {2, 300'000, 200, 200}, {4, 340'000, 200, 200},
      {1, 20'000, 5, 5},      {2, 20'000, 3, 7},      {4, 20'000, 7, 3},
  };
  int total = 0;
  for (const Case& c : cases) {
    INFO(c.workers << " workers, 1 in " << c.sleepy << " after a sleep, 1 in " << c.slow << " slow");
    offload::ThreadPool pool({.threads = c.workers});
    CHECK(round_trips(pool, c.rounds, c.sleepy, c.slow, 0x9e3779b9u + c.workers) ==
          static_cast<std::uint64_t>(c.rounds));
    total += c.rounds;
  }
  CHECK(total == 1'000'000);
}

TEST_CASE("a waiter woken by the completion sees the value, not a default", "[thread_pool][round_trip]") {
  // The value is written just before the completion that wakes a sleeping waiter; a waiter
  // that woke on the flag but read the slot too early would see the sentinel.
  offload::ThreadPool pool({.threads = 2});
  for (int i = 0; i < 2'000; ++i) {
    offload::Future<std::uint64_t> future = pool.submit([i] {
      std::this_thread::sleep_for(i % 2 == 0 ? past_any_spin : 0us);
      return std::uint64_t{0x5eed0000u} + static_cast<std::uint64_t>(i);
    });
    REQUIRE(future.get() == std::uint64_t{0x5eed0000u} + static_cast<std::uint64_t>(i));
  }
}

TEST_CASE("round trips from two threads at once lose no wake-up", "[thread_pool][round_trip]") {
  // A worker whose task ends with nothing queued counts itself as spinning before it looks
  // again, so a submitter seeing it skips waking a peer: with two submitters, the second task
  // must still be found (by that worker or a peer) while the first runs.
  for (const unsigned workers : {1u, 2u, 4u}) {
    INFO(workers << " workers");
    offload::ThreadPool pool({.threads = workers});
    std::vector<std::thread> submitters;
    std::atomic<std::uint64_t> right{0};
    for (std::uint32_t s = 0; s < 2; ++s) {
      submitters.emplace_back([&pool, &right, s, workers] {
        right += round_trips(pool, 50'000, 97, 89, 0x51ed27u + s * 7919u + workers);
      });
    }
    for (std::thread& submitter : submitters) submitter.join();
    CHECK(right.load() == 100'000);
  }
}

TEST_CASE("round trips through an event loop, spinning or asleep, lose no wake-up",
          "[event_loop][round_trip]") {
  // A loop answered within microseconds lately spins before it sleeps, and a post then finds
  // it awake (no wake-up); one answered late sleeps. Both must see every post: a thread posts,
  // the loop answers through a promise; one post in `sleepy` comes after a pause past any
  // spin, so the loop is asleep by then; the rest come at once, so it is spinning.
  offload::EventLoop loop;
  offload::EventLoop::Hold hold = loop.hold();
  std::thread runner([&loop] { loop.run(); });
  Pattern pattern(0x10a1u);
  constexpr int rounds = 200'000;
  int right = 0;
  for (int i = 0; i < rounds; ++i) {
    if (pattern.next() % 50 == 0) std::this_thread::sleep_for(past_any_spin);
    offload::Promise<int> promise;
    offload::Future<int> answer = promise.get_future();
    loop.post([promise = std::move(promise), i]() mutable { promise.set_value(i); });
    if (answer.wait_for(30s) != offload::FutureStatus::ready) {
      FAIL("post " << i << " never ran: a lost wake-up of the loop");
    }
    if (answer.get() == i) ++right;
  }
  hold.reset();
  runner.join();
  CHECK(right == rounds);
}

TEST_CASE("then(loop) round trips from the loop's own thread lose no wake-up",
          "[event_loop][thread_pool][round_trip]") {
  // The loop submits a task, the continuation comes back on the loop and submits the next:
  // the loop waits (spinning or asleep) for a pool worker's post each time. One task in
  // `slow` outlasts every spin, so the loop falls asleep and the worker must wake it.
  offload::ThreadPool pool({.threads = 2});
  offload::EventLoop loop;
  constexpr int rounds = 100'000;
  int done = 0;
  Pattern pattern(0xbacc);
  std::function<void(int)> next = [&](int i) {
    if (i == rounds) return;
    const bool slow = pattern.next() % 100 == 0;
    pool.submit([i, slow] {
          if (slow) std::this_thread::sleep_for(past_any_spin);
          return i;
        })
        .then(loop, [&, i](int value) {
          if (value == i) ++done;
          next(i + 1);
        });
  };
  loop.post([&] { next(0); });
  std::atomic<bool> finished{false};
  std::thread watchdog([&] {
    // Bounded: a lost wake-up would leave run() waiting forever with a Hold outstanding.
    for (int waited = 0; waited < 600 && !finished.load(); ++waited) std::this_thread::sleep_for(100ms);
    if (!finished.load()) loop.stop();
  });
  loop.run();
  finished = true;
  watchdog.join();
  CHECK(done == rounds);
}

namespace {

/// Two tasks that must run at the same time: each arrives, then waits (sleeping, up to 10 s) for
/// the other. True when both met.
struct Rendezvous {
  std::atomic<int> arrived{0};
  bool meet() {
    arrived.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (arrived.load() < 2) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(50us);
    }
    return true;
  }
};

}  // namespace

TEST_CASE("work submitted while a worker counts itself as spinning reaches the sleeping workers",
          "[event_loop][thread_pool][round_trip]") {
  // A worker whose first task since idle ends with nothing queued counts itself as spinning
  // at once, and yields when that task woke a loop. The loop's continuation submits two tasks
  // that must run side by side: submitters wake nobody while a worker is counted as spinning,
  // so the worker that takes the first must wake a sleeping peer for the second, or the two
  // never meet.
  offload::ThreadPool pool({.threads = 2});
  offload::EventLoop loop;
  constexpr int rounds = 1000;
  int met = 0;
  int round = 0;
  std::function<void()> next = [&] {
    if (round++ == rounds) return;
    // Past every spin: both workers and the loop are asleep when the first task comes.
    loop.set_timeout(past_any_spin, [&] {
      pool.submit([] {
            const auto until = std::chrono::steady_clock::now() + past_any_spin;
            while (std::chrono::steady_clock::now() < until) {
            }
          })
          .then(loop, [&] {
            auto rendezvous = std::make_shared<Rendezvous>();
            offload::Future<bool> first = pool.submit([rendezvous] { return rendezvous->meet(); });
            offload::Future<bool> second = pool.submit([rendezvous] { return rendezvous->meet(); });
            offload::when_all(std::move(first), std::move(second))
                .then(loop, [&](std::tuple<bool, bool> both) {
                  if (!std::get<0>(both) || !std::get<1>(both)) return;  // the rest would wait 10 s each
                  ++met;
                  next();
                });
          });
    });
  };
  next();
  loop.run();
  CHECK(met == rounds);
}

namespace {

/// What a task's capture does when it is destroyed: says so, then waits (at most 10 s) for
/// another task to run, and notes whether it did.
struct DestructorWait {
  std::atomic<bool> destroying{false};
  std::atomic<bool> other_ran{false};
  std::atomic<bool> done{false};
  bool saw_other = false;
};

class WaitsWhenDestroyed {
 public:
  explicit WaitsWhenDestroyed(std::shared_ptr<DestructorWait> wait) : wait_(std::move(wait)) {}
  WaitsWhenDestroyed(WaitsWhenDestroyed&&) noexcept = default;  // leaves the source empty
  WaitsWhenDestroyed(const WaitsWhenDestroyed&) = delete;
  WaitsWhenDestroyed& operator=(const WaitsWhenDestroyed&) = delete;
  WaitsWhenDestroyed& operator=(WaitsWhenDestroyed&&) = delete;
  ~WaitsWhenDestroyed() {
    if (!wait_) return;
    wait_->destroying = true;
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (!wait_->other_ran && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(100us);
    }
    wait_->saw_other = wait_->other_ran;
    wait_->done = true;
  }

 private:
  std::shared_ptr<DestructorWait> wait_;
};

void wait_until(const std::atomic<bool>& flag) {
  while (!flag) std::this_thread::sleep_for(50us);
}

}  // namespace

TEST_CASE("work submitted while a worker destroys a task's captures reaches the sleeping peer",
          "[thread_pool][round_trip]") {
  // A worker whose first task since idle ends with nothing queued counts itself as spinning,
  // and submitters wake nobody while one spins. Counted before the task's captures were
  // destroyed, it stayed counted through their destructors: one that waited for work
  // submitted meanwhile waited for ever, the peer asleep beside it.
  offload::ThreadPool pool({.threads = 2});
  for (int round = 0; round < 20; ++round) {
    std::this_thread::sleep_for(past_any_spin);  // both workers asleep
    auto wait = std::make_shared<DestructorWait>();
    pool.detach([capture = WaitsWhenDestroyed(wait)] {});
    wait_until(wait->destroying);
    pool.detach([wait] { wait->other_ran = true; });
    wait_until(wait->done);
    REQUIRE(wait->saw_other);
  }
}

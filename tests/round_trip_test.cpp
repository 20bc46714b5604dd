// Round trips: one task submitted, its future waited for, again and again, a million times,
// with every combination of a worker that spins or sleeps when the task arrives and a waiter
// that spins or sleeps when the result does. A lost wake-up shows as a wait that never ends;
// each wait is bounded, so the test fails instead of hanging.
#include <offload/thread_pool.hpp>

#include <chrono>
#include <cstdint>
#include <thread>

#include "catch.hpp"

using namespace std::chrono_literals;

namespace {

/// Longer than any spin before a sleep (workers and waiters spin at most about 50 us), so a
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
/// one in `slow` makes its task outlast the waiter's spin. Returns how many came back right.
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
    // Bounded: a lost wake-up fails here instead of hanging the suite.
    if (future.wait_for(30s) != offload::FutureStatus::ready) {
      FAIL("round trip " << i << " never completed: a lost wake-up");
    }
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

// offload::SharedBuffer: shared zero-filled memory, atomic access, wait/notify on an element.
#include <offload/shared_buffer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

#include "catch.hpp"

using namespace std::chrono_literals;
using offload::SharedBuffer;
using offload::WaitResult;

namespace {

/// Generous bound for "this should happen soon": a bug fails the test instead of hanging it.
constexpr auto patience = 10s;

/// Spins (politely) until `condition` holds or `patience` runs out; returns the condition.
template <class Condition>
bool eventually(Condition condition) {
  const auto give_up = std::chrono::steady_clock::now() + patience;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(100us);
  }
  return true;
}

struct Pair32 {
  std::uint32_t a;
  std::uint32_t b;
};

}  // namespace

TEST_CASE("A new SharedBuffer is zero-filled and aligned for atomic_ref", "[shared_buffer]") {
  SECTION("int") {
    SharedBuffer<int> buffer(1000);
    REQUIRE(buffer.size() == 1000);
    for (int value : buffer.span()) CHECK(value == 0);
    const auto address = reinterpret_cast<std::uintptr_t>(buffer.span().data());
    CHECK(address % std::atomic_ref<int>::required_alignment == 0);
    CHECK(address % 64 == 0);
  }
  SECTION("double and a small struct") {
    SharedBuffer<double> doubles(17);
    for (double value : doubles.span()) CHECK(value == 0.0);
    SharedBuffer<Pair32> pairs(9);
    for (const Pair32& pair : pairs.span()) CHECK((pair.a == 0 && pair.b == 0));
    const auto address = reinterpret_cast<std::uintptr_t>(pairs.span().data());
    CHECK(address % std::atomic_ref<Pair32>::required_alignment == 0);
    CHECK(SharedBuffer<Pair32>::element_alignment >= std::atomic_ref<Pair32>::required_alignment);
  }
  SECTION("empty buffers") {
    SharedBuffer<int> none;
    CHECK(none.size() == 0);
    CHECK(none.span().empty());
    CHECK(none.use_count() == 0);
    SharedBuffer<int> zero(0);
    CHECK(zero.size() == 0);
    CHECK(zero.use_count() == 1);
  }
}

TEST_CASE("Copies of a SharedBuffer share the same memory", "[shared_buffer]") {
  SharedBuffer<int> original(8);
  SharedBuffer<int> copy = original;
  CHECK(original.use_count() == 2);
  CHECK(copy.span().data() == original.span().data());
  copy.span()[3] = 42;
  CHECK(original.span()[3] == 42);

  SharedBuffer<int> moved = std::move(copy);
  CHECK(original.use_count() == 2);
  CHECK(moved.span()[3] == 42);
  CHECK(copy.size() == 0);  // NOLINT(bugprone-use-after-move): a moved-from handle is empty

  {
    SharedBuffer<int> another = original;
    CHECK(original.use_count() == 3);
  }
  CHECK(original.use_count() == 2);

  SECTION("a copy outlives the original") {
    SharedBuffer<int> survivor = original;
    original = SharedBuffer<int>();
    moved = SharedBuffer<int>();
    CHECK(survivor.use_count() == 1);
    CHECK(survivor.span()[3] == 42);
  }
}

TEST_CASE("Threads write disjoint ranges and count through atomic_ref", "[shared_buffer]") {
  constexpr std::size_t threads = 4;
  constexpr std::size_t per_thread = 1000;
  SharedBuffer<std::uint64_t> buffer(threads * per_thread + 1);
  std::vector<std::thread> workers;
  for (std::size_t t = 0; t < threads; ++t) {
    workers.emplace_back([buffer, t] {  // each worker gets its own handle
      const auto span = buffer.span();
      for (std::size_t i = 0; i < per_thread; ++i) {
        span[1 + t * per_thread + i] = t * per_thread + i;
        buffer.atomic(0).fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (auto& worker : workers) worker.join();
  CHECK(buffer.atomic(0).load() == threads * per_thread);
  for (std::size_t i = 0; i < threads * per_thread; ++i) REQUIRE(buffer.span()[1 + i] == i);
}

TEST_CASE("wait returns not_equal when the element differs", "[shared_buffer]") {
  SharedBuffer<int> buffer(4);
  buffer.atomic(2).store(7);
  CHECK(buffer.wait(2, 0) == WaitResult::not_equal);
  CHECK(buffer.wait(2, 0, 1h) == WaitResult::not_equal);
  CHECK(buffer.wait(2, 8, 0ms) == WaitResult::not_equal);
}

TEST_CASE("wait times out when nobody notifies", "[shared_buffer]") {
  SharedBuffer<int> buffer(4);
  const auto start = std::chrono::steady_clock::now();
  CHECK(buffer.wait(1, 0, 30ms) == WaitResult::timed_out);
  CHECK(std::chrono::steady_clock::now() - start >= 30ms);
  CHECK(buffer.wait(1, 0, 0ms) == WaitResult::timed_out);
  CHECK(buffer.wait(1, 0, -5ms) == WaitResult::timed_out);
  CHECK(buffer.waiters(1) == 0);  // a timed-out waiter leaves the queue
  CHECK(buffer.notify(1) == 0);
}

TEST_CASE("notify wakes exactly as many waiters as it reports", "[shared_buffer]") {
  SharedBuffer<int> buffer(4);
  std::atomic<int> woken{0};
  std::atomic<int> other_results{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.emplace_back([&] {
      const WaitResult result = buffer.wait(1, 0, patience);
      (result == WaitResult::ok ? woken : other_results).fetch_add(1);
    });
  }
  REQUIRE(eventually([&] { return buffer.waiters(1) == 3; }));

  CHECK(buffer.notify(0) == 0);  // another element: nobody wakes
  CHECK(buffer.notify(1, 0) == 0);
  CHECK(buffer.notify(1, 2) == 2);
  REQUIRE(eventually([&] { return woken.load() == 2; }));
  CHECK(buffer.waiters(1) == 1);
  CHECK(buffer.notify(1) == 1);
  CHECK(buffer.notify(1) == 0);
  for (auto& waiter : waiters) waiter.join();
  CHECK(woken.load() == 3);
  CHECK(other_results.load() == 0);
}

TEST_CASE("wait and notify work for every element size", "[shared_buffer]") {
  auto ping_pong = [](auto tag) {
    using T = decltype(tag);
    SharedBuffer<T> buffer(2);
    constexpr int rounds = 100;  // 2 * rounds fits in a uint8_t
    std::atomic<int> failures{0};
    // Two threads take turns: each waits for its parity in element 0, bumps it, notifies.
    auto player = [&](int parity) {
      for (int round = 0; round < rounds; ++round) {
        for (;;) {
          const T seen = buffer.atomic(0).load();
          if (static_cast<int>(seen) % 2 == parity) break;
          if (buffer.wait(0, seen, patience) == WaitResult::timed_out) {
            failures.fetch_add(1);
            return;
          }
        }
        buffer.atomic(0).fetch_add(T{1});
        buffer.notify(0);
      }
    };
    std::thread even(player, 0);
    std::thread odd(player, 1);
    even.join();
    odd.join();
    CHECK(failures.load() == 0);
    CHECK(static_cast<int>(buffer.atomic(0).load()) == 2 * rounds);
  };
  ping_pong(std::uint8_t{});
  ping_pong(std::uint16_t{});
  ping_pong(std::int32_t{});
  ping_pong(std::uint64_t{});
}

TEST_CASE("Waiters on different elements are woken separately", "[shared_buffer]") {
  SharedBuffer<std::uint64_t> buffer(3);
  std::atomic<int> woken_on_0{0};
  std::atomic<int> woken_on_2{0};
  std::thread a([&] {
    if (buffer.wait(0, 0, patience) == WaitResult::ok) woken_on_0.fetch_add(1);
  });
  std::thread b([&] {
    if (buffer.wait(2, 0, patience) == WaitResult::ok) woken_on_2.fetch_add(1);
  });
  REQUIRE(eventually([&] { return buffer.waiters(0) == 1 && buffer.waiters(2) == 1; }));
  CHECK(buffer.notify(2) == 1);
  b.join();
  CHECK(woken_on_2.load() == 1);
  CHECK(woken_on_0.load() == 0);
  CHECK(buffer.waiters(0) == 1);
  CHECK(buffer.notify(0) == 1);
  a.join();
  CHECK(woken_on_0.load() == 1);
}

TEST_CASE("A store followed by notify is never missed", "[shared_buffer]") {
  // The writer stores then notifies with no pause; the waiter must either see the new value
  // (not_equal) or be woken (ok): never time out.
  SharedBuffer<int> buffer(1);
  constexpr int rounds = 500;
  std::atomic<int> missed{0};
  for (int round = 0; round < rounds; ++round) {
    buffer.atomic(0).store(0);
    std::thread waiter([&] {
      if (buffer.wait(0, 0, patience) == WaitResult::timed_out) missed.fetch_add(1);
    });
    buffer.atomic(0).store(1);
    buffer.notify(0);
    waiter.join();
  }
  CHECK(missed.load() == 0);
}

TEST_CASE("Bad indices and sizes are clear errors", "[shared_buffer]") {
  SharedBuffer<int> buffer(4);
  CHECK_THROWS_AS((void)buffer.atomic(4), std::out_of_range);
  CHECK_THROWS_AS(buffer.wait(4, 0), std::out_of_range);
  CHECK_THROWS_AS(buffer.notify(99), std::out_of_range);
  CHECK_THROWS_AS((void)buffer.waiters(4), std::out_of_range);
  CHECK_THROWS_WITH((void)buffer.atomic(7),
                    "offload::SharedBuffer: index 7 is out of range for a buffer of 4 elements");
  SharedBuffer<int> empty;
  CHECK_THROWS_AS((void)empty.atomic(0), std::out_of_range);
  CHECK_THROWS_AS(SharedBuffer<std::uint64_t>(std::size_t{1} << 62), std::length_error);
}

// offload channels: bounded, unbounded and rendezvous; exact accounting under concurrency,
// close and drop semantics, timeouts, destructor counts, move-only and throwing types.
#include <offload/channel.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "catch.hpp"

using namespace std::chrono_literals;
using offload::ChannelStatus;
using offload::Receiver;
using offload::Sender;

namespace {

/// Generous bound for "this should happen soon": a bug fails the test instead of hanging it.
constexpr auto patience = 10s;
/// Long enough for threads to reach a blocking call in practice; tests stay correct if not.
constexpr auto settle = 50ms;

enum class Kind { bounded_small, bounded_large, unbounded, rendezvous };

const char* name_of(Kind kind) {
  switch (kind) {
    case Kind::bounded_small:
      return "bounded(4)";
    case Kind::bounded_large:
      return "bounded(1024)";
    case Kind::unbounded:
      return "unbounded";
    case Kind::rendezvous:
      return "rendezvous";
  }
  return "?";
}

template <class T>
std::pair<Sender<T>, Receiver<T>> make(Kind kind) {
  switch (kind) {
    case Kind::bounded_small:
      return offload::channel<T>(4);
    case Kind::bounded_large:
      return offload::channel<T>(1024);
    case Kind::unbounded:
      return offload::unbounded_channel<T>();
    case Kind::rendezvous:
      return offload::channel<T>(0);
  }
  throw std::logic_error("unknown kind");
}

/// Counts live objects, so tests can check that every value is destroyed exactly once and when.
struct Counted {
  static inline std::atomic<long> live{0};
  static inline std::atomic<long> destroyed{0};
  int value = 0;

  explicit Counted(int v) noexcept : value(v) { live.fetch_add(1); }
  Counted(const Counted& other) noexcept : value(other.value) { live.fetch_add(1); }
  Counted(Counted&& other) noexcept : value(other.value) { live.fetch_add(1); }
  Counted& operator=(const Counted&) = default;
  Counted& operator=(Counted&&) = default;
  ~Counted() {
    live.fetch_sub(1);
    destroyed.fetch_add(1);
  }

  static void reset() {
    live = 0;
    destroyed = 0;
  }
};

/// A value whose move constructor throws while `fail` is set (like a std::deque that must
/// allocate when moved). Also counted.
struct Fragile {
  static inline std::atomic<bool> fail{false};
  static inline std::atomic<long> live{0};
  int value = 0;

  explicit Fragile(int v) : value(v) { live.fetch_add(1); }
  Fragile(Fragile&& other) : value(other.value) {
    if (fail.load()) throw std::runtime_error("Fragile: move failed");
    live.fetch_add(1);
  }
  Fragile(const Fragile&) = delete;
  ~Fragile() { live.fetch_sub(1); }
};

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

}  // namespace

TEST_CASE("try_send and try_receive report full, empty and closed", "[channel]") {
  auto [tx, rx] = offload::channel<int>(3);
  int value = 1;
  CHECK(rx.try_receive().status == ChannelStatus::empty);
  for (int i = 0; i < 3; ++i) {
    value = i;
    REQUIRE(tx.try_send(value) == ChannelStatus::ok);
  }
  value = 99;
  CHECK(tx.try_send(value) == ChannelStatus::full);  // the capacity is exact
  CHECK(value == 99);

  auto got = rx.try_receive();
  REQUIRE(got);
  CHECK(got.status == ChannelStatus::ok);
  CHECK(*got == 0);
  auto [status, received] = rx.try_receive();  // structured bindings
  CHECK(status == ChannelStatus::ok);
  CHECK(received == 1);

  tx.close();
  CHECK(tx.is_closed());
  CHECK(rx.is_closed());
  CHECK(tx.try_send(value) == ChannelStatus::closed);
  CHECK(value == 99);
  CHECK(*rx.try_receive() == 2);  // drains what is buffered first
  const auto after = rx.try_receive();
  CHECK(after.status == ChannelStatus::closed);
  CHECK_FALSE(after.value.has_value());
  CHECK_FALSE(after);
}

TEST_CASE("A rendezvous try_send succeeds only when a receiver waits", "[channel]") {
  auto [tx, rx] = offload::channel<std::string>(0);
  std::string message = "hello";
  CHECK(tx.try_send(message) == ChannelStatus::full);
  CHECK(message == "hello");
  CHECK(rx.try_receive().status == ChannelStatus::empty);

  std::optional<std::string> received;
  std::thread receiver([&, rx = rx] { received = rx.receive(); });
  const bool sent = eventually([&, &tx = tx] { return tx.try_send(message) == ChannelStatus::ok; });
  receiver.join();
  CHECK(sent);
  CHECK(received == "hello");
}

TEST_CASE("send_for and receive_for time out and leave the value intact", "[channel]") {
  const Kind kind = GENERATE(Kind::bounded_small, Kind::unbounded, Kind::rendezvous);
  INFO(name_of(kind));
  auto [tx, rx] = make<std::unique_ptr<int>>(kind);

  const auto start = std::chrono::steady_clock::now();
  const auto nothing = rx.receive_for(20ms);
  CHECK(nothing.status == ChannelStatus::timeout);
  CHECK_FALSE(nothing.value.has_value());
  CHECK(std::chrono::steady_clock::now() - start >= 20ms);
  CHECK(rx.receive_for(0ms).status == ChannelStatus::timeout);

  if (kind != Kind::unbounded) {  // an unbounded send never waits
    for (int i = 0; kind == Kind::bounded_small && i < 4; ++i) {
      auto filler = std::make_unique<int>(i);
      REQUIRE(tx.try_send(filler) == ChannelStatus::ok);
    }
    auto value = std::make_unique<int>(42);
    CHECK(tx.send_for(value, 20ms) == ChannelStatus::timeout);
    REQUIRE(value != nullptr);
    CHECK(*value == 42);
    CHECK(tx.send_for(value, 0ms) == ChannelStatus::timeout);
    CHECK(tx.send_for(value, -1ms) == ChannelStatus::timeout);
    CHECK(value != nullptr);
  }
}

namespace {

struct Shape {
  int producers;
  int consumers;
};

/// N producers send disjoint ranges; M consumers iterate until the end. Returns what each
/// consumer received, in order.
std::vector<std::vector<long>> run_producers_consumers(Kind kind, Shape shape, long per_producer) {
  auto [tx, rx] = make<long>(kind);
  std::vector<std::vector<long>> received(static_cast<std::size_t>(shape.consumers));
  std::vector<std::thread> threads;
  for (int c = 0; c < shape.consumers; ++c) {
    threads.emplace_back([rx = rx, &mine = received[static_cast<std::size_t>(c)]] {
      for (long value : rx) mine.push_back(value);
    });
  }
  for (int p = 0; p < shape.producers; ++p) {
    threads.emplace_back([tx = tx, p, per_producer]() mutable {
      for (long i = 0; i < per_producer; ++i) {
        if (tx.send(p * per_producer + i) != ChannelStatus::ok) return;
      }
    });
  }
  {  // the last Sender to go (a producer's) closes the channel
    auto drop_tx = std::move(tx);
    auto drop_rx = std::move(rx);
  }
  for (auto& thread : threads) thread.join();
  return received;
}

}  // namespace

TEST_CASE("N producers x M consumers: every value arrives exactly once", "[channel]") {
  const Kind kind =
      GENERATE(Kind::bounded_small, Kind::bounded_large, Kind::unbounded, Kind::rendezvous);
  const Shape shape = GENERATE(Shape{1, 1}, Shape{4, 4}, Shape{8, 2});
  const long total = kind == Kind::rendezvous ? 8000 : 40000;
  const long per_producer = total / shape.producers;
  INFO(name_of(kind) << ", " << shape.producers << " x " << shape.consumers);

  const auto received = run_producers_consumers(kind, shape, per_producer);

  const long expected_count = per_producer * shape.producers;
  std::vector<int> times_seen(static_cast<std::size_t>(expected_count), 0);
  long count = 0;
  long sum = 0;
  bool in_order = true;  // each consumer sees each producer's values in send order
  for (const auto& mine : received) {
    std::vector<long> last_from(static_cast<std::size_t>(shape.producers), -1);
    for (long value : mine) {
      REQUIRE(value >= 0);
      REQUIRE(value < expected_count);
      ++times_seen[static_cast<std::size_t>(value)];
      ++count;
      sum += value;
      long& last = last_from[static_cast<std::size_t>(value / per_producer)];
      in_order = in_order && value > last;
      last = value;
    }
  }
  CHECK(count == expected_count);
  CHECK(sum == expected_count * (expected_count - 1) / 2);
  CHECK(std::all_of(times_seen.begin(), times_seen.end(), [](int n) { return n == 1; }));
  CHECK(in_order);
}

TEST_CASE("Unbounded channels reuse their segments under contention", "[channel]") {
  // A 1 KiB value makes segments of 16 slots, so 10,000 values cross ~600 segment switches.
  struct Big {
    long id = 0;
    std::array<long, 127> payload{};
  };
  constexpr int producers = 4;
  constexpr int consumers = 4;
  constexpr long per_producer = 2500;
  auto [tx, rx] = offload::unbounded_channel<Big>();
  std::vector<std::atomic<int>> times_seen(producers * per_producer);
  std::atomic<long> corrupt{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&, rx = rx, polling = c % 2 == 0] {
      auto record = [&](const Big& big) {
        if (big.id < 0 || big.id >= producers * per_producer || big.payload[126] != big.id) {
          corrupt.fetch_add(1);
          return;
        }
        times_seen[static_cast<std::size_t>(big.id)].fetch_add(1);
      };
      if (polling) {  // try_receive only: the lock-free path, never sleeping
        for (;;) {
          auto got = rx.try_receive();
          if (got) {
            record(*got);
          } else if (got.status == ChannelStatus::closed) {
            return;
          } else {
            std::this_thread::yield();
          }
        }
      }
      for (Big big : rx) record(big);
    });
  }
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([tx = tx, p]() mutable {
      for (long i = 0; i < per_producer; ++i) {
        Big big;
        big.id = p * per_producer + i;
        big.payload[126] = big.id;
        tx.send(std::move(big));
      }
    });
  }
  tx = Sender<Big>();
  for (auto& thread : threads) thread.join();
  CHECK(corrupt.load() == 0);
  CHECK(std::all_of(times_seen.begin(), times_seen.end(), [](const auto& n) { return n == 1; }));
}

TEST_CASE("Ping-pong: no wake-up is ever lost", "[channel]") {
  // One value in flight at a time, so a receiver that slept through its value would never be
  // woken by a later send: the exchange would stall until receive_for gives up.
  const Kind kind = GENERATE(Kind::bounded_small, Kind::unbounded, Kind::rendezvous);
  INFO(name_of(kind));
  const int rounds = kind == Kind::rendezvous ? 2000 : 20000;
  auto [ping_tx, ping_rx] = make<int>(kind);
  auto [pong_tx, pong_rx] = make<int>(kind);
  std::atomic<int> echo_failures{0};
  std::thread echo([rx = ping_rx, tx = pong_tx, &echo_failures]() mutable {
    for (;;) {
      auto got = rx.receive_for(patience);
      if (got.status == ChannelStatus::closed) return;
      if (!got || tx.send(*got + 1) != ChannelStatus::ok) {
        echo_failures.fetch_add(1);
        return;
      }
    }
  });
  int stalls = 0;
  int wrong = 0;
  for (int i = 0; i < rounds && stalls == 0; ++i) {
    if (i % 64 == 0) std::this_thread::yield();  // vary the timing a little
    REQUIRE(ping_tx.send(int{i}) == ChannelStatus::ok);
    const auto reply = pong_rx.receive_for(patience);
    if (!reply) {
      ++stalls;
    } else if (*reply != i + 1) {
      ++wrong;
    }
  }
  ping_tx.close();
  echo.join();
  CHECK(stalls == 0);
  CHECK(wrong == 0);
  CHECK(echo_failures.load() == 0);
}

TEST_CASE("Sends racing with close: every accepted value is received exactly once", "[channel]") {
  const Kind kind = GENERATE(Kind::bounded_small, Kind::unbounded, Kind::rendezvous);
  INFO(name_of(kind));
  auto [tx, rx] = make<long>(kind);
  constexpr int producers = 3;
  constexpr long limit = 1'000'000;
  std::atomic<long> accepted_sum{0};
  std::atomic<long> accepted_count{0};
  std::atomic<long> received_sum{0};
  std::atomic<long> received_count{0};
  std::atomic<bool> started{false};
  std::vector<std::thread> threads;
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&, rx = rx] {
      for (long value : rx) {
        received_sum.fetch_add(value);
        received_count.fetch_add(1);
      }
    });
  }
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, tx = tx, p]() mutable {
      for (long i = p; i < limit; i += producers) {
        if (tx.send(long{i}) != ChannelStatus::ok) break;
        accepted_sum.fetch_add(i);
        accepted_count.fetch_add(1);
        started = true;
      }
    });
  }
  REQUIRE(eventually([&] { return started.load(); }));
  std::this_thread::sleep_for(5ms);
  tx.close();
  for (auto& thread : threads) thread.join();
  CHECK(accepted_count.load() > 0);
  CHECK(received_count.load() == accepted_count.load());
  CHECK(received_sum.load() == accepted_sum.load());
}

TEST_CASE("Closing wakes every blocked sender and receiver", "[channel]") {
  const Kind kind = GENERATE(Kind::bounded_small, Kind::unbounded, Kind::rendezvous);
  const bool close_from_receiver = GENERATE(false, true);
  INFO(name_of(kind) << (close_from_receiver ? ", rx.close()" : ", tx.close()"));

  // Receivers block on an empty channel.
  auto [empty_tx, empty_rx] = make<std::unique_ptr<int>>(kind);
  std::atomic<int> receivers_saw_end{0};
  std::atomic<int> receivers_other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, rx = empty_rx] {
      const auto result = rx.receive_for(patience);
      (result.status == ChannelStatus::closed ? receivers_saw_end : receivers_other).fetch_add(1);
    });
  }

  // Senders block on a full channel (rendezvous: on no receiver). Unbounded never blocks.
  auto [full_tx, full_rx] = make<std::unique_ptr<int>>(kind);
  for (int i = 0; kind == Kind::bounded_small && i < 4; ++i) {
    auto filler = std::make_unique<int>(i);
    REQUIRE(full_tx.try_send(filler) == ChannelStatus::ok);
  }
  std::atomic<int> senders_saw_closed{0};
  std::atomic<int> senders_other{0};
  std::atomic<int> values_intact{0};
  const int blocked_senders = kind == Kind::unbounded ? 0 : 3;
  for (int i = 0; i < blocked_senders; ++i) {
    threads.emplace_back([&, tx = full_tx, i]() mutable {
      auto value = std::make_unique<int>(100 + i);
      const ChannelStatus status = tx.send_for(value, patience);
      (status == ChannelStatus::closed ? senders_saw_closed : senders_other).fetch_add(1);
      if (value != nullptr && *value == 100 + i) values_intact.fetch_add(1);
    });
  }

  std::this_thread::sleep_for(settle);
  if (close_from_receiver) {
    empty_rx.close();
    full_rx.close();
  } else {
    empty_tx.close();
    full_tx.close();
  }
  for (auto& thread : threads) thread.join();
  CHECK(receivers_saw_end.load() == 3);
  CHECK(receivers_other.load() == 0);
  CHECK(senders_saw_closed.load() == blocked_senders);
  CHECK(senders_other.load() == 0);
  CHECK(values_intact.load() == blocked_senders);
  if (kind == Kind::bounded_small) {  // buffered values are still there to drain
    int drained = 0;
    while (full_rx.receive()) ++drained;
    CHECK(drained == 4);
  }
}

TEST_CASE("Receiving after close drains what is buffered, then ends", "[channel]") {
  const Kind kind = GENERATE(Kind::bounded_large, Kind::unbounded);
  INFO(name_of(kind));
  auto [tx, rx] = make<int>(kind);
  for (int i = 0; i < 5; ++i) REQUIRE(tx.send(int{i}) == ChannelStatus::ok);
  tx.close();
  CHECK(tx.send(7) == ChannelStatus::closed);
  std::vector<int> drained;
  for (int value : rx) drained.push_back(value);
  CHECK(drained == std::vector<int>{0, 1, 2, 3, 4});
  CHECK_FALSE(rx.receive().has_value());
  CHECK(rx.receive_for(1ms).status == ChannelStatus::closed);
  CHECK(rx.try_receive().status == ChannelStatus::closed);
}

TEST_CASE("Dropping the last Sender ends the receivers' loops", "[channel]") {
  const Kind kind = GENERATE(Kind::bounded_small, Kind::unbounded, Kind::rendezvous);
  INFO(name_of(kind));
  auto [tx, rx] = make<int>(kind);
  std::atomic<int> sum{0};
  std::thread consumer([&, rx = rx] {
    for (int value : rx) sum.fetch_add(value);
  });
  {
    Sender<int> second = tx;  // copies keep the channel open
    auto first = std::move(tx);
    for (int i = 1; i <= 10; ++i) REQUIRE(first.send(int{i}) == ChannelStatus::ok);
    CHECK_FALSE(second.is_closed());
  }
  consumer.join();
  CHECK(sum.load() == 55);
  CHECK(rx.is_closed());
}

TEST_CASE("Dropping the last Receiver fails blocked sends and returns the value intact",
          "[channel]") {
  const Kind kind = GENERATE(Kind::bounded_small, Kind::rendezvous);
  INFO(name_of(kind));
  auto [tx, rx] = make<std::unique_ptr<int>>(kind);
  for (int i = 0; kind == Kind::bounded_small && i < 4; ++i) {
    auto filler = std::make_unique<int>(i);
    REQUIRE(tx.try_send(filler) == ChannelStatus::ok);
  }
  std::atomic<int> status_seen{-1};
  std::atomic<bool> intact{false};
  std::thread sender([&, tx = tx]() mutable {
    auto value = std::make_unique<int>(7);
    status_seen = static_cast<int>(tx.send_for(value, patience));
    intact = value != nullptr && *value == 7;
  });
  std::this_thread::sleep_for(settle);
  {
    Receiver<std::unique_ptr<int>> copy = rx;
    auto drop = std::move(rx);
  }  // both handles gone: the last Receiver
  sender.join();
  CHECK(status_seen.load() == static_cast<int>(ChannelStatus::closed));
  CHECK(intact.load());
  CHECK(tx.is_closed());
  auto later = std::make_unique<int>(8);
  CHECK(tx.send(std::move(later)) == ChannelStatus::closed);
  CHECK(later != nullptr);  // send(T&&) did not move from it either
  CHECK(tx.try_send(later) == ChannelStatus::closed);
}

TEST_CASE("Dropping the last Receiver while sends race destroys every accepted value",
          "[channel]") {
  const Kind kind = GENERATE(Kind::bounded_small, Kind::unbounded, Kind::rendezvous);
  INFO(name_of(kind));
  Counted::reset();
  {
    auto [tx, rx] = make<Counted>(kind);
    std::atomic<long> accepted{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < 3; ++p) {
      producers.emplace_back([tx = tx, &accepted]() mutable {
        for (int i = 0;; ++i) {
          Counted value(i);
          if (tx.send_for(value, patience) != ChannelStatus::ok) return;
          accepted.fetch_add(1);
        }
      });
    }
    // Buffer some values (bounded: until full, then senders block; rendezvous: none).
    const long some = kind == Kind::bounded_small ? 4 : kind == Kind::unbounded ? 1000 : 0;
    CHECK(eventually([&] { return accepted.load() >= some; }));
    if (kind != Kind::unbounded) std::this_thread::sleep_for(settle);  // senders block
    { auto drop = std::move(rx); }  // no receiver ever took anything
    for (auto& producer : producers) producer.join();
    CHECK(tx.is_closed());
    CHECK(Counted::live.load() == 0);  // while a Sender still keeps the channel alive
  }
  CHECK(Counted::live.load() == 0);
}

TEST_CASE("Buffered values are destroyed exactly once, at the right time", "[channel]") {
  const Kind kind = GENERATE(Kind::bounded_large, Kind::unbounded);
  INFO(name_of(kind));
  const int buffered = kind == Kind::unbounded ? 3000 : 500;  // unbounded: several segments
  Counted::reset();

  SECTION("dropping the last Receiver destroys buffered values at once") {
    auto [tx, rx] = make<Counted>(kind);
    for (int i = 0; i < buffered; ++i) REQUIRE(tx.send(Counted(i)) == ChannelStatus::ok);
    CHECK(Counted::live.load() == buffered);
    { auto drop = std::move(rx); }
    CHECK(Counted::live.load() == 0);                   // while a Sender still exists
    CHECK(Counted::destroyed.load() == 2L * buffered);  // each temporary + each buffered copy
    CHECK(tx.send(Counted(-1)) == ChannelStatus::closed);
    CHECK(Counted::live.load() == 0);
  }
  SECTION("closing keeps buffered values until received or the channel goes") {
    auto [tx, rx] = make<Counted>(kind);
    for (int i = 0; i < buffered; ++i) REQUIRE(tx.send(Counted(i)) == ChannelStatus::ok);
    tx.close();
    CHECK(Counted::live.load() == buffered);
    for (int i = 0; i < 10; ++i) {
      auto value = rx.receive();
      REQUIRE(value);
      CHECK(value->value == i);
    }
    CHECK(Counted::live.load() == buffered - 10);
    { auto drop_tx = std::move(tx); }
    CHECK(Counted::live.load() == buffered - 10);  // a Receiver can still drain them
    { auto drop_rx = std::move(rx); }
    CHECK(Counted::live.load() == 0);
  }
  SECTION("values sent and received are each destroyed once") {
    {
      auto [tx, rx] = make<Counted>(kind);
      std::thread consumer([rx = rx] {
        for (Counted value : rx) (void)value;
      });
      for (int i = 0; i < buffered; ++i) REQUIRE(tx.send(Counted(i)) == ChannelStatus::ok);
      { auto drop = std::move(tx); }
      consumer.join();
    }
    CHECK(Counted::live.load() == 0);
  }
}

TEST_CASE("10,000 create / send / receive / destroy cycles", "[channel]") {
  Counted::reset();
  SECTION("bounded and unbounded") {
    for (int cycle = 0; cycle < 10'000; ++cycle) {
      auto [tx, rx] = cycle % 2 == 0
                          ? offload::channel<Counted>(static_cast<std::size_t>(1 + cycle % 7))
                          : offload::unbounded_channel<Counted>();
      REQUIRE(tx.send(Counted(cycle)) == ChannelStatus::ok);
      auto got = rx.receive();
      REQUIRE(got);
      REQUIRE(got->value == cycle);
    }
    CHECK(Counted::live.load() == 0);
  }
  SECTION("rendezvous, with a helper thread fed Receivers through a channel of channels") {
    auto [to_helper, helper_inbox] = offload::channel<Receiver<Counted>>(1);
    std::atomic<long> helper_sum{0};
    std::thread helper([&, inbox = std::move(helper_inbox)] {
      for (Receiver<Counted> rx : inbox) {
        if (auto got = rx.receive()) helper_sum.fetch_add(got->value);
      }
    });
    long expected = 0;
    for (int cycle = 0; cycle < 10'000; ++cycle) {
      auto [tx, rx] = offload::channel<Counted>(0);
      REQUIRE(to_helper.send(std::move(rx)) == ChannelStatus::ok);
      REQUIRE(tx.send(Counted(cycle)) == ChannelStatus::ok);
      expected += cycle;
    }
    to_helper.close();
    helper.join();
    CHECK(helper_sum.load() == expected);
    CHECK(Counted::live.load() == 0);
  }
}

TEST_CASE("A channel of channels carries replies back", "[channel]") {
  using Request = std::pair<int, Sender<int>>;
  auto [requests, inbox] = offload::unbounded_channel<Request>();
  std::thread server([inbox = std::move(inbox)] {
    for (Request request : inbox) request.second.send(request.first * 2);
  });
  bool all_correct = true;
  for (int i = 0; i < 200; ++i) {
    auto [reply_tx, reply_rx] = offload::channel<int>(1);
    REQUIRE(requests.send(Request{i, std::move(reply_tx)}) == ChannelStatus::ok);
    const auto reply = reply_rx.receive_for(patience);
    all_correct = all_correct && reply && *reply == 2 * i;
    // The server dropped its reply Sender: the reply channel is now closed and drained.
    all_correct = all_correct && !reply_rx.receive().has_value();
  }
  requests.close();
  server.join();
  CHECK(all_correct);
}

TEST_CASE("Move-only values travel through every kind of channel", "[channel]") {
  const Kind kind =
      GENERATE(Kind::bounded_small, Kind::bounded_large, Kind::unbounded, Kind::rendezvous);
  INFO(name_of(kind));
  auto [tx, rx] = make<std::unique_ptr<int>>(kind);
  std::thread producer([tx = std::move(tx)]() mutable {
    for (int i = 0; i < 100; ++i) tx.send(std::make_unique<int>(i));
  });
  int expected = 0;
  bool in_order = true;
  for (std::unique_ptr<int> value : rx) {
    in_order = in_order && value != nullptr && *value == expected;
    ++expected;
  }
  producer.join();
  CHECK(expected == 100);
  CHECK(in_order);
}

TEST_CASE("A throwing move constructor neither loses nor leaks values", "[channel]") {
  const Kind kind = GENERATE(Kind::bounded_small, Kind::unbounded);
  INFO(name_of(kind));
  Fragile::live = 0;
  Fragile::fail = false;
  {
    auto [tx, rx] = make<Fragile>(kind);
    Fragile first(1);
    REQUIRE(tx.send(std::move(first)) == ChannelStatus::ok);
    Fragile::fail = true;
    Fragile second(2);
    CHECK_THROWS_AS(tx.send(std::move(second)), std::runtime_error);
    CHECK(second.value == 2);
    Fragile::fail = false;
    Fragile third(3);
    REQUIRE(tx.send(std::move(third)) == ChannelStatus::ok);
    tx.close();
    std::vector<int> received;
    for (Fragile value : rx) received.push_back(value.value);
    CHECK(received == std::vector<int>{1, 3});  // the failed send left a skipped slot
  }
  CHECK(Fragile::live.load() == 0);
}

TEST_CASE("A throwing move in a rendezvous leaves the waiting side waiting", "[channel]") {
  Fragile::live = 0;
  Fragile::fail = false;
  SECTION("the sender's move into a waiting receiver throws") {
    auto [tx, rx] = offload::channel<Fragile>(0);
    std::atomic<int> got{0};
    std::thread receiver([rx = rx, &got] {
      if (auto value = rx.receive()) got = value->value;
    });
    Fragile doomed(1);
    Fragile::fail = true;
    // Once the receiver waits, try_send moves into it, which throws; before that it is full.
    bool threw = false;
    REQUIRE(eventually([&, &tx = tx] {
      try {
        return tx.try_send(doomed) != ChannelStatus::full;
      } catch (const std::runtime_error&) {
        threw = true;
        return true;
      }
    }));
    Fragile::fail = false;
    CHECK(threw);
    CHECK(doomed.value == 1);
    Fragile fine(2);
    CHECK(tx.send(std::move(fine)) == ChannelStatus::ok);  // the receiver was still waiting
    receiver.join();
    CHECK(got.load() == 2);
  }
  SECTION("the receiver's move out of a waiting sender throws") {
    auto [tx, rx] = offload::channel<Fragile>(0);
    std::atomic<int> status{-1};
    std::thread sender([tx = tx, &status]() mutable {
      Fragile value(5);
      status = static_cast<int>(tx.send_for(value, patience));
    });
    Fragile::fail = true;
    bool threw = false;
    REQUIRE(eventually([&, &rx = rx] {
      try {
        return rx.try_receive().status != ChannelStatus::empty;
      } catch (const std::runtime_error&) {
        threw = true;
        return true;
      }
    }));
    Fragile::fail = false;
    CHECK(threw);
    auto value = rx.receive_for(patience);  // the sender was still waiting
    REQUIRE(value);
    CHECK(value->value == 5);
    sender.join();
    CHECK(status.load() == static_cast<int>(ChannelStatus::ok));
  }
  CHECK(Fragile::live.load() == 0);
}

TEST_CASE("A cap-1 channel does not stall after a failed move", "[channel]") {
  // The abandoned slot must be skipped, and the room it frees must reach a blocked sender.
  Fragile::live = 0;
  Fragile::fail = false;
  {
    auto [tx, rx] = offload::channel<Fragile>(1);
    std::atomic<int> got{0};
    std::thread consumer([rx = rx, &got] {
      for (Fragile value : rx) got.fetch_add(value.value);
    });
    std::this_thread::sleep_for(settle);  // the receiver is waiting on an empty channel
    Fragile::fail = true;
    Fragile doomed(100);
    CHECK_THROWS_AS(tx.send(std::move(doomed)), std::runtime_error);
    Fragile::fail = false;
    for (int i = 1; i <= 20; ++i) {
      Fragile value(i);
      REQUIRE(tx.send_for(value, patience) == ChannelStatus::ok);
    }
    tx.close();
    consumer.join();
    CHECK(got.load() == 210);
  }
  CHECK(Fragile::live.load() == 0);
}

TEST_CASE("Handles without a channel fail clearly", "[channel]") {
  Sender<int> no_sender;
  Receiver<int> no_receiver;
  CHECK_FALSE(no_sender.valid());
  CHECK(no_sender.is_closed());
  CHECK(no_receiver.is_closed());
  no_sender.close();  // a no-op
  CHECK_THROWS_AS(no_sender.send(1), std::logic_error);
  CHECK_THROWS_AS(no_receiver.receive(), std::logic_error);
  CHECK_THROWS_WITH(no_receiver.try_receive(),
                    "offload::Receiver: this handle refers to no channel (it was "
                    "default-constructed or moved from)");

  auto [tx, rx] = offload::channel<int>(1);
  Sender<int> taken = std::move(tx);
  CHECK(taken.valid());
  CHECK_FALSE(tx.valid());  // NOLINT(bugprone-use-after-move): moved-from handles are empty
  int value = 1;
  CHECK_THROWS_AS(tx.try_send(value), std::logic_error);
  CHECK(taken.try_send(value) == ChannelStatus::ok);
}

TEST_CASE("Bad capacities are clear errors", "[channel]") {
  CHECK_THROWS_AS(offload::channel<int>(std::size_t{1} << 60), std::length_error);
}

TEST_CASE("Copied Senders and Receivers are more producers and consumers", "[channel]") {
  auto [tx, rx] = offload::channel<int>(8);
  Sender<int> tx2 = tx;
  Receiver<int> rx2 = rx;
  REQUIRE(tx.send(1) == ChannelStatus::ok);
  REQUIRE(tx2.send(2) == ChannelStatus::ok);
  CHECK(*rx2.receive() == 1);
  CHECK(*rx.receive() == 2);
  { auto drop = std::move(rx); }  // one Receiver left: sends still work
  CHECK(tx.send(3) == ChannelStatus::ok);
  CHECK(*rx2.receive() == 3);
  tx2 = Sender<int>();  // one Sender left
  CHECK_FALSE(rx2.is_closed());
  tx = Sender<int>();  // none left: closed
  CHECK(rx2.is_closed());
  CHECK_FALSE(rx2.receive().has_value());
}

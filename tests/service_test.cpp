// offload::run_service: the worker_threads model. Data is the service's own copy, results and
// exceptions come back through the future, ports stream messages and are released whenever the
// service ends (return, throw, cancellation, refusal), back-pressure and dropped readers, the
// default pool, and many services sharing one channel.
#include <offload/service.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "gate.hpp"

using namespace std::chrono_literals;
using offload::ChannelStatus;
using offload::Receiver;
using offload::Sender;

namespace {

/// Generous bound for "this should happen soon": a bug fails the test instead of hanging it.
constexpr auto patience = 20s;

using offload_test::Gate;

/// Counts how its values are made and destroyed (from any thread).
struct Tracked {
  static inline std::atomic<int> copies{0};
  static inline std::atomic<int> moves{0};
  static inline std::atomic<int> live{0};
  int value = 0;

  explicit Tracked(int v) noexcept : value(v) { live.fetch_add(1); }
  Tracked(const Tracked& other) noexcept : value(other.value) {
    copies.fetch_add(1);
    live.fetch_add(1);
  }
  Tracked(Tracked&& other) noexcept : value(other.value) {
    moves.fetch_add(1);
    live.fetch_add(1);
  }
  Tracked& operator=(const Tracked&) = delete;
  Tracked& operator=(Tracked&&) = delete;
  ~Tracked() { live.fetch_sub(1); }

  static void reset() {
    copies = 0;
    moves = 0;
    live = 0;
  }
};

/// The exception a failing service throws: a type of its own, to check that the type survives.
class ServiceFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Everything a channel delivers until it is closed and drained.
template <class T>
std::vector<T> drain(const Receiver<T>& rx) {
  std::vector<T> received;
  for (T value : rx) received.push_back(std::move(value));
  return received;
}

/// Whether the channel is closed and drained right now, checked without risking a hang.
template <class T>
bool ended(const Receiver<T>& rx) {
  return rx.receive_for(patience).status == ChannelStatus::closed;
}

std::vector<int> iota_vector(int count) {
  std::vector<int> values(static_cast<std::size_t>(count));
  std::iota(values.begin(), values.end(), 0);
  return values;
}

}  // namespace

TEST_CASE("hello: a service's return value reaches the caller", "[service]") {
  offload::ThreadPool pool{{.threads = 2}};
  auto hello = offload::run_service(
      pool, [](std::string name) { return "Hello " + name; }, std::string("world"));
  static_assert(std::is_same_v<decltype(hello), offload::Future<std::string>>);
  CHECK(hello.get() == "Hello world");
}

TEST_CASE("a service runs on a worker of the pool it was given", "[service]") {
  offload::ThreadPool pool{{.threads = 3}};
  auto where = offload::run_service(
      pool, [](int) { return offload::this_worker::index(); }, 0);
  const std::optional<unsigned> index = where.get();
  REQUIRE(index.has_value());
  CHECK(*index < pool.size());
}

TEST_CASE("the service's data is its own copy", "[service]") {
  offload::ThreadPool pool{{.threads = 2}};

  SECTION("the caller changes its original after the call: the service sees the old value") {
    std::vector<int> original{1, 2, 3};
    auto gate = std::make_shared<Gate>();
    auto seen = offload::run_service(
        pool,
        [gate](std::vector<int> data) {
          if (!gate->wait()) throw std::runtime_error("the gate never opened");
          return data;
        },
        original);
    original[0] = 100;
    original.push_back(4);
    gate->open();
    CHECK(seen.get() == std::vector<int>{1, 2, 3});
  }

  SECTION("the service changes its copy: the caller's original is untouched") {
    const std::vector<int> original{1, 2, 3};
    auto changed = offload::run_service(
        pool,
        [](std::vector<int>& data) {  // Data&: the service may change its own copy in place
          data.assign(5, 7);
          return data.size();
        },
        original);
    CHECK(changed.get() == std::size_t{5});
    CHECK(original == std::vector<int>{1, 2, 3});
  }

  SECTION("an lvalue is copied once, an rvalue is moved and never copied") {
    Tracked::reset();
    Tracked data(42);
    auto copied = offload::run_service(
        pool, [](const Tracked& d) { return d.value; }, data);
    CHECK(copied.get() == 42);
    CHECK(Tracked::copies == 1);

    Tracked::reset();
    auto moved = offload::run_service(
        pool, [](Tracked&& d) { return d.value; }, std::move(data));
    CHECK(moved.get() == 42);
    CHECK(Tracked::copies == 0);
    CHECK(Tracked::moves >= 1);
  }
}

TEST_CASE("move-only data is moved into the service", "[service]") {
  offload::ThreadPool pool{{.threads = 2}};

  SECTION("taken by value: the service owns it") {
    auto doubled = offload::run_service(
        pool, [](std::unique_ptr<int> p) { return *p * 2; }, std::make_unique<int>(21));
    CHECK(doubled.get() == 42);
  }

  SECTION("returned: ownership comes back through the future") {
    auto data = std::make_unique<std::vector<int>>(iota_vector(10));
    const std::vector<int>* address = data.get();
    auto back = offload::run_service(
        pool,
        [](std::unique_ptr<std::vector<int>> v) {
          v->push_back(10);
          return v;
        },
        std::move(data));
    CHECK(data == nullptr);
    const std::unique_ptr<std::vector<int>> result = back.get();
    CHECK(result.get() == address);  // the same object travelled there and back: no copy
    CHECK(*result == iota_vector(11));
  }
}

TEST_CASE("the accepted service signatures", "[service]") {
  offload::ThreadPool pool{{.threads = 2}};
  auto [tx, rx] = offload::unbounded_channel<int>();

  SECTION("const Data& and Data&&") {
    CHECK(offload::run_service(
              pool, [](const std::string& s) { return s.size(); }, std::string("abc"))
              .get() == std::size_t{3});
    CHECK(offload::run_service(
              pool, [](std::string&& s) { return std::move(s) + "!"; }, std::string("abc"))
              .get() == "abc!");
  }

  SECTION("a function pointer, a void result, a const result") {
    auto void_service = offload::run_service(
        pool, +[](int) {}, 1);
    static_assert(std::is_same_v<decltype(void_service), offload::Future<void>>);
    void_service.get();
    auto const_result = offload::run_service(
        pool, [](int x) -> const std::string { return std::to_string(x); }, 5);
    static_assert(std::is_same_v<decltype(const_result), offload::Future<std::string>>);
    CHECK(const_result.get() == "5");
  }

  SECTION("the port by reference or as a handle of its own, data as Data&") {
    auto by_reference = offload::run_service(
        pool, [](int x, Sender<int>& port) { return port.send(x) == ChannelStatus::ok; }, 1, tx);
    auto by_value = offload::run_service(
        pool, [](int& x, Sender<int> port) { return port.send(x + 1) == ChannelStatus::ok; }, 1,
        std::move(tx));
    CHECK(by_reference.get());
    CHECK(by_value.get());
    std::vector<int> received = drain(rx);  // both handles are gone: the channel ended
    std::sort(received.begin(), received.end());
    CHECK(received == std::vector<int>{1, 2});
  }

  SECTION("a mutable lambda that keeps state in its captures") {
    auto counter = offload::run_service(
        pool,
        [calls = 0](int n) mutable {
          for (int i = 0; i < n; ++i) ++calls;
          return calls;
        },
        4);
    CHECK(counter.get() == 4);
  }
}

TEST_CASE("a throwing service: the exception reaches get(), the port is released", "[service]") {
  offload::ThreadPool pool{{.threads = 2}};

  SECTION("without a port") {
    auto failing = offload::run_service(
        pool, [](int) -> int { throw ServiceFailure("no luck"); }, 0);
    CHECK_THROWS_MATCHES(failing.get(), ServiceFailure, Catch::Matchers::Message("no luck"));
  }

  SECTION("with a port: messages sent before the throw arrive, then the loop ends") {
    auto [tx, rx] = offload::unbounded_channel<int>();
    auto failing = offload::run_service(
        pool,
        [](int count, Sender<int>& port) -> std::string {
          for (int i = 0; i < count; ++i) port.send(i);
          throw ServiceFailure("failed after " + std::to_string(count));
        },
        3, std::move(tx));
    CHECK(drain(rx) == std::vector<int>{0, 1, 2});
    CHECK(rx.is_closed());
    CHECK_THROWS_MATCHES(failing.get(), ServiceFailure, Catch::Matchers::Message("failed after 3"));
  }
}

TEST_CASE("progress messages through a port arrive in order, then the loop ends", "[service]") {
  offload::ThreadPool pool{{.threads = 2}};
  auto [tx, rx] = offload::unbounded_channel<std::string>();
  auto job = offload::run_service(
      pool,
      [](std::vector<int> items, Sender<std::string>& progress) {
        long sum = 0;
        for (std::size_t i = 0; i < items.size(); ++i) {
          sum += items[i];
          if ((i + 1) % 25 == 0) progress.send(std::to_string((i + 1) * 100 / items.size()) + "%");
        }
        return sum;
      },
      iota_vector(100), std::move(tx));

  SECTION("read while it runs") {
    CHECK(drain(rx) == std::vector<std::string>{"25%", "50%", "75%", "100%"});
    CHECK(job.get() == 4950);
  }

  SECTION("read after get(): what was sent is still there, then the loop ends") {
    CHECK(job.get() == 4950);
    CHECK(drain(rx) == std::vector<std::string>{"25%", "50%", "75%", "100%"});
  }
}

TEST_CASE("a service's data, callable and port are released before its future completes",
          "[service]") {
  offload::ThreadPool pool{{.threads = 2}};
  Tracked::reset();
  auto gate = std::make_shared<Gate>();
  auto [tx, rx] = offload::unbounded_channel<int>();
  auto job = offload::run_service(
      pool,
      [gate, captured = Tracked(2)](const Tracked& data, Sender<int>& port) {
        if (!gate->wait()) throw std::runtime_error("the gate never opened");
        port.send(data.value + captured.value);
        return data.value;
      },
      Tracked(1), std::move(tx));
  // Attached while the service waits at the gate, the continuation runs the moment the future
  // completes, on the worker: it sees exactly what completion guarantees.
  auto at_completion = job.then(
      [rx = rx](int value) { return std::tuple(value, Tracked::live.load(), rx.is_closed()); });
  gate->open();
  const auto [value, live, closed] = at_completion.get();
  CHECK(value == 1);
  CHECK(live == 0);  // the service's data and the callable's captures are gone
  CHECK(closed);     // the port was released: its channel closed
  CHECK(drain(rx) == std::vector<int>{3});
}

TEST_CASE("a caller that stops reading: sends fail with closed, the service stops early",
          "[service]") {
  offload::ThreadPool pool{{.threads = 2}};
  const std::size_t capacity = GENERATE(std::size_t{1}, std::size_t{0});
  INFO("capacity " << capacity);
  auto [tx, rx] = offload::channel<int>(capacity);

  struct Outcome {
    int delivered = 0;
    bool saw_closed = false;
  };
  constexpr int planned = 1'000'000;
  auto job = offload::run_service(
      pool,
      [](int limit, Sender<int>& port) {
        Outcome outcome;
        for (int i = 0; i < limit; ++i) {
          if (port.send(i) == ChannelStatus::closed) {
            outcome.saw_closed = true;
            break;
          }
          ++outcome.delivered;
        }
        return outcome;
      },
      planned, std::move(tx));

  for (int i = 0; i < 5; ++i) REQUIRE(rx.receive_for(patience).value == i);
  rx = Receiver<int>();  // the last Receiver goes: the channel closes

  REQUIRE(job.wait_for(patience) == offload::FutureStatus::ready);
  const Outcome outcome = job.get();
  CHECK(outcome.saw_closed);
  CHECK(outcome.delivered >= 5);
  CHECK(outcome.delivered < planned);
}

TEST_CASE("a bounded port holds a fast service back to a slow reader, losing nothing",
          "[service]") {
  offload::ThreadPool pool{{.threads = 2}};
  auto [tx, rx] = offload::channel<int>(1);
  auto completed_sends = std::make_shared<std::atomic<int>>(0);
  constexpr int count = 60;

  auto job = offload::run_service(
      pool,
      [completed_sends](int n, Sender<int>& port) {
        for (int i = 0; i < n; ++i) {
          if (port.send(i) != ChannelStatus::ok) return false;
          completed_sends->fetch_add(1);
        }
        return true;
      },
      count, std::move(tx));

  std::vector<int> received;
  int most_ahead = 0;  // how many sends had completed beyond what was received
  for (int value : rx) {
    received.push_back(value);
    // With value v taken, the channel holds at most v+1; the service waits to send v+2.
    most_ahead = std::max(most_ahead, completed_sends->load() - (value + 1));
    std::this_thread::sleep_for(1ms);  // the slow reader
  }
  CHECK(job.get());
  CHECK(received == iota_vector(count));
  CHECK(most_ahead <= 1);
}

TEST_CASE("the default pool runs services without naming a pool", "[service]") {
  auto hello = offload::run_service([](std::string name) { return "Hello " + name; },
                                    std::string("default pool"));
  CHECK(hello.get() == "Hello default pool");

  auto on_worker = offload::run_service([](int) { return offload::this_worker::index(); }, 0);
  CHECK(on_worker.get().has_value());

  auto [tx, rx] = offload::unbounded_channel<int>();
  auto job = offload::run_service(
      [](int n, Sender<int>& port) {
        for (int i = 0; i < n; ++i) port.send(i * i);
        return n;
      },
      4, std::move(tx));
  CHECK(drain(rx) == std::vector<int>{0, 1, 4, 9});
  CHECK(job.get() == 4);
}

TEST_CASE("fifty services stream into one shared channel: every message exactly once",
          "[service]") {
  offload::ThreadPool pool{{.threads = 4}};
  constexpr int services = 50;
  constexpr int per_service = 1000;
  struct Message {
    int service;
    int sequence;
  };
  auto [tx, rx] = offload::unbounded_channel<Message>();

  std::vector<offload::Future<int>> jobs;
  for (int s = 0; s < services; ++s) {
    jobs.push_back(offload::run_service(
        pool,
        [](int id, Sender<Message>& port) {
          int sent = 0;
          for (int k = 0; k < per_service; ++k) {
            if (port.send(Message{id, k}) == ChannelStatus::ok) ++sent;
          }
          return sent;
        },
        s, tx));  // each service gets a copy of the Sender
  }
  tx = Sender<Message>();  // ours goes; the channel closes when the last service is done

  std::vector<int> next_expected(services, 0);  // per service: messages arrive in send order
  bool in_order = true;
  long long total = 0;
  long long sum = 0;
  for (const Message m : rx) {
    auto& expected = next_expected[static_cast<std::size_t>(m.service)];
    in_order = in_order && m.sequence == expected;
    ++expected;
    ++total;
    sum += static_cast<long long>(m.service) * per_service + m.sequence;
  }
  for (auto& job : jobs) CHECK(job.get() == per_service);

  const long long n = static_cast<long long>(services) * per_service;
  CHECK(total == n);
  CHECK(sum == n * (n - 1) / 2);
  CHECK(in_order);
  CHECK(std::all_of(next_expected.begin(), next_expected.end(),
                    [](int got) { return got == per_service; }));
}

TEST_CASE("a service cancelled before it starts never runs and releases its port", "[service]") {
  offload::ThreadPool pool{{.threads = 1}};
  Gate started, gate;
  auto blocker = pool.submit([&] {  // keeps the only worker busy until the gate opens
    started.open();
    return gate.wait();
  });
  REQUIRE(started.wait());

  Tracked::reset();
  auto ran = std::make_shared<std::atomic<bool>>(false);
  auto [tx, rx] = offload::unbounded_channel<int>();
  auto job = offload::run_service(
      pool,
      [ran](Tracked data, Sender<int>& port) {
        ran->store(true);
        port.send(data.value);
        return data.value;
      },
      Tracked(7), std::move(tx));
  CHECK(job.request_stop());
  gate.open();

  CHECK(ended(rx));  // no message, and the loop ends
  CHECK_THROWS_AS(job.get(), offload::TaskCancelled);
  CHECK_FALSE(ran->load());
  CHECK(Tracked::live == 0);  // the data was destroyed too
  CHECK(blocker.get());
}

TEST_CASE("run_service on a shut-down pool throws PoolClosed and releases the port", "[service]") {
  offload::ThreadPool pool{{.threads = 1}};
  pool.shutdown();
  auto [tx, rx] = offload::unbounded_channel<int>();
  CHECK_THROWS_AS(offload::run_service(
                      pool, [](int, Sender<int>& port) { port.send(1); }, 0, std::move(tx)),
                  offload::PoolClosed);
  CHECK(ended(rx));
}

TEST_CASE("a service may run and wait for another service on its own pool", "[service]") {
  offload::ThreadPool pool{{.threads = 1}};  // get() on the worker runs the inner service
  auto outer = offload::run_service(
      pool,
      [&pool](int x) {
        return offload::run_service(
                   pool, [](int y) { return y * 10; }, x + 1)
            .get();
      },
      4);
  CHECK(outer.get() == 50);
}

TEST_CASE("services run on a PriorityThreadPool too", "[service]") {
  offload::PriorityThreadPool pool{{.threads = 2}};
  auto [tx, rx] = offload::unbounded_channel<int>();
  auto job = offload::run_service(
      pool,
      [](std::vector<int> v, Sender<int>& port) {
        for (int x : v) port.send(x);
        return static_cast<int>(v.size());
      },
      iota_vector(3), std::move(tx));
  CHECK(drain(rx) == iota_vector(3));
  CHECK(job.get() == 3);
  // An explicit shutdown (besides checking PoolClosed) also spares g++ 12 -fsanitize=thread a
  // false -Wmaybe-uninitialized it reports when the whole destructor is inlined here.
  pool.shutdown();
  CHECK_THROWS_AS(offload::run_service(
                      pool, [](int x) { return x; }, 1),
                  offload::PoolClosed);
}

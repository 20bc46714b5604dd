#include <offload/future.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <variant>
#include <vector>

#include "catch.hpp"

using namespace std::chrono_literals;
using offload::Future;
using offload::FutureStatus;
using offload::Promise;

namespace {

bool is_future_error(const std::future_error& e, std::future_errc code) {
  return e.code() == std::make_error_code(code);
}

}  // namespace

TEST_CASE("a promise's value reaches its future", "[future]") {
  Promise<std::string> promise;
  Future<std::string> future = promise.get_future();
  CHECK(future.valid());
  CHECK_FALSE(future.ready());
  CHECK(future.wait_for(1ms) == FutureStatus::timeout);

  std::thread producer([&] {
    std::this_thread::sleep_for(5ms);
    promise.set_value("hello");
  });
  future.wait();
  CHECK(future.ready());
  CHECK(future.wait_for(0ms) == FutureStatus::ready);
  CHECK(future.get() == "hello");
  CHECK_FALSE(future.valid());
  producer.join();
}

TEST_CASE("a promise's exception is rethrown by get", "[future]") {
  Promise<int> promise;
  Future<int> future = promise.get_future();
  promise.set_exception(std::make_exception_ptr(std::runtime_error("boom")));
  CHECK(future.ready());
  CHECK_THROWS_WITH(future.get(), "boom");
}

TEST_CASE("Future<void> and move-only values", "[future]") {
  Promise<void> done;
  Future<void> f = done.get_future();
  done.set_value();
  CHECK_NOTHROW(f.get());

  Promise<std::unique_ptr<int>> boxed;
  Future<std::unique_ptr<int>> g = boxed.get_future();
  boxed.set_value(std::make_unique<int>(42));
  std::unique_ptr<int> value = g.get();
  REQUIRE(value);
  CHECK(*value == 42);
}

TEST_CASE("misuse gives std::future_error", "[future]") {
  SECTION("get on an empty future") {
    Future<int> empty;
    CHECK_FALSE(empty.valid());
    CHECK_FALSE(empty.ready());
    CHECK_FALSE(empty.request_stop());
    try {
      empty.get();
      FAIL("get() on an empty future did not throw");
    } catch (const std::future_error& e) {
      CHECK(is_future_error(e, std::future_errc::no_state));
    }
    CHECK_THROWS_AS(empty.wait(), std::future_error);
    CHECK_THROWS_AS(empty.wait_for(1ms), std::future_error);
    CHECK_THROWS_AS(empty.then([](int x) { return x; }), std::future_error);
  }
  SECTION("get_future twice") {
    Promise<int> promise;
    auto first = promise.get_future();
    try {
      (void)promise.get_future();
      FAIL("second get_future() did not throw");
    } catch (const std::future_error& e) {
      CHECK(is_future_error(e, std::future_errc::future_already_retrieved));
    }
  }
  SECTION("set_value twice") {
    Promise<int> promise;
    auto future = promise.get_future();
    promise.set_value(1);
    CHECK_THROWS_AS(promise.set_value(2), std::future_error);
    CHECK_THROWS_AS(promise.set_exception(std::make_exception_ptr(std::runtime_error("x"))),
                    std::future_error);
    CHECK(future.get() == 1);
  }
  SECTION("a promise dropped unsatisfied breaks its future") {
    Future<int> future;
    {
      Promise<int> promise;
      future = promise.get_future();
    }
    REQUIRE(future.ready());
    try {
      future.get();
      FAIL("broken promise did not throw");
    } catch (const std::future_error& e) {
      CHECK(is_future_error(e, std::future_errc::broken_promise));
    }
  }
  SECTION("a promise overwritten by move breaks its old future") {
    Promise<int> first;
    Future<int> old_future = first.get_future();
    Promise<int> second;
    Future<int> new_future = second.get_future();
    first = std::move(second);
    CHECK_THROWS_AS(old_future.get(), std::future_error);
    first.set_value(7);
    CHECK(new_future.get() == 7);
  }
}

TEST_CASE("a value whose construction throws leaves the promise usable", "[future]") {
  struct Fragile {
    explicit Fragile(int v) : value(v) {
      if (v < 0) throw std::invalid_argument("negative");
    }
    int value;
  };
  Promise<Fragile> promise;
  auto future = promise.get_future();
  CHECK_THROWS_AS(promise.set_value(-1), std::invalid_argument);
  CHECK_FALSE(future.ready());
  promise.set_value(5);
  CHECK(future.get().value == 5);

  Future<Fragile> broken;
  {
    Promise<Fragile> dropped;
    broken = dropped.get_future();
    CHECK_THROWS_AS(dropped.set_value(-1), std::invalid_argument);
  }
  CHECK_THROWS_AS(broken.get(), std::future_error);  // broken, not hanging
}

TEST_CASE("then chains continuations", "[future]") {
  SECTION("on a ready future the continuation runs inline") {
    Promise<int> promise;
    auto future = promise.get_future();
    promise.set_value(20);
    const auto caller = std::this_thread::get_id();
    std::thread::id ran_on;
    auto next = future.then([&](int x) {
      ran_on = std::this_thread::get_id();
      return x + 1;
    });
    CHECK_FALSE(future.valid());
    CHECK(next.ready());
    CHECK(ran_on == caller);
    CHECK(next.get() == 21);
  }
  SECTION("on a pending future it runs on the completing thread") {
    Promise<int> promise;
    std::thread::id ran_on;
    auto next = promise.get_future()
                    .then([&](int x) {
                      ran_on = std::this_thread::get_id();
                      return std::to_string(x);
                    })
                    .then([](std::string s) { return s + "!"; });
    std::thread::id producer_id;
    std::thread producer([&] {
      producer_id = std::this_thread::get_id();
      promise.set_value(5);
    });
    producer.join();
    CHECK(next.get() == "5!");
    CHECK(ran_on == producer_id);
  }
  SECTION("void in, void out") {
    Promise<void> promise;
    int calls = 0;
    auto next = promise.get_future().then([&] { ++calls; }).then([&] { return calls * 10; });
    promise.set_value();
    CHECK(next.get() == 10);
  }
  SECTION("an exception skips the continuation and passes through") {
    Promise<int> promise;
    int calls = 0;
    auto next = promise.get_future().then([&](int x) {
      ++calls;
      return x;
    });
    promise.set_exception(std::make_exception_ptr(std::logic_error("upstream")));
    CHECK_THROWS_WITH(next.get(), "upstream");
    CHECK(calls == 0);
  }
  SECTION("a throwing continuation fails the next future") {
    Promise<int> promise;
    auto next = promise.get_future()
                    .then([](int) -> int { throw std::runtime_error("in continuation"); })
                    .then([](int x) { return x + 1; });
    promise.set_value(1);
    CHECK_THROWS_WITH(next.get(), "in continuation");
  }
  SECTION("request_stop on a chained future skips its continuation") {
    Promise<int> promise;
    int calls = 0;
    auto next = promise.get_future().then([&](int x) {
      ++calls;
      return x;
    });
    CHECK(next.request_stop());
    CHECK_FALSE(next.request_stop());  // already requested
    promise.set_value(3);
    CHECK_THROWS_AS(next.get(), offload::TaskCancelled);
    CHECK(calls == 0);
  }
  SECTION("move-only continuation and result") {
    Promise<int> promise;
    auto owned = std::make_unique<int>(100);
    auto next = promise.get_future().then(
        [owned = std::move(owned)](int x) { return std::make_unique<int>(*owned + x); });
    promise.set_value(1);
    CHECK(*next.get() == 101);
  }
}

TEST_CASE("request_stop reaches the promise", "[future]") {
  Promise<int> promise;
  auto future = promise.get_future();
  CHECK_FALSE(promise.stop_requested());
  CHECK(future.request_stop());
  CHECK(promise.stop_requested());
  promise.set_exception(std::make_exception_ptr(offload::TaskCancelled()));
  CHECK_THROWS_AS(future.get(), offload::TaskCancelled);

  Promise<int> finished;
  auto done = finished.get_future();
  finished.set_value(1);
  CHECK_FALSE(done.request_stop());  // too late: already complete
  CHECK(done.get() == 1);
}

TEST_CASE("wait_for and wait_until time out, then succeed", "[future]") {
  Promise<int> promise;
  auto future = promise.get_future();
  const auto start = std::chrono::steady_clock::now();
  CHECK(future.wait_for(20ms) == FutureStatus::timeout);
  CHECK(std::chrono::steady_clock::now() - start >= 20ms);
  CHECK(future.wait_until(std::chrono::steady_clock::now() + 5ms) == FutureStatus::timeout);
  promise.set_value(9);
  CHECK(future.wait_for(std::chrono::hours(1)) == FutureStatus::ready);
  CHECK(future.wait_for(std::chrono::nanoseconds::max()) == FutureStatus::ready);
  CHECK(future.get() == 9);
}

TEST_CASE("many threads waiting on one result all wake", "[future]") {
  Promise<int> promise;
  auto future = promise.get_future();
  std::atomic<int> woke{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 8; ++i) {
    waiters.emplace_back([&] {
      future.wait();
      woke.fetch_add(1);
    });
  }
  std::this_thread::sleep_for(10ms);
  promise.set_value(1);
  for (auto& t : waiters) t.join();
  CHECK(woke.load() == 8);
}

TEST_CASE("when_all over a vector", "[future]") {
  SECTION("values in input order, whatever the completion order") {
    std::vector<Promise<int>> promises(5);
    std::vector<Future<int>> futures;
    for (auto& p : promises) futures.push_back(p.get_future());
    auto all = offload::when_all(std::move(futures));
    for (int i = 4; i >= 0; --i) {
      CHECK_FALSE(all.ready());
      promises[static_cast<std::size_t>(i)].set_value(i * i);
    }
    CHECK(all.get() == std::vector<int>{0, 1, 4, 9, 16});
  }
  SECTION("empty input is ready at once") {
    auto all = offload::when_all(std::vector<Future<int>>{});
    CHECK(all.ready());
    CHECK(all.get().empty());
    auto none = offload::when_all(std::vector<Future<void>>{});
    CHECK(none.ready());
    CHECK_NOTHROW(none.get());
  }
  SECTION("the first failure fails the whole, after every input completed") {
    std::vector<Promise<int>> promises(3);
    std::vector<Future<int>> futures;
    for (auto& p : promises) futures.push_back(p.get_future());
    auto all = offload::when_all(std::move(futures));
    promises[1].set_exception(std::make_exception_ptr(std::runtime_error("second")));
    CHECK_FALSE(all.ready());
    promises[0].set_value(1);
    promises[2].set_exception(std::make_exception_ptr(std::runtime_error("third")));
    CHECK_THROWS_WITH(all.get(), "second");
  }
  SECTION("Future<void> inputs give Future<void>") {
    std::vector<Promise<void>> promises(3);
    std::vector<Future<void>> futures;
    for (auto& p : promises) futures.push_back(p.get_future());
    Future<void> all = offload::when_all(std::move(futures));
    for (auto& p : promises) p.set_value();
    CHECK_NOTHROW(all.get());
  }
  SECTION("an empty input future is an error") {
    std::vector<Future<int>> futures(1);
    CHECK_THROWS_AS(offload::when_all(std::move(futures)), std::future_error);
  }
}

TEST_CASE("when_all over a pack gives a tuple", "[future]") {
  Promise<int> a;
  Promise<std::string> b;
  Promise<void> c;
  auto all = offload::when_all(a.get_future(), b.get_future(), c.get_future());
  static_assert(std::is_same_v<decltype(all), Future<std::tuple<int, std::string, std::monostate>>>);
  c.set_value();
  b.set_value("b");
  CHECK_FALSE(all.ready());
  a.set_value(1);
  auto [x, y, z] = all.get();
  CHECK(x == 1);
  CHECK(y == "b");
  CHECK(z == std::monostate{});

  Promise<int> good;
  Promise<int> bad;
  auto failing = offload::when_all(good.get_future(), bad.get_future());
  bad.set_exception(std::make_exception_ptr(std::runtime_error("bad")));
  good.set_value(1);
  CHECK_THROWS_WITH(failing.get(), "bad");
}

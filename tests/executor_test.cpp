// Executors (executor.hpp): EventLoop, and a loop of the user's own plugged in with
// executor_traits, pass the same cases (support/executor_cases.hpp). asio_test.cpp and
// uv_test.cpp run them for Asio and libuv.
#include <offload/event_loop.hpp>
#include <offload/executor.hpp>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include "catch.hpp"
#include "executor_cases.hpp"

namespace {

/**
 * A loop of a user's own, as docs/executors.md shows one: a queue that run() drains on the
 * calling thread until nothing is queued and no keep-alive is out. Its keep-alive can post,
 * so a continuation finding the loop destroyed is dropped (its future fails with PoolClosed)
 * instead of touching it.
 */
class UserLoop {
  struct Shared {
    std::mutex mutex;
    std::condition_variable changed;
    std::deque<offload::UniqueFunction<void()>> queue;
    int keep_alives = 0;
    bool closed = false;
  };

 public:
  class KeepAlive {
   public:
    explicit KeepAlive(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {
      std::lock_guard lock(shared_->mutex);
      ++shared_->keep_alives;
    }
    KeepAlive(KeepAlive&&) noexcept = default;
    KeepAlive& operator=(KeepAlive&&) = delete;
    ~KeepAlive() { release({}); }

    /// Queues `f` and lets the loop go, under one lock; drops `f` if the loop is gone.
    void post(offload::UniqueFunction<void()> f) && { release(std::move(f)); }

   private:
    void release(offload::UniqueFunction<void()> f) {
      if (!shared_) return;
      {
        std::lock_guard lock(shared_->mutex);
        if (f && !shared_->closed) shared_->queue.push_back(std::move(f));
        --shared_->keep_alives;
        shared_->changed.notify_all();
      }
      shared_.reset();
      // `f`, if dropped, is destroyed here, outside the lock.
    }

    std::shared_ptr<Shared> shared_;
  };

  UserLoop() = default;
  UserLoop(const UserLoop&) = delete;
  UserLoop& operator=(const UserLoop&) = delete;
  ~UserLoop() {
    std::deque<offload::UniqueFunction<void()>> dropped;
    std::lock_guard lock(shared_->mutex);
    shared_->closed = true;
    dropped.swap(shared_->queue);
  }

  void post(offload::UniqueFunction<void()> f) {
    std::lock_guard lock(shared_->mutex);
    if (shared_->closed) return;
    shared_->queue.push_back(std::move(f));
    shared_->changed.notify_all();
  }

  KeepAlive keep_alive() { return KeepAlive(shared_); }

  void run() {
    std::unique_lock lock(shared_->mutex);
    for (;;) {
      shared_->changed.wait(
          lock, [&] { return !shared_->queue.empty() || shared_->keep_alives == 0; });
      if (shared_->queue.empty()) return;
      offload::UniqueFunction<void()> next = std::move(shared_->queue.front());
      shared_->queue.pop_front();
      lock.unlock();
      next();
      next.reset();
      lock.lock();
    }
  }

 private:
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>();
};

}  // namespace

template <>
struct offload::executor_traits<UserLoop> {
  static void post(UserLoop& loop, offload::UniqueFunction<void()> f) { loop.post(std::move(f)); }
  static UserLoop::KeepAlive keep_alive(UserLoop& loop) { return loop.keep_alive(); }
};

namespace {

struct EventLoopFixture {
  std::optional<offload::EventLoop> loop{std::in_place};
  offload::EventLoop& executor() { return *loop; }
  void run() { loop->run(); }
  void destroy() { loop.reset(); }
};

struct UserLoopFixture {
  std::optional<UserLoop> loop{std::in_place};
  UserLoop& executor() { return *loop; }
  void run() { loop->run(); }
  void destroy() { loop.reset(); }
};

static_assert(offload::Executor<offload::EventLoop>);
static_assert(offload::Executor<UserLoop>);
static_assert(!offload::Executor<int>, "a type without executor_traits is not an executor");

}  // namespace

OFFLOAD_EXECUTOR_CASES("[executor]", EventLoopFixture, UserLoopFixture)

namespace {

/// An executor whose keep-alive cannot post: offload posts through executor_traits::post, so
/// the executor must outlive its continuations. Wraps an EventLoop and counts what it does.
struct CountingLoop {
  offload::EventLoop loop;
  int posts = 0;
  int keep_alives = 0;
};

}  // namespace

template <>
struct offload::executor_traits<CountingLoop> {
  static void post(CountingLoop& where, offload::UniqueFunction<void()> f) {
    ++where.posts;
    where.loop.post(std::move(f));
  }
  struct Token {
    offload::EventLoop::Hold hold;  // released, not posted through: Token has no post()
  };
  static Token keep_alive(CountingLoop& where) {
    ++where.keep_alives;
    return Token{where.loop.hold()};
  }
};

TEST_CASE("an executor whose keep-alive cannot post gets post() once per continuation",
          "[executor]") {
  CountingLoop counting;
  offload::Promise<int> promise;
  bool ran = false;
  auto result = promise.get_future().then(&counting, [&](int v) {  // a pointer names its pointee
    ran = true;
    return v + 1;
  });
  CHECK(counting.keep_alives == 1);
  CHECK(counting.posts == 0);
  std::thread completer([&] { promise.set_value(4); });
  counting.loop.run();  // the Token's hold keeps it running until the continuation is posted
  completer.join();
  CHECK(ran);
  CHECK(result.get() == 5);
  CHECK(counting.posts == 1);
}

namespace {

/// An executor that is a small value (as Asio's are), with a keep-alive that cannot post.
struct LoopRef {
  offload::EventLoop* loop;
  int* posts;
};

}  // namespace

template <>
struct offload::executor_traits<LoopRef> {
  static void post(LoopRef& where, offload::UniqueFunction<void()> f) {
    ++*where.posts;
    where.loop->post(std::move(f));
  }
  static offload::executor_traits<CountingLoop>::Token keep_alive(LoopRef& where) {
    return {where.loop->hold()};
  }
};

TEST_CASE("an rvalue executor is moved into the continuation", "[executor]") {
  offload::EventLoop loop;
  int posts = 0;
  offload::Promise<int> promise;
  // The temporary LoopRef is gone when the promise completes: the continuation kept a copy.
  auto result = promise.get_future().then(LoopRef{&loop, &posts}, [](int v) { return v * 3; });
  std::thread completer([&] { promise.set_value(1); });
  loop.run();
  completer.join();
  CHECK(result.get() == 3);
  CHECK(posts == 1);
}

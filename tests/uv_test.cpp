// Executors on libuv (uv.hpp): a uv_loop_t* passes the cases every executor passes
// (support/executor_cases.hpp); "destroyed" is the program closing the loop the libuv way.
#include <uv.h>

#include <offload/uv.hpp>

#include <memory>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "executor_cases.hpp"

namespace {

/// Closes every handle on `loop` that is not closing yet (the usual way to end a loop).
void close_every_handle(uv_loop_t* loop) {
  uv_walk(
      loop,
      [](uv_handle_t* handle, void*) {
        if (!uv_is_closing(handle)) uv_close(handle, nullptr);
      },
      nullptr);
}

struct UvLoop {
  std::unique_ptr<uv_loop_t> storage = std::make_unique<uv_loop_t>();
  uv_loop_t* loop = nullptr;

  UvLoop() {
    REQUIRE(uv_loop_init(storage.get()) == 0);
    loop = storage.get();
  }
  UvLoop(const UvLoop&) = delete;
  UvLoop& operator=(const UvLoop&) = delete;
  ~UvLoop() {
    if (loop != nullptr) destroy();
  }

  uv_loop_t*& executor() { return loop; }
  void run() { uv_run(loop, UV_RUN_DEFAULT); }
  /// Closes the loop as a program does, with whatever is pending, then frees its memory.
  void destroy() {
    close_every_handle(loop);
    uv_run(loop, UV_RUN_DEFAULT);  // lets the closes finish
    CHECK(uv_loop_close(loop) == 0);
    storage.reset();
    loop = nullptr;
  }
};

static_assert(offload::Executor<uv_loop_t>);

}  // namespace

OFFLOAD_EXECUTOR_CASES("[executor][uv]", UvLoop)

TEST_CASE("once the continuations have run, nothing of offload's is left on the loop",
          "[executor][uv]") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  offload::ThreadPool pool({.threads = 2});
  for (int round = 0; round < 3; ++round) {  // the bridge closes and opens again
    std::vector<offload::Future<int>> results;
    for (int i = 0; i < 100; ++i) {
      results.push_back(pool.submit([i] { return i; }).then(&loop, [](int v) { return v + 1; }));
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 100; ++i) CHECK(results[std::size_t(i)].get() == i + 1);
  }
  CHECK(uv_loop_alive(&loop) == 0);
  CHECK(uv_loop_close(&loop) == 0);  // UV_EBUSY if a handle of offload's were still open
}

TEST_CASE("a loop the program keeps busy with its own timer runs continuations between ticks",
          "[executor][uv]") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  uv_timer_t timer;
  uv_timer_init(&loop, &timer);
  struct Ticks {
    int count = 0;
  } ticks;
  timer.data = &ticks;
  uv_timer_start(
      &timer,
      [](uv_timer_t* t) {
        auto* counted = static_cast<Ticks*>(t->data);
        if (++counted->count == 20) uv_timer_stop(t);
      },
      1, 1);
  offload::ThreadPool pool({.threads = 1});
  auto result = pool.submit([] {
                      std::this_thread::sleep_for(std::chrono::milliseconds(5));
                      return 7;
                    })
                    .then(&loop, [](int v) { return v * 6; });
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(result.get() == 42);
  CHECK(ticks.count == 20);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

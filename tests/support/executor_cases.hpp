#ifndef OFFLOAD_TESTS_EXECUTOR_CASES_HPP
#define OFFLOAD_TESTS_EXECUTOR_CASES_HPP

// The cases every executor passes (API.md, "Executors"), written once against a fixture:
//
//   struct Fixture {
//     auto& executor();  // what then(), spawn() and resume_on() are given
//     void run();        // runs the loop on the calling thread until it runs dry; may run again
//     void destroy();    // destroys (or closes) the loop, dropping what is queued
//   };
//
// Each test program instantiates them for its executors with TEMPLATE_TEST_CASE.

#include <offload/executor.hpp>
#include <offload/future.hpp>
#include <offload/task.hpp>
#include <offload/thread_pool.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "current_thread.hpp"

namespace executor_cases {

using namespace std::chrono_literals;
using offload_test::current_thread;

/// f runs once, on the loop's thread, for a pending and for an already complete future; run()
/// does not return before the late one has run.
template <class Fixture>
void continuation_runs_once_on_the_loop_thread() {
  Fixture fixture;
  offload::Promise<int> late;
  offload::Promise<int> early;
  offload::Future<int> early_future = early.get_future();
  early.set_value(3);
  std::atomic<int> calls{0};
  std::thread::id ran_on_late, ran_on_early;
  auto late_result = late.get_future().then(fixture.executor(), [&](int v) {
    ++calls;
    ran_on_late = current_thread();
    return v * 2;
  });
  auto early_result = early_future.then(fixture.executor(), [&](int v) {
    ++calls;
    ran_on_early = current_thread();
    return v * 2;
  });
  std::thread completer([&] {
    std::this_thread::sleep_for(20ms);
    late.set_value(5);
  });
  fixture.run();  // must not return before the late continuation has run
  const int calls_when_run_returned = calls.load();
  completer.join();
  CHECK(calls_when_run_returned == 2);
  CHECK(ran_on_late == current_thread());
  CHECK(ran_on_early == current_thread());
  CHECK(late_result.get() == 10);
  CHECK(early_result.get() == 6);
  CHECK(calls == 2);
}

/// 10,000 continuations completed by 4 pool threads all arrive, each producer's in the order
/// it completed them.
template <class Fixture>
void continuations_from_four_threads_arrive_in_order() {
  constexpr unsigned producers = 4;
  constexpr std::size_t per_producer = 2500;
  Fixture fixture;
  std::vector<offload::Promise<int>> promises(producers * per_producer);
  std::array<std::vector<int>, producers> arrived;  // touched only on the loop's thread
  std::vector<offload::Future<void>> results;
  for (std::size_t p = 0; p < producers; ++p) {
    for (std::size_t i = 0; i < per_producer; ++i) {
      results.push_back(promises[p * per_producer + i].get_future().then(
          fixture.executor(), [&arrived, p](int value) { arrived[p].push_back(value); }));
    }
  }
  offload::ThreadPool pool({.threads = producers});
  std::vector<offload::Future<void>> producing;
  for (std::size_t p = 0; p < producers; ++p) {
    producing.push_back(pool.submit([&promises, p] {
      for (std::size_t i = 0; i < per_producer; ++i) {
        promises[p * per_producer + i].set_value(static_cast<int>(i));
      }
    }));
  }
  fixture.run();
  for (auto& done : producing) done.get();
  for (auto& result : results) CHECK_NOTHROW(result.get());
  for (const std::vector<int>& got : arrived) {
    REQUIRE(got.size() == per_producer);
    bool in_order = true;
    for (std::size_t i = 0; i < per_producer; ++i) in_order = in_order && got[i] == int(i);
    CHECK(in_order);
  }
}

/// The task's exception skips f and reaches the returned future; so does f's own.
template <class Fixture>
void exceptions_reach_the_returned_future() {
  Fixture fixture;
  offload::Promise<int> failing;
  offload::Future<int> failed = failing.get_future();
  failing.set_exception(std::make_exception_ptr(std::runtime_error("task failed")));
  bool called = false;
  auto skipped = failed.then(fixture.executor(), [&](int) {
    called = true;
    return 0;
  });
  offload::Promise<int> fine;
  offload::Future<int> fine_future = fine.get_future();
  fine.set_value(1);
  auto thrown = fine_future.then(fixture.executor(), [](int) -> int {
    throw std::logic_error("continuation failed");
  });
  fixture.run();
  CHECK_FALSE(called);
  CHECK_THROWS_WITH(skipped.get(), "task failed");
  CHECK_THROWS_AS(thrown.get(), std::logic_error);
}

/// The loop destroyed with continuations pending (one whose task has not finished, one
/// already queued on the loop): neither runs, both futures fail with PoolClosed.
template <class Fixture>
void loop_destroyed_first_fails_pending_continuations() {
  std::atomic<int> calls{0};
  offload::Promise<int> unfinished;
  offload::Promise<int> finished;
  offload::Future<int> finished_future = finished.get_future();
  finished.set_value(2);
  offload::Future<int> waiting, queued;
  {
    Fixture fixture;
    waiting = unfinished.get_future().then(fixture.executor(), [&](int v) {
      ++calls;
      return v;
    });
    queued = finished_future.then(fixture.executor(), [&](int v) {
      ++calls;
      return v;
    });
    fixture.destroy();
  }
  unfinished.set_value(1);  // after the loop is gone: posting must not touch it
  CHECK_THROWS_AS(waiting.get(), offload::PoolClosed);
  CHECK_THROWS_AS(queued.get(), offload::PoolClosed);
  CHECK(calls == 0);
}

/// A task spawned on the executor starts and resumes on the loop's thread, also after
/// awaiting a pool job; resume_on() brings a task on a pool back to the loop's thread.
template <class Fixture>
void coroutines_run_and_resume_on_the_loop_thread() {
  Fixture fixture;
  offload::ThreadPool pool({.threads = 2});
  const std::thread::id loop_thread = current_thread();
  std::vector<bool> on_loop;
  auto& executor = fixture.executor();
  auto body = [&]() -> offload::Task<int> {
    on_loop.push_back(current_thread() == loop_thread);
    const int a = co_await pool.submit([] { return 20; });
    on_loop.push_back(current_thread() == loop_thread);
    co_await offload::resume_on(pool);
    on_loop.push_back(current_thread() != loop_thread);
    co_await offload::resume_on(executor);
    on_loop.push_back(current_thread() == loop_thread);
    co_return a + 1;
  };
  offload::Future<int> result = offload::async(executor, body);
  fixture.run();
  CHECK(result.get() == 21);
  CHECK(on_loop == std::vector<bool>{true, true, true, true});
}

}  // namespace executor_cases

/// Instantiates every case above for the fixtures given (a TEMPLATE_TEST_CASE each).
#define OFFLOAD_EXECUTOR_CASES(tag, ...)                                                         \
  TEMPLATE_TEST_CASE("a continuation runs once, on the loop's thread, also when ready", tag,   \
                     __VA_ARGS__) {                                                              \
    executor_cases::continuation_runs_once_on_the_loop_thread<TestType>();                      \
  }                                                                                              \
  TEMPLATE_TEST_CASE("10,000 continuations from 4 pool threads arrive in order per producer",  \
                     tag, __VA_ARGS__) {                                                         \
    executor_cases::continuations_from_four_threads_arrive_in_order<TestType>();                \
  }                                                                                              \
  TEMPLATE_TEST_CASE("exceptions reach the future then() returns", tag, __VA_ARGS__) {          \
    executor_cases::exceptions_reach_the_returned_future<TestType>();                           \
  }                                                                                              \
  TEMPLATE_TEST_CASE("a loop destroyed first: pending continuations fail with PoolClosed", tag, \
                     __VA_ARGS__) {                                                              \
    executor_cases::loop_destroyed_first_fails_pending_continuations<TestType>();               \
  }                                                                                              \
  TEMPLATE_TEST_CASE("coroutines spawned on the executor run and resume on its thread", tag,    \
                     __VA_ARGS__) {                                                              \
    executor_cases::coroutines_run_and_resume_on_the_loop_thread<TestType>();                   \
  }

#endif  // OFFLOAD_TESTS_EXECUTOR_CASES_HPP

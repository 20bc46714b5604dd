#ifndef OFFLOAD_DETAIL_TASK_ROOT_HPP
#define OFFLOAD_DETAIL_TASK_ROOT_HPP

/// @file detail/task/root.hpp
/// The root of a coroutine tree: what spawn() and sync_wait() run, and where the outcome goes.

#include <exception>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "../../future.hpp"
#include "../shared_state.hpp"
#include "executor.hpp"
#include "promise.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// Runs `task` to its end and hands the outcome to `done(value)` / `failed(error)`; the root
/// of spawn() and sync_wait().
template <class T, class Sink>
RootCoroutine run_root(Task<T> task, Sink sink) {
  std::exception_ptr error;
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(task);
      sink.done();
    } else {
      sink.done(co_await std::move(task));
    }
  } catch (...) {
    error = std::current_exception();
  }
  // Outside the handler: see errors.hpp's make_error() on exceptions and ThreadSanitizer.
  if (error) sink.failed(std::move(error));
}

/// spawn()'s sink: completes the Future's shared state.
template <class T>
struct StateSink {
  StatePtr<SharedState<T>> state;
  template <class... V>
  void done(V&&... value) {
    state->set_value(std::forward<V>(value)...);
  }
  void failed(std::exception_ptr error) { state->set_exception(std::move(error)); }
};

/// sync_wait()'s sink: keeps the outcome for the waiting thread and ends its loop.
template <class T>
struct WaitSink {
  std::optional<value_or_monostate_t<T>>* value;
  std::exception_ptr* error;
  SyncWaitDriver* driver;
  template <class... V>
  void done(V&&... result) {
    value->emplace(std::forward<V>(result)...);
    driver->finish();
  }
  void failed(std::exception_ptr failure) {
    *error = std::move(failure);
    driver->finish();
  }
};

template <class T>
Future<T> spawn_on(const ExecutorRef& executor, Task<T> task) {
  StatePtr<SharedState<T>> state(new SharedState<T>());
  std::stop_token stop = state->make_stop_token();
  Future<T> future = FutureAccess::make<T>(StatePtr<SharedState<T>>(state));
  run_root(std::move(task), StateSink<T>{std::move(state)}).start(executor, std::move(stop));
  return future;
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_TASK_ROOT_HPP

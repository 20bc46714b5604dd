#ifndef OFFLOAD_DETAIL_POOL_JOB_HPP
#define OFFLOAD_DETAIL_POOL_JOB_HPP

/// @file detail/pool/job.hpp
/// What a pool queues: a Job (a type-erased callable plus bookkeeping), and the TaskState
/// that lets a submitted callable and its future share one allocation.

#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../../errors.hpp"
#include "../shared_state.hpp"
#include "../unique_function.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// How a queued task ended, for the pool's statistics.
enum class TaskOutcome : unsigned char { succeeded, failed, cancelled };

/// 40 inline bytes keep a Job at one cache line: a lambda with five captured words is free.
using JobBody = UniqueFunction<TaskOutcome(), 40>;

/// One queued unit of work.
struct Job {
  JobBody task;
  /// Steady-clock nanoseconds when queued, for the sampled queue-wait statistics; 0 when this
  /// job is not sampled.
  std::int64_t enqueued_ns = 0;
  /// Whether the job holds one of the bounded queue's slots (outside submissions only).
  bool holds_queue_slot = false;

  /// Like a move from `other` that also ends its lifetime, without writing to it (see
  /// UniqueFunction::relocate_from); queues use it through relocate_into().
  void relocate_from(Job& other) noexcept {
    task.relocate_from(other.task);
    enqueued_ns = other.enqueued_ns;
    holds_queue_slot = other.holds_queue_slot;
  }
};

// Like std::thread, a task calls its decay-copied callable and arguments as rvalues: each
// runs once, so move-only arguments work.

/// True when F is called with the future's stop token in front of its arguments.
template <class F, class... Args>
inline constexpr bool takes_stop_token =
    std::is_invocable_v<F, std::stop_token, Args...> && !std::is_invocable_v<F, Args...>;

// Derived from std::invoke_result so that a non-callable F leaves `type` undefined (a soft
// substitution failure) instead of a hard error inside this class.
template <class F, class... Args>
struct task_result : std::invoke_result<F, Args...> {};
template <class F, class... Args>
  requires takes_stop_token<F, Args...>
struct task_result<F, Args...> : std::invoke_result<F, std::stop_token, Args...> {};
/// What a task of callable F with arguments Args returns.
template <class F, class... Args>
using task_result_t = typename task_result<std::decay_t<F>, std::decay_t<Args>...>::type;

/// Something a queue can run once, or abandon when it never will.
class Runnable {
 public:
  virtual TaskOutcome run() noexcept = 0;
  virtual void abandon() noexcept = 0;

 protected:
  ~Runnable() = default;
};

/// Calls `fn(args...)` once, as rvalues (with the stop token first when it takes one).
template <class F, class Tuple>
decltype(auto) invoke_task(F& fn, Tuple& args, const std::stop_token& token) {
  return std::apply(
      [&](auto&... unpacked) -> decltype(auto) {
        if constexpr (std::is_invocable_v<F, std::remove_reference_t<decltype(unpacked)>...>) {
          return std::invoke(std::move(fn), std::move(unpacked)...);
        } else {
          return std::invoke(std::move(fn), token, std::move(unpacked)...);
        }
      },
      args);
}

/// The shared state of a submitted task that also stores the callable and its arguments,
/// so submit() makes exactly one allocation.
template <class R, class F, class... Args>
class TaskState final : public SharedState<R>, public Runnable {
 public:
  template <class Fn, class... A>
  explicit TaskState(Fn&& fn, A&&... args)
      : fn_(std::forward<Fn>(fn)), args_(std::forward<A>(args)...) {
    if constexpr (takes_stop_token<F, Args...>) token_ = this->make_stop_token();
  }

  TaskOutcome run() noexcept override {
    TaskOutcome outcome = execute();
    this->release();  // the queue's reference
    return outcome;
  }

  void abandon() noexcept override {
    this->set_exception(make_error<std::future_error>(std::future_errc::broken_promise));
    this->release();
  }

 private:
  TaskOutcome execute() noexcept {
    if (this->stop_requested()) {
      this->set_exception(make_error<TaskCancelled>());
      return TaskOutcome::cancelled;
    }
    std::exception_ptr error = exception_of([&] {
      if constexpr (std::is_void_v<R>) {
        invoke_task(fn_, args_, token_);
        this->set_value();
      } else {
        this->set_value(invoke_task(fn_, args_, token_));
      }
    });
    if (!error) return TaskOutcome::succeeded;
    this->set_exception(std::move(error));
    return TaskOutcome::failed;
  }

  F fn_;
  std::tuple<Args...> args_;
  std::stop_token token_;
};

/// The queue's handle on a Runnable: runs it once, or abandons it if destroyed unrun (so a
/// future never waits forever on a task that was dropped).
class RunnableHandle {
 public:
  explicit RunnableHandle(Runnable* runnable) noexcept : runnable_(runnable) {}
  RunnableHandle(RunnableHandle&& other) noexcept
      : runnable_(std::exchange(other.runnable_, nullptr)) {}
  RunnableHandle& operator=(RunnableHandle&&) = delete;
  RunnableHandle(const RunnableHandle&) = delete;
  RunnableHandle& operator=(const RunnableHandle&) = delete;
  ~RunnableHandle() {
    if (runnable_ != nullptr) runnable_->abandon();
  }

  TaskOutcome operator()() noexcept { return std::exchange(runnable_, nullptr)->run(); }

 private:
  Runnable* runnable_;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_POOL_JOB_HPP

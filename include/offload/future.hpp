#ifndef OFFLOAD_FUTURE_HPP
#define OFFLOAD_FUTURE_HPP

/// @file future.hpp
/// Future<T> and Promise<T>: a one-shot result that can be waited for (helping the pool when
/// the waiter is a pool worker), chained with then(), cancelled with request_stop() and
/// combined with when_all().

#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/executor/destination.hpp"
#include "detail/futex.hpp"
#include "detail/shared_state.hpp"
#include "errors.hpp"
#include "executor.hpp"

namespace offload {
inline namespace v0 {

enum class FutureStatus { ready, timeout };

template <class T>
class Future;
template <class T>
class Promise;

namespace detail {

struct FutureAccess;

template <class T>
struct is_future : std::false_type {};
template <class T>
struct is_future<Future<T>> : std::true_type {};

/// The result type of continuation `F` applied to the value of a Future<T>.
template <class F, class T>
struct continuation_result {
  using type = std::invoke_result_t<F&, T>;
};
template <class F>
struct continuation_result<F, void> {
  using type = std::invoke_result_t<F&>;
};
template <class F, class T>
using continuation_result_t = typename continuation_result<F, T>::type;

/// Runs `f` on the value of `source` and completes `target` with its result or exception.
template <class T, class U, class F>
void complete_with(SharedState<T>& source, SharedState<U>& target, F& f) noexcept {
  if (source.has_error()) {
    target.set_exception(source.error());
    return;
  }
  if (target.stop_requested()) {
    target.set_exception(make_error<TaskCancelled>());
    return;
  }
  std::exception_ptr error = exception_of([&] {
    if constexpr (std::is_void_v<T> && std::is_void_v<U>) {
      std::invoke(f);
      target.set_value();
    } else if constexpr (std::is_void_v<T>) {
      target.set_value(std::invoke(f));
    } else if constexpr (std::is_void_v<U>) {
      std::invoke(f, source.take());
      target.set_value();
    } else {
      target.set_value(std::invoke(f, source.take()));
    }
  });
  if (error) target.set_exception(std::move(error));
}

inline void throw_no_state() { throw std::future_error(std::future_errc::no_state); }

/**
 * A continuation posted to an executor by then(executor, f): runs f on the source's result
 * and completes the target, once. Destroyed without having run (the executor's loop went
 * away with it queued, or the post failed), it completes the target with PoolClosed, so no
 * future is ever left pending. f is moved first, in construction and in every move: a move of
 * f that throws then leaves the target with its holder, which fails it (see then()).
 */
template <class T, class U, class F>
class PostedContinuation {
 public:
  PostedContinuation(StatePtr<SharedState<T>>&& source, StatePtr<SharedState<U>>&& target, F&& f)
      : f_(std::move(f)), source_(std::move(source)), target_(std::move(target)) {}
  PostedContinuation(PostedContinuation&&) noexcept(std::is_nothrow_move_constructible_v<F>) =
      default;  // members in order: f_ first
  PostedContinuation& operator=(PostedContinuation&&) = delete;
  ~PostedContinuation() {
    if (!target_) return;  // ran or moved on: the usual case, which builds no error
    fail(make_error<PoolClosed>(
        "offload: the executor destroyed a continuation without running it: its loop was "
        "destroyed (or closed) before the result came back"));
  }

  void operator()() noexcept {
    const StatePtr<SharedState<U>> target = std::move(target_);
    complete_with(*source_, *target, f_);
  }

  /// Completes the target with `error`, unless it ran or was moved on.
  void fail(std::exception_ptr error) noexcept {
    if (!target_) return;
    const StatePtr<SharedState<U>> target = std::move(target_);
    target->set_exception(std::move(error));
  }

 private:
  F f_;
  StatePtr<SharedState<T>> source_;
  StatePtr<SharedState<U>> target_;
};

}  // namespace detail

/**
 * @brief The eventual result of an asynchronous operation: a value of type T, or an exception.
 *
 * Move-only; one consumer. Each member may be called from any thread, but not concurrently on
 * the same Future object. Waiting members block; on a pool worker they run other queued tasks
 * of that pool while they wait, so a task may submit sub-tasks and get() them on a pool of any
 * size without deadlock. A Future and everything it needs take one allocation, made by its
 * producer.
 */
template <class T>
class Future {
  static_assert(!std::is_reference_v<T>,
                "offload::Future<T&> is not supported: return a value, a pointer or a "
                "std::reference_wrapper");

 public:
  using value_type = T;

  /// An empty future: valid() is false. Never blocks, never allocates.
  Future() noexcept = default;
  Future(Future&&) noexcept = default;
  Future& operator=(Future&&) noexcept = default;
  Future(const Future&) = delete;
  Future& operator=(const Future&) = delete;
  ~Future() = default;

  /**
   * @brief Waits for the result and returns it, leaving this future empty.
   * @throws whatever the task threw; offload::TaskCancelled when it was cancelled before it
   *         started; std::future_error(no_state) when the future is empty.
   */
  T get() {
    ensure_valid();
    state_->wait_helping();
    detail::StatePtr<detail::SharedState<T>> state = std::move(state_);
    return state->take();
  }

  /// Blocks until the result is ready (helping the pool on a worker). Throws
  /// std::future_error(no_state) on an empty future.
  void wait() const {
    ensure_valid();
    state_->wait_helping();
  }

  /// Waits at most `timeout`; FutureStatus::ready when the result is there.
  template <class Rep, class Period>
  FutureStatus wait_for(std::chrono::duration<Rep, Period> timeout) const {
    ensure_valid();
    return state_->wait_helping(detail::deadline_after(timeout)) ? FutureStatus::ready
                                                                 : FutureStatus::timeout;
  }

  /// Waits until `deadline` (a steady_clock time point).
  template <class Duration>
  FutureStatus wait_until(std::chrono::time_point<std::chrono::steady_clock, Duration> deadline) const {
    ensure_valid();
    const detail::Deadline limit(
        std::chrono::time_point_cast<std::chrono::steady_clock::duration>(deadline));
    return state_->wait_helping(limit) ? FutureStatus::ready : FutureStatus::timeout;
  }

  /// True when the result (value or exception) is available. Never blocks.
  [[nodiscard]] bool ready() const noexcept { return state_ && state_->ready(); }

  /// True while this future refers to a result (false after get(), then() or a move).
  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(state_); }

  /**
   * @brief Asks the producer to stop: a task that has not started never runs and completes
   *        with offload::TaskCancelled; a running task taking a std::stop_token sees it fire.
   * @return true when this call made the request (false when already requested, already
   *         finished, or the future is empty). Thread-safe with the producer; never blocks.
   */
  bool request_stop() noexcept { return state_ && state_->request_stop(); }

  /**
   * @brief Chains `f`: when this future completes with a value v, f(v) runs on the thread
   *        that completed it (or right here, when it is already complete).
   *
   * An exception skips f and passes to the returned future, as does an exception thrown by f.
   * Leaves this future empty. Allocates the returned future's state (and f, when large).
   * @throws std::future_error(no_state) on an empty future.
   */
  template <class F>
  auto then(F f) -> Future<detail::continuation_result_t<F, T>> {
    using U = detail::continuation_result_t<F, T>;
    static_assert(!detail::is_future<U>::value,
                  "offload: a continuation returning a Future is not unwrapped; return the "
                  "value instead, or call .get() inside the continuation");
    ensure_valid();
    auto* target = new detail::SharedState<U>();  // one reference for the continuation
    target->add_ref();                            // and one for the returned future
    detail::StatePtr<detail::SharedState<T>> source = std::move(state_);
    detail::SharedState<T>* source_state = source.get();
    // The continuation lives inside the source state, so the raw pointer stays valid while it
    // runs; `source` is kept alive until registration is done.
    source_state->set_continuation(
        [source_state, target = detail::StatePtr<detail::SharedState<U>>(target),
         f = std::move(f)]() mutable noexcept { detail::complete_with(*source_state, *target, f); });
    return Future<U>(detail::StatePtr<detail::SharedState<U>>(target));
  }

  /**
   * @brief Chains `f` to run on `executor`'s thread (the worker_threads 'message' event): an
   *        EventLoop, an Asio io_context, executor or strand (asio.hpp), a uv_loop_t*
   *        (uv.hpp), or any type with executor_traits (executor.hpp).
   *
   * f runs exactly once, on that thread, even when this future is already complete. The
   * executor is kept running (its run() does not return) until f has run. An exception from
   * the task is not passed to f: the returned future carries it. If the executor's loop is
   * destroyed before f could run, f never runs and the returned future fails with PoolClosed.
   * An lvalue executor is referred to, an rvalue one moved in. Leaves this future empty.
   * Allocates the returned future's state and the posted continuation.
   * @throws std::future_error(no_state) on an empty future; what the executor's keep_alive()
   *         throws (then nothing was chained and this future is unchanged).
   */
  template <class Ex, class F>
    requires Executor<detail::executor_named_t<Ex>>
  auto then(Ex&& executor, F f) -> Future<detail::continuation_result_t<F, T>> {
    using U = detail::continuation_result_t<F, T>;
    ensure_valid();
    auto destination = detail::destination_for(std::forward<Ex>(executor));
    Promise<U> promise;
    Future<U> result = promise.get_future();
    then_settled([destination = std::move(destination), target = std::move(promise.state_),
                  f = std::move(f)](detail::StatePtr<detail::SharedState<T>> done) mutable {
      // Moving f may throw: into the continuation, or into the executor's queue. f moves
      // first, so the target is still here or in `continuation`, and fails with that error.
      // (What throws after the queue took it, an executor's own allocation say, destroys the
      // queued continuation, which fails the target with PoolClosed.)
      std::optional<detail::PostedContinuation<T, U, F>> continuation;
      try {
        continuation.emplace(std::move(done), std::move(target), std::move(f));
        std::move(destination).post(std::move(*continuation));
      } catch (...) {
        const std::exception_ptr error = std::current_exception();
        if (target) {
          target->set_exception(error);
        } else {
          continuation->fail(error);
        }
      }
    });
    return result;
  }

 private:
  friend struct detail::FutureAccess;
  template <class>
  friend class Promise;
  template <class>
  friend class Future;

  explicit Future(detail::StatePtr<detail::SharedState<T>> state) noexcept
      : state_(std::move(state)) {}

  void ensure_valid() const {
    if (!state_) detail::throw_no_state();
  }

  /// Calls `g(state)` once this future completes, whether with a value or an exception.
  template <class G>
  void then_settled(G g) {
    detail::StatePtr<detail::SharedState<T>> source = std::move(state_);
    detail::SharedState<T>* raw = source.get();
    raw->set_continuation([g = std::move(g), keep = std::move(source)]() mutable noexcept {
      // A throw here would lose the result: the callers' g only moves and posts.
      g(std::move(keep));
    });
  }

  detail::StatePtr<detail::SharedState<T>> state_;
};

/**
 * @brief The producing end of a Future: set_value() or set_exception() once.
 *
 * Move-only. Destroying a Promise that was never satisfied completes its future with
 * std::future_error(broken_promise), so no waiter is left hanging. Allocates its state once.
 */
template <class T>
class Promise {
 public:
  Promise() : state_(new detail::SharedState<T>()) {}
  Promise(Promise&&) noexcept = default;
  Promise& operator=(Promise&& other) noexcept {
    if (this != &other) {
      abandon();
      state_ = std::move(other.state_);
      retrieved_ = other.retrieved_;
    }
    return *this;
  }
  Promise(const Promise&) = delete;
  Promise& operator=(const Promise&) = delete;
  ~Promise() { abandon(); }

  /// The future of this promise; call once. Throws std::future_error(future_already_retrieved).
  Future<T> get_future() {
    ensure_valid();
    if (retrieved_) throw std::future_error(std::future_errc::future_already_retrieved);
    retrieved_ = true;
    return Future<T>(detail::StatePtr<detail::SharedState<T>>(state_));
  }

  /// Completes the future with a value; wakes waiters and runs a continuation on this thread.
  /// Throws std::future_error(promise_already_satisfied) when already satisfied. When building
  /// the value throws, the exception propagates and the promise stays unsatisfied (it can still
  /// be set, or breaks its future when dropped).
  template <class... A>
  void set_value(A&&... args) {
    ensure_valid();
    state_->set_value(std::forward<A>(args)...);  // publishes only once the value is built
    state_ = {};
  }

  /// Completes the future with an exception.
  void set_exception(std::exception_ptr error) {
    ensure_valid();
    auto state = std::move(state_);
    state->set_exception(std::move(error));
  }

  /// True when the future's holder called request_stop(): the producer may give up early.
  [[nodiscard]] bool stop_requested() const noexcept { return state_ && state_->stop_requested(); }

 private:
  template <class>
  friend class Future;

  void ensure_valid() const {
    if (!state_) throw std::future_error(std::future_errc::promise_already_satisfied);
  }
  void abandon() noexcept {
    if (state_) {
      auto state = std::move(state_);
      state->set_exception(
          detail::make_error<std::future_error>(std::future_errc::broken_promise));
    }
  }

  detail::StatePtr<detail::SharedState<T>> state_;
  bool retrieved_ = false;
};

namespace detail {

/// Lets when_all() reach the state behind a Future.
struct FutureAccess {
  template <class T>
  static StatePtr<SharedState<T>> take_state(Future<T>& future) {
    future.ensure_valid();
    return std::move(future.state_);
  }
  /// Wraps a state (or a state derived from it) in a Future.
  template <class T, class State>
  static Future<T> make(StatePtr<State> state) {
    return Future<T>(StatePtr<SharedState<T>>(std::move(state)));
  }
};

/// Collects the results of several futures into `slots`; the last input to complete
/// fulfils the promise with `finish(slots)` (or with the first failure).
template <class Out, class Slots, class Finish>
class Gather {
 public:
  /// Slots are built in place from `slot_args` (moving a tuple of empty optionals trips a
  /// false -Wmaybe-uninitialized in g++ 12).
  template <class... SlotArgs>
  Gather(std::size_t count, Promise<Out> promise, Finish finish, SlotArgs&&... slot_args)
      : slots_(std::forward<SlotArgs>(slot_args)...),
        finish_(std::move(finish)),
        remaining_(count),
        promise_(std::move(promise)) {}

  /// Hooks input number `index`: when it completes, `store(slots, state)` keeps its value.
  template <class T, class Store>
  static void watch(const std::shared_ptr<Gather>& self, Future<T>& input, Store store) {
    auto state = FutureAccess::take_state(input);
    auto* raw = state.get();
    raw->set_continuation([self, store, keep = std::move(state)]() mutable noexcept {
      if (keep->has_error()) {
        self->fail(keep->error());
      } else {
        try {
          store(self->slots_, *keep);
        } catch (...) {
          self->fail(std::current_exception());
        }
      }
      keep = {};
      self->arrive();
    });
  }

 private:
  void fail(const std::exception_ptr& error) noexcept {
    std::lock_guard lock(error_mutex_);
    if (!error_) error_ = error;  // the first failure wins; later ones are dropped
  }

  void arrive() noexcept {
    // acq_rel: the last arriver must see every value the others stored.
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (error_) {
      promise_.set_exception(error_);
      return;
    }
    std::exception_ptr error = exception_of([&] {
      if constexpr (std::is_void_v<Out>) {
        promise_.set_value();
      } else {
        promise_.set_value(finish_(slots_));  // finish moves the values out
      }
    });
    if (error) promise_.set_exception(std::move(error));
  }

  Slots slots_;
  Finish finish_;
  std::atomic<std::size_t> remaining_;
  std::mutex error_mutex_;
  std::exception_ptr error_;
  Promise<Out> promise_;
};

template <class Slots, class Out, class Finish, class... SlotArgs>
auto make_gather(std::size_t count, Promise<Out> promise, Finish finish, SlotArgs&&... slot_args) {
  return std::make_shared<Gather<Out, Slots, Finish>>(count, std::move(promise), std::move(finish),
                                                      std::forward<SlotArgs>(slot_args)...);
}

}  // namespace detail

/**
 * @brief A future of every value of `futures`, in order; completes when all have completed.
 *
 * The first exception (in completion order) fails the whole; other results are dropped. An
 * empty input gives a ready future. For Future<void> inputs the result is Future<void>.
 * Allocates the gatherer once plus one continuation per input; never blocks.
 */
template <class T>
auto when_all(std::vector<Future<T>> futures)
    -> Future<std::conditional_t<std::is_void_v<T>, void, std::vector<T>>> {
  using Out = std::conditional_t<std::is_void_v<T>, void, std::vector<T>>;
  // Check every input before hooking any, so an error leaves the inputs untouched.
  for (const auto& future : futures) {
    if (!future.valid()) detail::throw_no_state();
  }
  Promise<Out> promise;
  Future<Out> result = promise.get_future();
  if constexpr (std::is_void_v<T>) {
    if (futures.empty()) {
      promise.set_value();
      return result;
    }
    auto gather = detail::make_gather<std::monostate>(futures.size(), std::move(promise),
                                                      [](std::monostate&) {});
    for (auto& future : futures) {
      gather->watch(gather, future, [](std::monostate&, detail::SharedState<void>& s) { s.take(); });
    }
  } else {
    if (futures.empty()) {
      promise.set_value(Out{});
      return result;
    }
    // Slots are optionals so that T need not be default-constructible.
    auto finish = [](std::vector<std::optional<T>>& slots) {
      Out values;
      values.reserve(slots.size());
      for (auto& slot : slots) values.push_back(std::move(*slot));
      return values;
    };
    auto gather = detail::make_gather<std::vector<std::optional<T>>>(
        futures.size(), std::move(promise), finish, futures.size());
    for (std::size_t i = 0; i < futures.size(); ++i) {
      gather->watch(gather, futures[i],
                    [i](std::vector<std::optional<T>>& slots, detail::SharedState<T>& s) {
                      slots[i].emplace(s.take());
                    });
    }
  }
  return result;
}

/**
 * @brief A future of the values of all `futures` as a tuple (void results become
 *        std::monostate); completes when all have completed, fails with the first exception.
 */
template <class... Ts>
auto when_all(Future<Ts>... futures)
    -> Future<std::tuple<detail::value_or_monostate_t<Ts>...>> {
  using Out = std::tuple<detail::value_or_monostate_t<Ts>...>;
  using Slots = std::tuple<std::optional<detail::value_or_monostate_t<Ts>>...>;
  if (!(futures.valid() && ...)) detail::throw_no_state();
  Promise<Out> promise;
  Future<Out> result = promise.get_future();
  if constexpr (sizeof...(Ts) == 0) {
    promise.set_value();
  } else {
    auto finish = [](Slots& slots) {
      return std::apply([](auto&... slot) { return Out(std::move(*slot)...); }, slots);
    };
    auto gather = detail::make_gather<Slots>(sizeof...(Ts), std::move(promise), finish);
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (gather->watch(gather, futures, [](Slots& slots, detail::SharedState<Ts>& s) {
        if constexpr (std::is_void_v<Ts>) {
          s.take();
          std::get<I>(slots).emplace();
        } else {
          std::get<I>(slots).emplace(s.take());
        }
      }), ...);
    }(std::index_sequence_for<Ts...>{});
  }
  return result;
}

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_FUTURE_HPP

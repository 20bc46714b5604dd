#ifndef OFFLOAD_DETAIL_SHARED_STATE_HPP
#define OFFLOAD_DETAIL_SHARED_STATE_HPP

/// @file shared_state.hpp
/// The state a Future shares with whoever completes it (a Promise, a pool task, a
/// continuation). One heap object per future: result, exception, continuation, cancellation
/// flag and an intrusive reference count all live here.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>

#include "block_cache.hpp"
#include "futex.hpp"
#include "spin.hpp"
#include "unique_function.hpp"
#include "worker_context.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/**
 * Runs `body`; returns what it threw, or nothing. A result's exception goes to its future
 * through this, so the future gets it only once the catch handler has ended: ending the
 * handler drops a reference to the exception inside libstdc++, where ThreadSanitizer cannot
 * see it, and a waiter on another thread that already rethrew and read the exception would
 * look to TSan like a race with that release.
 */
template <class Body>
std::exception_ptr exception_of(Body&& body) noexcept {
  try {
    std::forward<Body>(body)();
    return nullptr;
  } catch (...) {
    return std::current_exception();
  }
}

/// The part of a shared state that does not depend on the value type. Its blocks are
/// recycled per thread (block_cache.hpp): a future made and consumed in steady state takes
/// nothing from the global heap.
class StateBase : public Recycled {
 public:
  StateBase() = default;
  StateBase(const StateBase&) = delete;
  StateBase& operator=(const StateBase&) = delete;
  virtual ~StateBase() = default;

  void add_ref() noexcept {
    // Relaxed: taking another reference needs no ordering; the holder already has one.
    references_.fetch_add(1, std::memory_order_relaxed);
  }
  void release() noexcept {
    // The sole owner (the usual case for the last of a future and its producer) skips the
    // locked instruction: while we hold a reference nobody else can take one. acquire: as
    // below, we must see every write made through the references already dropped.
    if (references_.load(std::memory_order_acquire) == 1) {
      delete this;
      return;
    }
    // acq_rel: the last releaser must see every write made through the other references.
    if (references_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  [[nodiscard]] bool ready() const noexcept {
    // Acquire: pairs with publish(), so a reader that sees `ready` sees the result.
    return (flags_.load(std::memory_order_acquire) & ready_bit) != 0;
  }

  /// Blocks until ready or `deadline`; true when ready. Does not help a pool.
  bool wait_until(const Deadline& deadline) const noexcept { return wait_until(limit_of(deadline)); }

  /// Waits until ready or `deadline`. On a pool worker, runs other queued tasks meanwhile so
  /// that a task waiting on its own sub-task cannot starve the pool. True when ready.
  bool wait_helping(const Deadline& deadline) const { return wait_helping(limit_of(deadline)); }
  bool wait_helping() const { return wait_helping(forever); }

  /// Asks the producer to stop. A queued pool task then never starts; a running one sees its
  /// stop_token fire. True when this call made the request.
  bool request_stop() noexcept {
    // Relaxed is enough for the flag: the producer re-reads it before starting the task, and
    // nothing else is published with it.
    const std::uint32_t before = flags_.fetch_or(cancel_bit, std::memory_order_relaxed);
    if ((before & cancel_bit) != 0 || (before & ready_bit) != 0) return false;
    if (stop_source_.stop_possible()) stop_source_.request_stop();
    return true;
  }
  [[nodiscard]] bool stop_requested() const noexcept {
    return (flags_.load(std::memory_order_relaxed) & cancel_bit) != 0;
  }

  /// A stop token for the producer; creates the stop state on first use, so callables that do
  /// not take a token pay no allocation for it. Call before the task is queued.
  std::stop_token make_stop_token() {
    if (!stop_source_.stop_possible()) stop_source_ = std::stop_source();
    return stop_source_.get_token();
  }

  /// Stores the one continuation, or runs it at once when the state is already ready.
  /// The continuation must not throw.
  void set_continuation(UniqueFunction<void()> continuation) noexcept {
    continuation_ = std::move(continuation);
    // acq_rel: release publishes continuation_ to publish(); acquire sees the result when
    // the state was already ready and we run the continuation ourselves.
    const std::uint32_t before = flags_.fetch_or(continuation_bit, std::memory_order_acq_rel);
    if ((before & ready_bit) != 0) run_continuation();
  }

  [[nodiscard]] bool has_error() const noexcept { return error_ != nullptr; }
  [[nodiscard]] const std::exception_ptr& error() const noexcept { return error_; }

  /// Throws the stored exception, if any, moving it out of the state: only the thread that
  /// takes the result owns it from then on. (libstdc++ counts an exception's owners where
  /// ThreadSanitizer cannot see it; a producer dropping the last reference to a state that
  /// still held the exception would look like a race with the consumer's catch block.)
  void rethrow_if_failed() {
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 protected:
  /// Marks the result as ready, wakes waiters and runs the continuation. Called exactly once,
  /// after the value or error was stored.
  void publish() noexcept {
    // acq_rel: release publishes the result; acquire sees a continuation stored by then().
    const std::uint32_t before = flags_.fetch_or(ready_bit, std::memory_order_acq_rel);
    if ((before & continuation_bit) != 0) run_continuation();
    // The wait is a system call, so only make it when someone announced they sleep.
    if ((before & waiting_bit) != 0) futex_wake(flags_);
  }

  std::exception_ptr error_;

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  static constexpr TimePoint forever = TimePoint::max();

  // The waits work on a plain time point (max() = forever): std::optional here trips a
  // false -Wmaybe-uninitialized in g++ 12 at every call site that passes std::nullopt.
  static TimePoint limit_of(const Deadline& deadline) noexcept {
    return deadline ? *deadline : forever;
  }

  bool wait_until(TimePoint limit) const noexcept {
    if (spin_until_ready(limit)) return true;
    for (;;) {
      std::uint32_t flags = flags_.load(std::memory_order_acquire);
      if ((flags & ready_bit) != 0) return true;
      if ((flags & waiting_bit) == 0) {
        // Announce a sleeper so publish() knows to make the wake-up system call.
        flags = flags_.fetch_or(waiting_bit, std::memory_order_acquire) | waiting_bit;
        if ((flags & ready_bit) != 0) return true;
      }
      const Deadline deadline = limit == forever ? Deadline() : Deadline(limit);
      if (futex_wait(flags_, flags, deadline) == FutexWait::timed_out) return ready();
    }
  }

  /// Waits without sleeping for a while: true when the state became ready. A futex sleep and
  /// wake-up costs several microseconds (tens in a VM), so a wait that ends soon should not
  /// sleep: checks in place for 4 us (a task on a pool that is awake comes back within that;
  /// with one yield after the first microsecond, see spin_before_sleeping()), then, up to
  /// 50 us, checks that yield the CPU in between: on a machine with fewer cores than busy
  /// threads, the thread that will produce the result may need this very CPU, and pausing in
  /// place would only delay it (and every other thread queued here).
  bool spin_until_ready(TimePoint limit) const noexcept {
    const TimePoint start = std::chrono::steady_clock::now();
    return spin_before_sleeping([this] { return ready(); }, start,
                                std::min(limit, start + pausing_spin),
                                std::min(limit, start + yielding_spin));
  }

  static constexpr std::chrono::microseconds pausing_spin{4};
  static constexpr std::chrono::microseconds yielding_spin{50};

  bool wait_helping(TimePoint limit) const {
    if (ready()) return true;
    WorkerContext* worker = current_worker;
    if (worker == nullptr) return wait_until(limit);
    int idle_rounds = 0;
    while (!ready()) {
      if (worker->help_one()) {
        idle_rounds = 0;
        continue;
      }
      const auto now = std::chrono::steady_clock::now();
      if (now >= limit) return false;
      // Nothing to run: the awaited task runs elsewhere. Sleep on our state, but wake up now
      // and then (16 us doubling to 1 ms) to pick up tasks submitted meanwhile.
      const auto nap = std::chrono::microseconds(16 << std::min(idle_rounds++, 6));
      wait_until(limit - now < nap ? limit : now + nap);
    }
    return true;
  }

  void run_continuation() noexcept {
    UniqueFunction<void()> continuation = std::move(continuation_);
    continuation();
  }

  static constexpr std::uint32_t ready_bit = 1;
  static constexpr std::uint32_t continuation_bit = 2;
  static constexpr std::uint32_t waiting_bit = 4;
  static constexpr std::uint32_t cancel_bit = 8;

  mutable std::atomic<std::uint32_t> flags_{0};
  std::atomic<std::uint32_t> references_{1};
  UniqueFunction<void()> continuation_;
  std::stop_source stop_source_{std::nostopstate};
};

/// Shared state holding a T (or nothing, for void).
template <class T>
class SharedState : public StateBase {
 public:
  template <class... A>
  void set_value(A&&... args) {
    value_.emplace(std::forward<A>(args)...);
    publish();
  }
  void set_exception(std::exception_ptr error) noexcept {
    error_ = std::move(error);
    publish();
  }
  /// Moves the result out (or rethrows the stored exception). Call once, after ready().
  T take() {
    rethrow_if_failed();
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
};

template <>
class SharedState<void> : public StateBase {
 public:
  void set_value() noexcept { publish(); }
  void set_exception(std::exception_ptr error) noexcept {
    error_ = std::move(error);
    publish();
  }
  void take() { rethrow_if_failed(); }
};

/// An owning pointer to a shared state (intrusive reference count).
template <class State>
class StatePtr {
 public:
  StatePtr() noexcept = default;
  /// Adopts one reference that the caller already holds.
  explicit StatePtr(State* adopted) noexcept : state_(adopted) {}
  StatePtr(const StatePtr& other) noexcept : state_(other.state_) {
    if (state_ != nullptr) state_->add_ref();
  }
  StatePtr(StatePtr&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  /// From a pointer to a derived state (a TaskState is a SharedState).
  template <class Derived>
    requires(std::is_convertible_v<Derived*, State*> && !std::is_same_v<Derived, State>)
  StatePtr(StatePtr<Derived>&& other) noexcept  // NOLINT(google-explicit-constructor)
      : state_(other.release_ownership()) {}
  StatePtr& operator=(StatePtr other) noexcept {
    std::swap(state_, other.state_);
    return *this;
  }
  ~StatePtr() {
    if (state_ != nullptr) state_->release();
  }

  State* get() const noexcept { return state_; }
  /// Gives up the reference without releasing it; the caller now owns it.
  State* release_ownership() noexcept { return std::exchange(state_, nullptr); }
  State* operator->() const noexcept { return state_; }
  State& operator*() const noexcept { return *state_; }
  explicit operator bool() const noexcept { return state_ != nullptr; }

 private:
  State* state_ = nullptr;
};

/// Maps void to std::monostate so results can live in tuples and vectors.
template <class T>
using value_or_monostate_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_SHARED_STATE_HPP

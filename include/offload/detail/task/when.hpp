#ifndef OFFLOAD_DETAIL_TASK_WHEN_HPP
#define OFFLOAD_DETAIL_TASK_WHEN_HPP

/// @file detail/task/when.hpp
/// The awaiters behind when_all() and when_any() of Tasks: fork-join without a Future per
/// child.
///
/// The parent prepares every child (its executor, its stop token, and the Join it reports to,
/// which lives in this awaiter), forks all children but the first on its executor, and runs
/// the first at once. On a pool, a fork from one of its workers lands in that worker's own
/// fork deque: as each child ends, it takes its next sibling back and runs it, unless an idle
/// worker stole it first (promise.hpp, Join). Each child, as it ends, arrives at the Join; the
/// last one resumes the parent (at once if it runs on the parent's executor, else posted
/// there).

#include <array>
#include <atomic>
#include <coroutine>
#include <cstddef>
#include <limits>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../always_false.hpp"
#include "../shared_state.hpp"
#include "executor.hpp"
#include "promise.hpp"
#include "trampoline.hpp"

namespace offload {
inline namespace v0 {
template <class T>
class Future;

/// What `co_await when_any(a, b, ...)` returns: which argument ended first, and its value
/// (a void result is std::monostate).
template <class... Ts>
struct WhenAny {
  std::size_t index;
  std::variant<detail::value_or_monostate_t<Ts>...> value;
};

namespace detail {

/// Lets the combinators take the coroutine out of a Task.
struct TaskAccess {
  template <class T>
  static std::coroutine_handle<TaskPromise<T>> release(Task<T>& task) noexcept {
    return std::exchange(task.handle_, {});
  }
};

template <class T>
inline constexpr bool is_task = false;
template <class T>
inline constexpr bool is_task<Task<T>> = true;
/// The T of a Task<T> (void for anything else, so a misuse reaches its static_assert).
template <class R>
struct task_value {
  using type = void;
};
template <class T>
struct task_value<Task<T>> {
  using type = T;
};
template <class R>
using task_value_t = typename task_value<R>::type;

/// A Future as a Task, so combinators treat both alike.
template <class T>
Task<T> future_task(Future<T> future) {
  if constexpr (std::is_void_v<T>) {
    co_await std::move(future);
  } else {
    co_return co_await std::move(future);
  }
}

/// A combinator's argument as a Task: a Task as it is (consumed), a Future wrapped.
template <class A>
auto as_task(A&& argument) {
  using Arg = std::remove_cvref_t<A>;
  if constexpr (is_task<Arg>) {
    return Arg(std::move(argument));
  } else if constexpr (is_future<Arg>::value) {  // future.hpp
    return future_task(Arg(std::move(argument)));
  } else {
    static_assert(always_false<Arg>,
                  "offload::when_all / offload::when_any take offload::Task<T> and "
                  "offload::Future<T> arguments");
  }
}
template <class A>
using as_task_t = decltype(as_task(std::declval<A>()));

/// The value a child of a combinator ended with (void: std::monostate), or its exception.
template <class T>
value_or_monostate_t<T> take_result(std::coroutine_handle<TaskPromise<T>> child) {
  if constexpr (std::is_void_v<T>) {
    child.promise().take();
    return {};
  } else {
    return child.promise().take();
  }
}

/// Makes `child` the child of `parent` (whose promise is `caller`) reporting to `join` (or
/// none), stopped by `stop` (which outlives it).
inline void adopt(TaskPromiseBase& child, TaskPromiseBase& caller, std::coroutine_handle<> parent,
                  const std::stop_token* stop, Join* join, std::size_t index) noexcept {
  child.executor = caller.executor;
  child.stop = stop;
  child.continuation = parent;
  child.continuation_promise = &caller;
  child.continuation_executor = caller.executor;
  child.join = join;
  child.join_index = index;
}

/// Adopts every child of `join` (stopped by `stop`), forks children 1..n-1 on the parent's
/// executor (last first, so a pool worker's deque has child 1 newest), then runs child 0 here.
/// Nothing touches the awaiter afterwards: the children may end, and the parent resume, on
/// other threads before this returns.
template <class Promise>
void start_children(std::coroutine_handle<Promise> parent, const std::stop_token* stop,
                    Join& join) noexcept {
  static_assert(OffloadPromise<Promise>,
                "offload::when_all / when_any of Tasks can be awaited only inside an "
                "offload::Task: the children run on its executor");
  TaskPromiseBase& caller = parent.promise();
  for (std::size_t i = 0; i < join.size(); ++i) {
    adopt(join.promise(i), caller, parent, stop, &join, i);
  }
  for (std::size_t i = join.size(); i-- > 1;) {
    try {
      caller.executor.fork(join.handle(i));
    } catch (...) {  // out of memory queueing it: run it here instead
      resume_here(join.handle(i));
    }
  }
  TaskPromiseBase::hand_over(caller, join.handle(0), join.promise(0));
}

template <class Handle>
void destroy_all(Handle* children, std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i) {
    if (children[i]) children[i].destroy();
  }
}

[[noreturn]] inline void throw_empty_child() {
  throw std::logic_error("offload: when_all / when_any of an empty (moved-from) Task");
}

/// The type-erased views of a fixed list of children that their Join reads; a base of
/// FixedChildren constructed before the Join, which points into it.
template <std::size_t N>
struct ChildViews {
  std::array<std::coroutine_handle<>, N> handles{};
  std::array<TaskPromiseBase*, N> promises{};
};

/// The children of a when_all() / when_any() of a fixed list: owns their coroutines (a child
/// that never ran is destroyed with it) and starts them; the Join they report to.
template <class... Ts>
class FixedChildren : private ChildViews<sizeof...(Ts)>, protected Join {
  using Views = ChildViews<sizeof...(Ts)>;

 protected:
  explicit FixedChildren(Task<Ts>... tasks)
      : Views(),
        Join(sizeof...(Ts), Views::handles.data(), Views::promises.data()),
        children_{TaskAccess::release(tasks)...} {
    if (!std::apply([](auto... child) { return (static_cast<bool>(child) && ...); }, children_)) {
      destroy();
      throw_empty_child();
    }
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((Views::handles[I] = std::get<I>(children_),
        Views::promises[I] = &std::get<I>(children_).promise()),
       ...);
    }(std::index_sequence_for<Ts...>{});
  }
  FixedChildren(const FixedChildren&) = delete;
  FixedChildren& operator=(const FixedChildren&) = delete;
  ~FixedChildren() { destroy(); }

  std::tuple<std::coroutine_handle<TaskPromise<Ts>>...> children_;

 private:
  void destroy() noexcept {
    std::apply([](auto... child) { ((child ? child.destroy() : void()), ...); }, children_);
  }
};

/// `co_await when_all(task, task_or_future, ...)`: a tuple of their values.
template <class... Ts>
class [[nodiscard]] WhenAllAwaiter final : private FixedChildren<Ts...> {
 public:
  explicit WhenAllAwaiter(Task<Ts>... tasks) : FixedChildren<Ts...>(std::move(tasks)...) {}

  bool await_ready() const noexcept { return sizeof...(Ts) == 0; }

  template <class Promise>
  void await_suspend(std::coroutine_handle<Promise> parent) noexcept {
    start_children(parent, parent.promise().stop, *this);
  }

  /// The values in argument order; the exception of the first failed child (in argument
  /// order) is rethrown.
  std::tuple<value_or_monostate_t<Ts>...> await_resume() {
    return std::apply(
        [](auto... child) { return std::tuple<value_or_monostate_t<Ts>...>{take_result(child)...}; },
        this->children_);
  }
};

/// The children of a when_all() of a vector, typed and type-erased; a base of the awaiter
/// constructed before its Join, which points into it.
template <class T>
struct ChildVector {
  explicit ChildVector(std::vector<Task<T>>& tasks) {
    typed.reserve(tasks.size());  // every allocation before the first Task is taken apart
    handles.reserve(tasks.size());
    promises.reserve(tasks.size());
    for (Task<T>& task : tasks) {
      typed.push_back(TaskAccess::release(task));
      handles.push_back(typed.back());
      promises.push_back(typed.back() ? &typed.back().promise() : nullptr);
    }
  }
  std::vector<std::coroutine_handle<TaskPromise<T>>> typed;
  std::vector<std::coroutine_handle<>> handles;
  std::vector<TaskPromiseBase*> promises;
};

/// `co_await when_all(std::vector<Task<T>>)`: a vector of their values (void for Task<void>).
template <class T>
class [[nodiscard]] WhenAllVectorAwaiter final : private ChildVector<T>, private Join {
  using Children = ChildVector<T>;

 public:
  explicit WhenAllVectorAwaiter(std::vector<Task<T>> tasks)
      : Children(tasks),
        Join(Children::handles.size(), Children::handles.data(), Children::promises.data()) {
    for (auto child : Children::typed) {
      if (!child) {
        destroy_all(Children::typed.data(), Children::typed.size());
        Children::typed.clear();
        throw_empty_child();
      }
    }
  }
  WhenAllVectorAwaiter(const WhenAllVectorAwaiter&) = delete;
  WhenAllVectorAwaiter& operator=(const WhenAllVectorAwaiter&) = delete;
  ~WhenAllVectorAwaiter() { destroy_all(Children::typed.data(), Children::typed.size()); }

  bool await_ready() const noexcept { return Children::typed.empty(); }

  template <class Promise>
  void await_suspend(std::coroutine_handle<Promise> parent) noexcept {
    start_children(parent, parent.promise().stop, *this);
  }

  auto await_resume() {
    if constexpr (std::is_void_v<T>) {
      for (auto child : Children::typed) child.promise().take();
    } else {
      std::vector<T> values;
      values.reserve(Children::typed.size());
      for (auto child : Children::typed) values.push_back(child.promise().take());
      return values;
    }
  }
};

/// `co_await when_any(a, b, ...)`: the first to end wins; the others are asked to stop
/// (through a stop source of their own, chained to the parent's token), and the parent
/// resumes once they have all ended, so no child outlives the awaiter.
template <class... Ts>
class [[nodiscard]] WhenAnyAwaiter final : private FixedChildren<Ts...> {
 public:
  explicit WhenAnyAwaiter(Task<Ts>... tasks) : FixedChildren<Ts...>(std::move(tasks)...) {
    this->set_arrival_hook(&WhenAnyAwaiter::arrived);
  }

  bool await_ready() const noexcept { return false; }

  template <class Promise>
  void await_suspend(std::coroutine_handle<Promise> parent) {
    const std::stop_token& parent_stop = parent.promise().stop_token();
    if (parent_stop.stop_possible()) forward_stop_.emplace(parent_stop, StopAll{&losers_});
    start_children(parent, &losers_token_, *this);
  }

  /// The winner's index and value; its exception if it failed. The losers' outcomes (often
  /// TaskCancelled) are dropped.
  WhenAny<Ts...> await_resume() {
    forward_stop_.reset();
    const std::size_t winner = winner_.load(std::memory_order_relaxed);  // the Join ordered it
    using Make = WhenAny<Ts...> (*)(WhenAnyAwaiter&);
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      static constexpr Make table[] = {&WhenAnyAwaiter::template result_of<I>...};
      return table[winner](*this);
    }(std::index_sequence_for<Ts...>{});
  }

 private:
  static_assert(sizeof...(Ts) > 0, "offload::when_any needs at least one Task or Future");

  struct StopAll {
    std::stop_source* losers;
    void operator()() const noexcept { losers->request_stop(); }
  };

  template <std::size_t I>
  static WhenAny<Ts...> result_of(WhenAnyAwaiter& self) {
    return WhenAny<Ts...>{I, decltype(WhenAny<Ts...>::value)(std::in_place_index<I>,
                                                             take_result(std::get<I>(self.children_)))};
  }

  /// The first child to end wins, and asks the others to stop.
  static void arrived(Join& join, std::size_t index) noexcept {
    auto& self = static_cast<WhenAnyAwaiter&>(join);
    std::size_t none = no_winner;
    // acq_rel is not needed for the value (the Join's counter orders it): relaxed suffices.
    if (self.winner_.compare_exchange_strong(none, index, std::memory_order_relaxed)) {
      self.losers_.request_stop();
    }
  }

  static constexpr std::size_t no_winner = std::numeric_limits<std::size_t>::max();

  std::stop_source losers_;  // stops the children: the parent's stop, or a winner
  std::stop_token losers_token_ = losers_.get_token();  // what the children point to
  std::optional<std::stop_callback<StopAll>> forward_stop_;  // parent's stop -> losers_
  std::atomic<std::size_t> winner_{no_winner};
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_TASK_WHEN_HPP

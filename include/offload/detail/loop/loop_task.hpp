#ifndef OFFLOAD_DETAIL_LOOP_LOOP_TASK_HPP
#define OFFLOAD_DETAIL_LOOP_LOOP_TASK_HPP

/// @file detail/loop/loop_task.hpp
/// The callbacks an EventLoop queues. Each one is a heap node that is both the type-erased
/// move-only callable and its own link in an intrusive FIFO list. Why intrusive: the loop
/// takes a whole queue in O(1) and, when a callback throws, splices what it has not run back
/// in front of the queue without allocating, so an exception can never lose queued work.

#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace offload {
inline namespace v0 {
namespace detail {

/// One queued callback. Not thread-safe: whoever owns the node (a list or a unique_ptr) is
/// the only one touching it.
class LoopTask {
 public:
  LoopTask() = default;
  LoopTask(const LoopTask&) = delete;
  LoopTask& operator=(const LoopTask&) = delete;
  virtual ~LoopTask() = default;

  /// Calls the callable; may be called again (intervals). Exceptions propagate.
  virtual void run() = 0;

 private:
  friend class TaskList;
  LoopTask* next_ = nullptr;
};

template <class F>
class LoopTaskFor final : public LoopTask {
 public:
  template <class G>
  explicit LoopTaskFor(G&& fn) : fn_(std::forward<G>(fn)) {}
  void run() override { std::invoke(fn_); }

 private:
  F fn_;
};

/// A callable the loop can queue: invocable with no arguments (the result is discarded) and
/// storable by move, so move-only lambdas are fine.
template <class F>
concept LoopCallable = std::is_constructible_v<std::decay_t<F>, F> &&
                       std::is_invocable_v<std::decay_t<F>&>;

/// Wraps `fn` in a heap node. Allocates once; throws what the allocation or F's constructor
/// throws.
template <LoopCallable F>
std::unique_ptr<LoopTask> make_loop_task(F&& fn) {
  return std::make_unique<LoopTaskFor<std::decay_t<F>>>(std::forward<F>(fn));
}

/// Intrusive FIFO of owned LoopTask nodes. Not thread-safe (the loop guards it with its
/// mutex); no member allocates or throws.
class TaskList {
 public:
  TaskList() noexcept = default;
  TaskList(TaskList&& other) noexcept
      : head_(std::exchange(other.head_, nullptr)), tail_(std::exchange(other.tail_, nullptr)) {}
  TaskList& operator=(TaskList&& other) noexcept {
    if (this != &other) {
      clear();
      head_ = std::exchange(other.head_, nullptr);
      tail_ = std::exchange(other.tail_, nullptr);
    }
    return *this;
  }
  TaskList(const TaskList&) = delete;
  TaskList& operator=(const TaskList&) = delete;
  ~TaskList() { clear(); }

  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }

  void push_back(std::unique_ptr<LoopTask> task) noexcept {
    LoopTask* node = task.release();
    node->next_ = nullptr;
    if (tail_ == nullptr) {
      head_ = node;
    } else {
      tail_->next_ = node;
    }
    tail_ = node;
  }

  /// The first task, or null when empty.
  std::unique_ptr<LoopTask> pop_front() noexcept {
    LoopTask* node = head_;
    if (node == nullptr) return nullptr;
    head_ = std::exchange(node->next_, nullptr);
    if (head_ == nullptr) tail_ = nullptr;
    return std::unique_ptr<LoopTask>(node);
  }

  /// Moves every task of `front` before this list's tasks, keeping both orders.
  void prepend(TaskList&& front) noexcept {
    if (front.empty()) return;
    front.tail_->next_ = head_;
    if (tail_ == nullptr) tail_ = front.tail_;
    head_ = std::exchange(front.head_, nullptr);
    front.tail_ = nullptr;
  }

  /// Empties the list into the returned one.
  TaskList take_all() noexcept { return TaskList(std::move(*this)); }

  /// Destroys every task. The callables' destructors run here, so call it without holding a
  /// lock those destructors might need.
  void clear() noexcept {
    while (pop_front() != nullptr) {
    }
  }

 private:
  LoopTask* head_ = nullptr;
  LoopTask* tail_ = nullptr;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_LOOP_LOOP_TASK_HPP

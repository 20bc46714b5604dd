#ifndef OFFLOAD_DETAIL_LOOP_TIMER_QUEUE_HPP
#define OFFLOAD_DETAIL_LOOP_TIMER_QUEUE_HPP

/// @file detail/loop/timer_queue.hpp
/// The EventLoop's timers: a binary min-heap of (deadline, sequence) slots over steady_clock,
/// plus a table from timer id to callback. Cancelling erases the table entry only; its heap
/// slot turns stale and is dropped when it reaches the top (or by a compaction when stale
/// slots outnumber live ones), so cancel is O(1) and the heap never needs a search.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "loop_task.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

using LoopClock = std::chrono::steady_clock;

/// `point + step`, saturating at the clock's end instead of overflowing. `step` >= 0.
inline LoopClock::time_point saturating_add(LoopClock::time_point point,
                                            LoopClock::duration step) noexcept {
  if (step > LoopClock::time_point::max() - point) return LoopClock::time_point::max();
  return point + step;
}

/// Timers of one loop. Not thread-safe (the loop guards it with its mutex). Members that
/// return a task hand it over so the caller can destroy it after unlocking.
class TimerQueue {
 public:
  /// A timer whose deadline came, taken out of the queue to run.
  struct Due {
    std::uint64_t id = 0;
    std::unique_ptr<LoopTask> task;
    LoopClock::time_point deadline;
    bool repeating = false;
  };

  /// What cancel() found: whether the id was live, and its callback (null while it runs).
  struct Cancelled {
    bool found = false;
    std::unique_ptr<LoopTask> task;
  };

  /// Adds a timer firing at `deadline`, then (if `repeating`) every `period` after that, and
  /// takes `task` from the caller. Returns its id (never 0, never reused). Allocates; when an
  /// allocation throws, nothing changed and `task` still belongs to the caller (so a callback
  /// is never destroyed under the loop's lock).
  std::uint64_t add(LoopClock::time_point deadline, LoopClock::duration period, bool repeating,
                    std::unique_ptr<LoopTask>& task) {
    reserve_slots(timers_.size() + 1);
    timers_.reserve(timers_.size() + 1);  // so the insertion below cannot rehash (and throw)
    const std::uint64_t id = next_id_;
    timers_.try_emplace(id, std::move(task), period, repeating);  // throws before moving
    ++next_id_;
    push_slot(deadline, id);
    return id;
  }

  /// Removes timer `id` if it is live. O(1) amortised; never allocates.
  Cancelled cancel(std::uint64_t id) noexcept {
    const auto found = timers_.find(id);
    if (found == timers_.end()) return {};
    Cancelled result{true, std::move(found->second.task)};
    // A timer with its task in place still has a heap slot, which is now stale; a running
    // one (task moved out to run) has none.
    if (result.task != nullptr) ++stale_slots_;
    timers_.erase(found);
    compact_if_mostly_stale();
    return result;
  }

  /// Takes the earliest timer with deadline <= `now` whose slot was pushed before sequence
  /// `before` (so intervals re-armed during this tick wait for the next one). A one-shot
  /// timer leaves the table; a repeating one stays, without its task, until finish().
  std::optional<Due> pop_due(LoopClock::time_point now, std::uint64_t before) noexcept {
    drop_stale_top();
    if (heap_.empty()) return std::nullopt;
    const Slot top = heap_.front();
    if (top.deadline > now || top.sequence >= before) return std::nullopt;
    pop_slot();
    const auto found = timers_.find(top.id);  // live: drop_stale_top() checked it
    Due due{top.id, std::move(found->second.task), top.deadline, found->second.repeating};
    if (!due.repeating) timers_.erase(found);
    return due;
  }

  /// Ends a run of `due`: re-arms a repeating timer unless it was cancelled meanwhile, and
  /// returns the task when it was not re-armed (to be destroyed outside the lock). The next
  /// deadline keeps the period's rhythm, but never lies in the past: a late tick does not
  /// cause a burst of catch-up calls. Never allocates (add() reserved the slot).
  std::unique_ptr<LoopTask> finish(Due due, LoopClock::time_point now) noexcept {
    if (!due.repeating) return std::move(due.task);
    const auto found = timers_.find(due.id);
    if (found == timers_.end()) return std::move(due.task);
    const LoopClock::duration period = found->second.period;
    LoopClock::time_point next = saturating_add(due.deadline, period);
    if (next <= now) next = saturating_add(now, period);
    found->second.task = std::move(due.task);
    push_slot(next, due.id);
    return nullptr;
  }

  /// The earliest live deadline, if any timer is armed. Never allocates.
  std::optional<LoopClock::time_point> next_deadline() noexcept {
    drop_stale_top();
    if (heap_.empty()) return std::nullopt;
    return heap_.front().deadline;
  }

  /// The sequence number the next pushed slot will get; pass it to pop_due() as `before`.
  [[nodiscard]] std::uint64_t sequence_mark() const noexcept { return next_sequence_; }

  /// True when no timer is live (armed or running).
  [[nodiscard]] bool empty() const noexcept { return timers_.empty(); }

  /// Moves every callback out (for destruction outside the lock) and empties the queue.
  std::vector<std::unique_ptr<LoopTask>> take_all() {
    std::vector<std::unique_ptr<LoopTask>> tasks;
    tasks.reserve(timers_.size());
    for (auto& entry : timers_) tasks.push_back(std::move(entry.second.task));
    timers_.clear();
    heap_.clear();
    stale_slots_ = 0;
    return tasks;
  }

 private:
  struct Timer {
    Timer(std::unique_ptr<LoopTask>&& callback, LoopClock::duration every, bool repeats) noexcept
        : task(std::move(callback)), period(every), repeating(repeats) {}
    std::unique_ptr<LoopTask> task;  // null while the timer runs
    LoopClock::duration period;
    bool repeating;
  };

  struct Slot {
    LoopClock::time_point deadline;
    std::uint64_t sequence;  // ties on deadline fire in the order the slots were pushed
    std::uint64_t id;
  };

  /// Heap order for std::push_heap & co (a max-heap): "fires later" is "less".
  static bool fires_later(const Slot& a, const Slot& b) noexcept {
    if (a.deadline != b.deadline) return a.deadline > b.deadline;
    return a.sequence > b.sequence;
  }

  /// Keeps capacity for one slot per live timer (`live` of them) plus the stale ones, so that
  /// finish() can re-arm a running interval without allocating. Doubles: amortised O(1).
  void reserve_slots(std::size_t live) {
    const std::size_t needed = live + stale_slots_;
    if (heap_.capacity() < needed) heap_.reserve(std::max(needed, 2 * heap_.capacity()));
  }

  void push_slot(LoopClock::time_point deadline, std::uint64_t id) noexcept {
    heap_.push_back(Slot{deadline, next_sequence_++, id});  // capacity reserved: no throw
    std::push_heap(heap_.begin(), heap_.end(), fires_later);
  }

  void pop_slot() noexcept {
    std::pop_heap(heap_.begin(), heap_.end(), fires_later);
    heap_.pop_back();
  }

  [[nodiscard]] bool is_stale(const Slot& slot) const noexcept {
    return timers_.find(slot.id) == timers_.end();
  }

  void drop_stale_top() noexcept {
    while (!heap_.empty() && is_stale(heap_.front())) {
      pop_slot();
      --stale_slots_;
    }
  }

  /// Rebuilds the heap without stale slots once they are the majority, so a program that
  /// sets and clears long timers in a loop keeps a small heap.
  void compact_if_mostly_stale() noexcept {
    constexpr std::size_t minimum_worth_compacting = 64;
    if (stale_slots_ < minimum_worth_compacting || stale_slots_ * 2 < heap_.size()) return;
    std::erase_if(heap_, [this](const Slot& slot) { return is_stale(slot); });
    std::make_heap(heap_.begin(), heap_.end(), fires_later);
    stale_slots_ = 0;
  }

  std::vector<Slot> heap_;
  std::unordered_map<std::uint64_t, Timer> timers_;
  std::uint64_t next_id_ = 1;
  std::uint64_t next_sequence_ = 0;
  std::size_t stale_slots_ = 0;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_LOOP_TIMER_QUEUE_HPP

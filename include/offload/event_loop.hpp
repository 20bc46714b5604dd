#ifndef OFFLOAD_EVENT_LOOP_HPP
#define OFFLOAD_EVENT_LOOP_HPP

/// @file event_loop.hpp
/// The "tick" model: a single-threaded event loop in the manner of Node.js. Callbacks run one
/// at a time on the thread that calls run(); CPU-heavy work either yields between slices
/// (for_each_chunked) or goes to a thread pool and comes back to the loop (Future::then(loop,
/// f), built on EventLoop::Hold).
///
/// One tick, in this order (Node's timers -> poll -> check phases):
///   1. timers whose deadline has come, earliest deadline first, ties in the order they were
///      set; an interval re-armed during this tick waits for the next one;
///   2. callbacks post()ed before this phase began, first in first out;
///   3. immediates queued before this phase began, first in first out. An immediate queued
///      by a timer or posted callback runs in this same tick; one queued by an immediate runs
///      in the next tick, after that tick's timers and posts: chained immediates yield.
/// Then, when nothing is runnable, the loop sleeps (no polling) until the next timer is due,
/// or something is posted/queued/released from any thread, which wakes it at once.
/// run() returns when stop() was called, or when nothing is pending: no posted callback, no
/// immediate, no live timer and no outstanding Hold.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <thread>
#include <utility>

#include "detail/loop/loop_task.hpp"
#include "detail/loop/sleeper.hpp"
#include "detail/loop/timer_queue.hpp"
#include "detail/spin.hpp"
#include "detail/worker_context.hpp"
#include "errors.hpp"
#include "executor.hpp"
#include "future.hpp"

namespace offload {
inline namespace v0 {

/// Names a timer set by EventLoop::set_timeout / set_interval. A default-constructed TimerId
/// names no timer; ids are never reused within a loop.
struct TimerId {
  std::uint64_t value = 0;
  friend constexpr bool operator==(TimerId, TimerId) noexcept = default;
};

namespace detail {

/// Converts a user's duration to the loop clock's, rounding up (a timer never fires early),
/// treating negative values as zero and saturating instead of overflowing.
template <class Rep, class Period>
LoopClock::duration loop_duration(std::chrono::duration<Rep, Period> delay) noexcept {
  if (!(delay > delay.zero())) return LoopClock::duration::zero();  // also a NaN delay
  // Compared in floating point: converting a huge delay (hours::max()) to nanoseconds in
  // integers would overflow before the comparison could catch it.
  using FloatTicks = std::chrono::duration<double, LoopClock::period>;
  if (FloatTicks(delay) >= FloatTicks(LoopClock::duration::max())) return LoopClock::duration::max();
  return std::chrono::ceil<LoopClock::duration>(delay);
}

/// Everything an EventLoop shares with its Holds. Holds keep it alive, so a Hold that outlives
/// its loop (a pool task finishing after the loop was destroyed) touches valid memory: it
/// finds the core closed and drops its callback. Thread-safe: all queues, the timers and the
/// hold count are guarded by `mutex_`.
class LoopCore {
 public:
  /// The two callback queues: post() and set_immediate().
  enum class Queue { posted, immediate };

  /// Queues `task` on `queue`. Thread-safe; blocks only on the short internal lock; never
  /// allocates (the node exists already); drops the task when closed.
  void enqueue(Queue queue, std::unique_ptr<LoopTask> task) noexcept {
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      if (!closed_) {
        list(queue).push_back(std::move(task));
        wake = note_arrival();
      }
    }
    // Destroyed outside the lock: a callable's destructor may call back into the loop.
    task.reset();
    if (wake) wake_loop();
  }

  /// Adds a timer; returns its id (0 when the core is closed). Thread-safe; allocates.
  std::uint64_t add_timer(LoopClock::duration delay, bool repeating,
                          std::unique_ptr<LoopTask> task) {
    const auto deadline = saturating_add(LoopClock::now(), delay);
    std::uint64_t id = 0;
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      if (!closed_) {
        id = timers_.add(deadline, delay, repeating, task);
        // A sleeping loop may be waiting for a later deadline than this one.
        wake = note_arrival();
      }
    }
    task.reset();
    if (wake) wake_loop();
    return id;
  }

  /// Cancels timer `id`; true when it was live. Thread-safe; never allocates.
  bool cancel_timer(std::uint64_t id) {
    TimerQueue::Cancelled cancelled;
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      cancelled = timers_.cancel(id);
      // The loop may sleep until this timer's deadline with nothing else pending: it must
      // re-check, or run() would stay asleep instead of returning.
      if (cancelled.found) wake = note_arrival();
    }
    if (wake) wake_loop();
    return cancelled.found;  // the callback is destroyed here, outside the lock
  }

  /// Counts one more Hold: run() will not return for lack of work until it is released.
  /// Thread-safe; never allocates.
  void add_hold() {
    std::lock_guard lock(mutex_);
    ++holds_;
  }

  /// Releases one hold, first queueing `task` (if any) as a posted callback, under one lock:
  /// run() sees either the hold or the task, never neither. Thread-safe; never allocates.
  void release_hold(std::unique_ptr<LoopTask> task) noexcept {
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      if (task != nullptr && !closed_) posted_.push_back(std::move(task));
      --holds_;
      wake = note_arrival();
    }
    task.reset();
    if (wake) wake_loop();
  }

  /// Asks run() to return after the callback in progress. Thread-safe; never blocks long.
  void request_stop() noexcept {
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      // Relaxed: the flag publishes nothing; run() re-reads it under this mutex before it
      // sleeps, and between callbacks a late sighting only delays the stop by one callback.
      stop_requested_.store(true, std::memory_order_relaxed);
      wake = note_arrival();
    }
    if (wake) wake_loop();
  }

  [[nodiscard]] bool stop_requested() const noexcept {
    return stop_requested_.load(std::memory_order_relaxed);  // see request_stop()
  }

  /// Called when a run() ends, however it ends: a stop request is consumed by the run() it
  /// ended (or, made while no run() was active, by the next one, which returns at once).
  void clear_stop() noexcept { stop_requested_.store(false, std::memory_order_relaxed); }

  /// Marks the calling thread as the one running the loop. Throws std::logic_error when a
  /// run() is already active, naming the mistake (recursion vs. a second thread).
  void enter_run() {
    std::thread::id expected{};
    // Relaxed: the CAS only makes overlapping run() calls fail; the loop state itself is
    // published between successive runs by `mutex_`.
    if (running_thread_.compare_exchange_strong(expected, std::this_thread::get_id(),
                                                std::memory_order_relaxed)) {
      return;
    }
    if (expected == std::this_thread::get_id()) {
      throw std::logic_error("offload::EventLoop::run() called from inside one of its callbacks");
    }
    throw std::logic_error("offload::EventLoop::run() called while another thread runs the loop");
  }

  void leave_run() noexcept {
    clear_stop();
    running_thread_.store(std::thread::id{}, std::memory_order_relaxed);  // see enter_run()
  }

  [[nodiscard]] bool is_loop_thread() const noexcept {
    // Relaxed: only the thread that stored its own id can read that id back.
    return running_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }

  /// Runs the timers that are due now. False when a stop request cut the phase short.
  bool run_due_timers() {
    const LoopClock::time_point now = LoopClock::now();
    std::uint64_t before = 0;
    {
      std::lock_guard lock(mutex_);
      before = timers_.sequence_mark();
    }
    for (;;) {
      std::optional<TimerQueue::Due> due;
      {
        std::lock_guard lock(mutex_);
        due = timers_.pop_due(now, before);
      }
      if (!due) return true;
      run_timer(std::move(*due));
      if (stop_requested()) return false;
    }
  }

  /// Runs the callbacks that were on `queue` when the phase began. If one throws or a stop is
  /// requested, the ones not run go back to the front of the queue, in order.
  bool run_phase(Queue queue) {
    TaskList batch;
    {
      std::lock_guard lock(mutex_);
      batch = list(queue).take_all();
    }
    ReturnUnrun guard{*this, queue, batch};
    while (std::unique_ptr<LoopTask> task = batch.pop_front()) {
      task->run();
      if (stop_requested()) return false;
    }
    return true;
  }

  /// Between ticks: returns at once when something is runnable, waits until the next timer or
  /// a wake-up when only timers or holds are pending, and returns false when run() should end
  /// (stop requested, or nothing pending at all). When the loop's recent waits were short, it
  /// first spins for a while (spin_for_arrival()), and a post landing then costs no wake-up.
  bool wait_for_work() {
    std::unique_lock lock(mutex_);
    std::optional<LoopClock::time_point> next_timer;
    LoopClock::time_point began;  // when the wait began: set once nothing was runnable
    for (bool spun = false;; spun = true) {
      if (stop_requested()) return false;
      if (!posted_.empty() || !immediates_.empty()) {
        if (spun) record_wait(began);
        return true;
      }
      next_timer = timers_.next_deadline();
      if (!next_timer && holds_ == 0) return false;
      const LoopClock::time_point now = LoopClock::now();
      if (next_timer && *next_timer <= now) return true;
      if (!spun) began = now;
      if (spun || recent_wait_ >= spin_budget) break;
      const std::uint32_t seen = arrivals_.load(std::memory_order_relaxed);
      lock.unlock();
      spin_for_arrival(seen, began, next_timer);
      lock.lock();  // whatever ended the spin, the checks above decide, under the lock
    }
    // Prepare to sleep under the lock: anyone who adds work after this sees sleeping_ and
    // wakes the sleeper after we took its ticket, so the sleep returns at once; none is lost.
    sleeping_ = true;
    const LoopSleeper::Ticket ticket = sleeper_.prepare(next_timer);
    lock.unlock();
    sleeper_.sleep(ticket, next_timer);
    lock.lock();
    sleeping_ = false;
    record_wait(began);
    return true;
  }

  /// Marks the core closed and destroys everything still queued (outside the lock). Later
  /// posts, timers and hold releases drop their callbacks.
  void close() noexcept {
    TaskList posted;
    TaskList immediates;
    TimerQueue timers;
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
      posted = posted_.take_all();
      immediates = immediates_.take_all();
      std::swap(timers, timers_);
    }
  }

 private:
  /// Puts a batch's unrun callbacks back in front of their queue when a phase ends early.
  struct ReturnUnrun {
    LoopCore& core;
    Queue queue;
    TaskList& batch;
    ~ReturnUnrun() {
      if (batch.empty()) return;
      std::lock_guard lock(core.mutex_);
      core.list(queue).prepend(std::move(batch));
    }
  };

  /// Re-arms a repeating timer after its run, even when the run threw (an interval is not
  /// lost to an exception); a one-shot timer's callback is destroyed outside the lock.
  struct FinishTimer {
    LoopCore& core;
    TimerQueue::Due& due;
    ~FinishTimer() {
      std::unique_ptr<LoopTask> done;
      {
        std::lock_guard lock(core.mutex_);
        done = core.timers_.finish(std::move(due), LoopClock::now());
      }
    }
  };

  void run_timer(TimerQueue::Due due) {
    FinishTimer finish{*this, due};
    due.task->run();
  }

  TaskList& list(Queue queue) noexcept { return queue == Queue::posted ? posted_ : immediates_; }

  /// Called under `mutex_` by everything that gives wait_for_work() something to act on:
  /// counts an arrival (what a spinning loop watches) and says whether the loop sleeps and
  /// must be woken. A loop that spins is not asleep: a post then costs no system call.
  bool note_arrival() noexcept {
    // Relaxed load and store, not an atomic increment: every writer holds `mutex_`. The loop
    // reads it without the lock only to end its spin; it re-checks everything under the lock.
    arrivals_.store(arrivals_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return std::exchange(sleeping_, false);
  }

  /// The spin before sleeping: a loop that was answered within microseconds lately (a pool
  /// round trip, a ping-pong with another thread) will likely be again, and sleeping would
  /// cost it a wake-up each time (3-4 us per round trip here, 0.5 -> 4 us). Spins
  /// until something arrives, for at most spin_budget and never past the next timer.
  void spin_for_arrival(std::uint32_t seen, LoopClock::time_point began,
                        const std::optional<LoopClock::time_point>& next_timer) const noexcept {
    auto limit = began + spin_budget;
    if (next_timer && *next_timer < limit) limit = *next_timer;
    // LoopClock is steady_clock (timer_queue.hpp), the spin's own clock.
    spin_before_sleeping([&] { return arrivals_.load(std::memory_order_relaxed) != seen; }, began,
                         std::min(limit, began + pausing_spin), limit);
  }

  /// Records how long a wait (a spin or a sleep) lasted: a running average over the last few,
  /// in which one long wait counts enough to stop the spinning (an idle loop spins once, then
  /// sleeps). Finding work at once is not a wait and is not recorded.
  void record_wait(LoopClock::time_point began) noexcept {
    recent_wait_ = (3 * recent_wait_ + (LoopClock::now() - began)) / 4;
  }

  void wake_loop() noexcept {
    sleeper_.wake();
    note_loop_woken();  // a pool worker that woke us lets us in soon (yield_to_woken_loop())
  }

  std::mutex mutex_;
  TaskList posted_;            // guarded by mutex_
  TaskList immediates_;        // guarded by mutex_
  TimerQueue timers_;          // guarded by mutex_
  std::size_t holds_ = 0;      // guarded by mutex_
  bool sleeping_ = false;      // guarded by mutex_: the loop is (about to be) asleep
  bool closed_ = false;        // guarded by mutex_: the EventLoop was destroyed
  LoopSleeper sleeper_;
  std::atomic<std::uint32_t> arrivals_{0};  // written under mutex_ (note_arrival())
  // The loop thread's own: how long its recent waits for work lasted. Starts long: a loop
  // spins only once it has seen short waits.
  LoopClock::duration recent_wait_ = spin_budget;
  static constexpr LoopClock::duration spin_budget = std::chrono::microseconds(20);
  static constexpr LoopClock::duration pausing_spin = std::chrono::microseconds(4);
  std::atomic<bool> stop_requested_{false};
  std::atomic<std::thread::id> running_thread_{};
};

}  // namespace detail

/**
 * @brief A single-threaded event loop: callbacks, immediates and timers run one at a time on
 * the thread that calls run().
 *
 * Every member is thread-safe (callable from any thread, including from inside callbacks)
 * unless it says otherwise; the scheduling members take a short internal lock and allocate
 * one node per callback. Destroying the loop destroys, without running, whatever is still
 * queued; it must not happen while run() is active.
 */
class EventLoop {
 public:
  class Hold;

  /// An idle loop. Allocates its shared core.
  EventLoop() : core_(std::make_shared<detail::LoopCore>()) {}
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  ~EventLoop() { core_->close(); }

  /**
   * @brief Queues `fn` to run on the loop thread in the next posts phase, first in first out.
   * @param fn a callable taking no arguments (move-only is fine); its result is discarded.
   * Thread-safe; wakes a sleeping loop at once; allocates one node.
   * @throws what allocating or moving `fn` throws (then nothing was queued).
   */
  template <detail::LoopCallable F>
  void post(F&& fn) {
    core_->enqueue(detail::LoopCore::Queue::posted, detail::make_loop_task(std::forward<F>(fn)));
  }

  /**
   * @brief Queues `fn` to run after the current tick's work, like Node's setImmediate.
   *
   * Queued from a timer or posted callback (or from outside the loop), it runs in this
   * tick's immediates phase; queued from an immediate, it runs in the next tick, so timers and
   * posts get a turn between chained immediates. Thread-safe; allocates one node.
   * @throws what allocating or moving `fn` throws.
   */
  template <detail::LoopCallable F>
  void set_immediate(F&& fn) {
    core_->enqueue(detail::LoopCore::Queue::immediate,
                   detail::make_loop_task(std::forward<F>(fn)));
  }

  /**
   * @brief Runs `fn` once, on the first tick at least `delay` after now (steady_clock).
   * @param delay negative counts as zero; timers with equal deadlines fire in the order set.
   * @return the id to clear() it with. Thread-safe; allocates.
   * @throws what allocating or moving `fn` throws.
   */
  template <class Rep, class Period, detail::LoopCallable F>
  TimerId set_timeout(std::chrono::duration<Rep, Period> delay, F&& fn) {
    return TimerId{core_->add_timer(detail::loop_duration(delay), false,
                                    detail::make_loop_task(std::forward<F>(fn)))};
  }

  /**
   * @brief Runs `fn` every `period` until cleared. A late tick does not cause catch-up calls:
   * the next call is one period after the missed deadline, or after now when that has passed.
   *
   * A live interval keeps run() from returning. A zero period calls `fn` once per tick.
   * @return the id to clear() it with. Thread-safe; allocates.
   * @throws what allocating or moving `fn` throws.
   */
  template <class Rep, class Period, detail::LoopCallable F>
  TimerId set_interval(std::chrono::duration<Rep, Period> period, F&& fn) {
    return TimerId{core_->add_timer(detail::loop_duration(period), true,
                                    detail::make_loop_task(std::forward<F>(fn)))};
  }

  /**
   * @brief Cancels a timer: it will not fire (again).
   *
   * Safe from inside any callback, including the timer's own: an interval clearing itself is
   * not re-armed. When called from another thread while the timer's callback is running, that
   * call completes and no further one starts.
   * @return true when `id` named a live timer; false (and no effect) for an unknown,
   * already-cleared or already-fired one-shot timer (so a timeout clearing itself gets false).
   * Thread-safe; never allocates; destroys the callback (outside the internal lock).
   */
  bool clear(TimerId id) { return core_->cancel_timer(id.value); }

  /**
   * @brief Runs ticks on the calling thread until stop() or until nothing is pending (no
   * posted callback, immediate, live timer or outstanding Hold). Sleeps while idle.
   *
   * @throws whatever a callback throws, after leaving the loop consistent: the throwing
   * callback is consumed (an interval stays armed), everything else stays queued, and a later
   * run() carries on with it.
   * @throws std::logic_error when run() is already active on this loop: called from inside a
   * callback, or from a second thread while another runs it. The active run is unaffected.
   * Blocks. Not meant to be called concurrently (that is the error above).
   */
  void run() {
    core_->enter_run();
    LeaveRun leave{*core_};
    while (!core_->stop_requested() && core_->run_due_timers() &&
           core_->run_phase(detail::LoopCore::Queue::posted) &&
           core_->run_phase(detail::LoopCore::Queue::immediate) && core_->wait_for_work()) {
    }
  }

  /**
   * @brief Makes run() return once the callback in progress (if any) returns; what is pending
   * stays queued for the next run(). Requested while no run() is active, it makes the next
   * run() return at once. Thread-safe; never blocks for long (a short internal lock); wakes
   * a sleeping loop.
   */
  void stop() noexcept { core_->request_stop(); }

  /// True when called from inside run() of this loop (that is, from one of its callbacks).
  /// Thread-safe; never blocks.
  [[nodiscard]] bool is_loop_thread() const noexcept { return core_->is_loop_thread(); }

  /**
   * @brief Keeps run() from returning until the returned Hold is released: the mechanism for
   * work that will come back to the loop (a pool task whose continuation must run here, as in
   * Future::then(loop, f)).
   *
   * Release it by `std::move(hold).post(fn)` (queues `fn` and releases, atomically) or by
   * destroying it. Thread-safe; allocates nothing beyond a reference count.
   */
  [[nodiscard]] Hold hold();

 private:
  struct LeaveRun {
    detail::LoopCore& core;
    ~LeaveRun() { core.leave_run(); }
  };

  std::shared_ptr<detail::LoopCore> core_;
};

/**
 * @brief A movable keep-alive token: while it exists, EventLoop::run() does not return for lack
 * of pending work (stop() still ends it).
 *
 * Thread-safe to use from any thread; one Hold must not be used by two threads at once (like
 * any object). It may outlive its loop: posting then destroys the callback without running it.
 */
class EventLoop::Hold {
 public:
  /// An empty hold, holding nothing.
  Hold() noexcept = default;
  Hold(Hold&& other) noexcept = default;
  Hold& operator=(Hold&& other) noexcept {
    if (this != &other) {
      reset();
      core_ = std::move(other.core_);
    }
    return *this;
  }
  Hold(const Hold&) = delete;
  Hold& operator=(const Hold&) = delete;
  /// Releases the hold, waking the loop so run() can return. Never blocks long.
  ~Hold() { reset(); }

  /// True while this object holds its loop.
  [[nodiscard]] bool active() const noexcept { return core_ != nullptr; }
  explicit operator bool() const noexcept { return active(); }

  /**
   * @brief Queues `fn` on the loop as a posted callback and releases the hold, atomically:
   * run() cannot see "nothing pending" in between. Thread-safe; allocates one node.
   * @throws std::logic_error on an empty (moved-from or released) hold.
   * @throws what allocating or moving `fn` throws; the hold is then still held.
   */
  template <detail::LoopCallable F>
  void post(F&& fn) && {
    if (!core_) throw std::logic_error("offload::EventLoop::Hold::post() on an empty hold");
    auto task = detail::make_loop_task(std::forward<F>(fn));
    std::exchange(core_, nullptr)->release_hold(std::move(task));
  }

  /// Releases the hold without posting anything; no effect on an empty hold.
  void reset() noexcept {
    if (core_) std::exchange(core_, nullptr)->release_hold(nullptr);
  }

 private:
  friend class EventLoop;
  explicit Hold(std::shared_ptr<detail::LoopCore> core) : core_(std::move(core)) {
    core_->add_hold();
  }

  std::shared_ptr<detail::LoopCore> core_;
};

inline EventLoop::Hold EventLoop::hold() { return Hold(core_); }

/// An EventLoop is an executor (executor.hpp). Its keep-alive is a Hold, which offload posts
/// through, so a loop destroyed first drops the continuation (its future fails with
/// PoolClosed) instead of being touched.
template <>
struct executor_traits<EventLoop> {
  static void post(EventLoop& loop, UniqueFunction<void()> f) { loop.post(std::move(f)); }
  static EventLoop::Hold keep_alive(EventLoop& loop) { return loop.hold(); }
};

namespace detail {

/// The state of one for_each_chunked() walk. Exactly one owner at a time: the immediate that
/// runs its next chunk, so no synchronisation is needed (the loop runs one chunk at a time).
template <class Range, class F>
class ChunkedWalk {
 public:
  ChunkedWalk(EventLoop& loop, Range& range, std::size_t chunk, F f, Promise<void> promise)
      : loop_(loop),
        next_(std::ranges::begin(range)),
        end_(std::ranges::end(range)),
        chunk_(chunk),
        f_(std::move(f)),
        promise_(std::move(promise)) {}

  /// Queues the next chunk as an immediate (so timers and posts run between chunks).
  static void schedule(std::unique_ptr<ChunkedWalk> walk) {
    EventLoop& loop = walk->loop_;
    loop.set_immediate([walk = std::move(walk)]() mutable { run_chunk(std::move(walk)); });
  }

 private:
  /// Visits up to chunk_ elements, then completes the promise or schedules the next chunk.
  static void run_chunk(std::unique_ptr<ChunkedWalk> walk) {
    if (walk->promise_.stop_requested()) {
      walk->promise_.set_exception(detail::make_error<TaskCancelled>());
      return;
    }
    if (std::exception_ptr error = detail::exception_of([&] { walk->visit_chunk(); })) {
      walk->promise_.set_exception(std::move(error));
      return;
    }
    if (walk->next_ == walk->end_) {
      walk->promise_.set_value();
      return;
    }
    schedule(std::move(walk));
  }

  void visit_chunk() {
    for (std::size_t visited = 0; visited < chunk_ && next_ != end_; ++visited, ++next_) {
      std::invoke(f_, *next_);
    }
  }

  EventLoop& loop_;
  std::ranges::iterator_t<Range> next_;
  std::ranges::sentinel_t<Range> end_;
  std::size_t chunk_;
  F f_;
  Promise<void> promise_;
};

}  // namespace detail

/**
 * @brief Calls `f` on each element of `range`, in order, on `loop`'s thread, `chunk` elements
 * per tick: between chunks the loop yields (the next chunk is an immediate), so timers, posts
 * and other immediates keep running while a long array is processed.
 *
 * The walk starts as an immediate: it needs run() (now or later) to make progress. The future
 * completes on the loop thread after the last element; with the exception `f` threw (the
 * remaining elements are not visited), which does not reach run(); or with
 * offload::TaskCancelled when request_stop() was called on it before the walk finished (it
 * stops between two chunks).
 *
 * @param range must outlive the walk (until the future completes); not copied.
 * @param chunk elements per tick, at least 1.
 * @param f called as f(element); it may modify the element when the range allows it.
 * @throws std::invalid_argument when chunk == 0; what allocating the walk throws.
 * Thread-safe to call from any thread (it only queues an immediate); allocates the walk once.
 */
template <std::ranges::input_range Range, class F>
  requires std::invocable<F&, std::ranges::range_reference_t<Range>>
Future<void> for_each_chunked(EventLoop& loop, Range& range, std::size_t chunk, F f) {
  if (chunk == 0) throw std::invalid_argument("offload::for_each_chunked needs a chunk of at least 1");
  Promise<void> promise;
  Future<void> done = promise.get_future();
  using Walk = detail::ChunkedWalk<Range, F>;
  Walk::schedule(std::make_unique<Walk>(loop, range, chunk, std::move(f), std::move(promise)));
  return done;
}

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_EVENT_LOOP_HPP

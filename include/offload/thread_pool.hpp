#ifndef OFFLOAD_THREAD_POOL_HPP
#define OFFLOAD_THREAD_POOL_HPP

/// @file thread_pool.hpp
/// BasicThreadPool: a fixed set of worker threads that run submitted callables.
/// ThreadPool schedules by work stealing; PriorityThreadPool runs larger priorities first.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/futex.hpp"
#include "detail/pool/histogram.hpp"
#include "detail/pool/parker.hpp"
#include "detail/pool/schedulers.hpp"
#include "detail/pool/job.hpp"
#include "detail/spin.hpp"
#include "detail/task/trampoline.hpp"
#include "detail/worker_context.hpp"
#include "errors.hpp"
#include "future.hpp"

namespace offload {
inline namespace v0 {

/// How a pool is set up. Every field has a sensible default.
struct PoolOptions {
  /// Worker threads; 0 means std::thread::hardware_concurrency() (at least 1).
  unsigned threads = 0;
  /// Most tasks queued (not yet started) from outside the pool; 0 means unbounded. When full,
  /// submit() blocks and try_submit() returns empty. Submissions made by the pool's own
  /// workers never block (that could deadlock) and are not limited.
  std::size_t max_queue = 0;
  /// Called on each worker thread, with its index, before it runs any task / as it exits.
  std::function<void(unsigned)> on_thread_start{}, on_thread_stop{};
  /// Receives exceptions thrown by detach()ed tasks and by the hooks above. When empty, they
  /// are reported on stderr.
  std::function<void(std::exception_ptr)> on_unhandled_exception{};
};

/// Latency percentiles of a sample of tasks (about one in 16 submissions per thread).
struct LatencyPercentiles {
  std::chrono::nanoseconds p50{0}, p90{0}, p99{0};
  std::uint64_t samples = 0;
};

/// A snapshot of a pool's counters. Taken without stopping the pool, so under load the fields
/// are each exact but not from one instant.
struct PoolStats {
  std::uint64_t submitted = 0;  ///< tasks accepted (detach, submit, parallel_for runners)
  std::uint64_t completed = 0;  ///< ran and returned normally
  std::uint64_t failed = 0;     ///< ran and threw
  std::uint64_t cancelled = 0;  ///< never started: cancelled through their future
  std::size_t queued = 0;       ///< waiting in a queue
  unsigned busy = 0;            ///< workers running a task right now
  LatencyPercentiles run_time;    ///< from start to end of a task
  LatencyPercentiles queue_wait;  ///< from submission to start
};

/// Scheduling policy: per-worker deques with stealing, and a shared injection queue.
struct WorkStealing {
  using Queues = detail::WorkStealingQueues;
  static constexpr bool prioritized = false;
};

/// Scheduling policy: one priority queue; larger priority first, FIFO among equals.
struct Prioritized {
  using Queues = detail::PriorityQueues;
  static constexpr bool prioritized = true;
};

namespace detail {
struct PoolCoroutines;  // detail/task/executor.hpp: how coroutines are queued on a pool
}  // namespace detail

namespace this_worker {
/// The index (0 .. size()-1) of the pool worker running the calling thread, or empty when the
/// caller is not a pool worker. Never blocks.
/// Safe in coroutines: it reads the thread-local through a call never inlined.
inline std::optional<unsigned> index() noexcept {
  const detail::WorkerContext* worker = detail::this_thread_worker();
  if (worker == nullptr) return std::nullopt;
  return worker->index();
}
}  // namespace this_worker

namespace detail {

template <class F, class... Args>
inline constexpr bool is_task_callable =
    std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...> ||
    std::is_invocable_v<std::decay_t<F>, std::stop_token, std::decay_t<Args>...>;

template <class F, class... Args>
constexpr void check_task_callable() {
  static_assert(is_task_callable<F, Args...>,
                "offload: the task cannot be called with these arguments. Arguments are "
                "decay-copied and passed as rvalues (like std::thread); a callable may also "
                "take a std::stop_token first.");
}

/// One parallel_for call: runners claim chunks of indices until none are left.
template <class I, class F>
class ParallelFor {
 public:
  ParallelFor(I first, std::uint64_t count, std::uint64_t grain, F fn, Promise<void> promise,
              unsigned runners)
      : first_(first),
        count_(count),
        grain_(grain),
        chunks_((count + grain - 1) / grain),
        fn_(std::move(fn)),
        promise_(std::move(promise)),
        runners_(runners) {}

  [[nodiscard]] std::uint64_t chunks() const noexcept { return chunks_; }

  /// One runner's loop. The last runner to leave completes the future.
  void run() noexcept {
    for (;;) {
      // Relaxed: chunk claims need only be unique; the fn calls publish nothing through it.
      const std::uint64_t chunk = next_chunk_.fetch_add(1, std::memory_order_relaxed);
      if (chunk >= chunks_) break;
      if (stopped_.load(std::memory_order_relaxed)) continue;
      if (promise_.stop_requested()) {
        stopped_.store(true, std::memory_order_relaxed);
        cancelled_.store(true, std::memory_order_relaxed);
        continue;
      }
      run_chunk(chunk);
    }
    leave();
  }

  /// A runner is done (or was never queued). The last one to leave completes the future.
  void leave() noexcept {
    // acq_rel: the last runner must see the others' error and flags.
    if (runners_.fetch_sub(1, std::memory_order_acq_rel) == 1) finish();
  }

 private:
  using Unsigned = std::make_unsigned_t<I>;

  void run_chunk(std::uint64_t chunk) noexcept {
    const std::uint64_t begin = chunk * grain_;
    const std::uint64_t end = std::min(count_, begin + grain_);
    try {
      for (std::uint64_t offset = begin; offset < end; ++offset) {
        // Unsigned arithmetic: well defined even where first + offset wraps a signed I.
        std::invoke(std::as_const(fn_),
                    static_cast<I>(static_cast<Unsigned>(static_cast<Unsigned>(first_) + offset)));
      }
    } catch (...) {
      std::lock_guard lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
      stopped_.store(true, std::memory_order_relaxed);
    }
  }

  void finish() noexcept {
    if (error_) {
      promise_.set_exception(std::move(error_));  // the future becomes the only owner
    } else if (cancelled_.load(std::memory_order_relaxed)) {
      promise_.set_exception(detail::make_error<TaskCancelled>());
    } else {
      promise_.set_value();
    }
  }

  const I first_;
  const std::uint64_t count_, grain_, chunks_;
  const F fn_;
  Promise<void> promise_;
  std::atomic<std::uint64_t> next_chunk_{0};
  std::atomic<unsigned> runners_;
  std::atomic<bool> stopped_{false}, cancelled_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

/// last - first for first <= last, computed in unsigned arithmetic: exact for every integral
/// type, where the signed subtraction could overflow (INT_MIN .. INT_MAX).
template <std::integral I>
std::uint64_t index_distance(I first, I last) noexcept {
  using Unsigned = std::make_unsigned_t<I>;
  return static_cast<std::uint64_t>(
      static_cast<Unsigned>(static_cast<Unsigned>(last) - static_cast<Unsigned>(first)));
}

inline std::int64_t steady_now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// True for about one call in 16 per thread: which submissions get timed for the stats.
inline bool sample_this_submission() noexcept {
  thread_local unsigned counter = 0;
  return (++counter & 15u) == 0;
}

}  // namespace detail

/**
 * @brief A pool of worker threads with a pluggable scheduling policy.
 *
 * All members are thread-safe. submit()/detach() never block on an unbounded pool; with
 * PoolOptions::max_queue they block while the queue is full (except on the pool's own
 * workers). The destructor runs every queued task, then joins the workers.
 *
 * @tparam Scheduler WorkStealing (ThreadPool) or Prioritized (PriorityThreadPool).
 */
template <class Scheduler = WorkStealing>
class BasicThreadPool {
 public:
  /**
   * @brief Starts the worker threads.
   * @throws std::system_error when a thread cannot be started (those already started are
   *         stopped and joined first).
   */
  explicit BasicThreadPool(PoolOptions options = {})
      : options_(std::move(options)),
        max_queue_(options_.max_queue),
        queues_(thread_count(options_.threads)) {
    start_workers(thread_count(options_.threads));
  }

  BasicThreadPool(const BasicThreadPool&) = delete;
  BasicThreadPool& operator=(const BasicThreadPool&) = delete;

  /// Runs every queued task, then joins the workers. Must not run on one of this pool's
  /// workers (that would wait for itself: std::terminate).
  ~BasicThreadPool() { shutdown(); }

  /**
   * @brief Queues fn(args...) and returns its future. Arguments are decay-copied (or moved)
   *        into the task; a callable whose first parameter is std::stop_token gets the
   *        future's token. One allocation (the future's state, which holds the callable).
   * @throws PoolClosed after shutdown().
   */
  template <class F, class... Args>
    requires(!Scheduler::prioritized || !std::is_integral_v<std::decay_t<F>>)
  auto submit(F&& fn, Args&&... args) -> Future<detail::task_result_t<F, Args...>> {
    return submit_at(0, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// PriorityThreadPool: like submit(fn, args...), at `priority` (larger runs first).
  template <class F, class... Args>
    requires Scheduler::prioritized
  auto submit(int priority, F&& fn, Args&&... args) -> Future<detail::task_result_t<F, Args...>> {
    return submit_at(priority, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /**
   * @brief Queues fn(args...) with no future. An exception it throws goes to
   *        PoolOptions::on_unhandled_exception. Allocates nothing when the callable and its
   *        arguments fit in 40 bytes.
   * @throws PoolClosed after shutdown().
   */
  template <class F, class... Args>
    requires(!Scheduler::prioritized || !std::is_integral_v<std::decay_t<F>>)
  void detach(F&& fn, Args&&... args) {
    detach_at(0, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// PriorityThreadPool: like detach(fn, args...), at `priority`.
  template <class F, class... Args>
    requires Scheduler::prioritized
  void detach(int priority, F&& fn, Args&&... args) {
    detach_at(priority, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /**
   * @brief Like submit(), but never blocks: returns empty when the bounded queue is full.
   * @throws PoolClosed after shutdown().
   */
  template <class F, class... Args>
    requires(!Scheduler::prioritized || !std::is_integral_v<std::decay_t<F>>)
  auto try_submit(F&& fn, Args&&... args)
      -> std::optional<Future<detail::task_result_t<F, Args...>>> {
    return try_submit_at(0, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /// PriorityThreadPool: like try_submit(fn, args...), at `priority`.
  template <class F, class... Args>
    requires Scheduler::prioritized
  auto try_submit(int priority, F&& fn, Args&&... args)
      -> std::optional<Future<detail::task_result_t<F, Args...>>> {
    return try_submit_at(priority, std::forward<F>(fn), std::forward<Args>(args)...);
  }

  /**
   * @brief Calls fn(i) for every i in [first, last), spread over the workers in chunks of
   *        `grain` indices claimed dynamically. fn is called concurrently, as const.
   *
   * The future completes when every index ran, with the first exception fn threw (chunks not
   * yet started are then skipped), or with TaskCancelled after request_stop().
   * @throws std::invalid_argument when last < first or grain == 0; PoolClosed after shutdown().
   */
  template <std::integral I, class F>
  Future<void> parallel_for(I first, I last, std::size_t grain, F fn) {
    static_assert(std::is_invocable_v<const F&, I>,
                  "offload: parallel_for calls fn(i) concurrently from several threads, so it "
                  "is called as const: give it a const operator() taking the index");
    if (last < first) throw std::invalid_argument("offload: parallel_for needs first <= last");
    if (grain == 0) throw std::invalid_argument("offload: parallel_for needs a grain of at least 1");
    const std::uint64_t count = detail::index_distance(first, last);
    Promise<void> promise;
    Future<void> future = promise.get_future();
    if (count == 0) {
      promise.set_value();
      return future;
    }
    const std::uint64_t chunks = (count + grain - 1) / grain;
    const auto runners = static_cast<unsigned>(std::min<std::uint64_t>(size(), chunks));
    auto loop = std::make_shared<detail::ParallelFor<I, F>>(first, count, grain, std::move(fn),
                                                            std::move(promise), runners);
    launch_runners(loop, runners);
    return future;
  }

  /// parallel_for with a grain chosen for about eight chunks per worker.
  template <std::integral I, class F>
  Future<void> parallel_for(I first, I last, F fn) {
    const std::uint64_t count = last < first ? 0 : detail::index_distance(first, last);
    const std::uint64_t grain = std::max<std::uint64_t>(1, count / (std::uint64_t{size()} * 8));
    return parallel_for(first, last, static_cast<std::size_t>(grain), std::move(fn));
  }

  /**
   * @brief Blocks until every task submitted so far has finished (the pool is idle).
   * @throws WouldDeadlock when called from one of this pool's workers.
   */
  void wait() {
    reject_own_worker("wait()");
    wait_idle(std::nullopt);
  }

  /// Like wait(), for at most `timeout`; true when the pool became idle.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) {
    reject_own_worker("wait_for()");
    return wait_idle(detail::deadline_after(timeout));
  }

  /**
   * @brief Stops accepting tasks from outside, runs everything already queued, joins the
   *        workers. Idempotent; concurrent callers all return after the join. Tasks running
   *        on the pool may still submit sub-tasks until the queue drains.
   * @throws WouldDeadlock when called from one of this pool's workers.
   */
  void shutdown() {
    reject_own_worker("shutdown()");
    std::lock_guard lock(shutdown_mutex_);
    if (joined_) return;
    // seq_cst: a submit() either lands before this in the counter's order (and is waited
    // for below) or sees the closed bit and throws PoolClosed.
    submitted_.fetch_or(closed_bit, std::memory_order_seq_cst);
    space_parker_.notify_all();  // producers blocked on a full queue now throw PoolClosed
    wait_idle(std::nullopt);
    stop_workers();
    joined_ = true;
  }

  /// Number of worker threads. Never blocks.
  [[nodiscard]] unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()); }

  /// A snapshot of the counters and latency percentiles. Never blocks; allocates nothing.
  [[nodiscard]] PoolStats stats() const noexcept {
    PoolStats stats;
    detail::HistogramCounts run_time{}, queue_wait{};
    for (const auto& worker : workers_) {
      stats.completed += worker->completed.load(std::memory_order_relaxed);
      stats.failed += worker->failed.load(std::memory_order_relaxed);
      stats.cancelled += worker->cancelled.load(std::memory_order_relaxed);
      if (worker->busy_depth.load(std::memory_order_relaxed) > 0) ++stats.busy;
      worker->run_time.add_to(run_time);
      worker->queue_wait.add_to(queue_wait);
    }
    stats.submitted = total_submitted() - rejected_.load(std::memory_order_relaxed);
    stats.queued = queues_.size();
    stats.run_time = percentiles(run_time);
    stats.queue_wait = percentiles(queue_wait);
    return stats;
  }

 private:
  /// A worker's own state; every counter has one writer (the worker) and relaxed readers.
  struct Worker final : detail::WorkerContext {
    Worker(BasicThreadPool* owner, unsigned index) : WorkerContext(owner, index), pool(owner) {}
    bool help_one() override { return pool->run_one(*this); }

    void add(std::atomic<std::uint64_t>& counter) noexcept {
      // Single writer: load + store, no locked instruction. Release: a wait() that reads the
      // new count also sees the task's effects.
      counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }

    /// Re-stores the counters with seq_cst before the worker announces it ran out of work:
    /// the store half of the store-load pattern with wait()'s re-check after
    /// Parker::prepare(). Done once per idle moment instead of once per task.
    void publish_counts() noexcept {
      for (auto* counter : {&submitted, &completed, &failed, &cancelled}) {
        counter->store(counter->load(std::memory_order_relaxed), std::memory_order_seq_cst);
      }
    }

    BasicThreadPool* pool;
    std::atomic<std::uint64_t> submitted{0};  // by this worker's own tasks
    std::atomic<std::uint64_t> completed{0}, failed{0}, cancelled{0};
    std::atomic<unsigned> busy_depth{0};
    detail::Histogram run_time, queue_wait;
    /// Just back from idle (spin or park) to take work: hand on what else is queued once this
    /// worker has taken its own piece (see hand_on()).
    bool leaving_idle = false;
    /// The same, kept until its first task ends (see count_spinning_early()).
    bool first_since_idle = false;
    /// Counted in spinning_ from the end of its first task since idle, when nothing else was
    /// queued: it looks at the queues again before it sleeps.
    bool counted_spinning = false;
  };

  struct Admission {
    bool holds_queue_slot = false;
    bool from_own_worker = false;
  };

  /// Whether the scheduler keeps a lock-free deque of forked coroutines per worker.
  static constexpr bool forks_coroutines =
      requires(typename Scheduler::Queues& queues, void* coroutine) {
        queues.push_fork(0u, coroutine);
      };

  friend detail::PoolCoroutines;

  /// In a fork deque, a fork of when_all() that has not started is tagged in the low bit (a
  /// frame is aligned), so that reclaim_fork() never mistakes a resumption of a started
  /// coroutine, which may sit there under the same address, for it.
  static constexpr std::uintptr_t fresh_fork = 1;

  /// This thread's Worker if it is one of ours, else null. Through the never-inlined accessor:
  /// this runs on behalf of coroutines (see this_thread_worker()).
  Worker* own_worker() const noexcept {
    detail::WorkerContext* worker = detail::this_thread_worker();
    return worker != nullptr && worker->pool() == this ? static_cast<Worker*>(worker) : nullptr;
  }

  /// Queues a coroutine to resume on this pool (`fresh`: a fork of when_all()). From one of
  /// its own workers it goes into that worker's fork deque, skipping the bookkeeping of a
  /// callable; otherwise it is a detached job. @throws PoolClosed as detach().
  void post_coroutine(std::coroutine_handle<> coroutine, bool fresh) {
    if constexpr (forks_coroutines) {
      if (Worker* self = own_worker()) {
        const auto address = reinterpret_cast<std::uintptr_t>(coroutine.address());
        const bool was_empty = queues_.push_fork(
            self->index(), reinterpret_cast<void*>(fresh ? address | fresh_fork : address));
        self->add(self->submitted);  // after the push: a push that throws queued nothing
        // Only the first fork of a run wakes a peer: while the deque stays non-empty, the
        // peer woken for it (or spinning) takes forks one after another, and whoever leaves
        // idle wakes the next (worker_main). A wake-up missed in a race with a thief that
        // emptied the deque costs parallelism, never progress: this worker pops its own
        // forks itself.
        if (was_empty) wake_worker_for_new_work();
        return;
      }
    }
    detach(detail::ResumeCoroutine{coroutine});
  }

  /// Takes back `coroutine`, a fork this worker pushed, if it is still the newest entry of
  /// its fork deque and nobody took it: the caller then runs it itself. True if so.
  bool reclaim_fork(std::coroutine_handle<> coroutine) noexcept {
    if constexpr (forks_coroutines) {
      Worker* self = own_worker();
      if (self == nullptr) return false;
      void* newest = nullptr;
      if (!queues_.pop_fork(self->index(), newest)) return false;
      const auto wanted = reinterpret_cast<std::uintptr_t>(coroutine.address()) | fresh_fork;
      if (reinterpret_cast<std::uintptr_t>(newest) == wanted) {
        self->add(self->completed);  // it runs as part of the coroutine that took it back
        return true;
      }
      // Somebody else's: back where it was (the slot just freed, so this cannot grow).
      queues_.push_fork(self->index(), newest);
      return false;
    } else {
      return false;
    }
  }

  static constexpr std::uint64_t closed_bit = std::uint64_t{1} << 63;

  static unsigned thread_count(unsigned requested) noexcept {
    if (requested != 0) return requested;
    return std::max(1u, std::thread::hardware_concurrency());
  }

  static LatencyPercentiles percentiles(const detail::HistogramCounts& counts) noexcept {
    return {detail::percentile(counts, 0.50), detail::percentile(counts, 0.90),
            detail::percentile(counts, 0.99), detail::total_count(counts)};
  }

  // --- submission ----------------------------------------------------------------------------

  template <class F, class... Args>
  auto make_task_state(F&& fn, Args&&... args) {
    detail::check_task_callable<F, Args...>();
    using R = detail::task_result_t<F, Args...>;
    using State = detail::TaskState<R, std::decay_t<F>, std::decay_t<Args>...>;
    // The state starts with one reference: the future's.
    return detail::StatePtr<State>(new State(std::forward<F>(fn), std::forward<Args>(args)...));
  }

  template <class State>
  auto queue_task_state(int priority, detail::StatePtr<State> state, Admission admission) {
    state->add_ref();  // the queue's reference, given back by TaskState::run()/abandon()
    detail::Job job{detail::JobBody(detail::RunnableHandle(state.get()))};
    enqueue(std::move(job), priority, admission);
    using R = std::remove_cvref_t<decltype(state->take())>;
    return detail::FutureAccess::make<R>(std::move(state));
  }

  template <class F, class... Args>
  auto submit_at(int priority, F&& fn, Args&&... args) {
    auto state = make_task_state(std::forward<F>(fn), std::forward<Args>(args)...);
    const Admission admission = admit(/*may_block=*/true).value();
    return queue_task_state(priority, std::move(state), admission);
  }

  template <class F, class... Args>
  auto try_submit_at(int priority, F&& fn, Args&&... args) {
    auto state = make_task_state(std::forward<F>(fn), std::forward<Args>(args)...);
    using Result = std::optional<decltype(queue_task_state(priority, std::move(state), {}))>;
    const std::optional<Admission> admission = admit(/*may_block=*/false);
    if (!admission) return Result();
    return Result(queue_task_state(priority, std::move(state), *admission));
  }

  template <class F, class... Args>
  void detach_at(int priority, F&& fn, Args&&... args) {
    detail::check_task_callable<F, Args...>();
    // Exceptions escape this callable on purpose: run_job() hands them to the handler.
    detail::Job job{detail::JobBody([fn = std::decay_t<F>(std::forward<F>(fn)),
                                  arguments = std::tuple<std::decay_t<Args>...>(
                                      std::forward<Args>(args)...)]() mutable {
      detail::invoke_task(fn, arguments, std::stop_token());
      return detail::TaskOutcome::succeeded;
    })};
    const Admission admission = admit(/*may_block=*/true).value();
    enqueue(std::move(job), priority, admission);
  }

  template <class Loop>
  void launch_runners(const std::shared_ptr<Loop>& loop, unsigned runners) {
    for (unsigned r = 0; r < runners; ++r) {
      // The first runner may block on a full queue; later ones are extras, skipped when the
      // queue is full (the runners already queued claim every chunk anyway).
      std::optional<Admission> admission;
      try {
        admission = admit(/*may_block=*/r == 0);
      } catch (const PoolClosed&) {
        if (r == 0) throw;
      }
      if (!admission) {
        for (unsigned unused = r; unused < runners; ++unused) loop->leave();
        return;
      }
      detail::Job job{detail::JobBody([loop] {
        loop->run();
        return detail::TaskOutcome::succeeded;
      })};
      enqueue(std::move(job), 0, *admission);
    }
  }

  /// Accounts for a new task: takes a bounded-queue slot (blocking or not) and checks that
  /// the pool is open. Empty when !may_block and the queue is full.
  std::optional<Admission> admit(bool may_block) {
    Admission admission;
    admission.from_own_worker = is_own_worker();
    if (max_queue_ != 0 && !admission.from_own_worker) {
      if (!reserve_queue_slot(may_block)) return std::nullopt;
      admission.holds_queue_slot = true;
    }
    if (admission.from_own_worker) {
      // A worker counts its own submissions: no shared cache line on the nested-spawn path,
      // and the closed bit does not apply (tasks running at shutdown may still spawn).
      auto& self = static_cast<Worker&>(*detail::current_worker);
      self.add(self.submitted);
      return admission;
    }
    // Relaxed: the counter's modification order alone decides whether we came before
    // shutdown's fetch_or.
    const std::uint64_t before = submitted_.fetch_add(1, std::memory_order_relaxed);
    if ((before & closed_bit) != 0) {
      if (admission.holds_queue_slot) release_queue_slot();
      // seq_cst: store half of the idle check's store-load pattern.
      rejected_.fetch_add(1, std::memory_order_seq_cst);
      idle_parker_.notify_all();
      throw PoolClosed();
    }
    return admission;
  }

  void enqueue(detail::Job&& job, int priority, Admission admission) {
    job.holds_queue_slot = admission.holds_queue_slot;
    if (detail::sample_this_submission()) job.enqueued_ns = detail::steady_now_ns();
    std::optional<unsigned> local;
    if (admission.from_own_worker) local = detail::current_worker->index();
    try {
      queues_.push(std::move(job), priority, local);
    } catch (...) {  // out of memory growing a queue: the task was never queued
      if (admission.holds_queue_slot) release_queue_slot();
      rejected_.fetch_add(1, std::memory_order_seq_cst);
      idle_parker_.notify_all();
      throw;
    }
    wake_worker_for_new_work();
  }

  /// A spinning worker will find new work by itself; only when none spins is a sleeper woken
  /// (a futex system call). This keeps a stream of submissions free of system calls.
  void wake_worker_for_new_work() noexcept {
    // seq_cst: store-load pattern with the queue publication, and with the decrement at the
    // end of spin_for_work() (a spinner leaving after our push re-checks in park()).
    if (spinning_.load(std::memory_order_seq_cst) == 0) worker_parker_.notify_one();
  }

  bool reserve_queue_slot(bool may_block) {
    for (;;) {
      std::size_t queued = queued_.load(std::memory_order_relaxed);
      while (queued < max_queue_) {
        // Relaxed: the slot count orders nothing else.
        if (queued_.compare_exchange_weak(queued, queued + 1, std::memory_order_relaxed)) {
          return true;
        }
      }
      if (!may_block) return false;
      if (is_closed()) throw PoolClosed();
      const std::uint32_t epoch = space_parker_.prepare();
      if (queued_.load(std::memory_order_seq_cst) < max_queue_ || is_closed()) {
        space_parker_.cancel();
        continue;
      }
      space_parker_.commit(epoch);
    }
  }

  void release_queue_slot() noexcept {
    // seq_cst: publication half of the space_parker_ protocol.
    queued_.fetch_sub(1, std::memory_order_seq_cst);
    space_parker_.notify_one();
  }

  [[nodiscard]] bool is_closed() const noexcept {
    return (submitted_.load(std::memory_order_seq_cst) & closed_bit) != 0;
  }

  [[nodiscard]] bool is_own_worker() const noexcept {
    return detail::current_worker != nullptr && detail::current_worker->pool() == this;
  }

  void reject_own_worker(const char* what) const {
    if (is_own_worker()) {
      throw WouldDeadlock(std::string("offload: ") + what +
                          " called from one of the pool's own workers would wait for itself");
    }
  }

  // --- running -------------------------------------------------------------------------------

  void start_workers(unsigned count) {
    workers_.reserve(count);
    threads_.reserve(count);
    for (unsigned i = 0; i < count; ++i) workers_.push_back(std::make_unique<Worker>(this, i));
    try {
      for (unsigned i = 0; i < count; ++i) {
        threads_.emplace_back([this, i] { worker_main(*workers_[i]); });
      }
    } catch (...) {
      stop_workers();
      throw;
    }
  }

  void stop_workers() noexcept {
    // seq_cst: a worker's re-check in park() must see this (store-load with Parker).
    stopping_.store(true, std::memory_order_seq_cst);
    worker_parker_.notify_all();
    for (std::thread& thread : threads_) thread.join();
  }

  void worker_main(Worker& self) {
    detail::current_worker = &self;
    run_hook(options_.on_thread_start, self.index());
    for (;;) {
      if (run_one(self)) {
        yield_to_woken_loop(self);
        continue;
      }
      self.leaving_idle = false;  // found nothing after all: nothing to hand on
      if (!spin_for_work(self) && !park()) break;
      self.leaving_idle = true;  // the first job it takes hands on the rest (hand_on())
      self.first_since_idle = true;
    }
    run_hook(options_.on_thread_stop, self.index());
    detail::current_worker = nullptr;
  }

  /// A worker that woke a sleeping event loop yields its CPU between its next few tasks. The
  /// loop's thread, woken onto this CPU, often cannot preempt it: having just run, it is not
  /// yet owed CPU time by the kernel's fair scheduler, and nothing checks again until the
  /// next scheduler tick, 4 ms later at HZ=250 (largest tick gaps of 4-6 ms with busy
  /// workers). By the end of the next task it is owed time, and the yield hands it over: the
  /// gap shrinks to about one task. When nothing else waits for this CPU, a yield returns at
  /// once (a system call, about 0.3 us).
  void yield_to_woken_loop(Worker& self) noexcept {
    if (self.yields_owed == 0) return;
    --self.yields_owed;
    std::this_thread::yield();
  }

  /// A short busy wait (about 50 us) before sleeping: a worker that parks after every task
  /// makes the next submission pay a futex wake-up (microseconds) instead of a cache miss.
  /// While it spins, submitters need not wake anyone (see wake_worker_for_new_work()).
  bool spin_for_work(Worker& self) noexcept {
    const bool counted = std::exchange(self.counted_spinning, false) || count_spinning();
    announce_idle(self);
    if (!counted) return false;
    const bool found = spin_in_place() || spin_yielding();
    // Leaving before the re-check in park(): a submitter that saw us spinning and did not
    // wake anyone published its work before this decrement, so park() will see it.
    spinning_.fetch_sub(1, std::memory_order_seq_cst);
    return found;
  }

  /// The first part of the spin: a check after every pause for 2 us, with one yield after the
  /// first microsecond (see spin_before_sleeping()). In a round trip (submit, run, get) the
  /// next task comes a fraction of a microsecond after this worker finished the last one, and
  /// is seen within the first checks; a yield before them made it wait for the system call's
  /// return (round trips 0.6 -> 0.25 us without it). Longer checks in place cost bursts of
  /// submissions: each one pulls the queue's cache line away from the submitter (tiny tasks
  /// with futures: 8 us of them took 66 -> 135 ns each).
  bool spin_in_place() const noexcept {
    const auto start = std::chrono::steady_clock::now();
    const auto stop = start + std::chrono::microseconds(2);
    return detail::spin_before_sleeping([this] { return queues_.has_work(); }, start, stop, stop);
  }

  /// The rest, up to about 50 us: spaced-out checks (each pulls the queue's cache line away
  /// from the submitter) with a yield in between: on a machine with fewer cores than busy
  /// threads, the spinner would otherwise take CPU time from the very thread that submits the
  /// work it waits for.
  bool spin_yielding() const noexcept {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(42);
    do {
      if (queues_.has_work()) return true;
      for (int i = 0; i < 64; ++i) detail::cpu_relax();
      std::this_thread::yield();
    } while (std::chrono::steady_clock::now() < until);
    return queues_.has_work();
  }

  /// Joins the spinners, unless enough peers spin already (more would only take CPU from the
  /// threads that submit). True when counted.
  bool count_spinning() noexcept {
    // seq_cst: pairs with the load in wake_worker_for_new_work() (store-load pattern).
    if (spinning_.fetch_add(1, std::memory_order_seq_cst) < max_spinning_) return true;
    spinning_.fetch_sub(1, std::memory_order_seq_cst);
    return false;
  }

  /// Called as the first task since idle ends (its result already published). When nothing
  /// else is queued, this worker joins the spinners now rather than after its bookkeeping and
  /// a failed look at every queue: in a round trip the waiter sees the result, submits again
  /// within ~0.2 us, and finding nobody spinning, woke a sleeping peer for the task (a futex
  /// call for the submitter, and the peer often woken onto the submitter's own CPU) in one
  /// round trip of ten, where this worker was about to take it. Only the first task since idle:
  /// a worker that finds task after task never pays these two atomic operations.
  void count_spinning_early(Worker& self) noexcept {
    if (std::exchange(self.first_since_idle, false) && !queues_.has_work()) {
      self.counted_spinning = count_spinning();
    }
  }

  /// It found work after all: no longer a spinner (before running it, which may take long).
  /// While it was counted, submitters woke nobody, so like a worker leaving the spin it hands
  /// on what else is queued (hand_on(), called next). Without that, a burst submitted while
  /// it was counted (the submitter often runs exactly then: the worker yields after a task
  /// that woke a loop, or was woken onto the submitter's CPU and preempted it) sat behind this
  /// one worker while its peers slept: 400 heavy tasks on 2 workers took as long as serial in
  /// 13 of 39 runs of a copy of tick_bench's offloaded approach.
  void stop_counting_spinning(Worker& self) noexcept {
    if (!std::exchange(self.counted_spinning, false)) return;
    spinning_.fetch_sub(1, std::memory_order_seq_cst);
    self.leaving_idle = true;
  }

  /// Out of work: a wait() may now be satisfied.
  void announce_idle(Worker& self) noexcept {
    self.publish_counts();
    idle_parker_.notify_all();
  }

  /// Sleeps until work arrives; false when the pool is stopping and there is none.
  bool park() noexcept {
    const std::uint32_t epoch = worker_parker_.prepare();
    if (queues_.has_work()) {
      worker_parker_.cancel();
      return true;
    }
    if (stopping_.load(std::memory_order_seq_cst)) {
      worker_parker_.cancel();
      return false;
    }
    worker_parker_.commit(epoch);
    return true;
  }

  /// Runs one piece of work: a fork of its own, its own jobs, outside submissions, a job
  /// stolen from a peer, a fork stolen from a peer, in that order.
  bool run_one(Worker& self) {
    void* fork = nullptr;
    if constexpr (forks_coroutines) {
      if (queues_.pop_fork(self.index(), fork)) return run_fork(self, fork);
    }
    detail::Job job;
    if (queues_.pop(self.index(), job)) {
      run_job(job, self);
      return true;
    }
    if constexpr (forks_coroutines) {
      if (queues_.steal_fork(self.index(), fork)) return run_fork(self, fork);
    }
    return false;
  }

  /// Back from idle, after taking its first piece of work and before running it: submitters
  /// skip waking anyone while a worker spins, so whoever leaves idle hands on the rest. If more
  /// work is still queued (and nobody spins), a sleeping peer is woken for it. Checked after
  /// the take, not before: in a round trip the one queued task is the one this worker takes,
  /// and waking a peer for it would put a futex call (and a thread with nothing to do) on
  /// every round trip. Work queued after this worker stopped spinning woke a peer itself.
  void hand_on(Worker& self) noexcept {
    if (!self.leaving_idle) return;
    self.leaving_idle = false;
    if (queues_.has_work()) wake_worker_for_new_work();
  }

  bool run_fork(Worker& self, void* fork) {
    stop_counting_spinning(self);
    hand_on(self);
    // Not a task that may count this worker as spinning early: a job the coroutine runs while
    // it waits (Future::get helps) would count it so, and it stays counted while it waits.
    self.first_since_idle = false;
    const auto address = reinterpret_cast<std::uintptr_t>(fork) & ~fresh_fork;
    // A coroutine's resume() never throws.
    detail::resume_here(std::coroutine_handle<>::from_address(reinterpret_cast<void*>(address)));
    self.add(self.completed);
    return true;
  }

  void run_job(detail::Job& job, Worker& self) {
    stop_counting_spinning(self);
    hand_on(self);
    if (job.holds_queue_slot) release_queue_slot();
    const std::int64_t start = job.enqueued_ns != 0 ? detail::steady_now_ns() : 0;
    self.busy_depth.store(self.busy_depth.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
    detail::TaskOutcome outcome;
    try {
      outcome = job.task();
    } catch (...) {  // only detach()ed tasks throw out of their Job
      outcome = detail::TaskOutcome::failed;
      report_unhandled(std::current_exception());
    }
    job.task.reset();  // release captures before the task counts as finished
    // Only once the captures are gone: counted as spinning, this worker makes submitters wake
    // nobody, and a capture's destructor may take long, or wait for work submitted meanwhile
    // (which then waited for ever, the peers asleep).
    if (self.busy_depth.load(std::memory_order_relaxed) == 1) count_spinning_early(self);
    self.busy_depth.store(self.busy_depth.load(std::memory_order_relaxed) - 1,
                          std::memory_order_relaxed);
    if (start != 0) {
      self.queue_wait.record(start - job.enqueued_ns);
      self.run_time.record(detail::steady_now_ns() - start);
    }
    switch (outcome) {
      case detail::TaskOutcome::succeeded: self.add(self.completed); break;
      case detail::TaskOutcome::failed: self.add(self.failed); break;
      case detail::TaskOutcome::cancelled: self.add(self.cancelled); break;
    }
  }

  void run_hook(const std::function<void(unsigned)>& hook, unsigned index) noexcept {
    if (!hook) return;
    try {
      hook(index);
    } catch (...) {
      report_unhandled(std::current_exception());
    }
  }

  void report_unhandled(std::exception_ptr error) noexcept {
    try {
      if (options_.on_unhandled_exception) {
        options_.on_unhandled_exception(std::move(error));
        return;
      }
      std::rethrow_exception(std::move(error));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "offload: unhandled exception in a detached task: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "offload: unhandled non-standard exception in a detached task\n");
    }
  }

  // --- waiting for idle ----------------------------------------------------------------------

  /// Tasks accepted and not yet finished. Finished counts are read before the submitted
  /// count, so the result never undercounts (it is 0 only if the pool really was idle).
  [[nodiscard]] std::uint64_t pending() const noexcept {
    std::uint64_t finished = rejected_.load(std::memory_order_seq_cst);
    for (const auto& worker : workers_) {
      // seq_cst (and so acquire): the waiter must see the finished tasks' effects, and this
      // re-check must be ordered after Parker::prepare().
      finished += worker->completed.load(std::memory_order_seq_cst) +
                  worker->failed.load(std::memory_order_seq_cst) +
                  worker->cancelled.load(std::memory_order_seq_cst);
    }
    return total_submitted() - finished;
  }

  /// Outside submissions plus each worker's own. Read after the finished counts (see pending).
  [[nodiscard]] std::uint64_t total_submitted() const noexcept {
    std::uint64_t submitted = submitted_.load(std::memory_order_seq_cst) & ~closed_bit;
    for (const auto& worker : workers_) submitted += worker->submitted.load(std::memory_order_seq_cst);
    return submitted;
  }

  bool wait_idle(const detail::Deadline& deadline) {
    for (;;) {
      if (pending() == 0) return true;
      const std::uint32_t epoch = idle_parker_.prepare();
      if (pending() == 0) {
        idle_parker_.cancel();
        return true;
      }
      if (deadline && std::chrono::steady_clock::now() >= *deadline) {
        idle_parker_.cancel();
        return false;
      }
      idle_parker_.commit(epoch, deadline);
    }
  }

  PoolOptions options_;
  const std::size_t max_queue_;
  typename Scheduler::Queues queues_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;

  alignas(64) std::atomic<std::uint64_t> submitted_{0};  // from outside; top bit: closed
  alignas(64) std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::size_t> queued_{0};  // bounded-queue slots in use
  std::atomic<bool> stopping_{false};
  std::atomic<unsigned> spinning_{0};  // workers busy-waiting for work right now
  const unsigned max_spinning_ = std::max(1u, std::thread::hardware_concurrency() / 2);
  detail::Parker worker_parker_;  // idle workers
  detail::Parker idle_parker_;    // wait() callers
  detail::Parker space_parker_;   // producers blocked on a full queue
  std::mutex shutdown_mutex_;
  bool joined_ = false;
};

/// The default pool: work stealing.
using ThreadPool = BasicThreadPool<>;
/// A pool whose submit/detach take a priority first: larger runs first, FIFO among equals.
using PriorityThreadPool = BasicThreadPool<Prioritized>;

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_THREAD_POOL_HPP

#ifndef OFFLOAD_PROCESS_POOL_HPP
#define OFFLOAD_PROCESS_POOL_HPP

/// @file process_pool.hpp
/// ProcessPool: the worker-farm model. Calls run in separate worker processes, so a call that
/// crashes, hangs or leaks takes down only its worker; the caller gets an error and the pool
/// a fresh worker. POSIX (Linux) only.
///
/// How a call travels: submit() encodes the arguments with Codec<T> into a frame naming the
/// function by address (a worker is a fork of this very program, so the address means the same
/// thing there). Each worker has one private socket pair, one private *mailbox* (shared memory
/// whose two rings carry small frames without a system call; detail/process/mailbox.hpp) and one
/// *keeper* thread in this process. If a worker is idle, submit() hands the frame to it at
/// once; otherwise the frame waits in the pool's queue until a keeper takes it. The keeper
/// watches its worker's replies, the call's deadline (a timerfd) and the worker's death (end
/// of stream, then the exit status relayed by the fork server), and completes the Future.
/// While the worker runs a call, its keeper sends the next small queued calls ahead (see
/// send_ahead_locked()). Nothing is shared between workers: a worker that dies mid-call cannot
/// leave a lock or a queue behind.
///
/// Latency: a round trip costs two process wake-ups at worst. Workers poll for a moment
/// before they sleep (ProcessOptions::idle_spin), and keepers ask for short scheduler slices,
/// so in a loop of short calls neither has to be woken from a deep sleep. While a worker has
/// calls sent ahead, it wakes its keeper only when it starts the last of them, and the keeper
/// then completes the futures of the whole batch: a few milliseconds later at most
/// (send_ahead_depth.hpp).
///
/// Workers are forked by a fork server (see detail/process/fork_server.hpp), a process forked while
/// the program was still single-threaded: by offload::process_init() at the start of main(),
/// or by the first ProcessPool if no other thread runs yet.
///
/// Important consequence: a worker sees the program as it was when the fork server started,
/// not as it is when the call is made. Globals changed later, libraries loaded later with
/// dlopen(), and objects built later do not exist there: pass what a call needs as arguments.

#if !defined(__unix__) && !defined(__APPLE__)
#error "offload/process_pool.hpp needs a POSIX system (it forks worker processes)"
#endif

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "codec.hpp"
#include "detail/process/call_ticket.hpp"
#include "detail/process/fork_server.hpp"
#include "detail/process/keeper.hpp"
#include "detail/process/make_call.hpp"
#include "detail/process/pool_core.hpp"
#include "errors.hpp"
#include "future.hpp"
#include "process_options.hpp"

namespace offload {
inline namespace v0 {

namespace detail {
struct ProcessPoolAccess;  // lets the cluster's serving ranks hand a pool calls already encoded
}  // namespace detail

/**
 * @brief Starts the fork server now, while the program is still single-threaded.
 *
 * Call it first thing in main(). It is optional when the first ProcessPool is created before
 * any other thread starts; it is required when pools are created later, from a program that
 * by then runs threads. The server (one small process) then lives until the program exits.
 * Idempotent and thread-safe; blocks for one fork().
 * @throws offload::Error when other threads already run (forking now would be unsafe).
 */
inline void process_init() {
  detail::ForkServerRegistry& registry = detail::fork_server_registry();
  {
    std::lock_guard lock(registry.mutex);
    if (registry.kept) return;
    if ((registry.kept = registry.shared.lock())) return;
  }
  std::shared_ptr<detail::ForkServer> server =
      detail::acquire_fork_server("offload::process_init()");
  std::lock_guard lock(registry.mutex);
  registry.kept = std::move(server);
}

/**
 * @brief A pool of worker processes that run calls in isolation (the worker-farm model).
 *
 * submit() is thread-safe. Each worker runs one call at a time. A crash (signal or non-zero
 * exit) fails only the call it ran, with WorkerCrashed, after max_retries re-runs; a call over
 * max_call_time is killed and fails with CallTimeout; an exception thrown by the function
 * fails its call with RemoteError (type name and message); any other call is undisturbed.
 *
 * Owns (number of workers) keeper threads and worker processes. The destructor finishes every
 * queued call, then ends and reaps every worker: nothing outlives the pool but, when
 * process_init() was used, the fork server itself.
 */
class ProcessPool {
 public:
  /**
   * @brief Starts the workers.
   * @throws offload::Error when no fork server runs and other threads already run (call
   *         offload::process_init() at the start of main()); std::system_error when the
   *         fork server or a keeper thread cannot be started.
   */
  explicit ProcessPool(ProcessOptions options = {})
      : server_(detail::acquire_fork_server("constructing an offload::ProcessPool")),
        core_(std::make_unique<detail::PoolCore>(with_defaults(options))) {
    const std::size_t workers = core_->slots.size();
    keepers_.reserve(workers);
    for (std::size_t slot = 0; slot < workers; ++slot) {
      keepers_.push_back(std::make_unique<detail::WorkerKeeper>(*core_, *server_, slot));
    }
    try {
      for (auto& keeper : keepers_) keeper->start();
    } catch (...) {  // a thread that cannot start (EAGAIN): end those that did, and their workers
      shutdown();
      throw;
    }
  }

  ProcessPool(const ProcessPool&) = delete;
  ProcessPool& operator=(const ProcessPool&) = delete;

  /// Finishes every queued call, then ends and reaps every worker (see shutdown()).
  ~ProcessPool() {
    try {
      shutdown();
    } catch (...) {  // WouldDeadlock from a keeper thread: nothing sensible is left to do
    }
  }

  /**
   * @brief Runs `fn(args...)` in a worker process.
   *
   * `fn` is a function, function pointer or capture-less non-generic lambda; each argument is
   * converted to its parameter's type and encoded with Codec (compile error if a type has no
   * codec), the result comes back through Codec. When a worker is idle the call is sent to it
   * from this thread right away; otherwise it is queued. Thread-safe. Allocates the call.
   * Blocks while a bounded queue (max_queue) is full.
   * @return the future result; it fails with WorkerCrashed, CallTimeout, RemoteError or
   *         ProtocolError as described on the class, or TaskCancelled when request_stop()
   *         came before the call started.
   * @throws offload::PoolClosed after shutdown(); offload::ProtocolError when the encoded
   *         arguments exceed max_message_size; whatever a codec throws while encoding.
   */
  template <class F, class... Args>
  auto submit(F&& fn, Args&&... args) {
    auto [future, call] = detail::make_call(fn, std::forward<Args>(args)...);
    core_->accept(call, true);
    return std::move(future);
  }

  /**
   * @brief Like submit(), but returns nothing instead of blocking when the queue is full.
   * Thread-safe; never blocks for long. @throws offload::PoolClosed after shutdown().
   */
  template <class F, class... Args>
  auto try_submit(F&& fn, Args&&... args) {
    auto [future, call] = detail::make_call(fn, std::forward<Args>(args)...);
    using FutureType = std::remove_cvref_t<decltype(future)>;
    if (!core_->accept(call, false)) return std::optional<FutureType>();
    return std::optional<FutureType>(std::move(future));
  }

  /**
   * @brief Stops accepting calls, finishes the queued ones, ends and reaps every worker.
   *
   * Idempotent and thread-safe; blocks until done. A call that hangs without max_call_time
   * keeps it waiting: set max_call_time if that can happen.
   * @throws offload::WouldDeadlock when called from the pool's own keeper thread (from a
   *         continuation of one of its futures).
   */
  void shutdown() {
    if (detail::keeper_of_pool == core_.get()) {
      throw WouldDeadlock(
          "offload: ProcessPool::shutdown from a continuation running on the "
          "pool's own keeper thread would wait for itself");
    }
    std::lock_guard lock(shutdown_mutex_);
    if (keepers_.empty()) return;
    core_->close();
    for (auto& keeper : keepers_) keeper->join();
    core_->fail_stranded();
    keepers_.clear();  // closes the sessions: the servers forget them
    server_->tend();   // reaps a server that died meanwhile
    server_.reset();   // the last pool using pool-started servers ends them
  }

  /// Number of worker slots. Thread-safe; never blocks.
  [[nodiscard]] unsigned size() const noexcept { return core_->options.workers; }

  /// A snapshot of the pool's counters. Thread-safe; takes the pool's lock briefly.
  [[nodiscard]] ProcessStats stats() const {
    ProcessStats snapshot;
    const auto read = [](const std::atomic<std::uint64_t>& counter) {
      return counter.load(std::memory_order_relaxed);
    };
    snapshot.submitted = read(core_->submitted);
    snapshot.completed = read(core_->completed);
    snapshot.failed = read(core_->failed);
    snapshot.cancelled = read(core_->cancelled);
    snapshot.crashes = read(core_->crashes);
    snapshot.timeouts = read(core_->timeouts);
    snapshot.retries = read(core_->retries);
    snapshot.workers_started = read(core_->workers_started);
    std::lock_guard lock(core_->mutex);
    snapshot.queued = core_->queue.size();
    for (const detail::Slot& slot : core_->slots) {
      if (slot.phase == detail::Slot::Phase::busy) ++snapshot.busy;
    }
    return snapshot;
  }

  /// The process ids of the live workers (one being replaced is missing). Thread-safe.
  [[nodiscard]] std::vector<pid_t> worker_pids() const {
    std::lock_guard lock(core_->mutex);
    std::vector<pid_t> live;
    for (const detail::Slot& slot : core_->slots) {
      if (slot.pid != 0) live.push_back(slot.pid);
    }
    return live;
  }

 private:
  friend struct detail::ProcessPoolAccess;

  static ProcessOptions with_defaults(ProcessOptions options) {
    if (options.workers == 0) options.workers = std::max(1u, std::thread::hardware_concurrency());
    return options;
  }

  std::shared_ptr<detail::ForkServer> server_;
  std::unique_ptr<detail::PoolCore> core_;
  std::vector<std::unique_ptr<detail::WorkerKeeper>> keepers_;
  std::mutex shutdown_mutex_;
};

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_PROCESS_POOL_HPP

#ifndef OFFLOAD_CLUSTER_HPP
#define OFFLOAD_CLUSTER_HPP

/// @file cluster.hpp
/// ClusterPool: ProcessPool::submit across the ranks of an MPI job. Rank 0 drives; every
/// other rank runs the calls in a ProcessPool of its own, so a call that crashes, hangs or
/// throws behaves exactly as on one machine. Without mpirun the calls run in a local
/// ProcessPool, so the same program runs on a laptop.
///
///     int main(int argc, char** argv) {
///       offload::process_init();                           // before MPI starts its threads
///       if (offload::serve_cluster(argc, argv)) return 0;  // ranks 1..N-1 serve until rank 0 ends
///       offload::ClusterPool cluster{{.workers_per_rank = 2}};
///       auto f = cluster.submit(fn, args...);
///     }
///
/// MPI (Open MPI, MPICH) does the transport; one thread per rank makes every MPI call
/// (detail/cluster/link.hpp). A function crosses as its offset in the executable, which every
/// rank proves at start-up to be the same file (detail/cluster/program_image.hpp).
/// Not included by offload.hpp: a program that never includes this header needs no MPI.
/// Link with the CMake target offload::cluster (it brings MPI::MPI_CXX).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "detail/cluster/driver.hpp"
#include "detail/cluster/launch.hpp"
#include "detail/cluster/link.hpp"
#include "detail/cluster/rank_server.hpp"
#include "detail/process/make_call.hpp"
#include "errors.hpp"
#include "future.hpp"
#include "process_pool.hpp"

namespace offload {
inline namespace v0 {

/// Configuration of a ClusterPool.
struct ClusterOptions {
  /// Worker processes on each serving rank; 0 means that rank's hardware_concurrency().
  unsigned workers_per_rank = 0;
  /// A call running longer is killed and fails with CallTimeout; 0 means no limit.
  std::chrono::milliseconds max_call_time{0};
  /// How many times a call whose worker crashed is re-run (on another rank when there is one)
  /// before it fails with WorkerCrashed.
  unsigned max_retries = 0;
  /// Calls waiting for a rank; 0 means unbounded, otherwise submit() blocks while full.
  std::size_t max_queue = 0;
};

/// What one serving rank did for a ClusterPool. Every attempt counts on the rank that ran it,
/// so a call retried elsewhere after a crash is `failed` here and `completed` there. A call the
/// driver took back from a busy rank before it began counts only where it ran: `sent` drops
/// by one when that happens.
struct RankStats {
  int rank = 0;
  std::uint64_t sent = 0;       ///< calls sent to the rank
  std::uint64_t completed = 0;  ///< calls it answered with a value
  std::uint64_t failed = 0;     ///< calls it answered with an error of any kind
};

/// Counters of a ClusterPool: one entry per serving rank (none without mpirun).
struct ClusterStats {
  std::vector<RankStats> per_rank;
};

namespace detail {

/// This process's link, once serve_cluster() started it (nullptr without mpirun).
inline MpiLink* cluster_link = nullptr;
inline std::mutex cluster_link_mutex;

inline std::unique_ptr<LinkRole> make_cluster_role(MpiLink& link) {
  if (link.rank() == 0) return std::make_unique<ClusterDriver>(link);
  return std::make_unique<RankServer>(link);
}

/// Rank 0 at exit: the serving ranks stop, MPI is finalized.
inline void end_cluster_at_exit() {
  auto& driver = static_cast<ClusterDriver&>(cluster_link->role());
  driver.end();
  cluster_link->join();
}

/// An exception escaping a rank's main (or any thread) ends the whole job rather than leaving
/// the other ranks waiting for a rank that is gone.
[[noreturn]] inline void abort_cluster_on_terminate() {
  if (const std::exception_ptr error = std::current_exception()) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "offload: rank %d ends the MPI job: uncaught exception: %s\n",
                   cluster_link->rank(), e.what());
    } catch (...) {
      std::fprintf(stderr, "offload: rank %d ends the MPI job: uncaught exception\n",
                   cluster_link->rank());
    }
  } else {
    std::fprintf(stderr, "offload: rank %d ends the MPI job: std::terminate\n",
                 cluster_link->rank());
  }
  cluster_link->abort_job(1);
}

}  // namespace detail

/**
 * @brief Joins the MPI job this process belongs to; on ranks 1..N-1, serves calls until
 *        rank 0's main returns.
 *
 * Call it at the start of main(), after offload::process_init() (it calls it too, so that
 * the fork server exists before MPI starts threads). Without mpirun it starts nothing and
 * returns false: the program is rank 0 alone, and ClusterPool runs its calls locally.
 * The argument list is left as it is (MPI needs none of it).
 * @return true on a serving rank, once serving ended (return from main then); false on rank
 *         0, which goes on to drive.
 * @throws offload::ClusterError when MPI cannot start or lacks MPI_THREAD_FUNNELED;
 *         offload::Error when other threads already run (see process_init()).
 */
inline bool serve_cluster(int argc, char** argv) {
  (void)argc;
  (void)argv;
  if (!detail::launched_by_mpi()) return false;
  process_init();
  std::unique_lock lock(detail::cluster_link_mutex);
  if (detail::cluster_link != nullptr) return detail::cluster_link->rank() != 0;
  detail::MpiLink& link = detail::MpiLink::start(&detail::make_cluster_role);
  detail::cluster_link = &link;
  std::set_terminate(&detail::abort_cluster_on_terminate);
  if (link.rank() == 0) {
    std::atexit(&detail::end_cluster_at_exit);
    return false;
  }
  lock.unlock();
  link.join();  // until rank 0 says finish
  return true;
}

/**
 * @brief ProcessPool::submit over the ranks of an MPI job.
 *
 * Made on rank 0 after serve_cluster(). Each serving rank runs the pool's calls in a local
 * ProcessPool of workers_per_rank workers; the least-loaded rank takes the next call. Calls,
 * codecs and errors follow ProcessPool's rules (WorkerCrashed, CallTimeout, RemoteError,
 * ProtocolError, TaskCancelled before a call was sent); a crashed call is retried on another
 * rank where there is one. Futures complete on the cluster's communication thread: keep
 * continuations short and never wait there for another cluster call.
 *
 * Several ClusterPools may live one after another (or at once); the serving ranks keep
 * serving until rank 0's main returns.
 */
class ClusterPool {
 public:
  /**
   * @brief Opens a process pool on every serving rank (or, without mpirun, a local one).
   * @throws offload::ClusterError when a rank runs a different program than rank 0, a rank
   *         cannot start its pool, serve_cluster() was not called in an MPI job, this is not
   *         rank 0, or the driver's main has returned; offload::WouldDeadlock in a
   *         continuation (on the communication thread, which brings the ranks' answers).
   */
  explicit ClusterPool(ClusterOptions options = {}) {
    detail::MpiLink* link = attached_link();
    if (link == nullptr || link->size() == 1) {
      local_ = std::make_unique<ProcessPool>(local_options(options));
      return;
    }
    driver_ = &static_cast<detail::ClusterDriver&>(link->role());
    if (const std::string ranks = driver_->mismatched_ranks(); !ranks.empty()) {
      throw ClusterError("offload::ClusterPool: rank(s) " + ranks +
                         " run a different program than rank 0 (the executables differ); "
                         "a function cannot be named across different programs");
    }
    pool_ = driver_->add_pool({options.workers_per_rank, options.max_call_time,
                               options.max_retries, options.max_queue});
    try {
      pool_->open();
    } catch (...) {
      driver_->remove_pool(*pool_);
      throw;
    }
  }

  ClusterPool(const ClusterPool&) = delete;
  ClusterPool& operator=(const ClusterPool&) = delete;

  /// Finishes every queued call, then closes the ranks' pools (see shutdown()).
  ~ClusterPool() {
    try {
      shutdown();
    } catch (...) {  // WouldDeadlock from a continuation: nothing sensible is left to do
    }
  }

  /**
   * @brief Runs `fn(args...)` on a serving rank (in one of its worker processes).
   *
   * The rules of ProcessPool::submit: `fn` is a function or capture-less lambda of the
   * program's executable; arguments and result cross through Codec. Thread-safe. Blocks
   * while a bounded queue (max_queue) is full.
   * @throws offload::PoolClosed after shutdown(); offload::ClusterError when `fn` lies outside
   *         the executable (in a shared library); whatever a codec throws while encoding.
   */
  template <class F, class... Args>
  auto submit(F&& fn, Args&&... args) {
    auto [future, call] = detail::make_call(fn, std::forward<Args>(args)...);
    if (local_) {
      detail::ProcessPoolAccess::submit(*local_, call);
    } else {
      pool_->accept(std::move(call));
    }
    return std::move(future);
  }

  /**
   * @brief Stops accepting calls, waits for the queued and running ones, closes the ranks'
   *        pools. Idempotent and thread-safe.
   * @throws offload::WouldDeadlock from a continuation (the communication thread).
   */
  void shutdown() {
    std::lock_guard lock(shutdown_mutex_);
    if (local_) {
      local_->shutdown();
      return;
    }
    if (!pool_ || closed_) return;
    pool_->close();
    driver_->remove_pool(*pool_);
    closed_ = true;
  }

  /// Serving ranks (the job's size minus the driver); 0 when running locally.
  [[nodiscard]] unsigned ranks() const noexcept {
    return local_ ? 0 : static_cast<unsigned>(detail::cluster_link->size() - 1);
  }

  /// A snapshot of the per-rank counters. Thread-safe.
  [[nodiscard]] ClusterStats stats() const {
    ClusterStats snapshot;
    if (pool_) {
      pool_->visit_counters([&](int rank, std::uint64_t sent, std::uint64_t completed,
                                std::uint64_t failed) {
        snapshot.per_rank.push_back(RankStats{rank, sent, completed, failed});
      });
    }
    return snapshot;
  }

 private:
  static detail::MpiLink* attached_link() {
    if (!detail::launched_by_mpi()) return nullptr;
    std::lock_guard lock(detail::cluster_link_mutex);
    detail::MpiLink* link = detail::cluster_link;
    if (link == nullptr) {
      throw ClusterError("offload::ClusterPool in an MPI job needs offload::serve_cluster(argc, "
                         "argv) at the start of main, on every rank");
    }
    if (link->rank() != 0) {
      throw ClusterError("offload::ClusterPool is made on rank 0 only; the other ranks serve in "
                         "offload::serve_cluster()");
    }
    return link;
  }

  static ProcessOptions local_options(const ClusterOptions& options) {
    ProcessOptions local;
    local.workers = options.workers_per_rank;
    local.max_call_time = options.max_call_time;
    local.max_retries = options.max_retries;
    local.max_queue = options.max_queue;
    return local;
  }

  std::unique_ptr<ProcessPool> local_;            // without mpirun (or alone in the job)
  detail::ClusterDriver* driver_ = nullptr;       // in a job: rank 0's role
  std::shared_ptr<detail::DriverPool> pool_;
  std::mutex shutdown_mutex_;
  bool closed_ = false;
};

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_CLUSTER_HPP

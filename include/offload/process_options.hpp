#ifndef OFFLOAD_PROCESS_OPTIONS_HPP
#define OFFLOAD_PROCESS_OPTIONS_HPP

/// @file process_options.hpp
/// ProcessOptions and ProcessStats: how a ProcessPool is configured and what it counts. Its own
/// header so that the pool's internals can use them without including the pool itself.

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace offload {
inline namespace v0 {

/// Configuration of a ProcessPool.
struct ProcessOptions {
  /// Worker processes; 0 means std::thread::hardware_concurrency().
  unsigned workers = 0;
  /// A worker is replaced by a fresh one after this many calls; 0 means never (this bounds
  /// the damage of leaks in the called code).
  unsigned max_calls_per_worker = 0;
  /// A call running longer is killed (SIGKILL) and fails with CallTimeout; 0 means no limit.
  std::chrono::milliseconds max_call_time{0};
  /// How many times a call whose worker crashed is re-run on a fresh worker before it fails
  /// with WorkerCrashed. Only crashes are retried, never exceptions or timeouts.
  unsigned max_retries = 0;
  /// Calls waiting for a worker; 0 means unbounded, otherwise submit() blocks while full.
  std::size_t max_queue = 0;
  /// The largest encoded argument list or result, in bytes; a bigger frame from a worker is a
  /// ProtocolError. Guards against a corrupt length making this process allocate gigabytes.
  std::size_t max_message_size = std::size_t{1} << 30;
  /// How long an idle worker keeps polling for its next call before it sleeps (at most 1 s).
  /// Waking a sleeping process costs microseconds (tens in a VM); a loop of short calls stays
  /// within the window and never pays it. The price: up to this much CPU after each call.
  std::chrono::microseconds idle_spin{200};
  /// Bytes of address space a worker may map for its calls, beyond what it inherited at its
  /// start (the program image as the fork server has it); 0 means no limit. Enforced with
  /// RLIMIT_AS in the worker: a call that goes over fails with RemoteError naming
  /// std::bad_alloc (or with WorkerCrashed, when the failure kills the process), and its worker
  /// is replaced.
  std::size_t max_memory_per_worker = 0;
};

/// Counters of a ProcessPool (a snapshot; each field is exact, the set is not atomic).
struct ProcessStats {
  std::uint64_t submitted = 0;        ///< calls accepted by submit()/try_submit()
  std::uint64_t completed = 0;        ///< calls that returned a value
  std::uint64_t failed = 0;           ///< calls that ended with an exception of any kind
  std::uint64_t cancelled = 0;        ///< calls whose future asked to stop before they started
  std::uint64_t crashes = 0;          ///< worker deaths during a call (retried or not)
  std::uint64_t timeouts = 0;         ///< calls killed for exceeding max_call_time
  std::uint64_t retries = 0;          ///< re-runs after a crash
  std::uint64_t workers_started = 0;  ///< worker processes forked so far
  std::size_t queued = 0;             ///< calls waiting for a worker now
  unsigned busy = 0;                  ///< workers running a call now
};

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_PROCESS_OPTIONS_HPP

#ifndef OFFLOAD_DETAIL_PROCESS_CALL_COUNTER_HPP
#define OFFLOAD_DETAIL_PROCESS_CALL_COUNTER_HPP

/// @file detail/process/call_counter.hpp
/// A counter a worker process shares with its keeper (in their Mailbox): the number of calls
/// the worker has started.
///
/// Why: when a worker's stream ends, the keeper must tell "it died running my call" (a crash:
/// fail or retry the call) from "it died before my call reached it" (killed while idle, say:
/// the call never ran, so it goes to the replacement and is no crash). Frames handed over do
/// not tell: a process being killed may take a whole call and then vanish with it. The worker
/// bumps this counter just before it runs a call, so after its death the keeper compares the
/// count with the replies it got. A counter in shared memory costs the worker one store per
/// call, where an acknowledgement message would cost a system call and wake the keeper.

#include <atomic>
#include <cstdint>

namespace offload {
inline namespace v0 {
namespace detail {

/// A handle on the counter (see the file comment); does not own the memory. One user each
/// side.
class CallCounter {
 public:
  CallCounter() noexcept = default;
  /// `value`: the shared, 8-byte aligned counter (nullptr: counts nothing, reads 0).
  explicit CallCounter(std::uint64_t* value) noexcept : value_(value) {}

  /// Worker side: one more call is about to run. Never blocks.
  void count_start() noexcept {
    if (value_ == nullptr) return;
    std::atomic_ref<std::uint64_t> counter(*value_);
    // Only the worker writes, so load + store is an increment; release orders it before the
    // call's effects (its reply), which the keeper may see first.
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

  /// Keeper side: the calls the worker has started so far (all of them once it is dead).
  [[nodiscard]] std::uint64_t started() const noexcept {
    if (value_ == nullptr) return 0;
    return std::atomic_ref<std::uint64_t>(*value_).load(std::memory_order_acquire);
  }

 private:
  std::uint64_t* value_ = nullptr;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_CALL_COUNTER_HPP

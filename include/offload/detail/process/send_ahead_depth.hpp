#ifndef OFFLOAD_DETAIL_PROCESS_SEND_AHEAD_DEPTH_HPP
#define OFFLOAD_DETAIL_PROCESS_SEND_AHEAD_DEPTH_HPP

/// @file detail/process/send_ahead_depth.hpp
/// How many calls a ProcessPool keeper sends ahead into its worker's ring.
///
/// Why more than one: the keeper is woken once per batch of calls sent ahead (the worker
/// nudges it when it starts the last one; see worker.hpp), and each wake-up costs
/// the CPU it lands on two context switches and cold caches: 50-100 us on a busy VM. With d
/// calls ahead that cost is paid every d calls.
/// Why not always many: the keeper completes the futures of a batch when it wakes, so a
/// future completes up to one batch's duration late; and a call sent to one worker cannot
/// move to another that falls idle (the keeper also sends no more than a share of what is
/// queued; see send_ahead_locked()). So the depth follows the calls' duration: what is sent
/// ahead should amount to about `budget` of work, which keeps the completion delay within a
/// few milliseconds.
///
/// The duration is what the worker measured (busy_meter.hpp): its calls' run time over their
/// count, between two of the keeper's readings. Not the time between the keeper's wake-ups:
/// that includes how late the keeper was scheduled, milliseconds on a loaded machine.

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace offload {
inline namespace v0 {
namespace detail {

class SendAheadDepth {
 public:
  /// Work worth sending ahead, and the most calls that may wait in a socket.
  static constexpr std::chrono::microseconds budget{5000};
  static constexpr unsigned max_depth = 8;

  /// The worker ran `calls` calls in `busy` since the previous reading. Estimates the duration.
  void on_calls_run(std::uint64_t calls, std::chrono::microseconds busy) noexcept {
    if (calls == 0 || busy.count() < 0) return;
    const double sample = static_cast<double>(busy.count()) / static_cast<double>(calls);
    // A running mean that follows a change of workload within a few readings.
    mean_us_ = mean_us_ < 0 ? sample : mean_us_ + (sample - mean_us_) / 4;
  }

  /// How many calls may wait, sent ahead, in the worker's socket: 1 until a duration is known.
  [[nodiscard]] unsigned depth() const noexcept {
    if (mean_us_ < 0) return 1;
    const double fits = static_cast<double>(budget.count()) / std::max(mean_us_, 1.0);
    return static_cast<unsigned>(std::clamp(fits, 1.0, static_cast<double>(max_depth)));
  }

 private:
  double mean_us_ = -1;  // estimated duration of one call, in microseconds; < 0: unknown
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_SEND_AHEAD_DEPTH_HPP

#ifndef OFFLOAD_DETAIL_PROCESS_SEND_AHEAD_DEPTH_HPP
#define OFFLOAD_DETAIL_PROCESS_SEND_AHEAD_DEPTH_HPP

/// @file detail/process/send_ahead_depth.hpp
/// How many calls a ProcessPool keeper sends ahead into its worker's ring.
///
/// Why more than one: the keeper is woken once per batch of calls sent ahead (the worker
/// nudges it when it starts the last one; see process_worker.hpp), and each wake-up costs
/// the CPU it lands on two context switches and cold caches: 50-100 us on a busy VM. With d
/// calls ahead that cost is paid every d calls.
/// Why not always many: the keeper completes the futures of a batch when it wakes, so a
/// future completes up to one batch's duration late; and a call sent to one worker cannot
/// move to another that falls idle (the keeper also sends no more than a share of what is
/// queued; see send_ahead_locked()). So the depth follows the calls' duration: what is sent
/// ahead should amount to about `budget` of work, which keeps the completion delay within a
/// few milliseconds.
///
/// The duration is estimated from the replies alone: while its worker stays busy, the time
/// between two of the keeper's wake-ups divided by the replies read in the second one.

#include <algorithm>
#include <chrono>

namespace offload {
inline namespace v0 {
namespace detail {

class SendAheadDepth {
 public:
  using Clock = std::chrono::steady_clock;

  /// Work worth sending ahead, and the most calls that may wait in a socket.
  static constexpr std::chrono::microseconds budget{5000};
  static constexpr unsigned max_depth = 8;

  /// Replies read at `now`: `replies` of them, for calls run back to back since `since` (the
  /// previous such reading, or when the first of them started). Estimates the duration.
  void on_replies(Clock::time_point now, Clock::time_point since, unsigned replies) noexcept {
    if (replies == 0 || now < since) return;
    const double sample = std::chrono::duration<double, std::micro>(now - since).count() / replies;
    // A running mean that follows a change of workload within a few wake-ups.
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

#ifndef OFFLOAD_DETAIL_PROCESS_BUSY_METER_HPP
#define OFFLOAD_DETAIL_PROCESS_BUSY_METER_HPP

/// @file detail/process/busy_meter.hpp
/// A meter a worker process shares with its keeper (in their Mailbox): how many calls the
/// worker has run and how long they took, together.
///
/// Why the worker measures: the keeper sends calls ahead according to how long calls take
/// (send_ahead_depth.hpp). Measured from the keeper's side, as the time between its wake-ups
/// over the replies it read, a call's duration includes however late the keeper was
/// scheduled, and on a loaded machine (a CI run under a sanitizer) that is milliseconds: calls
/// of a few microseconds looked like calls of a millisecond, and the keeper sent one call
/// ahead where it should send eight. The worker's own clock, read around each call, sees the
/// call alone.
///
/// Why one word: the keeper divides the time by the count, so it must read the two as one
/// snapshot; a word the worker stores whole gives that without a lock or a retry loop. The
/// count takes its low 24 bits and the microseconds its high 40, each modulo its width: the
/// keeper only subtracts readings, so a field that wraps still gives the right difference as
/// long as fewer than 2^24 calls (or 2^40 us, 12 days) come between two of its readings.
///
/// Trust: the worker runs the user's code, which may scribble over the word. Nothing depends
/// on it but its keeper's send-ahead depth (which the worker's replacements inherit): that
/// stays between one call and eight, and comes back within some tens of readings.

#include <atomic>
#include <chrono>
#include <cstdint>

static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free,
              "offload: the busy meter is shared between processes, which needs a lock-free "
              "64-bit atomic (a lock would live in one process only)");

namespace offload {
inline namespace v0 {
namespace detail {

/// What a worker has run: calls and microseconds, both since it started (see the file
/// comment for the wrap-around). Differences of two readings are what means something.
struct BusyReading {
  std::uint64_t calls = 0;
  std::uint64_t micros = 0;
};

/// A handle on the meter (see the file comment); does not own the memory. One user each side.
class BusyMeter {
 public:
  static constexpr unsigned count_bits = 24;
  static constexpr std::uint64_t count_mask = (std::uint64_t{1} << count_bits) - 1;
  static constexpr std::uint64_t micros_mask = (std::uint64_t{1} << (64 - count_bits)) - 1;

  BusyMeter() noexcept = default;
  /// `word`: the shared, 8-byte aligned word (nullptr: measures nothing, reads zeros). Each
  /// side has its own handle; only the worker's keeps totals.
  explicit BusyMeter(std::uint64_t* word) noexcept : word_(word) {}

  /// Worker side: one more call ran, for `took`. Never blocks.
  void add(std::chrono::nanoseconds took) noexcept {
    if (word_ == nullptr) return;
    ++calls_;
    nanos_ += static_cast<std::uint64_t>(took.count() > 0 ? took.count() : 0);
    const std::uint64_t word =
        ((nanos_ / 1000) & micros_mask) << count_bits | (calls_ & count_mask);
    // The keeper reads the meter after the reply that follows (the ring's tail, stored after
    // this, is loaded before the meter), so it sees this call or later ones, one snapshot
    // either way. Release and acquire keep that true of a reading made at any other time.
    std::atomic_ref<std::uint64_t>(*word_).store(word, std::memory_order_release);
  }

  /// Keeper side: what the worker has run so far.
  [[nodiscard]] BusyReading read() const noexcept {
    if (word_ == nullptr) return {};
    const std::uint64_t word =
        std::atomic_ref<std::uint64_t>(*word_).load(std::memory_order_acquire);
    return {word & count_mask, word >> count_bits};
  }

 private:
  std::uint64_t* word_ = nullptr;
  std::uint64_t calls_ = 0;  // the worker's own totals, in full: only their low bits are shared
  std::uint64_t nanos_ = 0;
};

/// The calls and busy time between two readings, `before` then `after`.
[[nodiscard]] inline BusyReading busy_between(const BusyReading& before,
                                              const BusyReading& after) noexcept {
  return {(after.calls - before.calls) & BusyMeter::count_mask,
          (after.micros - before.micros) & BusyMeter::micros_mask};
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_BUSY_METER_HPP

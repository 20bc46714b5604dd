#ifndef OFFLOAD_DETAIL_POOL_HISTOGRAM_HPP
#define OFFLOAD_DETAIL_POOL_HISTOGRAM_HPP

/// @file detail/pool/histogram.hpp
/// A power-of-two latency histogram: one writer (a worker) records, any thread reads.
/// Bucket b holds durations in [2^(b-1), 2^b) nanoseconds, so 64 buckets cover any duration
/// and a percentile is exact to within a factor of two (reported at the bucket's midpoint).

#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace offload {
inline namespace v0 {
namespace detail {

inline constexpr std::size_t histogram_buckets = 65;
using HistogramCounts = std::array<std::uint64_t, histogram_buckets>;

class Histogram {
 public:
  /// Single writer only: a plain load + store instead of a locked read-modify-write.
  void record(std::int64_t nanoseconds) noexcept {
    const auto value = static_cast<std::uint64_t>(nanoseconds > 0 ? nanoseconds : 0);
    auto& bucket = buckets_[static_cast<std::size_t>(std::bit_width(value))];
    // Relaxed: statistics only; readers tolerate a slightly stale count.
    bucket.store(bucket.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  /// Adds this histogram's counts to `totals`. Thread-safe.
  void add_to(HistogramCounts& totals) const noexcept {
    for (std::size_t b = 0; b < histogram_buckets; ++b) {
      totals[b] += buckets_[b].load(std::memory_order_relaxed);
    }
  }

 private:
  std::array<std::atomic<std::uint64_t>, histogram_buckets> buckets_{};
};

inline std::uint64_t total_count(const HistogramCounts& counts) noexcept {
  std::uint64_t total = 0;
  for (std::uint64_t c : counts) total += c;
  return total;
}

/// The q-quantile (0 < q <= 1) of the recorded durations, at its bucket's midpoint.
inline std::chrono::nanoseconds percentile(const HistogramCounts& counts, double q) noexcept {
  const std::uint64_t total = total_count(counts);
  if (total == 0) return std::chrono::nanoseconds(0);
  auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total));
  if (rank == 0) rank = 1;
  std::uint64_t seen = 0;
  for (std::size_t b = 0; b < histogram_buckets; ++b) {
    seen += counts[b];
    if (seen >= rank) {
      if (b == 0) return std::chrono::nanoseconds(0);
      const std::uint64_t low = std::uint64_t{1} << (b - 1);
      return std::chrono::nanoseconds(static_cast<std::int64_t>(low + low / 2));
    }
  }
  return std::chrono::nanoseconds(0);
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_POOL_HISTOGRAM_HPP

#ifndef OFFLOAD_DETAIL_CALL_COUNTER_HPP
#define OFFLOAD_DETAIL_CALL_COUNTER_HPP

/// @file call_counter.hpp
/// A counter a worker process shares with its keeper: the number of calls the worker has
/// started.
///
/// Why: when a worker's stream ends, the keeper must tell "it died running my call" (a crash:
/// fail or retry the call) from "it died before my call reached it" (killed while idle, say:
/// the call never ran, so it goes to the replacement and is no crash). Bytes accepted by the
/// socket do not tell: a process being killed may accept a whole call into its buffer and
/// then vanish with it. The worker bumps this counter just before it runs a call, so after
/// its death the keeper compares the count with the replies it got. A counter in shared
/// memory costs the worker one store per call, where an acknowledgement message would cost a
/// system call and wake the keeper.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <utility>

#include "posix_io.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// One mapping of a counter page (see the file comment). Not thread-safe: one owner each side.
class CallCounter {
 public:
  /// A new, zeroed counter page as a close-on-exec descriptor (to map here and in the worker).
  /// @throws std::system_error when the page cannot be created.
  static UniqueFd create() {
#if defined(__linux__)
    UniqueFd page(::memfd_create("offload-call-counter", MFD_CLOEXEC));
    if (!page) throw_system_error("memfd_create");
#else
    // No memfd: an anonymous POSIX shared memory object, unlinked at once.
    char name[64];
    std::snprintf(name, sizeof name, "/offload-calls-%ld-%p", static_cast<long>(::getpid()),
                  static_cast<void*>(name));
    UniqueFd page(::shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600));
    if (!page) throw_system_error("shm_open");
    ::shm_unlink(name);
    (void)::fcntl(page.get(), F_SETFD, FD_CLOEXEC);
#endif
    if (::ftruncate(page.get(), sizeof(std::uint64_t)) != 0) throw_system_error("ftruncate");
    return page;
  }

  CallCounter() noexcept = default;
  /// Maps the page behind `page` (the descriptor may be closed afterwards).
  /// @throws std::system_error when it cannot be mapped.
  explicit CallCounter(int page) {
    void* mapped =
        ::mmap(nullptr, sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, page, 0);
    if (mapped == MAP_FAILED) throw_system_error("mmap");
    value_ = static_cast<std::uint64_t*>(mapped);
  }
  CallCounter(CallCounter&& other) noexcept : value_(std::exchange(other.value_, nullptr)) {}
  CallCounter& operator=(CallCounter&& other) noexcept {
    if (this != &other) {
      unmap();
      value_ = std::exchange(other.value_, nullptr);
    }
    return *this;
  }
  CallCounter(const CallCounter&) = delete;
  CallCounter& operator=(const CallCounter&) = delete;
  ~CallCounter() { unmap(); }

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
  void unmap() noexcept {
    if (value_ != nullptr) ::munmap(value_, sizeof(std::uint64_t));
    value_ = nullptr;
  }

  std::uint64_t* value_ = nullptr;  // page-aligned, so suitably aligned for atomic_ref
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CALL_COUNTER_HPP

#ifndef OFFLOAD_DETAIL_PROCESS_MAILBOX_HPP
#define OFFLOAD_DETAIL_PROCESS_MAILBOX_HPP

/// @file detail/process/mailbox.hpp
/// The memory a worker process shares with its keeper: the count of calls it started, what it
/// has run and for how long (busy_meter.hpp), and two rings that carry small frames (calls one
/// way, replies the other) without a system call.
///
/// Why: through the socket alone, every call costs the keeper a send and the worker a receive
/// and a send, and each reply wakes the keeper. On a machine whose every core runs a worker,
/// those system calls and wake-ups were 3-4 % of the heavy array's time. Through a ring, a
/// frame is a copy and a store; the socket is used only to wake a side that announced it
/// sleeps (a `nudge` frame), for frames too big for a ring, and for end of stream.
///
/// Order: each ring is the ordered stream of its direction. A frame too big for the ring goes
/// through the socket, announced by a `via_socket` frame in the ring at its place, so the
/// receiver takes it from the socket exactly there. (The socket also carries nudges, which the
/// receiver drops wherever they are.)
///
/// Trust: the worker runs the user's code and may scribble over this memory. The keeper keeps
/// its own copy of the indices it owns, checks the worker's indices before using them, and
/// validates every frame it copies out, so a corrupt ring is a ProtocolError, never undefined
/// behaviour.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <utility>

#include "busy_meter.hpp"
#include "call_counter.hpp"
#include "frame.hpp"
#include "posix_io.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// Frames up to this size (header included) travel through a ring; bigger ones through the
/// socket.
inline constexpr std::size_t ring_frame_limit = 4096;

/// A payload-less frame (FrameKind::nudge or FrameKind::via_socket).
inline std::array<std::byte, frame_header_size> control_frame(FrameKind kind) noexcept {
  std::array<std::byte, frame_header_size> frame{};
  const auto kind_byte = static_cast<std::uint8_t>(kind);
  std::memcpy(frame.data(), &frame_magic, 4);
  std::memcpy(frame.data() + 4, &kind_byte, 1);
  return frame;  // reserved bytes and payload size stay zero
}

/// An assembler for the frames of a ring: one that claims more than a ring frame can hold is
/// corrupt at once, not awaited (a scribbled length would otherwise hold up the ring).
inline FrameAssembler ring_frames() noexcept {
  return FrameAssembler(ring_frame_limit - frame_header_size);
}

/// Takes every nudge at the front of `frames` (they only woke the receiver).
/// @throws ProtocolError when the next frame is invalid.
inline void drop_nudges(FrameAssembler& frames) {
  while (frames.peek_kind() == FrameKind::nudge) (void)frames.next();
}

/// The control words of one ring. Each side writes its own cache line.
struct RingControl {
  alignas(64) std::uint64_t tail;             // bytes ever published (written by the producer)
  alignas(64) std::uint64_t head;             // bytes ever taken (written by the consumer)
  alignas(64) std::uint32_t consumer_asleep;  // 1: the consumer waits on the socket for a nudge
};

/**
 * One side's handle on a single-producer, single-consumer byte ring in shared memory that
 * carries whole frames. A handle is used either as the producer or as the consumer; each keeps
 * a private copy of the index it owns. Not thread-safe (the pool's producers hold its mutex).
 *
 * Wake-ups: a consumer about to sleep sets consumer_asleep, then looks once more; a producer
 * publishes, then takes the flag and, if it was set, nudges through the socket. Both steps are
 * sequentially consistent, so either the consumer sees the frame or the producer sees the flag.
 */
class FrameRing {
 public:
  FrameRing() noexcept = default;
  FrameRing(RingControl* control, std::byte* data, std::size_t capacity) noexcept
      : control_(control), data_(data), capacity_(capacity) {}

  // --- producer ---

  /// Publishes `frame` whole, or returns false (and publishes nothing) when it does not fit.
  /// Room for one announcement is always kept, so a frame that does not fit can still go
  /// through the socket in its place.
  bool push(std::span<const std::byte> frame) noexcept {
    return publish(frame, frame_header_size);
  }

  /// Publishes a `via_socket` frame: the next frame of this direction comes through the
  /// socket. False only when the ring is full of frames nobody takes.
  bool announce() noexcept { return publish(control_frame(FrameKind::via_socket), 0); }

  /// After a push: true when the consumer had announced it sleeps (it is then no longer
  /// marked asleep): the caller must nudge it through the socket.
  bool take_sleeper() noexcept {
    if (control_ == nullptr) return false;
    std::atomic_ref<std::uint32_t> asleep(control_->consumer_asleep);
    return asleep.load(std::memory_order_seq_cst) != 0 &&
           asleep.exchange(0, std::memory_order_seq_cst) != 0;
  }

  // --- consumer ---

  /// True when frames wait to be taken.
  [[nodiscard]] bool has_data() const noexcept {
    return control_ != nullptr &&
           std::atomic_ref<std::uint64_t>(control_->tail).load(std::memory_order_seq_cst) !=
               consumed_;
  }

  /// Moves every published byte into `frames`; returns how many.
  /// @throws ProtocolError when the producer's index is impossible (corrupt memory).
  std::size_t pull(FrameAssembler& frames) {
    if (control_ == nullptr) return 0;
    const std::uint64_t tail =
        std::atomic_ref<std::uint64_t>(control_->tail).load(std::memory_order_acquire);
    const std::uint64_t available = tail - consumed_;
    if (available == 0) return 0;
    if (available > capacity_) {
      throw ProtocolError("offload: corrupt shared ring: " + std::to_string(available) +
                          " bytes published in a ring of " + std::to_string(capacity_));
    }
    const std::size_t count = static_cast<std::size_t>(available);
    const std::size_t at = static_cast<std::size_t>(consumed_ % capacity_);
    const std::size_t first = std::min(count, capacity_ - at);
    frames.append({data_ + at, first});
    frames.append({data_, count - first});
    consumed_ = tail;
    std::atomic_ref<std::uint64_t>(control_->head).store(consumed_, std::memory_order_release);
    return count;
  }

  /// Announces that this side is about to sleep on the socket. Returns false when a frame
  /// arrived meanwhile: then it must not sleep (and is no longer marked asleep).
  bool prepare_to_sleep() noexcept {
    if (control_ == nullptr) return true;
    std::atomic_ref<std::uint32_t>(control_->consumer_asleep).store(1, std::memory_order_seq_cst);
    if (!has_data()) return true;
    woke();
    return false;
  }

  /// Back from sleeping (nudged or not).
  void woke() noexcept {
    if (control_ == nullptr) return;
    std::atomic_ref<std::uint32_t>(control_->consumer_asleep).store(0, std::memory_order_relaxed);
  }

 private:
  /// Room left; none when the consumer's index is impossible (a corrupt ring refuses frames).
  [[nodiscard]] std::size_t free_bytes() const noexcept {
    const std::uint64_t head =
        std::atomic_ref<std::uint64_t>(control_->head).load(std::memory_order_acquire);
    const std::uint64_t used = produced_ - head;
    return used > capacity_ ? 0 : capacity_ - static_cast<std::size_t>(used);
  }

  bool publish(std::span<const std::byte> frame, std::size_t reserve) noexcept {
    if (control_ == nullptr || free_bytes() < frame.size() + reserve) return false;
    copy_in(frame);
    produced_ += frame.size();
    std::atomic_ref<std::uint64_t>(control_->tail).store(produced_, std::memory_order_seq_cst);
    return true;
  }

  void copy_in(std::span<const std::byte> frame) noexcept {
    const std::size_t at = static_cast<std::size_t>(produced_ % capacity_);
    const std::size_t first = std::min(frame.size(), capacity_ - at);
    std::memcpy(data_ + at, frame.data(), first);
    std::memcpy(data_, frame.data() + first, frame.size() - first);
  }

  RingControl* control_ = nullptr;
  std::byte* data_ = nullptr;
  std::size_t capacity_ = 0;
  std::uint64_t produced_ = 0;  // producer: bytes published (the true tail)
  std::uint64_t consumed_ = 0;  // consumer: bytes taken (the true head)
};

/// The shared memory of one worker (see the file comment). Owns the mapping; the handles it
/// gives out point into it and must not outlive it. Move-only.
class Mailbox {
 public:
  /// Calls sent ahead total at most 4 KiB behind a call of at most 4 KiB (see the keeper), so
  /// 16 KiB hold every call a worker can have; replies: up to 9 of 4 KiB.
  static constexpr std::size_t calls_capacity = 16 * 1024;
  static constexpr std::size_t replies_capacity = 64 * 1024;

  /// A new, zeroed mailbox as a close-on-exec descriptor (to map here and in the worker).
  /// @throws std::system_error when it cannot be created.
  static UniqueFd create() {
#if defined(__linux__)
    UniqueFd memory(::memfd_create("offload-mailbox", MFD_CLOEXEC));
    if (!memory) throw_system_error("memfd_create");
#else
    // No memfd: an anonymous POSIX shared memory object, unlinked at once.
    char name[64];
    std::snprintf(name, sizeof name, "/offload-mailbox-%ld-%p", static_cast<long>(::getpid()),
                  static_cast<void*>(name));
    UniqueFd memory(::shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600));
    if (!memory) throw_system_error("shm_open");
    ::shm_unlink(name);
    (void)::fcntl(memory.get(), F_SETFD, FD_CLOEXEC);
#endif
    if (::ftruncate(memory.get(), static_cast<off_t>(sizeof(Layout))) != 0) {
      throw_system_error("ftruncate");
    }
    return memory;
  }

  Mailbox() noexcept = default;
  /// Maps the mailbox behind `memory` (the descriptor may be closed afterwards).
  /// @throws std::system_error when it cannot be mapped.
  explicit Mailbox(int memory) {
    void* mapped = ::mmap(nullptr, sizeof(Layout), PROT_READ | PROT_WRITE, MAP_SHARED, memory, 0);
    if (mapped == MAP_FAILED) throw_system_error("mmap");
    layout_ = static_cast<Layout*>(mapped);
  }
  Mailbox(Mailbox&& other) noexcept : layout_(std::exchange(other.layout_, nullptr)) {}
  Mailbox& operator=(Mailbox&& other) noexcept {
    if (this != &other) {
      unmap();
      layout_ = std::exchange(other.layout_, nullptr);
    }
    return *this;
  }
  Mailbox(const Mailbox&) = delete;
  Mailbox& operator=(const Mailbox&) = delete;
  ~Mailbox() { unmap(); }

  [[nodiscard]] CallCounter calls_started() const noexcept {
    return CallCounter(layout_ != nullptr ? &layout_->calls_started : nullptr);
  }
  /// A fresh handle on the meter of calls run (each side keeps its own).
  [[nodiscard]] BusyMeter busy() const noexcept {
    return BusyMeter(layout_ != nullptr ? &layout_->busy : nullptr);
  }
  /// A fresh handle on the ring of calls (keeper -> worker).
  [[nodiscard]] FrameRing calls() const noexcept {
    if (layout_ == nullptr) return {};
    return {&layout_->calls, layout_->call_bytes, calls_capacity};
  }
  /// A fresh handle on the ring of replies (worker -> keeper).
  [[nodiscard]] FrameRing replies() const noexcept {
    if (layout_ == nullptr) return {};
    return {&layout_->replies, layout_->reply_bytes, replies_capacity};
  }

 private:
  struct Layout {
    alignas(64) std::uint64_t calls_started;
    std::uint64_t busy;  // beside calls_started: the worker writes both once a call
    RingControl calls;
    RingControl replies;
    alignas(64) std::byte call_bytes[calls_capacity];
    std::byte reply_bytes[replies_capacity];
  };

  void unmap() noexcept {
    if (layout_ != nullptr) ::munmap(layout_, sizeof(Layout));
    layout_ = nullptr;
  }

  Layout* layout_ = nullptr;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_MAILBOX_HPP

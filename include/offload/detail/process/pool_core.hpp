#ifndef OFFLOAD_DETAIL_PROCESS_POOL_CORE_HPP
#define OFFLOAD_DETAIL_PROCESS_POOL_CORE_HPP

/// @file detail/process/pool_core.hpp
/// What a ProcessPool's submitting threads and its keepers share: the queue and one slot per
/// worker.

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../../errors.hpp"
#include "../../process_options.hpp"
#include "call_ticket.hpp"
#include "frame.hpp"
#include "mailbox.hpp"
#include "posix_io.hpp"
#include "server_protocol.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

// --- shared state --------------------------------------------------------------------------------

/// One worker slot as the submitting threads see it. Guarded by PoolCore::mutex, except the
/// descriptors themselves, which are fixed after construction.
struct Slot {
  enum class Phase {
    unavailable,  // the keeper is busy with the worker itself (starting, replacing, retiring)
    idle,         // a worker waits: a submitter may hand it a call directly
    busy,         // a call is in flight (or waits to be re-sent after a crash)
  };
  Phase phase = Phase::unavailable;
  std::unique_ptr<CallTicket> call;  // the call in flight; only the keeper takes it out
  // The next calls, in order, already handed to the worker; added and taken only by the
  // keeper (which may read it without the mutex: no other thread changes it).
  std::deque<std::unique_ptr<CallTicket>> ahead;
  unsigned redeliveries = 0;          // workers that died before `call` reached them
  std::size_t sent = 0;               // bytes of call->request handed over (a ring takes all)
  bool announced = false;             // the ring told the worker that `call` comes by socket
  bool send_pending = false;          // the keeper must send call->request from `sent` on
  IoDeadline deadline = no_deadline;  // when the call in flight times out
  Clock::time_point begun{};          // when the call in flight was sent (its clock started)
  int channel = -1;                   // the worker's socket (owned by the keeper) while idle/busy
  FrameRing to_worker;                // the producer's handle on the worker's ring of calls
  pid_t pid = 0;                      // the worker's pid; 0 while there is none
  UniqueFd doorbell;                  // rung to wake the keeper: a send to finish, or closing
  UniqueFd timer;                     // expires at `deadline`
};

/// What the pool's submitters and keepers share. All members but `options`, the counters and
/// the slots' descriptors are guarded by `mutex`.
class PoolCore {
 public:
  explicit PoolCore(const ProcessOptions& opts) : options(opts), slots(opts.workers) {
    for (Slot& slot : slots) {
      slot.doorbell = make_doorbell();
      slot.timer = make_timer();
    }
  }

  /**
   * Hands `call` to an idle worker at once (sending it from this thread: no other thread has
   * to wake up for it), or queues it. With `block`, waits while a bounded queue is full;
   * without, returns false and leaves `call` untouched instead. Thread-safe.
   * @throws PoolClosed after shutdown; WouldDeadlock when a keeper thread would wait for room;
   *         ProtocolError when the encoded arguments exceed max_message_size.
   */
  bool accept(std::unique_ptr<CallTicket>& call, bool block) {
    const std::size_t payload = call->request.size() - frame_header_size;
    if (payload > options.max_message_size) {
      throw ProtocolError("offload: the call's arguments encode to " + std::to_string(payload) +
                          " bytes, more than max_message_size (" +
                          std::to_string(options.max_message_size) + ")");
    }
    std::unique_lock lock(mutex);
    if (block && queue_full() && keeper_of_pool == this) {
      throw WouldDeadlock(
          "offload: ProcessPool::submit from the pool's own keeper thread (a "
          "continuation) while its queue is full would wait forever");
    }
    if (block) not_full.wait(lock, [&] { return closing || !queue_full(); });
    if (closing) throw PoolClosed();
    if (!block && queue_full()) return false;
    count(submitted);
    if (!servers_lost.empty()) {
      const std::string why = servers_lost;
      pass_on_room();
      lock.unlock();
      count(failed);
      call->fail(make_error<Error>(why));
      return true;
    }
    if (Slot* slot = idle_slot()) {
      begin_call(*slot, std::move(call));
      send_without_blocking(*slot);
      pass_on_room();
    } else {
      queue.push_back(std::move(call));
    }
    return true;
  }

  /// A submitter that was woken for room in the queue and did not take it (its call went to
  /// an idle worker, or failed at once) wakes the next: each call taken from the queue wakes
  /// one blocked submitter only, and with the room passed on to nobody, the others waited for
  /// ever (all but one of three, when both fork servers were lost). Expects `mutex` held.
  void pass_on_room() {
    if (options.max_queue != 0 && !queue_full()) not_full.notify_one();
  }

  /// Hands a call that never ran back to the pool, before everything queued: to an idle
  /// worker at once (an idle keeper sleeps and would not look at the queue), else to the
  /// front of the queue. Expects `mutex` held.
  void requeue_locked(std::unique_ptr<CallTicket> call) {
    if (Slot* slot = idle_slot()) {
      begin_call(*slot, std::move(call));
      send_without_blocking(*slot);
    } else {
      queue.push_front(std::move(call));
    }
  }

  /// Takes back up to `most` of the calls queued last, the newest first, for another pool to
  /// run (a cluster's rank returning calls to the driver). Calls a worker holds, running or
  /// sent ahead, stay: only the queue is searched. They no longer count as submitted here.
  /// Thread-safe.
  std::vector<std::unique_ptr<CallTicket>> withdraw_newest(std::size_t most) {
    std::vector<std::unique_ptr<CallTicket>> taken;
    std::lock_guard lock(mutex);
    while (taken.size() < most && !queue.empty()) {
      taken.push_back(std::move(queue.back()));
      queue.pop_back();
      not_full.notify_one();
    }
    submitted.fetch_sub(taken.size(), std::memory_order_relaxed);
    return taken;
  }

  /// Refuses new calls from now on and wakes every keeper so it can finish. Thread-safe.
  void close() {
    {
      std::lock_guard lock(mutex);
      closing = true;
    }
    not_full.notify_all();
    for (Slot& slot : slots) ring(slot.doorbell.get());
  }

  /// After every keeper has ended: fails the calls nobody is left to run (requeued by a keeper
  /// after the last one that could take them had stopped), so that none is ever dropped.
  /// Thread-safe.
  void fail_stranded() {
    std::vector<std::unique_ptr<CallTicket>> stranded;
    std::string why = "offload: the process pool ended before this call could run";
    {
      std::lock_guard lock(mutex);
      if (!servers_lost.empty()) why = servers_lost;
      while (!queue.empty()) stranded.push_back(pop_queued());
      for (Slot& slot : slots) {
        if (slot.call != nullptr) stranded.push_back(std::move(slot.call));
        for (auto& call : slot.ahead) stranded.push_back(std::move(call));
        slot.ahead.clear();
      }
    }
    for (auto& call : stranded) {
      count(failed);
      call->fail(make_error<PoolClosed>(why));
    }
  }

  // The members below expect `mutex` to be held.

  [[nodiscard]] bool queue_full() const noexcept {
    return options.max_queue != 0 && queue.size() >= options.max_queue;
  }

  Slot* idle_slot() noexcept {
    for (Slot& slot : slots) {
      if (slot.phase == Slot::Phase::idle) return &slot;
    }
    return nullptr;
  }

  std::unique_ptr<CallTicket> pop_queued() {
    std::unique_ptr<CallTicket> call = std::move(queue.front());
    queue.pop_front();
    not_full.notify_one();
    return call;
  }

  /// Makes `call` the slot's call in flight, starting its clock.
  void begin_call(Slot& slot, std::unique_ptr<CallTicket> call) {
    slot.call = std::move(call);
    slot.phase = Slot::Phase::busy;
    slot.redeliveries = 0;
    slot.sent = 0;
    slot.announced = false;
    slot.send_pending = false;
    start_clock(slot);
  }

  void start_clock(Slot& slot) noexcept {
    slot.begun = Clock::now();
    if (options.max_call_time.count() <= 0) {
      slot.deadline = no_deadline;
      return;
    }
    slot.deadline = slot.begun + options.max_call_time;
    arm_timer(slot.timer.get(), options.max_call_time);
  }

  /// Hands the slot's new call to its worker without blocking: a small one whole through the
  /// ring; a big one announced there and sent through the socket as far as it goes now.
  /// Whatever is left is left to the keeper (send_pending, and its doorbell rung).
  void send_without_blocking(Slot& slot) {
    const std::vector<std::byte>& request = slot.call->request;
    if (request.size() <= ring_frame_limit && slot.to_worker.push(request)) {
      slot.sent = request.size();
      nudge_if_asleep(slot);
      return;
    }
    // Announced only while the worker holds no other call (calls sent ahead are small), so
    // the ring has the room it keeps for this; if not (a corrupt ring), the keeper finds out.
    slot.announced = slot.to_worker.announce();
    if (slot.announced) {
      nudge_if_asleep(slot);
      const ssize_t sent = send_some(slot.channel, request);
      if (sent == static_cast<ssize_t>(request.size())) {
        slot.sent = request.size();
        return;
      }
      if (sent < 0 && (errno == EPIPE || errno == ECONNRESET)) return;  // dead: the keeper sees EOF
      slot.sent = sent > 0 ? static_cast<std::size_t>(sent) : 0;
    }
    slot.send_pending = true;
    ring(slot.doorbell.get());
  }

  /// After frames went into the slot's ring: wakes the worker if it announced it sleeps.
  static void nudge_if_asleep(Slot& slot) noexcept {
    if (!slot.to_worker.take_sleeper()) return;
    // 16 bytes into a socket that holds no partial frame of ours (a big call is sent only
    // while nothing else is in flight), so the send completes at once. If it fails, the
    // worker is gone, and its keeper learns that from the end of its stream.
    try {
      (void)send_all(slot.channel, control_frame(FrameKind::nudge));
    } catch (...) {
    }
  }

  const ProcessOptions options;
  mutable std::mutex mutex;
  std::condition_variable not_full;  // the bounded queue has room again, or closing
  std::deque<std::unique_ptr<CallTicket>> queue;
  std::vector<Slot> slots;  // one per keeper; never resized
  bool closing = false;
  std::string servers_lost;  // why no worker can be started any more; empty while one can
  std::atomic<std::uint64_t> submitted{0}, completed{0}, failed{0}, cancelled{0}, crashes{0},
      timeouts{0}, retries{0}, workers_started{0};
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_POOL_CORE_HPP

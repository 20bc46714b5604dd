#ifndef OFFLOAD_DETAIL_CHANNEL_CHANNEL_CORE_HPP
#define OFFLOAD_DETAIL_CHANNEL_CHANNEL_CORE_HPP

/// @file detail/channel/channel_core.hpp
/// The shared state behind a channel's Sender and Receiver handles: handle counts, and the
/// operations each kind of channel implements (buffered: QueueChannel over a BoundedRing or a
/// SegmentedQueue; rendezvous: RendezvousChannel).

#include <atomic>
#include <cstddef>
#include <optional>
#include <thread>
#include <type_traits>

#include "../futex.hpp"
#include "channel_status.hpp"
#include "wait_queue.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// How far a coroutine's channel operation got when it started.
enum class AsyncStep {
  done,       ///< it completed (the status says how)
  waiting,    ///< it waits: the link's wake() will be called once, then it tries again
  cancelled,  ///< a stop request came before it could wait
};

/// A coroutine's channel operation (rx.next(), tx.send_async()). Lives in its awaiter.
template <class T>
struct AsyncOperation {
  AsyncLink link;
  bool receiving = true;
  T* value = nullptr;               ///< send: the value (moved from only on ok)
  std::optional<T>* out = nullptr;  ///< receive: where the value goes
  /// Set by a partner that completed the operation before waking it (rendezvous: ok or
  /// closed); empty when the wake-up only means "try again".
  ChannelStatus outcome = ChannelStatus::empty;
  AsyncOperation* previous = nullptr;  ///< a rendezvous channel's FIFO of waiting coroutines
  AsyncOperation* next = nullptr;
};

/**
 * What every kind of channel does, and the handle counts that decide when it closes and when
 * it is freed. Created with one Sender and one Receiver. Every operation is thread-safe.
 */
template <class T>
class ChannelCore {
 public:
  ChannelCore() = default;
  ChannelCore(const ChannelCore&) = delete;
  ChannelCore& operator=(const ChannelCore&) = delete;
  virtual ~ChannelCore() = default;

  /// Blocks until sent (ok), closed, or timeout. Moves from `value` only on ok.
  virtual ChannelStatus send(T& value, const Deadline& deadline) = 0;
  /// Never blocks: ok, full or closed. Moves from `value` only on ok.
  virtual ChannelStatus try_send(T& value) = 0;
  /// Blocks until a value is in `out` (ok), closed and drained, or timeout.
  virtual ChannelStatus receive(std::optional<T>& out, const Deadline& deadline) = 0;
  /// Never blocks: ok, empty, or closed (and drained).
  virtual ChannelStatus try_receive(std::optional<T>& out) = 0;
  /// A coroutine's operation: completes now (status set), or waits (its link's wake() is
  /// called once when it should try again, or, rendezvous, with `op.outcome` set when a
  /// partner completed it), or is cancelled. Never blocks.
  virtual AsyncStep start_async(AsyncOperation<T>& op, ChannelStatus& status) = 0;
  /// A stop request for `op`: true if it was waiting and is no longer (the caller resumes
  /// the coroutine); false if it was woken already or never waited (it will not wait now).
  virtual bool cancel_async(AsyncOperation<T>& op) noexcept = 0;
  /// Refuses further sends and wakes every blocked operation. Idempotent.
  virtual void close() noexcept = 0;
  virtual bool is_closed() const noexcept = 0;

  /// A Sender was copied. Never blocks.
  void add_sender() noexcept {
    // relaxed: the copied handle already keeps the channel alive; nothing to publish.
    senders_.fetch_add(1, std::memory_order_relaxed);
    references_.fetch_add(1, std::memory_order_relaxed);
  }

  /// A Receiver was copied. Never blocks.
  void add_receiver() noexcept {
    // relaxed: as in add_sender().
    receivers_.fetch_add(1, std::memory_order_relaxed);
    references_.fetch_add(1, std::memory_order_relaxed);
  }

  /// A Sender went away; the last one closes the channel. May free the channel.
  void drop_sender() noexcept {
    // acq_rel: every send made through other Senders happens before the last one closes.
    if (senders_.fetch_sub(1, std::memory_order_acq_rel) == 1) close();
    drop_reference();
  }

  /// A Receiver went away; the last one closes the channel and destroys what is buffered.
  /// May free the channel.
  void drop_receiver() noexcept {
    // acq_rel: every receive made through other Receivers happens before the clean-up.
    if (receivers_.fetch_sub(1, std::memory_order_acq_rel) == 1) last_receiver_gone();
    drop_reference();
  }

 protected:
  /// Close, then destroy the buffered values now, including those of sends in flight.
  virtual void last_receiver_gone() noexcept = 0;

 private:
  void drop_reference() noexcept {
    // acq_rel: all uses of the channel happen before the last handle deletes it.
    if (references_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  std::atomic<std::size_t> senders_{1};
  std::atomic<std::size_t> receivers_{1};
  std::atomic<std::size_t> references_{2};
};

/// A channel with a buffer (`Queue` is BoundedRing<T> or SegmentedQueue<T>): lock-free
/// operations, with blocked receivers and senders sleeping on two WaitQueues.
template <class T, class Queue>
class QueueChannel final : public ChannelCore<T> {
 public:
  template <class... QueueArgs>
  explicit QueueChannel(QueueArgs... queue_args) : queue_(queue_args...) {}

  ChannelStatus send(T& value, const Deadline& deadline) override {
    const ChannelStatus status = retry_until(
        room_, deadline, [&] { return push(value); },
        [](ChannelStatus s) { return s == ChannelStatus::full; },
        [&] { return announce_sleeping_sender(); });
    return status == ChannelStatus::full ? ChannelStatus::timeout : status;
  }

  ChannelStatus try_send(T& value) override { return push(value); }

  ChannelStatus receive(std::optional<T>& out, const Deadline& deadline) override {
    const ChannelStatus status = retry_until(
        values_, deadline, [&] { return pop(out); },
        [](ChannelStatus s) { return s == ChannelStatus::empty; },
        [&] { return queue_.announce_sleeping_receiver(); });
    return status == ChannelStatus::empty ? ChannelStatus::timeout : status;
  }

  ChannelStatus try_receive(std::optional<T>& out) override { return pop(out); }

  /// Tries the operation; if it cannot go on, announces a sleeper exactly as a thread would
  /// (the flag that makes the other side call wake_all()) and enlists the coroutine instead of
  /// sleeping. Woken, the coroutine tries again.
  AsyncStep start_async(AsyncOperation<T>& op, ChannelStatus& status) override {
    WaitQueue& queue = op.receiving ? values_ : room_;
    for (;;) {
      status = op.receiving ? pop(*op.out) : push(*op.value);
      if (status != (op.receiving ? ChannelStatus::empty : ChannelStatus::full)) {
        return AsyncStep::done;
      }
      const WaitQueue::Ticket ticket = queue.ticket();
      const bool may_wait =
          op.receiving ? queue_.announce_sleeping_receiver() : announce_sleeping_sender();
      if (!may_wait) {
        std::this_thread::yield();  // the other side's operation is in flight: about to end
        continue;
      }
      if (queue.enlist(op.link, ticket)) return AsyncStep::waiting;
      if (op.link.cancelled) return AsyncStep::cancelled;
    }
  }

  bool cancel_async(AsyncOperation<T>& op) noexcept override {
    return (op.receiving ? values_ : room_).cancel(op.link);
  }

  void close() noexcept override {
    if (queue_.close()) {
      values_.wake_all();
      room_.wake_all();
    }
  }

  bool is_closed() const noexcept override { return queue_.is_closed(); }

 protected:
  void last_receiver_gone() noexcept override {
    close();
    if (queue_.discard_all()) room_.wake_all();
  }

 private:
  /// Pushes, and wakes the receivers if the claim found them sleeping.
  ChannelStatus push(T& value) {
    if constexpr (std::is_nothrow_move_constructible_v<T>) {
      const PushOutcome outcome = queue_.try_push(value);
      if (outcome.wake_receivers) values_.wake_all();
      return outcome.status;
    } else {
      try {
        const PushOutcome outcome = queue_.try_push(value);
        if (outcome.wake_receivers) values_.wake_all();
        return outcome.status;
      } catch (...) {
        // Our claim may have cleared the receivers' flag, and left a slot for them to skip.
        values_.wake_all();
        throw;
      }
    }
  }

  /// Pops, and wakes the senders if the claim found them sleeping.
  ChannelStatus pop(std::optional<T>& out) {
    if constexpr (std::is_nothrow_move_constructible_v<T>) {
      const PopOutcome outcome = queue_.try_pop(out);
      if (outcome.wake_senders) room_.wake_all();
      return outcome.status;
    } else {
      try {
        const PopOutcome outcome = queue_.try_pop(out);
        if (outcome.wake_senders) room_.wake_all();
        return outcome.status;
      } catch (...) {
        room_.wake_all();  // our claim may have cleared the senders' flag; the slot is free
        throw;
      }
    }
  }

  bool announce_sleeping_sender() noexcept {
    if constexpr (requires { queue_.announce_sleeping_sender(); }) {
      return queue_.announce_sleeping_sender();
    } else {
      return false;  // an unbounded queue is never full
    }
  }

  Queue queue_;
  alignas(64) WaitQueue values_;  ///< receivers sleep here, waiting for a value
  alignas(64) WaitQueue room_;    ///< senders sleep here, waiting for a free slot
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CHANNEL_CHANNEL_CORE_HPP

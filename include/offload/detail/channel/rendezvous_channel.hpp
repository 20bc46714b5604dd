#ifndef OFFLOAD_DETAIL_CHANNEL_RENDEZVOUS_CHANNEL_HPP
#define OFFLOAD_DETAIL_CHANNEL_RENDEZVOUS_CHANNEL_HPP

/// @file detail/channel/rendezvous_channel.hpp
/// A channel of capacity 0: a send completes only when a receiver takes the value.
///
/// Waiting senders and waiting receivers sit in two FIFOs under one mutex. Whoever arrives
/// second moves the value straight from the sender's variable into the receiver's, under the
/// mutex, and signals the other. The mutex is held only for that hand-off (a move and at most
/// one futex wake), never while anyone sleeps, so try_send/try_receive never wait for a
/// sleeping thread.
///
/// Coroutines (rx.next(), tx.send_async()) wait in two more FIFOs, as AsyncOperations that
/// live in their awaiters. A partner completes one the same way, under the mutex, then wakes
/// it (posts its resumption) after letting go of the mutex. A thread partner is preferred
/// over a coroutine one, so order holds among threads and among coroutines, not across them.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <utility>

#include "../futex.hpp"
#include "../parking_spot.hpp"
#include "channel_core.hpp"
#include "channel_status.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

template <class T>
class RendezvousChannel final : public ChannelCore<T> {
  using Async = AsyncOperation<T>;

 public:
  ChannelStatus send(T& value, const Deadline& deadline) override {
    return hand_over(value, deadline, true);
  }

  ChannelStatus try_send(T& value) override { return hand_over(value, std::nullopt, false); }

  ChannelStatus receive(std::optional<T>& out, const Deadline& deadline) override {
    return take_over(out, deadline, true);
  }

  ChannelStatus try_receive(std::optional<T>& out) override {
    return take_over(out, std::nullopt, false);
  }

  void close() noexcept override {
    IntrusiveFifo<Async> woken;
    {
      std::lock_guard lock(mutex_);
      if (closed_) return;
      closed_ = true;
      // release: pairs with is_closed().
      closed_flag_.store(true, std::memory_order_release);
      while (Waiter* sender = senders_.pop_front()) sender->spot.signal(verdict_closed);
      while (Waiter* receiver = receivers_.pop_front()) receiver->spot.signal(verdict_closed);
      for (IntrusiveFifo<Async>* queue : {&async_senders_, &async_receivers_}) {
        while (Async* op = queue->pop_front()) woken.push_back(&complete(*op, ChannelStatus::closed));
      }
    }
    while (Async* op = woken.pop_front()) wake(op);
  }

  AsyncStep start_async(Async& op, ChannelStatus& status) override {
    Async* partner = nullptr;
    {
      std::lock_guard lock(mutex_);
      status = op.receiving ? take_now(*op.out, partner) : give_now(*op.value, partner);
      if (status == ChannelStatus::empty) return wait_async(op, async_receivers_);
      if (status == ChannelStatus::full) return wait_async(op, async_senders_);
    }
    wake(partner);
    return AsyncStep::done;
  }

  bool cancel_async(Async& op) noexcept override {
    std::lock_guard lock(mutex_);
    op.link.cancelled = true;
    if (!op.link.listed) return false;
    (op.receiving ? async_receivers_ : async_senders_).erase(&op);
    op.link.listed = false;
    return true;
  }

  bool is_closed() const noexcept override {
    return closed_flag_.load(std::memory_order_acquire);  // acquire: pairs with close()
  }

 protected:
  void last_receiver_gone() noexcept override { close(); }  // nothing is ever buffered

 private:
  static constexpr std::uint32_t verdict_handed_over = 1;
  static constexpr std::uint32_t verdict_closed = 2;

  /// A sender or receiver parked on this channel. Lives on the waiting thread's stack.
  struct Waiter {
    ParkingSpot spot;
    T* value = nullptr;               ///< a sender's value
    std::optional<T>* out = nullptr;  ///< where a receiver wants its value
    Waiter* previous = nullptr;
    Waiter* next = nullptr;
  };

  ChannelStatus hand_over(T& value, const Deadline& deadline, bool may_wait) {
    std::unique_lock lock(mutex_);
    Async* partner = nullptr;
    const ChannelStatus status = give_now(value, partner);
    if (status != ChannelStatus::full) {
      lock.unlock();
      wake(partner);
      return status;
    }
    if (!may_wait) return ChannelStatus::full;
    Waiter self;
    self.value = &value;
    senders_.push_back(&self);
    return park(self, senders_, lock, deadline);
  }

  ChannelStatus take_over(std::optional<T>& out, const Deadline& deadline, bool may_wait) {
    std::unique_lock lock(mutex_);
    Async* partner = nullptr;
    const ChannelStatus status = take_now(out, partner);
    if (status != ChannelStatus::empty) {
      lock.unlock();
      wake(partner);
      return status;
    }
    if (!may_wait) return ChannelStatus::empty;
    Waiter self;
    self.out = &out;
    receivers_.push_back(&self);
    return park(self, receivers_, lock, deadline);
  }

  /// Hands `value` to a waiting receiver, a thread before a coroutine: ok, closed, or full
  /// (nobody waits). A coroutine receiver comes back in `partner`, to wake once mutex_ is let
  /// go. With mutex_ held. If moving the value throws, the receiver stays queued.
  ChannelStatus give_now(T& value, Async*& partner) {
    if (closed_) return ChannelStatus::closed;
    if (Waiter* receiver = receivers_.front()) {
      receiver->out->emplace(std::move(value));
      receivers_.pop_front();
      receiver->spot.signal(verdict_handed_over);
      return ChannelStatus::ok;
    }
    if (Async* receiver = async_receivers_.front()) {
      receiver->out->emplace(std::move(value));
      async_receivers_.pop_front();
      partner = &complete(*receiver, ChannelStatus::ok);
      return ChannelStatus::ok;
    }
    return ChannelStatus::full;
  }

  /// Takes a waiting sender's value into `out`, a thread before a coroutine: ok, closed, or
  /// empty (nobody waits). As give_now(), a coroutine sender comes back in `partner`.
  ChannelStatus take_now(std::optional<T>& out, Async*& partner) {
    if (Waiter* sender = senders_.front()) {
      out.emplace(std::move(*sender->value));
      senders_.pop_front();
      sender->spot.signal(verdict_handed_over);
      return ChannelStatus::ok;
    }
    if (Async* sender = async_senders_.front()) {
      out.emplace(std::move(*sender->value));
      async_senders_.pop_front();
      partner = &complete(*sender, ChannelStatus::ok);
      return ChannelStatus::ok;
    }
    return closed_ ? ChannelStatus::closed : ChannelStatus::empty;
  }

  /// Resumes a coroutine partner that give_now() / take_now() completed (none: nothing).
  /// Called after letting go of mutex_: the wake posts to an executor.
  static void wake(Async* partner) noexcept {
    if (partner != nullptr) partner->link.wake(partner->link);
  }

  /// Sleeps until a partner or close() signals `self`, or the deadline passes.
  ChannelStatus park(Waiter& self, IntrusiveFifo<Waiter>& queue, std::unique_lock<std::mutex>& lock,
                     const Deadline& deadline) {
    lock.unlock();
    std::uint32_t verdict = self.spot.wait(deadline);
    lock.lock();  // signals happen under mutex_: once we hold it, the signaller is done with us
    if (verdict == ParkingSpot::no_verdict) verdict = self.spot.verdict();
    if (verdict == ParkingSpot::no_verdict) {
      queue.erase(&self);
      return ChannelStatus::timeout;
    }
    return verdict == verdict_handed_over ? ChannelStatus::ok : ChannelStatus::closed;
  }

  /// Queues a coroutine's operation, unless a stop request came first. With mutex_ held.
  AsyncStep wait_async(Async& op, IntrusiveFifo<Async>& queue) noexcept {
    if (op.link.cancelled) return AsyncStep::cancelled;
    queue.push_back(&op);
    op.link.listed = true;
    return AsyncStep::waiting;
  }

  /// Marks a dequeued coroutine's operation done; wake it after letting go of mutex_.
  static Async& complete(Async& op, ChannelStatus outcome) noexcept {
    op.link.listed = false;
    op.outcome = outcome;
    return op;
  }

  std::mutex mutex_;
  IntrusiveFifo<Async> async_senders_;    ///< guarded by mutex_
  IntrusiveFifo<Async> async_receivers_;  ///< guarded by mutex_
  IntrusiveFifo<Waiter> senders_;         ///< guarded by mutex_
  IntrusiveFifo<Waiter> receivers_;       ///< guarded by mutex_
  bool closed_ = false;                   ///< guarded by mutex_
  std::atomic<bool> closed_flag_{false};  ///< closed_, readable without the mutex
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CHANNEL_RENDEZVOUS_CHANNEL_HPP

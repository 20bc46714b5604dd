#ifndef OFFLOAD_DETAIL_PROCESS_CALL_TICKET_HPP
#define OFFLOAD_DETAIL_PROCESS_CALL_TICKET_HPP

/// @file detail/process/call_ticket.hpp
/// A call on its way through a ProcessPool: its encoded request, and how to complete its Future.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../codec.hpp"
#include "../../errors.hpp"
#include "../../future.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

// --- calls --------------------------------------------------------------------------------------

inline void count(std::atomic<std::uint64_t>& counter) noexcept {
  // Relaxed: counters publish nothing; stats() reads a snapshot.
  counter.fetch_add(1, std::memory_order_relaxed);
}

/// A call on its way: the encoded request frame, and how to complete its Future.
class CallTicket {
 public:
  CallTicket() = default;
  CallTicket(const CallTicket&) = delete;
  CallTicket& operator=(const CallTicket&) = delete;
  virtual ~CallTicket() = default;

  /// Decodes a value frame's payload, counts it in `completed`, then completes the future
  /// (counting first, so that whoever sees the result also sees it counted).
  /// @throws ProtocolError when the payload does not decode to the result type.
  virtual void complete(std::span<const std::byte> payload,
                        std::atomic<std::uint64_t>& completed) = 0;
  /// Completes the future with `error`. Never throws.
  virtual void fail(std::exception_ptr error) noexcept = 0;
  /// True when the future's holder called request_stop().
  [[nodiscard]] virtual bool stop_requested() const noexcept = 0;

  std::vector<std::byte> request;  ///< a complete call frame, kept for retries
  /// Workers that died running it so far. It travels with the call, not with the slot that
  /// runs it: a call sent ahead and begun by a worker ended for another call's sake goes back to
  /// the queue, and may run next on any worker.
  unsigned crashes = 0;
};

template <class R>
class TypedCallTicket final : public CallTicket {
 public:
  TypedCallTicket() = default;
  TypedCallTicket(const TypedCallTicket&) = delete;
  TypedCallTicket& operator=(const TypedCallTicket&) = delete;

  /// A ticket is always settled before it goes (the pool fails what is left when it shuts
  /// down); should one ever be dropped unsettled, its future still gets an offload::Error,
  /// never a broken promise.
  ~TypedCallTicket() override {
    if (!settled_) fail(make_error<PoolClosed>("offload: the process pool dropped this call"));
  }

  Future<R> get_future() { return promise_.get_future(); }

  void complete(std::span<const std::byte> payload,
                std::atomic<std::uint64_t>& completed) override {
    if constexpr (std::is_void_v<R>) {
      Reader(payload).expect_end();
      count(completed);
      settled_ = true;
      promise_.set_value();
    } else {
      R value = offload::decode<R>(payload);
      count(completed);
      settled_ = true;
      promise_.set_value(std::move(value));
    }
  }

  void fail(std::exception_ptr error) noexcept override {
    settled_ = true;
    try {
      promise_.set_exception(std::move(error));
    } catch (...) {  // already satisfied: nothing left to tell anyone
    }
  }

  [[nodiscard]] bool stop_requested() const noexcept override { return promise_.stop_requested(); }

 private:
  Promise<R> promise_;
  bool settled_ = false;
};

/// Which pool's keeper runs on this thread (nullptr elsewhere): lets blocking members refuse
/// to wait for work that only this very thread could do.
inline thread_local const void* keeper_of_pool = nullptr;

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_CALL_TICKET_HPP

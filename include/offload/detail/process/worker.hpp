#ifndef OFFLOAD_DETAIL_PROCESS_WORKER_HPP
#define OFFLOAD_DETAIL_PROCESS_WORKER_HPP

/// @file detail/process/worker.hpp
/// The loop a worker process runs: take a call frame, run it, hand back a value or error
/// frame, repeat until the pool closes the socket.
///
/// A call frame names a *trampoline* (an instantiation of call_in_worker<R, Params...>, which
/// knows the types) and the user's function, both as addresses. That works because a worker is
/// forked from (a fork of) the same program: the same binary image sits at the same addresses.

#include <cxxabi.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "../../codec.hpp"
#include "busy_meter.hpp"
#include "call_counter.hpp"
#include "frame.hpp"
#include "mailbox.hpp"
#include "posix_io.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// What a call frame's trampoline address points to.
using Trampoline = void (*)(std::uint64_t function, Reader& arguments, Writer& result);

/// Decodes the arguments of `R function(Params...)`, calls it, encodes its result. Runs in the
/// worker; its address travels in the call frame.
template <class R, class... Params>
void call_in_worker(std::uint64_t function, Reader& arguments, Writer& result) {
  using Function = R (*)(Params...);
  const auto target = reinterpret_cast<Function>(static_cast<std::uintptr_t>(function));
  // Braced initialisation reads the arguments left to right, in the order they were written.
  std::tuple<std::decay_t<Params>...> values{arguments.read<std::decay_t<Params>>()...};
  arguments.expect_end();
  if constexpr (std::is_void_v<R>) {
    std::apply(target, std::move(values));
  } else {
    const std::decay_t<R>& value = std::apply(target, std::move(values));
    result.write(value);
  }
}

/// The readable (demangled) name of a type_info.
inline std::string demangled_name(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(type.name());
}

/// The type name and message of the exception being handled. Call inside a catch block.
inline RemoteException describe_current_exception() {
  RemoteException error{"unknown exception", ""};
  if (const std::type_info* type = abi::__cxa_current_exception_type()) {
    error.type_name = demangled_name(*type);
  }
  try {
    throw;
  } catch (const std::exception& exception) {
    error.message = exception.what();
  } catch (...) {  // not a std::exception: the type name is all there is
  }
  return error;
}

/// Runs one call frame's payload, leaving a complete value or error frame in `reply`.
inline void run_call(std::span<const std::byte> payload, std::vector<std::byte>& reply) {
  begin_frame(reply);
  try {
    Reader arguments(payload);
    const CallTarget target = read_call_target(arguments);
    Writer result(reply);
    reinterpret_cast<Trampoline>(static_cast<std::uintptr_t>(target.trampoline))(target.function,
                                                                                 arguments, result);
    finish_frame(reply, FrameKind::value);
  } catch (...) {
    const RemoteException error = describe_current_exception();
    begin_frame(reply);
    Writer out(reply);
    out.write(error.type_name);
    out.write(error.message);
    finish_frame(reply, FrameKind::error);
  }
}

/// Exit code of a worker that received something other than a well-formed call frame.
inline constexpr int worker_protocol_exit_code = 70;  // EX_SOFTWARE

/**
 * The worker's end of its keeper: calls come in and replies go out through the mailbox's
 * rings, big frames through the socket (see mailbox.hpp). Ends the process with _exit(0) when
 * the pool closes the socket, or with worker_protocol_exit_code on a corrupt stream (reported
 * as ProtocolError by the frame code, caught by run_worker()).
 */
class WorkerLink {
 public:
  WorkerLink(int channel, const Mailbox& mailbox, std::uint64_t max_payload,
             std::chrono::microseconds idle_spin)
      : channel_(channel),
        calls_(mailbox.calls()),
        replies_(mailbox.replies()),
        from_ring_(ring_frames()),
        from_socket_(max_payload),
        idle_spin_(idle_spin) {}

  /// The next call's payload, valid until the next member call. Waits for it.
  std::span<const std::byte> next_call() {
    for (;;) {
      if (socket_frame_due_) {
        drop_nudges(from_socket_);
        if (std::optional<FrameView> frame = from_socket_.next()) {
          socket_frame_due_ = false;
          return payload_of_call(*frame);
        }
        receive(0);
        continue;
      }
      if (std::optional<FrameView> frame = from_ring_.next()) {
        if (frame->kind == FrameKind::via_socket) {
          socket_frame_due_ = true;
          continue;
        }
        // Our last call: time for the keeper to take the replies it was not woken for, and
        // to send more.
        if (keeper_behind_ && !call_waiting()) nudge_keeper_if_asleep();
        return payload_of_call(*frame);
      }
      if (calls_.pull(from_ring_) == 0) wait_for_calls();
    }
  }

  /// Sends a complete reply frame: through the ring when it fits, else announced there and
  /// sent through the socket.
  ///
  /// The keeper is woken (if it sleeps) only when we run out of calls: on replying with none left,
  /// or on starting the last one after replies it was not woken for (see next_call()). While calls
  /// wait for us, replies collect in the ring and the keeper takes them all at that wake-up: one
  /// wake-up per batch of calls sent ahead instead of one per call, at the price of completing
  /// those futures later (by the batch's duration at most; see send_ahead_depth.hpp).
  void reply(std::span<const std::byte> frame) {
    if (frame.size() <= ring_frame_limit && replies_.push(frame)) {
      if (call_waiting()) {
        keeper_behind_ = true;
      } else {
        nudge_keeper_if_asleep();
      }
      return;
    }
    // Room for an announcement is kept, so this waits only if the keeper fell 64 KiB behind.
    while (!replies_.announce()) {
      nudge_keeper_if_asleep();
      receive(MSG_DONTWAIT);  // notices the end of the pool meanwhile
      ::sched_yield();
    }
    nudge_keeper_if_asleep();
    send_or_exit(frame);
  }

  /// Frees memory a big frame left behind.
  void release_memory() noexcept {
    from_ring_.release_memory();
    from_socket_.release_memory();
  }

 private:
  /// True when another call is there to take without waiting.
  [[nodiscard]] bool call_waiting() const { return from_ring_.frame_ready() || calls_.has_data(); }

  static std::span<const std::byte> payload_of_call(const FrameView& frame) {
    if (frame.kind != FrameKind::call) ::_exit(worker_protocol_exit_code);
    return frame.payload;
  }

  /// Polls the ring for `idle_spin_` without sleeping first: waking a sleeping process costs
  /// several microseconds (tens in a VM), and in a loop of short calls the next one arrives
  /// well within the window. Yields the CPU between looks, so it never holds up another
  /// thread (often the keeper, about to send the next call). Then sleeps on the socket until
  /// a nudge, a big frame or the end of the pool.
  void wait_for_calls() {
    const auto give_up = Clock::now() + idle_spin_;
    while (Clock::now() < give_up) {
      if (calls_.has_data()) return;
      ::sched_yield();
    }
    if (!calls_.prepare_to_sleep()) return;
    receive(0);
    calls_.woke();
  }

  /// One receive from the socket (`flags`: 0 blocks); ends the process at end of stream.
  void receive(int flags) {
    const ssize_t got = receive_some(channel_, from_socket_.prepare(), flags);
    if (got == 0) ::_exit(from_socket_.buffered() == 0 ? 0 : worker_protocol_exit_code);
    if (got < 0) return;
    from_socket_.commit(static_cast<std::size_t>(got));
    drop_nudges(from_socket_);  // they only woke us; a big call's frame stays
  }

  void nudge_keeper_if_asleep() {
    keeper_behind_ = false;  // it takes every reply before it sleeps again
    if (replies_.take_sleeper()) send_or_exit(control_frame(FrameKind::nudge));
  }

  void send_or_exit(std::span<const std::byte> bytes) {
    if (send_all(channel_, bytes) != IoResult::ok) ::_exit(0);  // the pool is gone
  }

  int channel_;
  FrameRing calls_;
  FrameRing replies_;
  FrameAssembler from_ring_;
  FrameAssembler from_socket_;
  bool socket_frame_due_ = false;  // the ring announced that the next call is in the socket
  bool keeper_behind_ = false;     // replies went into the ring without waking the keeper
  std::chrono::microseconds idle_spin_;
};

/**
 * The worker's main loop on the (blocking) socket `channel` and its `mailbox`, counting each
 * call it starts and timing each it runs; after each reply it polls for `idle_spin` before it
 * sleeps (ProcessOptions::idle_spin). Never returns: ends the process with _exit(0) when the pool
 * closes the socket (no atexit handlers or static destructors of the program copy run: they
 * belong to the parent), or with worker_protocol_exit_code on a corrupt stream.
 */
[[noreturn]] inline void run_worker(int channel, const Mailbox& mailbox, std::uint64_t max_payload,
                                    std::chrono::microseconds idle_spin) {
  try {
    WorkerLink link(channel, mailbox, max_payload, idle_spin);
    CallCounter calls = mailbox.calls_started();
    BusyMeter busy = mailbox.busy();
    std::vector<std::byte> reply;
    for (;;) {
      const std::span<const std::byte> call = link.next_call();
      calls.count_start();
      const auto began = std::chrono::steady_clock::now();
      run_call(call, reply);
      busy.add(std::chrono::steady_clock::now() - began);  // before the reply that counts it
      // Output the call printed must appear now: _exit() would drop a full stdio buffer.
      std::fflush(stdout);
      std::fflush(stderr);
      link.reply(reply);
      link.release_memory();
      if (reply.capacity() > (std::size_t{1} << 20)) std::vector<std::byte>().swap(reply);
    }
  } catch (...) {
    ::_exit(worker_protocol_exit_code);  // ProtocolError, or no memory to even report one
  }
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_WORKER_HPP

#ifndef OFFLOAD_DETAIL_PROCESS_WORKER_HPP
#define OFFLOAD_DETAIL_PROCESS_WORKER_HPP

/// @file process_worker.hpp
/// The loop a worker process runs: read a call frame, run it, write back a value or error
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

#include "../codec.hpp"
#include "call_counter.hpp"
#include "frame.hpp"
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

/// Receives into `incoming`, polling without sleeping for `linger` first: waking a sleeping
/// process costs several microseconds (tens in a VM), and in a loop of short calls the next
/// one arrives well within the window. The poll yields the CPU between tries, so it never
/// holds up another thread. Returns what recv() did: > 0 bytes, 0 at end of stream.
inline ssize_t receive_lingering(int channel, FrameAssembler& incoming,
                                 std::chrono::microseconds linger) {
  const auto give_up = Clock::now() + linger;
  const std::span<std::byte> room = incoming.prepare();
  for (;;) {
    const ssize_t got = receive_some(channel, room, MSG_DONTWAIT);
    if (got >= 0) return got;
    if (Clock::now() >= give_up) return receive_some(channel, room);
    // Let anything else runnable on this CPU go first: often the keeper our reply just woke,
    // which is about to send the next call. Spinning ahead of it would only delay that call.
    ::sched_yield();
  }
}

/**
 * The worker's main loop on the (blocking) socket `channel`, counting each call it starts in
 * `calls`; after each reply it polls for `idle_spin` before it sleeps (ProcessOptions::idle_spin). Never returns: ends the process
 * with _exit(0) when the pool closes the socket (no atexit handlers or static destructors of
 * the program copy run: they belong to the parent), or with worker_protocol_exit_code on a
 * corrupt stream.
 */
[[noreturn]] inline void run_worker(int channel, CallCounter calls, std::uint64_t max_payload,
                                    std::chrono::microseconds idle_spin) {
  try {
    FrameAssembler incoming(max_payload);
    std::vector<std::byte> reply;
    for (;;) {
      std::optional<FrameView> frame = incoming.next();
      if (!frame) {
        const ssize_t got = receive_lingering(channel, incoming, idle_spin);
        if (got <= 0) ::_exit(incoming.buffered() == 0 ? 0 : worker_protocol_exit_code);
        incoming.commit(static_cast<std::size_t>(got));
        continue;
      }
      if (frame->kind != FrameKind::call) ::_exit(worker_protocol_exit_code);
      calls.count_start();
      run_call(frame->payload, reply);
      // Output the call printed must appear now: _exit() would drop a full stdio buffer.
      std::fflush(stdout);
      std::fflush(stderr);
      if (send_all(channel, reply) != IoResult::ok) ::_exit(0);  // the pool is gone
      incoming.release_memory();
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

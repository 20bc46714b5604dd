#ifndef OFFLOAD_UV_HPP
#define OFFLOAD_UV_HPP

/// @file uv.hpp
/// Results back on a libuv loop: makes `uv_loop_t` an executor (executor.hpp), passed as the
/// `uv_loop_t*` libuv programs hold:
///
///   pool.submit(heavy, request).then(loop, [&](Reply reply) { respond(client, reply); });
///   co_await offload::resume_on(loop);   // and spawn(loop, task)
///
/// A pending continuation keeps the loop running through a referenced handle of offload's,
/// open only while continuations are pending: uv_run() does not return before they have run,
/// and once they have, nothing of offload's is left on the loop (uv_loop_close() succeeds).
/// If the program closes the loop first (uv_walk() closing every handle, then uv_run() and
/// uv_loop_close()), pending continuations never run and their futures fail with PoolClosed;
/// offload never touches the closed loop (detail/uv/bridge.hpp says how).
///
/// libuv's thread rule holds here too: register continuations (then(), a coroutine's
/// co_await, spawn(), resume_on()) on the loop's thread, or while no thread runs the loop;
/// from other threads only while a continuation is already pending on it. Completions may come
/// from any thread. POSIX only (a socket pair). Not included by offload.hpp: a program that
/// never includes this header needs no libuv.

#include <uv.h>

#include <utility>

#include "detail/uv/bridge.hpp"
#include "executor.hpp"

namespace offload {
inline namespace v0 {

/// A uv loop is an executor; pass it as `uv_loop_t*` (a pointer names its pointee). Its
/// keep-alive posts, so the loop may be closed first.
template <>
struct executor_traits<uv_loop_t> {
  static void post(uv_loop_t& loop, UniqueFunction<void()> f) {
    std::move(keep_alive(loop)).post(std::move(f));
  }
  static detail::uv_bridge::KeepAlive keep_alive(uv_loop_t& loop) {
    return detail::uv_bridge::KeepAlive(&loop);
  }
};

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_UV_HPP

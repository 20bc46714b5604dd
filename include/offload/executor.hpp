#ifndef OFFLOAD_EXECUTOR_HPP
#define OFFLOAD_EXECUTOR_HPP

/// @file executor.hpp
/// Executors: the loops a result can come back to. `fut.then(ex, f)`, `resume_on(ex)` and
/// `spawn(ex, task)` accept any type E for which `executor_traits<E>` says how to post work
/// to E's thread and how to keep E running while work is on its way:
///
///   template <> struct offload::executor_traits<MyLoop> {
///     static void post(MyLoop& loop, offload::UniqueFunction<void()> f);  // run f later, on
///                                                                         // the loop's thread
///     static auto keep_alive(MyLoop& loop);  // an object that keeps the loop running while
///   };                                       // it lives
///
/// offload provides EventLoop (event_loop.hpp), Asio's io_context, its executors and strands
/// (asio.hpp) and libuv's uv_loop_t (uv.hpp); docs/executors.md shows Qt and GLib.
///
/// The rules offload follows with any executor:
/// - keep_alive(ex) is called when the continuation is registered (on the thread that calls
///   then(), or that suspends the coroutine), and the object lives until the posted function
///   has run or been destroyed; post(ex, f) is called once, from the thread that completes the
///   future, while that object is alive.
/// - A function the executor destroys without running it (its loop was destroyed with the
///   function still queued) completes the continuation's future with PoolClosed.
/// - If the keep-alive object can post, `std::move(k).post(f)`, offload posts through it
///   instead of calling post(ex, f), and never touches `ex` after keep_alive(): such a
///   keep-alive can find its loop gone and destroy `f`, so the loop may be destroyed first.
///   offload's own executors work this way. With any other, `ex` must outlive its pending
///   continuations.
/// - An executor passed as an lvalue is referred to; one passed as an rvalue (an Asio
///   executor, say) is moved into the continuation.
/// - A pointer to an executor (libuv's `uv_loop_t*`) stands for the executor it points to.

#include <type_traits>
#include <utility>

#include "detail/unique_function.hpp"

namespace offload {
inline namespace v0 {

/// A move-only type-erased callable (std::move_only_function is C++23 and missing from g++ 12).
/// Callables up to 48 bytes that are nothrow-movable live inside it: posting a small lambda
/// costs no allocation.
template <class Signature>
using UniqueFunction = detail::UniqueFunction<Signature>;

/// How offload posts work to executor E (see the file comment). Specialise it for a loop of
/// your own; the primary template is left undefined, so a type without one is not an executor.
template <class E>
struct executor_traits;

/// A type offload can post continuations and coroutines to: executor_traits<E> is defined and
/// has post(E&, UniqueFunction<void()>) and keep_alive(E&).
template <class E>
concept Executor = requires(E& executor, UniqueFunction<void()> f) {
  executor_traits<E>::post(executor, std::move(f));
  executor_traits<E>::keep_alive(executor);
};

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_EXECUTOR_HPP

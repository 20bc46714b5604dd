#ifndef OFFLOAD_DETAIL_PROCESS_MAKE_CALL_HPP
#define OFFLOAD_DETAIL_PROCESS_MAKE_CALL_HPP

/// @file detail/process/make_call.hpp
/// Turning `submit(fn, args...)` into a call frame and the ticket that completes its Future:
/// shared by ProcessPool and ClusterPool, which accept exactly the same calls.

#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

#include "../../codec.hpp"
#include "../../future.hpp"
#include "call_signature.hpp"
#include "call_ticket.hpp"
#include "frame.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// What make_call() returns for a call that does not compile, typed as the caller expects so
/// that the one error already reported is the only one.
template <class R>
auto invalid_call() {
  return std::pair<Future<R>, std::unique_ptr<CallTicket>>();
}

template <class Signature, class... Args>
auto make_valid_call(typename Signature::Plain pointer, Args&&... args) {
  using R = typename Signature::Result;
  auto call = std::make_unique<TypedCallTicket<R>>();
  Future<R> future = call->get_future();
  begin_frame(call->request);
  Writer out(call->request);
  out.write(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(Signature::trampoline())));
  out.write(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(pointer)));
  Signature::write_arguments(out, std::forward<Args>(args)...);
  finish_frame(call->request, FrameKind::call);
  return std::pair<Future<R>, std::unique_ptr<CallTicket>>(std::move(future), std::move(call));
}

/// Builds the call's frame (function and trampoline named by address) and its ticket; returns
/// the future with the ticket. A call that cannot run in a worker stops compilation with one
/// readable message (call_signature.hpp).
template <class F, class... Args>
auto make_call(F& fn, Args&&... args) {
  using Pointer = decltype(to_function_pointer(fn));
  if constexpr (!is_function_pointer_v<Pointer>) {
    return invalid_call<typename ObjectCallResult<std::decay_t<F>>::type>();  // said why
  } else {
    using Signature = FunctionSignature<Pointer>;
    if constexpr (!Signature::template check_call<Args...>()) {
      Signature::report_missing_codecs();  // the other checks have said why already
      return invalid_call<typename Signature::Result>();
    } else {
      return make_valid_call<Signature>(to_function_pointer(fn), std::forward<Args>(args)...);
    }
  }
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_MAKE_CALL_HPP

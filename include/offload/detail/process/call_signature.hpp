#ifndef OFFLOAD_DETAIL_PROCESS_CALL_SIGNATURE_HPP
#define OFFLOAD_DETAIL_PROCESS_CALL_SIGNATURE_HPP

/// @file detail/process/call_signature.hpp
/// Turning a callable and its arguments into a call a worker process can run: the checks that
/// make a bad submit() a compile error with one readable message, and the argument encoding.

#include <cstdint>
#include <type_traits>
#include <utility>

#include "../../codec.hpp"
#include "../always_false.hpp"
#include "worker.hpp"


namespace offload {
inline namespace v0 {
namespace detail {

// --- turning a callable into something a worker can call -------------------------------------

template <class F>
inline constexpr bool is_function_pointer_v =
    std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>;

/// `fn` as a plain function pointer: a function, a function pointer, or a capture-less,
/// non-generic lambda (through its conversion operator).
template <class F>
auto to_function_pointer(F& fn) {
  if constexpr (is_function_pointer_v<std::decay_t<F>>) {
    return static_cast<std::decay_t<F>>(fn);
  } else if constexpr (requires { requires is_function_pointer_v<decltype(+fn)>; }) {
    return +fn;
  } else {
    static_assert(always_false<F>,
                  "offload::ProcessPool::submit needs a function, a function pointer or a "
                  "capture-less, non-generic lambda: the worker process calls it by its "
                  "address, so it cannot carry captured state. Pass that state as arguments.");
  }
}

/// Stops compilation with the message naming the type, when T has no codec.
template <class T>
void report_if_no_codec() {
  if constexpr (!HasCodec<T>) (void)sizeof(TypeHasNoCodec<typename MissingCodecCulprit<T>::type>);
}

/// The result type of a callable object's (single, non-template) operator(), or void; used
/// only to keep a rejected submit() from causing follow-on errors.
template <class F>
struct ObjectCallResult {
  using type = void;
};
template <class F>
  requires requires { &F::operator(); }
struct ObjectCallResult<F> {
  template <class M>
  struct Of;
  template <class R, class C, class... A>
  struct Of<R (C::*)(A...)> {
    using type = std::decay_t<R>;
  };
  template <class R, class C, class... A>
  struct Of<R (C::*)(A...) const> {
    using type = std::decay_t<R>;
  };
  template <class R, class C, class... A>
  struct Of<R (C::*)(A...) noexcept> {
    using type = std::decay_t<R>;
  };
  template <class R, class C, class... A>
  struct Of<R (C::*)(A...) const noexcept> {
    using type = std::decay_t<R>;
  };
  using type = typename Of<decltype(&F::operator())>::type;
};

template <class Pointer>
struct FunctionSignature;
template <class R, class... Params>
struct FunctionSignature<R (*)(Params...)> {
  using Result = std::decay_t<R>;
  using Plain = R (*)(Params...);

  /// What the worker runs for this signature (instantiated only for valid calls).
  static constexpr Trampoline trampoline() { return &call_in_worker<R, Params...>; }

  /// Whether `fn(args...)` can run in a worker; each failed check but the codecs' stops
  /// compilation with its own message, and the caller compiles nothing more for an invalid
  /// call (one error each).
  template <class... Args>
  static constexpr bool check_call() {
    constexpr bool count_matches = sizeof...(Args) == sizeof...(Params);
    static_assert(count_matches,
                  "offload::ProcessPool::submit: the number of arguments does not match the "
                  "function's parameters (default arguments do not survive the conversion to "
                  "a function pointer: pass every argument)");
    if constexpr (!count_matches) {
      return false;
    } else {
      constexpr bool convertible = (std::is_constructible_v<std::decay_t<Params>, Args&&> && ...);
      static_assert(convertible,
                    "offload::ProcessPool::submit: an argument cannot be converted to the "
                    "type of its parameter");
      constexpr bool no_output_parameter =
          !((std::is_lvalue_reference_v<Params> &&
             !std::is_const_v<std::remove_reference_t<Params>>) ||
            ...);
      static_assert(no_output_parameter,
                    "offload::ProcessPool::submit: the function takes a non-const reference; a "
                    "worker would change its own copy and the change would be lost. Return the "
                    "new value instead.");
      return convertible && no_output_parameter && has_codecs();
    }
  }

  /// Whether every parameter and the result can cross (see report_missing_codecs()).
  static constexpr bool has_codecs() {
    if constexpr (std::is_void_v<Result>) {
      return (HasCodec<std::decay_t<Params>> && ...);
    } else {
      return (HasCodec<std::decay_t<Params>> && ...) && HasCodec<Result>;
    }
  }

  /// One readable error per type that cannot cross.
  static void report_missing_codecs() {
    (report_if_no_codec<std::decay_t<Params>>(), ...);
    if constexpr (!std::is_void_v<Result>) report_if_no_codec<Result>();
  }

  /// Encodes each argument as its parameter's (decayed) type, the type the worker decodes.
  template <class... Args>
  static void write_arguments(Writer& out, Args&&... args) {
    (write_argument<std::decay_t<Params>>(out, std::forward<Args>(args)), ...);
  }

  template <class Value, class Arg>
  static void write_argument(Writer& out, Arg&& arg) {
    if constexpr (std::is_same_v<std::decay_t<Arg>, Value>) {
      out.write<Value>(arg);
    } else {
      out.write<Value>(Value(std::forward<Arg>(arg)));
    }
  }
};
template <class R, class... Params>
struct FunctionSignature<R (*)(Params...) noexcept> : FunctionSignature<R (*)(Params...)> {};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_CALL_SIGNATURE_HPP

#ifndef OFFLOAD_TESTS_ASIO_FIXTURES_HPP
#define OFFLOAD_TESTS_ASIO_FIXTURES_HPP

// The fixtures of support/executor_cases.hpp for an Asio flavour (standalone or Boost): an
// io_context, its executor and a strand of it, each run by io_context::run().

#include <optional>

namespace asio_fixtures {

template <class IoContext>
struct Context {
  std::optional<IoContext> context{std::in_place};
  IoContext& executor() { return *context; }
  void run() {
    context->run();
    context->restart();
  }
  void destroy() { context.reset(); }
};

/// `Executor` is the io_context's executor_type, or a strand of it: either is made from the
/// io_context's executor, and must not outlive the io_context.
template <class IoContext, class Executor>
struct Of : Context<IoContext> {
  std::optional<Executor> made{Executor(this->context->get_executor())};
  Of() = default;
  Of(const Of&) = delete;
  Of& operator=(const Of&) = delete;
  ~Of() { made.reset(); }
  Executor& executor() { return *made; }
  void destroy() {
    made.reset();
    this->context.reset();
  }
};

}  // namespace asio_fixtures

#endif  // OFFLOAD_TESTS_ASIO_FIXTURES_HPP

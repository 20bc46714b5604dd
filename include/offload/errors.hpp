#ifndef OFFLOAD_ERRORS_HPP
#define OFFLOAD_ERRORS_HPP

/// @file errors.hpp
/// Every exception offload throws on its own behalf derives from offload::Error.

#include <exception>
#include <stdexcept>
#include <string>
#include <utility>

namespace offload {
inline namespace v0 {

/// Base of every offload exception. Catch this to handle any failure the library reports.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Thrown by submit()/detach()/parallel_for() on a pool that was shut down.
class PoolClosed : public Error {
 public:
  PoolClosed() : Error("offload: the pool is shut down and accepts no more tasks") {}
  using Error::Error;
};

/// Thrown when a call would block a pool worker on work that only that pool can finish
/// (for example ThreadPool::wait() called from one of the pool's own workers).
class WouldDeadlock : public Error {
 public:
  using Error::Error;
};

/// The result of a task that was cancelled through Future::request_stop() before it started.
class TaskCancelled : public Error {
 public:
  TaskCancelled() : Error("offload: the task was cancelled before it started") {}
  using Error::Error;
};

/// A process-pool worker died (signal or non-zero exit) while running the call.
class WorkerCrashed : public Error {
 public:
  using Error::Error;
};

/// A process-pool call ran longer than ProcessOptions::max_call_time; its worker was killed.
class CallTimeout : public Error {
 public:
  using Error::Error;
};

/// An exception thrown inside a process-pool worker, carried back to the caller.
class RemoteError : public Error {
 public:
  RemoteError(std::string type_name, const std::string& message)
      : Error(type_name + ": " + message), type_name_(std::move(type_name)) {}

  /// The (demangled when possible) type name of the exception thrown in the child.
  [[nodiscard]] const std::string& type_name() const noexcept { return type_name_; }

 private:
  std::string type_name_;
};

/// A ClusterPool cannot go on: the ranks of the MPI job run different programs, a rank could
/// not start its pool, the job's MPI cannot serve calls, or a function cannot cross to a rank.
class ClusterError : public Error {
 public:
  using Error::Error;
};

namespace detail {

/// An exception_ptr to a new Error(args...), for completing a future with. The Error made on
/// the way is gone when this returns, which matters: the stored copy shares its message with
/// it (libstdc++ counts the owners where ThreadSanitizer cannot see it), so a temporary still
/// alive in the caller while the future hands the copy to another thread would look like a
/// race. Write `promise.set_exception(make_error<E>(...))`, never with a temporary E inline.
template <class Error, class... Args>
std::exception_ptr make_error(Args&&... args) {
  return std::make_exception_ptr(Error(std::forward<Args>(args)...));
}

}  // namespace detail

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_ERRORS_HPP

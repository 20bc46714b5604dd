#ifndef OFFLOAD_DETAIL_CLUSTER_WIRE_HPP
#define OFFLOAD_DETAIL_CLUSTER_WIRE_HPP

/// @file detail/cluster/wire.hpp
/// What the ranks of a cluster say to each other. Every message is a fixed-size *head* (one
/// MPI message), followed, when it has a body, by the body in as many MPI messages as MPI's
/// `int` count allows (max_mpi_message bytes each). All of them travel with one tag on one
/// communicator, so MPI's non-overtaking rule keeps a body right behind its head.
///
///   driver -> server:  open_pool (a: workers, b: max_call_time in ms)   reply: pool_opened
///                      call      (id; a, b: trampoline and function as image offsets;
///                                 body: the encoded arguments)          reply: value or error
///                      recall    (a: how many of the calls it holds and has not begun to
///                                 give back, the newest first)          reply: recalled
///                      close_pool                                       reply: pool_closed
///                      finish    (the driver's main returned: stop serving)  reply: finished
///   server -> driver:  pool_opened (a: workers started, or 0 and body: why not)
///                      value     (id; body: the encoded result)
///                      error     (id; a: ErrorKind; body: string type name, string message)
///                      recalled  (body: vector<uint64_t>, the ids of the calls given back,
///                                 which will never run there; maybe none)
///                      pool_closed
///                      finished  (the server's last message: the driver may finalize MPI once
///                                 every server's came, all they sent before it received)

#include <climits>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "../../codec.hpp"
#include "../../errors.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// Bumped whenever a message changes meaning; checked at start-up beside the fingerprint.
inline constexpr std::uint32_t cluster_protocol_version = 3;

/// The largest single MPI message (MPI counts bytes in an int). Tests lower it to prove that
/// bodies split and join correctly without sending gigabytes.
#ifndef OFFLOAD_CLUSTER_MAX_MPI_MESSAGE
#define OFFLOAD_CLUSTER_MAX_MPI_MESSAGE INT_MAX
#endif
inline constexpr std::size_t max_mpi_message = OFFLOAD_CLUSTER_MAX_MPI_MESSAGE;
static_assert(max_mpi_message > 0 && max_mpi_message <= INT_MAX,
              "OFFLOAD_CLUSTER_MAX_MPI_MESSAGE must be between 1 and INT_MAX");

/// The largest body a rank accepts (a corrupt head must not make it allocate gigabytes): the
/// process pool's own limit on a frame, plus room for the error strings.
inline constexpr std::uint64_t max_cluster_body = (std::uint64_t{1} << 30) + 4096;

enum class WireKind : std::uint32_t {
  open_pool = 1,
  call,
  close_pool,
  finish,
  pool_opened,
  value,
  error,
  pool_closed,
  finished,
  recall,
  recalled,
};

/// The head of every message (trivially copyable: it travels as MPI_BYTE).
struct WireHead {
  WireKind kind;
  std::uint32_t pool;       // which ClusterPool (several may live one after another)
  std::uint64_t id;         // the call, for call/value/error
  std::uint64_t a;          // per kind, see the file comment
  std::uint64_t b;
  std::uint64_t body_size;  // bytes following in body messages
};

/// A message to send: its destination, head and body.
struct WireMessage {
  int peer = 0;
  WireHead head{};
  std::vector<std::byte> body;
};

/// Which offload error a failed call ended with, so the driver rethrows the same type.
enum class ErrorKind : std::uint64_t {
  other = 0,
  worker_crashed,
  call_timeout,
  remote_error,
  protocol_error,
  task_cancelled,
  pool_closed,
  cluster_error,
};

/// The body of an error message: what `error` is, its type name (RemoteError) and message.
inline std::vector<std::byte> encode_error(std::exception_ptr error, ErrorKind& kind) {
  std::string type_name;
  std::string message;
  try {
    std::rethrow_exception(error);
  } catch (const RemoteError& e) {
    kind = ErrorKind::remote_error;
    type_name = e.type_name();
    message = e.what();
    const std::string prefix = type_name + ": ";  // RemoteError's what() is "type: message"
    if (message.compare(0, prefix.size(), prefix) == 0) message.erase(0, prefix.size());
  } catch (const WorkerCrashed& e) {
    kind = ErrorKind::worker_crashed;
    message = e.what();
  } catch (const CallTimeout& e) {
    kind = ErrorKind::call_timeout;
    message = e.what();
  } catch (const ProtocolError& e) {
    kind = ErrorKind::protocol_error;
    message = e.what();
  } catch (const TaskCancelled& e) {
    kind = ErrorKind::task_cancelled;
    message = e.what();
  } catch (const PoolClosed& e) {
    kind = ErrorKind::pool_closed;
    message = e.what();
  } catch (const ClusterError& e) {
    kind = ErrorKind::cluster_error;
    message = e.what();
  } catch (const std::exception& e) {
    kind = ErrorKind::other;
    message = e.what();
  } catch (...) {
    kind = ErrorKind::other;
    message = "offload: unknown error";
  }
  std::vector<std::byte> body;
  Writer out(body);
  out.write(type_name);
  out.write(message);
  return body;
}

/// The exception an error message describes, as the type the serving rank's pool raised; the
/// rank (and the attempts, after retries) is named in the message of every kind but
/// RemoteError (whose text is the callee's).
inline std::exception_ptr decode_error(ErrorKind kind, std::span<const std::byte> body, int rank,
                                       unsigned attempts) {
  Reader in(body);
  const auto type_name = in.read<std::string>();
  const auto message = in.read<std::string>();
  in.expect_end();
  std::string where = message + " (on rank " + std::to_string(rank);
  if (attempts > 1) where += ", " + std::to_string(attempts) + " attempts";
  where += ")";
  switch (kind) {
    case ErrorKind::remote_error: return make_error<RemoteError>(type_name, message);
    case ErrorKind::worker_crashed: return make_error<WorkerCrashed>(where);
    case ErrorKind::call_timeout: return make_error<CallTimeout>(where);
    case ErrorKind::protocol_error: return make_error<ProtocolError>(where);
    case ErrorKind::task_cancelled: return make_error<TaskCancelled>(where);
    case ErrorKind::pool_closed: return make_error<PoolClosed>(where);
    case ErrorKind::cluster_error: return make_error<ClusterError>(where);
    case ErrorKind::other: break;
  }
  return make_error<Error>(where);
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CLUSTER_WIRE_HPP

#ifndef OFFLOAD_DETAIL_PROCESS_SERVER_PROTOCOL_HPP
#define OFFLOAD_DETAIL_PROCESS_SERVER_PROTOCOL_HPP

/// @file detail/process/server_protocol.hpp
/// What the program and its fork server processes say to each other (see fork_server.hpp).

#include <chrono>
#include <cstdint>

#include "../../errors.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

enum class ServerMessageKind : std::uint32_t {
  open_session = 1,  // program -> server, on the control socket, carries the session socket
  spawn = 2,         // pool -> server, carries the worker's end of its channel + its mailbox
  kill = 3,          // pool -> server: SIGKILL worker `pid`
  spawned = 4,       // server -> pool: worker `pid` started
  spawn_failed = 5,  // server -> pool: fork failed with errno `value`
  exited = 6,        // server -> pool: worker `pid` was reaped with wait status `value`
};

struct ServerMessage {
  ServerMessageKind kind{};
  std::int32_t pid = 0;
  std::int32_t value = 0;
  std::uint32_t idle_spin_us = 0;  // spawn: how long the worker polls before it sleeps
  std::uint64_t max_payload = 0;   // spawn: the largest frame the new worker accepts
};

/// What a new worker is told (ProcessOptions, as far as the worker needs them).
struct WorkerSettings {
  std::uint64_t max_payload;
  std::chrono::microseconds idle_spin;
};

/// The fork server died or stopped answering: no worker can be started or reaped any more.
class ForkServerLost : public Error {
 public:
  ForkServerLost()
      : Error(
            "offload: the process pool's fork server process is gone; no worker can be "
            "started") {}
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_SERVER_PROTOCOL_HPP

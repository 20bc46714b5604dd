#ifndef OFFLOAD_DETAIL_PROCESS_SERVER_PROTOCOL_HPP
#define OFFLOAD_DETAIL_PROCESS_SERVER_PROTOCOL_HPP

/// @file detail/process/server_protocol.hpp
/// What the program and its fork server processes say to each other (see fork_server.hpp).
///
/// Every socket is SOCK_SEQPACKET and carries one fixed-size ServerMessage per packet;
/// descriptors travel as SCM_RIGHTS attachments:
///   control socket (program <-> one server):  -> open_session + [session socket]
///                                              <- buddy_born(pid) + [the buddy's control socket]
///   session socket (one per pool slot):       -> spawn + [worker's socket end, its mailbox]
///                                              <- spawned(pid) / spawn_failed(errno)
///                                              -> kill(pid)
///                                              <- exited(pid, wait status)   (every worker, once)
///   buddy link (between the two servers):     <> retiring      (the program ended me: do not
///                                                               replace me when I am gone)

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

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
  buddy_born = 7,    // server -> program: server `pid` replaces the one that died; carries
                     // the new server's control socket
  retiring = 8,      // server -> server, on the buddy link: I end because the program asked
};

struct ServerMessage {
  ServerMessageKind kind{};
  std::int32_t pid = 0;
  std::int32_t value = 0;
  std::uint32_t idle_spin_us = 0;  // spawn: how long the worker polls before it sleeps
  std::uint64_t max_payload = 0;   // spawn: the largest frame the new worker accepts
  std::uint64_t max_memory = 0;    // spawn: address space the worker may add; 0: no limit
};

/// What a new worker is told (ProcessOptions, as far as the worker needs them).
struct WorkerSettings {
  std::uint64_t max_payload;
  std::chrono::microseconds idle_spin;
  std::uint64_t max_memory = 0;
};

/// No fork server process is left to start workers: both died before either could replace
/// the other. The pool fails every call with it, at once, from then on.
class ForkServerLost : public Error {
 public:
  explicit ForkServerLost(std::string why)
      : Error("offload: the process pool can start no worker: " + std::move(why)) {}
};

/// The one fork server process a session was opened on died (or stopped answering). Never
/// reaches a user: the keeper opens a session on the surviving server and goes on.
struct ServerSessionLost {};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_SERVER_PROTOCOL_HPP

#ifndef OFFLOAD_DETAIL_PROCESS_FORK_SERVER_HPP
#define OFFLOAD_DETAIL_PROCESS_FORK_SERVER_HPP

/// @file detail/process/fork_server.hpp
/// The program's side of its fork servers: small processes, forked while the program was
/// still single-threaded, that fork every worker process on the pools' behalf.
///
/// Why: fork() copies only the calling thread. If another thread holds a lock at that moment
/// (malloc's, stdio's, any mutex of the program) the child inherits it locked, forever. A
/// process that never starts threads can fork safely at any time, so the pools ask one.
///
/// Two of them, so that neither is a single point of failure: the program forks both, and
/// when one dies (killed from outside, by the OOM killer, by a call), the other starts its
/// replacement (server_process.hpp) and announces it on its control socket. Sessions open on
/// whichever is alive; the keepers of a dead server's workers (which die with it) open new
/// sessions on the survivor and carry on. Only if both die before either could replace the
/// other is the program left with none, and every pool then fails its calls with
/// ForkServerLost.
///
/// The servers reap every worker themselves (workers are their children) and report each
/// exit on the session that spawned it: the program never calls waitpid() on a worker, never
/// touches SIGCHLD, and a kill can never hit a recycled pid (a server kills only its unreaped
/// children, the program only its unreaped servers). Closing a session kills its workers;
/// ending the control socket (the program exited, died, or ends the servers) kills every
/// worker and ends the server. Protocol: server_protocol.hpp.
///
/// Deaths propagate downwards: each server and each worker set PR_SET_PDEATHSIG(SIGKILL) and
/// then re-check getppid(), because the parent may have died before the prctl() took effect.
/// A worker's parent is its server, so the workers of a server that dies die with it.

#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "posix_io.hpp"
#include "server_process.hpp"
#include "server_protocol.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// Waits for child `pid` to end and reaps it. ECHILD (someone else reaped it, or SIGCHLD is
/// ignored) ends the wait too.
inline void reap(pid_t pid) noexcept {
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

/// A fork server's pid and the program's end of its control socket.
struct ServerHandle {
  pid_t pid;
  UniqueFd control;
};

/// A session on one fork server: the socket, and which server it is on.
struct OpenedSession {
  UniqueFd socket;
  pid_t server;
};

/**
 * The program's handle on its fork servers (see the file comment). Thread-safe. Destroying
 * it ends every server (which kill any worker left) and reaps them.
 */
class ForkServer {
 public:
  /// Forks the two servers. Precondition: the calling thread is the only one in the process
  /// (the caller checks), and it lives as long as the servers are needed: their death signal
  /// fires when the thread that forked them exits. Allocates; blocks for the forks.
  static std::shared_ptr<ForkServer> start() {
    // Buffered output would otherwise be copied into the servers and, through their workers,
    // written a second time.
    std::fflush(nullptr);
    struct sigaction sigchld {};
    ::sigaction(SIGCHLD, nullptr, &sigchld);
    auto [link_first, link_second] = make_socket_pair(SOCK_SEQPACKET);
    std::shared_ptr<ForkServer> servers(new ForkServer());
    servers->members_.push_back(fork_server(link_first, sigchld));
    servers->members_.push_back(fork_server(link_second, sigchld));
    return servers;
  }

  ForkServer(const ForkServer&) = delete;
  ForkServer& operator=(const ForkServer&) = delete;

  /// Ends every server, including one born while this runs, and reaps them. Blocks until
  /// they have exited (a server that does not end within 10 s is killed).
  ~ForkServer() {
    std::vector<ServerHandle> ending = std::move(members_);
    for (const ServerHandle& server : ending) ::shutdown(server.control.get(), SHUT_WR);
    // By index: end_one() appends a server announced meanwhile, which is ended the same way.
    for (std::size_t i = 0; i < ending.size(); ++i) end_one(ending, i);
  }

  /**
   * A new session on a live server: workers spawned through it are reported on it and killed
   * when it closes. Thread-safe; blocks briefly; allocates the socket pair.
   * @throws ForkServerLost when no server is left.
   */
  OpenedSession open_session() {
    auto [pool_end, server_end] = make_socket_pair(SOCK_SEQPACKET);
    const ServerMessage message{ServerMessageKind::open_session, 0, 0, 0, 0, 0};
    const int attached = server_end.get();
    std::lock_guard lock(mutex_);
    tend_locked();
    for (const ServerHandle& server : members_) {
      if (send_packet(server.control.get(), &message, sizeof message, {&attached, 1})) {
        return OpenedSession{std::move(pool_end), server.pid};
      }
      // It died since tend_locked() looked: the next look reaps it.
    }
    throw ForkServerLost(
        "both of its fork server processes died before either could start the other's "
        "replacement, and a multi-threaded program cannot safely fork a new one");
  }

  /// Kills server `pid` (it stopped answering), if it is still one of ours. Thread-safe.
  void condemn(pid_t pid) {
    std::lock_guard lock(mutex_);
    for (const ServerHandle& server : members_) {
      if (server.pid == pid) ::kill(pid, SIGKILL);  // unreaped: the pid cannot be recycled
    }
  }

  /// The pid of the server new sessions open on (the first live one), or 0. Thread-safe.
  [[nodiscard]] pid_t pid() {
    std::lock_guard lock(mutex_);
    tend_locked();
    return members_.empty() ? 0 : members_.front().pid;
  }

  /// The pids of every server known to be alive. Thread-safe.
  [[nodiscard]] std::vector<pid_t> pids() {
    std::lock_guard lock(mutex_);
    tend_locked();
    std::vector<pid_t> live;
    for (const ServerHandle& server : members_) live.push_back(server.pid);
    return live;
  }

  /// Whether a server is left to start workers. Thread-safe.
  [[nodiscard]] bool alive() { return pid() != 0; }

  /// Reaps servers that died and takes in the replacements announced. Thread-safe; called by
  /// every member above, and by a pool when it ends, so a dead server is never left a zombie
  /// for long.
  void tend() {
    std::lock_guard lock(mutex_);
    tend_locked();
  }

 private:
  ForkServer() = default;

  static ServerHandle fork_server(UniqueFd& link, const struct sigaction& sigchld) {
    auto [program_end, server_end] = make_socket_pair(SOCK_SEQPACKET);
    const pid_t program = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw_system_error("offload: fork of the process pool's fork server");
    if (pid == 0) become_fork_server(ServerStart{program, server_end.get(), link.get(), sigchld});
    return ServerHandle{pid, std::move(program_end)};
  }

  /// Expects mutex_ held.
  void tend_locked() {
    std::vector<ServerHandle> born;
    for (std::size_t i = 0; i < members_.size();) {
      if (take_announcements(members_[i], born)) {
        ++i;
        continue;
      }
      reap(members_[i].pid);
      members_.erase(members_.begin() + static_cast<std::ptrdiff_t>(i));
    }
    for (ServerHandle& server : born) members_.push_back(std::move(server));
  }

  /// Reads what `server` announced without waiting; false once it has ended.
  static bool take_announcements(const ServerHandle& server, std::vector<ServerHandle>& born) {
    while (wait_for_fd(server.control.get(), POLLIN, Clock::now()) == WaitResult::ready) {
      std::optional<ServerHandle> announced;
      if (!receive_announcement(server, announced)) return false;
      if (announced) born.push_back(std::move(*announced));
    }
    return true;
  }

  /// Receives one message from `server`: false at its end; a new server's handle in `born`.
  static bool receive_announcement(const ServerHandle& server, std::optional<ServerHandle>& born) {
    ServerMessage message;
    UniqueFd attached;
    std::size_t got = 0;
    try {
      got = receive_packet(server.control.get(), &message, sizeof message, {&attached, 1});
    } catch (...) {  // a broken socket: the server is as good as gone
      got = 0;
    }
    if (got == 0) return false;
    if (message.kind == ServerMessageKind::buddy_born && attached) {
      born.emplace(ServerHandle{message.pid, std::move(attached)});
    }
    return true;
  }

  /// Waits for `ending[i]` (whose control socket is shut) to end, then reaps it; a server it
  /// announced meanwhile is shut and appended to `ending`.
  static void end_one(std::vector<ServerHandle>& ending, std::size_t i) {
    const pid_t pid = ending[i].pid;
    const int control = ending[i].control.get();
    const IoDeadline patience = Clock::now() + std::chrono::seconds(10);
    bool killed = false;
    for (;;) {
      if (wait_for_fd(control, POLLIN, killed ? no_deadline : patience) == WaitResult::timed_out) {
        ::kill(pid, SIGKILL);  // unreaped: the pid cannot be recycled
        killed = true;
        continue;
      }
      std::optional<ServerHandle> born;
      if (!receive_announcement(ending[i], born)) break;
      if (born) {
        ::shutdown(born->control.get(), SHUT_WR);
        ending.push_back(std::move(*born));  // `control` stays valid: it is a number
      }
    }
    reap(pid);
  }

  std::mutex mutex_;  // guards members_; one sender at a time on each control socket
  std::vector<ServerHandle> members_;
};

/**
 * One pool slot's conversation with a fork server. Not thread-safe (one keeper thread owns
 * it). Every member blocks until the server answers (10 s at most: a server that takes
 * longer is condemned as hung).
 */
class ServerSession {
 public:
  ServerSession(ForkServer& servers, OpenedSession session) noexcept
      : servers_(servers), socket_(std::move(session.socket)), server_(session.server) {}

  /// Starts a worker that will serve `worker_end` (its end of a channel) and share `mailbox`
  /// (Mailbox::create()) with its keeper; returns its pid.
  /// @throws ServerSessionLost; offload::Error when fork() failed (errno in the message).
  pid_t spawn(UniqueFd worker_end, const UniqueFd& mailbox, const WorkerSettings& settings) {
    const auto spin_us =
        std::chrono::duration_cast<std::chrono::microseconds>(settings.idle_spin).count();
    const ServerMessage request{
        ServerMessageKind::spawn,
        0,
        0,
        static_cast<std::uint32_t>(std::clamp<std::int64_t>(spin_us, 0, 1'000'000)),
        settings.max_payload,
        settings.max_memory};
    const int attached[2] = {worker_end.get(), mailbox.get()};
    if (!send_packet(socket_.get(), &request, sizeof request, attached)) throw ServerSessionLost();
    worker_end.reset();  // the worker's copy is the only one left that matters
    const ServerMessage reply = receive(Clock::now() + answer_time);
    if (reply.kind == ServerMessageKind::spawned) return reply.pid;
    if (reply.kind == ServerMessageKind::spawn_failed) {
      throw Error(std::string("offload: could not start a worker process: fork failed: ") +
                  std::strerror(reply.value));
    }
    throw ServerSessionLost();  // an out-of-order message: the conversation is broken
  }

  /// Asks the server to SIGKILL worker `pid` (a no-op if it is already gone).
  /// @throws ServerSessionLost.
  void kill(pid_t pid) {
    const ServerMessage request{ServerMessageKind::kill, pid, 0, 0, 0, 0};
    if (!send_packet(socket_.get(), &request, sizeof request)) throw ServerSessionLost();
  }

  /// Kills the server: it stopped answering (see answer_time). The session is lost.
  void condemn() { servers_.condemn(server_); }

  /// Waits until the server reports worker `pid` reaped; its wait status, or nothing if
  /// `deadline` passed first. @throws ServerSessionLost.
  std::optional<int> await_exit(pid_t pid, IoDeadline deadline) {
    for (;;) {
      if (wait_for_fd(socket_.get(), POLLIN, deadline) == WaitResult::timed_out) {
        return std::nullopt;
      }
      const ServerMessage message = receive(deadline);
      if (message.kind == ServerMessageKind::exited && message.pid == pid) return message.value;
    }
  }

 private:
  /// How long a server may take to answer before it counts as hung (stopped, say).
  static constexpr std::chrono::seconds answer_time{10};

  ServerMessage receive(IoDeadline deadline) {
    if (wait_for_fd(socket_.get(), POLLIN, deadline) == WaitResult::timed_out) {
      servers_.condemn(server_);
      throw ServerSessionLost();
    }
    ServerMessage message;
    if (receive_packet(socket_.get(), &message, sizeof message) != sizeof message) {
      throw ServerSessionLost();
    }
    return message;
  }

  ForkServer& servers_;
  UniqueFd socket_;
  pid_t server_;
};

// --- fork server registry ------------------------------------------------------------------------

struct ForkServerRegistry {
  std::mutex mutex;
  std::shared_ptr<ForkServer> kept;  // started by process_init(): lives until exit
  std::weak_ptr<ForkServer> shared;  // started by a pool: lives while a pool uses it
};

inline ForkServerRegistry& fork_server_registry() {
  static ForkServerRegistry registry;
  return registry;
}

/// The program's fork servers, if some are alive.
inline std::shared_ptr<ForkServer> running_fork_server() {
  ForkServerRegistry& registry = fork_server_registry();
  std::shared_ptr<ForkServer> servers;
  {
    std::lock_guard lock(registry.mutex);
    servers = registry.kept ? registry.kept : registry.shared.lock();
  }
  if (servers && !servers->alive()) servers.reset();
  return servers;
}

/// Throws unless the calling thread is the process's only thread (and its main thread, which
/// lives as long as the process: the fork server's death signal fires when its forking thread
/// exits).
inline void require_single_threaded(const char* who) {
  const unsigned threads = count_threads();
  if (threads == 1 && on_main_thread()) return;
  const std::string why = threads == 0   ? "its thread count cannot be read from /proc/self/stat"
                          : threads == 1 ? "this is not the main thread"
                                         : std::to_string(threads) + " threads are running";
  throw Error(std::string("offload: ") + who + " must start the process pool's fork server, but " +
              why +
              ". Forking a multi-threaded process is unsafe (a lock held by another thread "
              "stays locked forever in the child), so offload refuses. Call "
              "offload::process_init() first thing in main(), before any thread starts.");
}

/// The running fork servers, or new ones when none runs and forking is still safe (also when
/// both servers of a program that later became single-threaded again had died).
inline std::shared_ptr<ForkServer> acquire_fork_server(const char* who) {
  if (auto servers = running_fork_server()) return servers;
  // Only the sole thread of the process gets past this check, so nobody can race us to
  // start a second pair, and no lock needs to be held across fork().
  require_single_threaded(who);
  std::shared_ptr<ForkServer> servers = ForkServer::start();
  ForkServerRegistry& registry = fork_server_registry();
  std::lock_guard lock(registry.mutex);
  if (registry.kept) registry.kept = servers;  // process_init() asked for servers that stay
  registry.shared = servers;
  return servers;
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_FORK_SERVER_HPP

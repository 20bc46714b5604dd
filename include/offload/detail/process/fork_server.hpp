#ifndef OFFLOAD_DETAIL_PROCESS_FORK_SERVER_HPP
#define OFFLOAD_DETAIL_PROCESS_FORK_SERVER_HPP

/// @file detail/process/fork_server.hpp
/// The fork server: a small process, forked while the program was still single-threaded,
/// that forks every worker process on the pool's behalf.
///
/// Why: fork() copies only the calling thread. If another thread holds a lock at that moment
/// (malloc's, stdio's, any mutex of the program) the child inherits it locked, forever. A
/// process that never starts threads can fork safely at any time, so the pool asks this one.
///
/// Protocol (SOCK_SEQPACKET, one fixed-size ServerMessage per packet, descriptors travel as
/// SCM_RIGHTS attachments):
///   control socket (one per program):   open_session + [session socket]
///   session socket (one per pool slot): spawn + [worker's socket end, its mailbox memory]
///                                                                    ->  spawned / spawn_failed
///                                       kill(pid)
///                                       <-  exited(pid, wait status)   (every worker, once)
/// The server reaps every worker itself (they are its children) and reports each exit on the
/// session that spawned it: the program never calls waitpid() on a worker, never touches
/// SIGCHLD, and a kill can never hit a recycled pid (the server kills only unreaped children).
/// Closing a session kills its workers; closing the control socket (the program exited or
/// died) kills every worker and ends the server.
///
/// Deaths propagate downwards: the server and each worker set PR_SET_PDEATHSIG(SIGKILL) and
/// then re-check getppid(), because the parent may have died before the prctl() took effect.

#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <algorithm>

#include <cerrno>
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
#include "server_protocol.hpp"
#include "worker.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

// --- the server process ---------------------------------------------------------------------

/// State and loop of the fork server process. Lives only in that process.
class ForkServerProcess {
 public:
  ForkServerProcess(UniqueFd control, struct sigaction inherited_sigchld) noexcept
      : control_(std::move(control)), inherited_sigchld_(inherited_sigchld) {}

  [[noreturn]] void run() noexcept {
    try {
      for (;;) serve_once();
    } catch (...) {
      stop_everything();
      ::_exit(1);
    }
  }

 private:
  struct Session {
    UniqueFd socket;
  };
  struct Child {
    pid_t pid;
    UniqueFd pidfd;       // readable once the child has exited (absent on old kernels)
    std::size_t session;  // index into sessions_; meaningless once session_open is false
    bool session_open = true;
  };

  void serve_once() {
    std::vector<pollfd> polled;
    polled.push_back({control_.get(), POLLIN, 0});
    for (const Session& session : sessions_) polled.push_back({session.socket.get(), POLLIN, 0});
    bool every_child_has_pidfd = true;
    for (const Child& child : children_) {
      polled.push_back({child.pidfd.get(), POLLIN, 0});  // a negative fd is ignored by poll
      every_child_has_pidfd = every_child_has_pidfd && child.pidfd;
    }
    // Without pidfds (Linux < 5.3) fall back to checking the children every 20 ms.
    const int timeout = every_child_has_pidfd ? -1 : 20;
    if (::poll(polled.data(), polled.size(), timeout) < 0) {
      if (errno == EINTR) return;
      throw_system_error("poll");
    }
    // Only the sessions polled above: serve_control() may add one, which has no entry yet.
    const std::size_t polled_sessions = sessions_.size();
    if (polled[0].revents != 0) serve_control();
    for (std::size_t i = 0; i < polled_sessions; ++i) {
      if (polled[1 + i].revents != 0 && sessions_[i].socket) serve_session(i);
    }
    reap_exited_children();
  }

  void serve_control() {
    ServerMessage message;
    UniqueFd attached;
    if (receive_packet(control_.get(), &message, sizeof message, {&attached, 1}) == 0) {
      stop_everything();  // the program is gone
      ::_exit(0);
    }
    if (message.kind != ServerMessageKind::open_session || !attached) return;
    // Reuse a closed session's slot (its children, if any, already know it is closed).
    for (Session& session : sessions_) {
      if (!session.socket) {
        session.socket = std::move(attached);
        return;
      }
    }
    sessions_.push_back(Session{std::move(attached)});
  }

  void serve_session(std::size_t index) {
    ServerMessage message;
    UniqueFd attached[2];  // the worker's channel and its mailbox memory
    if (receive_packet(sessions_[index].socket.get(), &message, sizeof message, attached) == 0) {
      close_session(index);
      return;
    }
    if (message.kind == ServerMessageKind::spawn && attached[0] && attached[1]) {
      spawn(index, std::move(attached[0]), std::move(attached[1]),
            WorkerSettings{message.max_payload, std::chrono::microseconds(message.idle_spin_us)});
    } else if (message.kind == ServerMessageKind::kill) {
      for (const Child& child : children_) {
        if (child.pid == message.pid && child.session_open && child.session == index) {
          ::kill(child.pid, SIGKILL);  // an unreaped child of ours: the pid cannot be recycled
        }
      }
    }
  }

  void close_session(std::size_t index) {
    for (Child& child : children_) {
      if (child.session_open && child.session == index) {
        ::kill(child.pid, SIGKILL);
        child.session_open = false;
      }
    }
    sessions_[index].socket.reset();  // its slot stays (indices are stable) until reused
  }

  void spawn(std::size_t session, UniqueFd channel, UniqueFd mailbox,
             const WorkerSettings& settings) {
    const pid_t server = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) become_worker(server, channel.get(), mailbox.get(), settings);
    ServerMessage reply;
    if (pid < 0) {
      reply.kind = ServerMessageKind::spawn_failed;
      reply.value = errno;
    } else {
      reply.kind = ServerMessageKind::spawned;
      reply.pid = pid;
      children_.push_back(Child{pid, UniqueFd(open_pidfd(pid)), session});
    }
    send_packet(sessions_[session].socket.get(), &reply, sizeof reply);
    // `channel` closes here: the worker holds the only other copy, so its death means EOF.
  }

  [[noreturn]] void become_worker(pid_t server, int channel, int mailbox_memory,
                                  const WorkerSettings& settings) noexcept {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != server) ::_exit(0);  // the server died before prctl() took effect
    // Mapped first: the mapping outlives the descriptor, which the shuffle below may close.
    Mailbox mailbox;
    try {
      mailbox = Mailbox(mailbox_memory);
    } catch (...) {
      ::_exit(worker_protocol_exit_code);
    }
    ::sigaction(SIGCHLD, &inherited_sigchld_, nullptr);  // the program's own setting
    // Keep stdio and the channel (as fd 3); every other descriptor belongs to someone else,
    // and holding a copy of another worker's socket would hide that worker's death.
    for (int fd = 0; fd < 3; ++fd) {
      if (is_server_descriptor(fd)) replace_with_dev_null(fd);
    }
    if (channel != 3 && ::dup2(channel, 3) < 0) ::_exit(worker_protocol_exit_code);
    close_descriptors_from(4);
    ::prctl(PR_SET_NAME, "offload-worker");
    run_worker(3, mailbox, settings.max_payload, settings.idle_spin);
  }

  [[nodiscard]] bool is_server_descriptor(int fd) const noexcept {
    if (control_.get() == fd) return true;
    for (const Session& session : sessions_) {
      if (session.socket.get() == fd) return true;
    }
    for (const Child& child : children_) {
      if (child.pidfd.get() == fd) return true;
    }
    return false;
  }

  void reap_exited_children() {
    for (std::size_t i = 0; i < children_.size();) {
      int status = 0;
      const pid_t reaped = ::waitpid(children_[i].pid, &status, WNOHANG);
      if (reaped == 0 || (reaped < 0 && errno == EINTR)) {
        ++i;
        continue;
      }
      // Reaped (or, impossibly, not our child any more): report it once, then forget it.
      Child& child = children_[i];
      if (child.session_open && sessions_[child.session].socket) {
        ServerMessage message{ServerMessageKind::exited, child.pid, reaped > 0 ? status : 0, 0, 0};
        send_packet(sessions_[child.session].socket.get(), &message, sizeof message);
      }
      children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }

  /// Kills and reaps every worker: no process of ours outlives the server.
  void stop_everything() noexcept {
    for (const Child& child : children_) ::kill(child.pid, SIGKILL);
    for (const Child& child : children_) {
      while (::waitpid(child.pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    children_.clear();
  }

  static void replace_with_dev_null(int fd) noexcept {
    const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0 && null != fd) {
      ::dup2(null, fd);
      ::close(null);
    }
  }

  UniqueFd control_;
  struct sigaction inherited_sigchld_;
  std::vector<Session> sessions_;
  std::vector<Child> children_;
};

/// Runs in the child of the program's fork(): prepares the process, then serves forever.
[[noreturn]] inline void become_fork_server(pid_t program, UniqueFd control) noexcept {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != program) ::_exit(0);  // the program died before prctl() took effect
  // A process group of its own: a terminal's Ctrl-C goes to the program, which decides what
  // happens; the workers die with it (death signal, end of file), never half-way by accident.
  ::setpgid(0, 0);
  ::prctl(PR_SET_NAME, "offload-forksrv");
  // The server reaps its workers itself, whatever the program did with SIGCHLD (SIG_IGN
  // would make waitpid() fail). Workers get the program's setting back.
  struct sigaction inherited {};
  struct sigaction reap_default {};
  reap_default.sa_handler = SIG_DFL;
  ::sigaction(SIGCHLD, &reap_default, &inherited);
  // Keep stdio and the control socket; nothing else the program had open is ours to hold.
  int fd = control.release();
  if (fd < 3) {
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0) ::_exit(1);
    ::close(fd);
    fd = moved;
  }
  if (fd != 3) {
    if (::dup2(fd, 3) < 0) ::_exit(1);
    ::close(fd);
    fd = 3;
  }
  close_descriptors_from(4);
  for (int stdio = 0; stdio < 3; ++stdio) {
    if (::fcntl(stdio, F_GETFD) < 0) {  // closed by the program: keep the slot filled
      const int null = ::open("/dev/null", O_RDWR);
      if (null >= 0 && null != stdio) {
        ::dup2(null, stdio);
        ::close(null);
      }
    }
  }
  ForkServerProcess server(UniqueFd(fd), inherited);
  server.run();
}

// --- the program's side -----------------------------------------------------------------------

/**
 * The program's handle on a running fork server. Destroying it ends the server (which kills
 * any worker left) and reaps it.
 */
class ForkServer {
 public:
  /// Forks the server. Precondition: the calling thread is the only one in the process (the
  /// caller checks), and it lives as long as the server is needed: the server's death signal
  /// fires when the thread that forked it exits. Allocates; blocks for the fork.
  static std::shared_ptr<ForkServer> start() {
    auto [program_end, server_end] = make_socket_pair(SOCK_SEQPACKET);
    // Buffered output would otherwise be copied into the server and, through its workers,
    // written a second time.
    std::fflush(nullptr);
    const pid_t program = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) throw_system_error("offload: fork of the process pool's fork server");
    if (pid == 0) {
      program_end.reset();
      become_fork_server(program, std::move(server_end));
    }
    return std::shared_ptr<ForkServer>(new ForkServer(pid, std::move(program_end)));
  }

  ForkServer(const ForkServer&) = delete;
  ForkServer& operator=(const ForkServer&) = delete;

  /// Ends the server and reaps it (the server first kills and reaps any worker left).
  /// Blocks until the server has exited.
  ~ForkServer() {
    control_.reset();
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }

  /// A new session socket: workers spawned through it are reported on it and killed when it
  /// closes. Thread-safe; blocks briefly; allocates nothing beyond the socket pair.
  /// @throws ForkServerLost when the server is gone.
  UniqueFd open_session() {
    auto [pool_end, server_end] = make_socket_pair(SOCK_SEQPACKET);
    const ServerMessage message{ServerMessageKind::open_session, 0, 0, 0, 0};
    std::lock_guard lock(mutex_);
    const int attached = server_end.get();
    if (!send_packet(control_.get(), &message, sizeof message, {&attached, 1})) {
      throw ForkServerLost();
    }
    return std::move(pool_end);
  }

  /// The server's process id. Thread-safe.
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  ForkServer(pid_t pid, UniqueFd control) noexcept : pid_(pid), control_(std::move(control)) {}

  const pid_t pid_;
  std::mutex mutex_;  // one sender at a time on the control socket
  UniqueFd control_;
};

/**
 * One pool slot's conversation with the fork server. Not thread-safe (one keeper thread owns
 * it). Every member blocks until the server answers.
 */
class ServerSession {
 public:
  explicit ServerSession(UniqueFd socket) noexcept : socket_(std::move(socket)) {}

  /// Starts a worker that will serve `worker_end` (its end of a channel) and share `mailbox`
  /// (Mailbox::create()) with its keeper; returns its pid.
  /// @throws ForkServerLost; offload::Error when fork() failed (errno in the message).
  pid_t spawn(UniqueFd worker_end, const UniqueFd& mailbox, const WorkerSettings& settings) {
    const auto spin_us =
        std::chrono::duration_cast<std::chrono::microseconds>(settings.idle_spin).count();
    ServerMessage request{
        ServerMessageKind::spawn, 0, 0,
        static_cast<std::uint32_t>(std::clamp<std::int64_t>(spin_us, 0, 1'000'000)),
        settings.max_payload};
    const int attached[2] = {worker_end.get(), mailbox.get()};
    if (!send_packet(socket_.get(), &request, sizeof request, attached)) throw ForkServerLost();
    worker_end.reset();  // the worker's copy is the only one left that matters
    const ServerMessage reply = receive(no_deadline);
    if (reply.kind == ServerMessageKind::spawned) return reply.pid;
    if (reply.kind == ServerMessageKind::spawn_failed) {
      throw Error(std::string("offload: could not start a worker process: fork failed: ") +
                  std::strerror(reply.value));
    }
    throw ForkServerLost();  // an out-of-order message: the conversation is broken
  }

  /// Asks the server to SIGKILL worker `pid` (a no-op if it is already gone).
  void kill(pid_t pid) {
    const ServerMessage request{ServerMessageKind::kill, pid, 0, 0, 0};
    if (!send_packet(socket_.get(), &request, sizeof request)) throw ForkServerLost();
  }

  /// Waits until the server reports worker `pid` reaped; its wait status, or nothing if
  /// `deadline` passed first. @throws ForkServerLost.
  std::optional<int> await_exit(pid_t pid, IoDeadline deadline) {
    for (;;) {
      if (wait_for_fd(socket_.get(), POLLIN, deadline) == WaitResult::timed_out)
        return std::nullopt;
      const ServerMessage message = receive(deadline);
      if (message.kind == ServerMessageKind::exited && message.pid == pid) return message.value;
    }
  }

 private:
  ServerMessage receive(IoDeadline deadline) {
    (void)wait_for_fd(socket_.get(), POLLIN, deadline);
    ServerMessage message;
    if (receive_packet(socket_.get(), &message, sizeof message) != sizeof message) {
      throw ForkServerLost();
    }
    return message;
  }

  UniqueFd socket_;
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

inline std::shared_ptr<ForkServer> running_fork_server() {
  ForkServerRegistry& registry = fork_server_registry();
  std::lock_guard lock(registry.mutex);
  if (registry.kept) return registry.kept;
  return registry.shared.lock();
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

/// The running fork server, or a new one when none runs and forking is still safe.
inline std::shared_ptr<ForkServer> acquire_fork_server(const char* who) {
  if (auto server = running_fork_server()) return server;
  // Only the sole thread of the process gets past this check, so nobody can race us to
  // start a second server, and no lock needs to be held across fork().
  require_single_threaded(who);
  std::shared_ptr<ForkServer> server = ForkServer::start();
  ForkServerRegistry& registry = fork_server_registry();
  std::lock_guard lock(registry.mutex);
  registry.shared = server;
  return server;
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_FORK_SERVER_HPP

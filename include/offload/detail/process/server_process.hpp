#ifndef OFFLOAD_DETAIL_PROCESS_SERVER_PROCESS_HPP
#define OFFLOAD_DETAIL_PROCESS_SERVER_PROCESS_HPP

/// @file detail/process/server_process.hpp
/// What runs inside a fork server process: it forks workers on the pool's behalf, reaps them
/// and reports their exits, and replaces its buddy (the other server) when the buddy dies.
/// Lives only in that process; the program's side is fork_server.hpp.
///
/// A server is single-threaded for its whole life, which is what makes its fork() safe.
///
/// Why a buddy, and why it is the *program's* child: the program cannot fork again once it
/// runs threads, so a dead server can only be replaced by another process that can fork, the
/// other server. Each server keeps a link to its buddy; the survivor of a death sees the
/// link end and at once starts a new buddy with clone(CLONE_PARENT), so that the newcomer,
/// like the first two, is a child of the program: the program reaps it, and it dies with the
/// program (PR_SET_PDEATHSIG). Forked as the survivor's child instead, it would be orphaned to
/// init when the survivor dies, and in a container whose init does not reap, stay a zombie.

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

#include "mailbox.hpp"
#include "posix_io.hpp"
#include "server_protocol.hpp"
#include "worker.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// What a new server process starts from.
struct ServerStart {
  pid_t program;             // the program's pid: the parent a server must have
  int control;               // its control socket to the program (becomes descriptor 3)
  int buddy;                 // its link to the other server (becomes descriptor 4)
  struct sigaction sigchld;  // the program's SIGCHLD disposition, for the workers
};

void prepare_server_process(const ServerStart& start) noexcept;

/// fork(), except that the child is a child of our parent (CLONE_PARENT), not of us. A raw
/// clone does not run pthread_atfork handlers, which a single-threaded server does not need.
inline pid_t fork_sibling() noexcept {
  return static_cast<pid_t>(
      ::syscall(SYS_clone, static_cast<long>(CLONE_PARENT | SIGCHLD), 0L, 0L, 0L, 0L));
}

/// Caps the calling process's address space at what it has mapped now plus `extra` bytes. The
/// base is what the worker inherited (the program image, and under a sanitizer terabytes of
/// reserved shadow), which the user cannot budget for; the limit bounds what calls add.
inline void limit_added_address_space(std::uint64_t extra) noexcept {
  FILE* statm = std::fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (statm != nullptr) {
    if (std::fscanf(statm, "%lu", &pages) != 1) pages = 0;
    std::fclose(statm);
  }
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const rlim_t limit = static_cast<rlim_t>(pages * page + extra);
  const rlimit cap{limit, limit};
  ::setrlimit(RLIMIT_AS, &cap);
}

/// State and loop of a fork server process. Lives only in that process.
class ForkServerProcess {
 public:
  ForkServerProcess(const ServerStart& start, UniqueFd control, UniqueFd buddy) noexcept
      : start_(start), control_(std::move(control)), buddy_(std::move(buddy)) {}

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
    polled.push_back({buddy_.get(), POLLIN, 0});  // a negative fd (no buddy) is ignored by poll
    for (const Session& session : sessions_) polled.push_back({session.socket.get(), POLLIN, 0});
    bool every_child_has_pidfd = true;
    for (const Child& child : children_) {
      polled.push_back({child.pidfd.get(), POLLIN, 0});
      every_child_has_pidfd = every_child_has_pidfd && child.pidfd;
    }
    if (::poll(polled.data(), polled.size(), poll_timeout_ms(every_child_has_pidfd)) < 0) {
      if (errno == EINTR) return;
      throw_system_error("poll");
    }
    // Only the sessions polled above: serve_control() may add one, which has no entry yet.
    const std::size_t polled_sessions = sessions_.size();
    if (polled[0].revents != 0) serve_control();
    if (polled[1].revents != 0) serve_buddy();
    if (!buddy_ && !buddy_retiring_ && replace_buddy()) return;  // we are the newcomer
    for (std::size_t i = 0; i < polled_sessions; ++i) {
      if (polled[2 + i].revents != 0 && sessions_[i].socket) serve_session(i);
    }
    reap_exited_children();
  }

  /// -1 (wait for an event) unless something must be retried: checking the children every
  /// 20 ms without pidfds (Linux < 5.3), or a buddy that could not be started, every 100 ms.
  [[nodiscard]] int poll_timeout_ms(bool every_child_has_pidfd) const noexcept {
    if (!every_child_has_pidfd) return 20;
    if (!buddy_ && !buddy_retiring_) return 100;
    return -1;
  }

  void serve_control() {
    ServerMessage message;
    UniqueFd attached;
    if (receive_packet(control_.get(), &message, sizeof message, {&attached, 1}) == 0) {
      retire();  // the program is gone, or ends us
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

  /// Ends this server on the program's word: the buddy must not replace us, and no worker of
  /// ours may outlive us.
  [[noreturn]] void retire() noexcept {
    if (buddy_) {
      const ServerMessage message{ServerMessageKind::retiring, 0, 0, 0, 0, 0};
      try {
        (void)send_packet(buddy_.get(), &message, sizeof message);
      } catch (...) {  // the buddy is gone too: nobody to tell
      }
    }
    stop_everything();
    ::_exit(0);
  }

  void serve_buddy() {
    ServerMessage message;
    if (receive_packet(buddy_.get(), &message, sizeof message) != 0) {
      if (message.kind == ServerMessageKind::retiring) buddy_retiring_ = true;
      return;
    }
    buddy_.reset();  // the other server died; serve_once() replaces it unless it retired
  }

  /// Starts a new buddy (see the file comment) and hands the program its control socket. If
  /// the clone fails (no memory, too many processes), we go on alone and try again later.
  /// Returns true in the newcomer, which then starts its loop over.
  bool replace_buddy() {
    auto [link_ours, link_theirs] = make_socket_pair(SOCK_SEQPACKET);
    auto [program_end, server_end] = make_socket_pair(SOCK_SEQPACKET);
    const pid_t pid = fork_sibling();
    if (pid < 0) return false;
    if (pid == 0) {
      // The newcomer goes on in this very loop with a fresh state, rather than starting a
      // new one from here: a server born of a server born of ... never grows its stack.
      prepare_server_process(
          ServerStart{start_.program, server_end.get(), link_theirs.get(), start_.sigchld});
      for (UniqueFd* closed : {&link_ours, &link_theirs, &program_end, &server_end}) {
        (void)closed->release();  // closed, or now numbered 3 or 4 (see install_descriptors)
      }
      start_afresh();
      return true;
    }
    buddy_ = std::move(link_ours);
    const ServerMessage born{ServerMessageKind::buddy_born, pid, 0, 0, 0, 0};
    const int attached = program_end.get();
    // If the program is gone, the newcomer sees its control socket end and exits by itself.
    (void)send_packet(control_.get(), &born, sizeof born, {&attached, 1});
    return false;
  }

  /// In a newcomer, after prepare_server_process(): forgets every session, child and socket
  /// of the server it was cloned from (their descriptors are closed already) and takes its
  /// own control socket (3) and buddy link (4).
  void start_afresh() noexcept {
    for (Session& session : sessions_) (void)session.socket.release();
    for (Child& child : children_) (void)child.pidfd.release();
    sessions_.clear();
    children_.clear();
    (void)control_.release();
    (void)buddy_.release();
    control_ = UniqueFd(3);
    buddy_ = UniqueFd(4);
    buddy_retiring_ = false;
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
            WorkerSettings{message.max_payload, std::chrono::microseconds(message.idle_spin_us),
                           message.max_memory});
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
    // Named first, so that even a worker that dies at once (its server killed meanwhile) is
    // recognisably one, wherever it is re-parented.
    ::prctl(PR_SET_NAME, "offload-worker");
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != server) ::_exit(0);  // the server died before prctl() took effect
    // Mapped first: the mapping outlives the descriptor, which the shuffle below may close.
    Mailbox mailbox;
    try {
      mailbox = Mailbox(mailbox_memory);
    } catch (...) {
      ::_exit(worker_protocol_exit_code);
    }
    ::sigaction(SIGCHLD, &start_.sigchld, nullptr);  // the program's own setting
    // Keep stdio and the channel (as fd 3); every other descriptor belongs to someone else,
    // and holding a copy of another worker's socket would hide that worker's death.
    for (int fd = 0; fd < 3; ++fd) {
      if (is_server_descriptor(fd)) replace_with_dev_null(fd);
    }
    if (channel != 3 && ::dup2(channel, 3) < 0) ::_exit(worker_protocol_exit_code);
    close_descriptors_from(4);
    if (settings.max_memory != 0) limit_added_address_space(settings.max_memory);
    run_worker(3, mailbox, settings.max_payload, settings.idle_spin);
  }

  [[nodiscard]] bool is_server_descriptor(int fd) const noexcept {
    if (control_.get() == fd || buddy_.get() == fd) return true;
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
        const ServerMessage message{
            ServerMessageKind::exited, child.pid, reaped > 0 ? status : 0, 0, 0, 0};
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

  ServerStart start_;
  UniqueFd control_;
  UniqueFd buddy_;               // the link to the other server; empty while there is none
  bool buddy_retiring_ = false;  // the buddy said the program ends it: do not replace it
  std::vector<Session> sessions_;
  std::vector<Child> children_;
};

/// Puts `first` at descriptor 3 and `second` at 4, whatever numbers they have now (even each
/// other's targets): both are first copied above 4, then into place. For a fresh child.
inline bool install_descriptors(int first, int second) noexcept {
  const int first_copy = ::fcntl(first, F_DUPFD, 5);
  const int second_copy = ::fcntl(second, F_DUPFD, 5);
  if (first_copy < 0 || second_copy < 0) return false;
  return ::dup2(first_copy, 3) == 3 && ::dup2(second_copy, 4) == 4;
}

/// Prepares a new server process, forked by the program or cloned by the other server: its
/// death signal, process group, SIGCHLD, and descriptors (stdio, control at 3, buddy at 4).
inline void prepare_server_process(const ServerStart& start) noexcept {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != start.program) ::_exit(0);  // the program died before prctl() took effect
  // A process group of its own: a terminal's Ctrl-C goes to the program, which decides what
  // happens; the workers die with it (death signal, end of file), never half-way by accident.
  ::setpgid(0, 0);
  ::prctl(PR_SET_NAME, "offload-forksrv");
  // The server reaps its workers itself, whatever the program did with SIGCHLD (SIG_IGN
  // would make waitpid() fail). Workers get the program's setting back.
  struct sigaction reap_default {};
  reap_default.sa_handler = SIG_DFL;
  ::sigaction(SIGCHLD, &reap_default, nullptr);
  // Keep stdio, the control socket and the buddy link; nothing else is ours to hold.
  if (!install_descriptors(start.control, start.buddy)) ::_exit(1);
  close_descriptors_from(5);
  for (int stdio = 0; stdio < 3; ++stdio) {
    if (::fcntl(stdio, F_GETFD) < 0) {  // closed by the program: keep the slot filled
      const int null = ::open("/dev/null", O_RDWR);
      if (null >= 0 && null != stdio) {
        ::dup2(null, stdio);
        ::close(null);
      }
    }
  }
}

/// Runs in the child of the program's fork(): prepares the process, then serves until the
/// program ends it.
[[noreturn]] inline void become_fork_server(const ServerStart& start) noexcept {
  prepare_server_process(start);
  ForkServerProcess server(start, UniqueFd(3), UniqueFd(4));
  server.run();
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_SERVER_PROCESS_HPP

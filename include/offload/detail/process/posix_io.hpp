#ifndef OFFLOAD_DETAIL_PROCESS_POSIX_IO_HPP
#define OFFLOAD_DETAIL_PROCESS_POSIX_IO_HPP

/// @file detail/process/posix_io.hpp
/// Small POSIX/Linux building blocks for the process pool: an owning descriptor, socket I/O
/// with deadlines, descriptor passing, thread counting, and readable exit statuses.
///
/// Every send uses MSG_NOSIGNAL: a dead peer must show up as EPIPE, never as a SIGPIPE that
/// the program's own handler (or the default action, death) would see.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "../../errors.hpp"
#include "../timespec.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// An owned file descriptor, closed on destruction. Not thread-safe; never allocates.
class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    // close() is not retried on EINTR: on Linux the descriptor is gone either way.
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

[[noreturn]] inline void throw_system_error(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

/// A connected pair of close-on-exec AF_UNIX sockets of `type` (SOCK_STREAM, SOCK_SEQPACKET).
inline std::pair<UniqueFd, UniqueFd> make_socket_pair(int type) {
  int fds[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) != 0) throw_system_error("socketpair");
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

inline void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) throw_system_error("fcntl");
}

using Clock = std::chrono::steady_clock;
/// A point on the monotonic clock; IoDeadline::max() (no_deadline) means "wait forever".
using IoDeadline = Clock::time_point;
inline constexpr IoDeadline no_deadline = IoDeadline::max();

/// Milliseconds until `deadline` for poll(): -1 for none, rounded up so we never wake early.
inline int poll_timeout(IoDeadline deadline) noexcept {
  if (deadline == no_deadline) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(left);
}

enum class WaitResult { ready, timed_out };

/// Waits until `fd` has any of `events` (or an error/hang-up) or `deadline` passes.
/// Blocks; never allocates.
inline WaitResult wait_for_fd(int fd, short events, IoDeadline deadline) {
  for (;;) {
    pollfd entry{fd, events, 0};
    const int rc = ::poll(&entry, 1, poll_timeout(deadline));
    if (rc > 0) return WaitResult::ready;
    if (rc == 0) {
      if (Clock::now() >= deadline) return WaitResult::timed_out;
      continue;  // woke early (rounding): wait the rest
    }
    if (errno != EINTR) throw_system_error("poll");
  }
}

enum class IoResult { ok, closed, timed_out };

/// Sends all of `bytes` on a (possibly non-blocking) stream socket, waiting for room up to
/// `deadline`. `closed` when the peer is gone. Blocks; never allocates.
inline IoResult send_all(int fd, std::span<const std::byte> bytes,
                         IoDeadline deadline = no_deadline) {
  while (!bytes.empty()) {
    const ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent >= 0) {
      bytes = bytes.subspan(static_cast<std::size_t>(sent));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (wait_for_fd(fd, POLLOUT, deadline) == WaitResult::timed_out) return IoResult::timed_out;
      continue;
    }
    if (errno == EPIPE || errno == ECONNRESET) return IoResult::closed;
    throw_system_error("send");
  }
  return IoResult::ok;
}

/// One send that does not block (MSG_DONTWAIT), retrying EINTR: the bytes sent, or -1 with
/// errno set (EAGAIN: no room now; EPIPE/ECONNRESET: the peer is gone).
inline ssize_t send_some(int fd, std::span<const std::byte> bytes) noexcept {
  ssize_t sent = -1;
  do {
    sent = ::send(fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  return sent;
}

/// One receive into `buffer`; 0 bytes means the peer closed (or reset) the connection.
/// Retries EINTR; returns -1 (errno EAGAIN) when nothing is there and the socket is
/// non-blocking or `flags` has MSG_DONTWAIT.
inline ssize_t receive_some(int fd, std::span<std::byte> buffer, int flags = 0) {
  for (;;) {
    const ssize_t got = ::recv(fd, buffer.data(), buffer.size(), flags);
    if (got >= 0) return got;
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) return 0;  // the peer died with our data unread: same as EOF
    if (errno == EAGAIN || errno == EWOULDBLOCK) return -1;
    throw_system_error("recv");
  }
}

/// The most descriptors one packet carries (a worker's channel and its mailbox).
inline constexpr std::size_t max_attached_fds = 2;

/// Sends one datagram/packet with up to max_attached_fds descriptors attached (SCM_RIGHTS).
/// Returns false when the peer is gone. Blocks; never allocates.
inline bool send_packet(int fd, const void* data, std::size_t size,
                        std::span<const int> attached = {}) {
  iovec io{const_cast<void*>(data), size};
  msghdr message{};
  message.msg_iov = &io;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_attached_fds)] = {};
  if (!attached.empty()) {
    if (attached.size() > max_attached_fds) throw std::invalid_argument("send_packet: too many fds");
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * attached.size());
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * attached.size());
    std::memcpy(CMSG_DATA(header), attached.data(), sizeof(int) * attached.size());
  }
  for (;;) {
    const ssize_t sent = ::sendmsg(fd, &message, MSG_NOSIGNAL);
    if (sent >= 0) return static_cast<std::size_t>(sent) == size;
    if (errno == EINTR) continue;
    if (errno == EPIPE || errno == ECONNRESET) return false;
    throw_system_error("sendmsg");
  }
}

/// Receives one packet of at most `size` bytes into `data`, and the descriptors attached to it
/// into `attached`, in order (close-on-exec; any beyond attached.size() are closed). Returns
/// the packet size, 0 when the peer is gone (packets are never empty in our protocols).
/// Blocks; never allocates.
inline std::size_t receive_packet(int fd, void* data, std::size_t size,
                                  std::span<UniqueFd> attached = {}) {
  iovec io{data, size};
  msghdr message{};
  message.msg_iov = &io;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_attached_fds)] = {};
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  for (;;) {
    const ssize_t got = ::recvmsg(fd, &message, MSG_CMSG_CLOEXEC);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && errno == ECONNRESET) return 0;
    if (got < 0) throw_system_error("recvmsg");
    std::size_t taken = 0;
    for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
         header = CMSG_NXTHDR(&message, header)) {
      if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int received = -1;
        std::memcpy(&received, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
        if (taken < attached.size()) {
          attached[taken++].reset(received);
        } else {
          ::close(received);  // nobody asked for it: do not leak it
        }
      }
    }
    return static_cast<std::size_t>(got);
  }
}

/// A non-blocking, close-on-exec eventfd: a doorbell another thread can ring.
inline UniqueFd make_doorbell() {
  const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) throw_system_error("eventfd");
  return UniqueFd(fd);
}

/// Rings a doorbell made by make_doorbell(). Thread-safe; never blocks.
inline void ring(int doorbell) noexcept {
  const std::uint64_t one = 1;
  // Can only fail if the counter would overflow, and then it is already ringing.
  [[maybe_unused]] const ssize_t written = ::write(doorbell, &one, sizeof one);
}

/// Clears a doorbell (or a timerfd's expiry count) after poll() reported it readable.
inline void drain(int fd) noexcept {
  std::uint64_t count = 0;
  [[maybe_unused]] const ssize_t got = ::read(fd, &count, sizeof count);
}

/// A non-blocking, close-on-exec timer on the monotonic clock, readable once it expires.
inline UniqueFd make_timer() {
  const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd < 0) throw_system_error("timerfd_create");
  return UniqueFd(fd);
}

/// Arms `timer` to expire once, `after` from now (replacing any earlier setting).
/// Thread-safe; never blocks.
inline void arm_timer(int timer, std::chrono::nanoseconds after) noexcept {
  set_timerfd(timer, after, 0);  // cannot fail for a valid timerfd and a span >= 1 ns
}

/// Number of threads in this process, from /proc/self/stat (field 20); 0 if unreadable.
/// Allocates (reads a file).
inline unsigned count_threads() {
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (!std::getline(stat, line)) return 0;
  // The command name (field 2) may contain spaces and parentheses: skip past its last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::size_t position = close + 2;  // now at field 3 (state)
  for (int field = 3; field < 20; ++field) {
    position = line.find(' ', position);
    if (position == std::string::npos) return 0;
    ++position;
  }
  return static_cast<unsigned>(std::strtoul(line.c_str() + position, nullptr, 10));
}

/// The thread that called this is the process's main thread.
inline bool on_main_thread() noexcept {
  return static_cast<pid_t>(::syscall(SYS_gettid)) == ::getpid();
}

/// A descriptor that becomes readable when process `pid` exits (Linux 5.3+), or -1.
/// Raw syscall: glibc's <sys/pidfd.h> is not usable from C++ in every version.
inline int open_pidfd(pid_t pid) noexcept {
#if defined(SYS_pidfd_open)
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

/// Closes every descriptor >= `lowest`. For a freshly forked, single-threaded child.
inline void close_descriptors_from(int lowest) noexcept {
#if defined(SYS_close_range)
  if (::syscall(SYS_close_range, static_cast<unsigned>(lowest), ~0U, 0U) == 0) return;
#endif
  const long limit = ::sysconf(_SC_OPEN_MAX);
  for (long fd = lowest; fd < (limit > 0 ? limit : 65536); ++fd) ::close(static_cast<int>(fd));
}

/// "SIGSEGV" for SIGSEGV, and so on; "signal N" for the rest.
inline std::string signal_name(int signal_number) {
  struct Named {
    int number;
    const char* name;
  };
  static constexpr Named names[] = {
      {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"},     {SIGILL, "SIGILL"},
      {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},       {SIGFPE, "SIGFPE"},
      {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"},     {SIGUSR2, "SIGUSR2"},
      {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"},     {SIGCHLD, "SIGCHLD"},
      {SIGCONT, "SIGCONT"}, {SIGSTOP, "SIGSTOP"}, {SIGTSTP, "SIGTSTP"},     {SIGTTIN, "SIGTTIN"},
      {SIGTTOU, "SIGTTOU"}, {SIGURG, "SIGURG"},   {SIGXCPU, "SIGXCPU"},     {SIGXFSZ, "SIGXFSZ"},
      {SIGPROF, "SIGPROF"}, {SIGSYS, "SIGSYS"},   {SIGVTALRM, "SIGVTALRM"}, {SIGWINCH, "SIGWINCH"},
  };
  for (const Named& named : names) {
    if (named.number == signal_number) return named.name;
  }
  return "signal " + std::to_string(signal_number);
}

/// "was killed by signal SIGSEGV" or "exited with code 3".
inline std::string describe_exit(int wait_status) {
  if (WIFSIGNALED(wait_status)) return "was killed by signal " + signal_name(WTERMSIG(wait_status));
  if (WIFEXITED(wait_status)) return "exited with code " + std::to_string(WEXITSTATUS(wait_status));
  return "stopped with wait status " + std::to_string(wait_status);
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_POSIX_IO_HPP

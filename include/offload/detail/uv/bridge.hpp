#ifndef OFFLOAD_DETAIL_UV_BRIDGE_HPP
#define OFFLOAD_DETAIL_UV_BRIDGE_HPP

/// @file detail/uv/bridge.hpp
/// How continuations reach a libuv loop safely (uv.hpp).
///
/// While continuations are pending on a loop, it has a Bridge: a queue, and a uv_pipe_t over
/// one end of a socket pair whose other end is ours. A completing thread queues its function
/// and writes a byte to our end; the pipe's read callback, on the loop's thread, runs what is
/// queued. The pipe is a referenced handle, so uv_run() does not return while the bridge is
/// open; when nothing is pending any more, the loop's thread closes it, and uv_run() can
/// return (and uv_loop_close() succeed) with nothing of offload's left on the loop.
///
/// Why not uv_async_t: uv_async_send() touches the loop (its memory, its descriptor), so a
/// completion that arrives after the program closed and freed the loop would use freed memory.
/// Here a completing thread touches only the bridge and our own descriptor; when the program
/// closes the loop first (uv_walk() closing every handle, ours included), libuv closes the
/// pipe's descriptor, and a later write to our end fails with EPIPE.
///
/// And to learn of that close at once: libuv calls the callback of a write in progress on a
/// handle being closed with UV_ECANCELED (a documented guarantee of uv_close()). So the bridge
/// keeps one write in progress: it fills the pipe's direction towards us, which we never read,
/// and asks libuv to write one byte more. That callback, on the loop's thread, fails everything
/// queued with PoolClosed and closes the bridge to new work.

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "../unique_function.hpp"

namespace offload {
inline namespace v0 {
namespace detail {
namespace uv_bridge {

class Bridge;

/// The bridges of the loops that have continuations pending, and those whose handle the
/// program closed (libuv may touch their memory until its close callback, which is the
/// program's: they are kept until exit).
struct Registry {
  std::mutex mutex;
  std::map<uv_loop_t*, std::weak_ptr<Bridge>> open;
  std::vector<std::shared_ptr<Bridge>> closed_by_program;

  static Registry& get() {
    static Registry registry;
    return registry;
  }
};

class Bridge : public std::enable_shared_from_this<Bridge> {
 public:
  /// A new bridge on `loop`, holding one keep-alive. On the loop's thread, or while no thread
  /// runs the loop (libuv's rule for every handle).
  /// @throws offload::Error when a socket pair or the pipe cannot be made.
  static std::shared_ptr<Bridge> open(uv_loop_t* loop) {
    std::shared_ptr<Bridge> bridge(new Bridge(loop));
    bridge->start();
    return bridge;
  }

  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;
  ~Bridge() {
    if (ours_ >= 0) ::close(ours_);
  }

  /// One more continuation on its way; false if the bridge no longer takes any.
  bool enlist() {
    std::lock_guard lock(mutex_);
    if (closed_) return false;
    ++pending_;
    return true;
  }

  /// A continuation that will not post after all.
  void delist() {
    {
      std::lock_guard lock(mutex_);
      --pending_;
    }
    wake();  // the loop's thread closes the bridge once nothing is pending
  }

  /// Queues `f` to run on the loop's thread (a keep-alive's one post); on a closed bridge it
  /// is destroyed instead, unrun, once the lock is released.
  void post(UniqueFunction<void()> f) {
    {
      std::lock_guard lock(mutex_);
      --pending_;
      if (closed_) return;
      queue_.push_back(std::move(f));
    }
    wake();
  }

 private:
  explicit Bridge(uv_loop_t* loop) noexcept : loop_(loop) {}

  void start() {
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, ends) != 0) {
      throw Error(std::string("offload: a libuv bridge needs a socket pair: ") +
                  std::strerror(errno));
    }
    ours_ = ends[0];
    fill_towards_us(ends[1]);
    int status = uv_pipe_init(loop_, &pipe_, 0);
    if (status != 0) {
      ::close(ends[1]);
      throw Error(std::string("offload: a libuv bridge could not make its pipe: ") +
                  uv_strerror(status));
    }
    // From here libuv holds our memory until the close callback, even if the open fails.
    pipe_.data = this;
    self_ = shared_from_this();
    status = uv_pipe_open(&pipe_, ends[1]);
    if (status != 0) {
      ::close(ends[1]);
      close_handle();
      throw Error(std::string("offload: a libuv bridge could not open its pipe: ") +
                  uv_strerror(status));
    }
    pending_ = 1;  // the pipe owns ends[1] now
    if (uv_read_start(reinterpret_cast<uv_stream_t*>(&pipe_), &Bridge::on_alloc,
                      &Bridge::on_read) != 0 ||
        !start_watch_write()) {
      close_handle();
      throw Error("offload: a libuv bridge could not start reading its pipe");
    }
  }

  /// Fills the socket's direction towards our end (which we never read), so that the write
  /// start_watch_write() asks for stays in progress.
  static void fill_towards_us(int loop_end) noexcept {
    const int smallest = 1;  // the kernel rounds it up to its minimum: a few KiB to fill
    (void)::setsockopt(loop_end, SOL_SOCKET, SO_SNDBUF, &smallest, sizeof smallest);
    char block[1024] = {};
    while (::send(loop_end, block, sizeof block, MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
    }
  }

  bool start_watch_write() noexcept {
    uv_buf_t one = uv_buf_init(&write_byte_, 1);
    return uv_write(&watch_, reinterpret_cast<uv_stream_t*>(&pipe_), &one, 1,
                    &Bridge::on_watch_write) == 0;
  }

  /// Writes a byte to our end, so that the loop's thread reads it and runs what is queued.
  /// A full socket means the loop has bytes to read already; EPIPE, that the program closed
  /// the pipe (then the write callback fails what is queued, on the loop's thread).
  void wake() noexcept {
    const char byte = 1;
    (void)::send(ours_, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
  }

  static void on_alloc(uv_handle_t* handle, std::size_t, uv_buf_t* buffer) noexcept {
    auto* bridge = static_cast<Bridge*>(handle->data);
    *buffer = uv_buf_init(bridge->read_buffer_, sizeof bridge->read_buffer_);
  }

  static void on_read(uv_stream_t* stream, ssize_t, const uv_buf_t*) noexcept {
    static_cast<Bridge*>(stream->data)->run_queued();
  }

  /// On the loop's thread: runs what is queued, in order; then closes the bridge if nothing
  /// is pending. Only offload's own functions are queued (a continuation, a coroutine's
  /// resumption), and none of them throws: an exception could not cross libuv's C frames.
  void run_queued() noexcept {
    std::vector<UniqueFunction<void()>> batch;
    {
      std::lock_guard lock(mutex_);
      batch.swap(queue_);
    }
    for (UniqueFunction<void()>& f : batch) {
      UniqueFunction<void()> running = std::move(f);
      running();  // PostedContinuation and ResumeCoroutine never throw
    }
    bool idle = false;
    {
      std::lock_guard lock(mutex_);
      idle = pending_ == 0 && queue_.empty() && !closed_;
      if (idle) closed_ = true;
    }
    if (idle) {
      forget();
      close_handle();
    }
  }

  /// The write kept in progress ended: UV_ECANCELED when the pipe is being closed, by us or,
  /// if we did not ask, by the program closing the loop's handles.
  static void on_watch_write(uv_write_t* request, int status) noexcept {
    auto* bridge = static_cast<Bridge*>(request->handle->data);
    if (bridge->closing_) return;
    if (status == UV_ECANCELED) {
      bridge->closed_by_program();
    } else if (status == 0) {  // cannot happen (nobody reads our end); keep watching anyway
      (void)bridge->start_watch_write();
    }
  }

  /// The program closed the pipe (closing the loop): what is queued fails with PoolClosed;
  /// what is still to come is dropped. libuv calls the program's close callback, not ours,
  /// so the bridge is kept until exit rather than freed while libuv may still touch it.
  void closed_by_program() noexcept {
    std::vector<UniqueFunction<void()>> dropped;
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
      dropped.swap(queue_);
    }
    forget();
    Registry& registry = Registry::get();
    std::lock_guard lock(registry.mutex);
    registry.closed_by_program.push_back(std::move(self_));
  }

  void close_handle() noexcept {
    closing_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&pipe_), &Bridge::on_close);
  }

  static void on_close(uv_handle_t* handle) noexcept {
    auto* bridge = static_cast<Bridge*>(handle->data);
    const std::shared_ptr<Bridge> last = std::move(bridge->self_);  // may free it on return
  }

  /// Stops the registry from handing this bridge out (a newer one may have replaced it).
  void forget() noexcept {
    Registry& registry = Registry::get();
    std::lock_guard lock(registry.mutex);
    auto found = registry.open.find(loop_);
    if (found != registry.open.end() && found->second.lock().get() == this) {
      registry.open.erase(found);
    }
  }

  uv_loop_t* loop_;
  int ours_ = -1;
  uv_pipe_t pipe_{};
  uv_write_t watch_{};
  char write_byte_ = 0;
  char read_buffer_[256] = {};
  bool closing_ = false;          // loop thread only: we asked for the close
  std::shared_ptr<Bridge> self_;  // while libuv holds our memory (until on_close)

  std::mutex mutex_;
  std::vector<UniqueFunction<void()>> queue_;  // guarded by mutex_
  int pending_ = 0;                            // guarded by mutex_: keep-alives out
  bool closed_ = false;                        // guarded by mutex_: takes no more work
};

/// keep_alive() of a uv loop: one continuation's share in the loop's bridge.
class KeepAlive {
 public:
  explicit KeepAlive(uv_loop_t* loop) : bridge_(acquire(loop)) {}
  KeepAlive(KeepAlive&&) noexcept = default;
  KeepAlive& operator=(KeepAlive&&) = delete;
  ~KeepAlive() {
    if (bridge_) bridge_->delist();
  }

  /// Posts `f` to the loop's thread, or destroys it if the loop closed meanwhile. Once.
  void post(UniqueFunction<void()> f) && { std::exchange(bridge_, nullptr)->post(std::move(f)); }

 private:
  /// The loop's open bridge with one more keep-alive, or a new bridge.
  static std::shared_ptr<Bridge> acquire(uv_loop_t* loop) {
    Registry& registry = Registry::get();
    std::lock_guard lock(registry.mutex);
    std::weak_ptr<Bridge>& slot = registry.open[loop];
    if (std::shared_ptr<Bridge> bridge = slot.lock(); bridge && bridge->enlist()) return bridge;
    std::shared_ptr<Bridge> bridge = Bridge::open(loop);
    slot = bridge;
    return bridge;
  }

  std::shared_ptr<Bridge> bridge_;
};

}  // namespace uv_bridge
}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_UV_BRIDGE_HPP

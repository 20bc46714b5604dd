#ifndef OFFLOAD_PROCESS_POOL_HPP
#define OFFLOAD_PROCESS_POOL_HPP

/// @file process_pool.hpp
/// ProcessPool: the worker-farm model. Calls run in separate worker processes, so a call that
/// crashes, hangs or leaks takes down only its worker; the caller gets an error and the pool
/// a fresh worker. POSIX (Linux) only.
///
/// How a call travels: submit() encodes the arguments with Codec<T> into a frame naming the
/// function by address (a worker is a fork of this very program, so the address means the same
/// thing there). Each worker has one private socket pair, one private *mailbox* (shared memory
/// whose two rings carry small frames without a system call; detail/mailbox.hpp) and one
/// *keeper* thread in this process. If a worker is idle, submit() hands the frame to it at
/// once; otherwise the frame waits in the pool's queue until a keeper takes it. The keeper
/// watches its worker's replies, the call's deadline (a timerfd) and the worker's death (end
/// of stream, then the exit status relayed by the fork server), and completes the Future.
/// While the worker runs a call, its keeper sends the next small queued calls ahead (see
/// send_ahead_locked()). Nothing is shared between workers: a worker that dies mid-call cannot
/// leave a lock or a queue behind.
///
/// Latency: a round trip costs two process wake-ups at worst. Workers poll for a moment
/// before they sleep (ProcessOptions::idle_spin), and keepers ask for short scheduler slices,
/// so in a loop of short calls neither has to be woken from a deep sleep. While a worker has
/// calls sent ahead, it wakes its keeper only when it starts the last of them, and the keeper
/// then completes the futures of the whole batch: a few milliseconds later at most
/// (send_ahead_depth.hpp).
///
/// Workers are forked by a fork server (see detail/fork_server.hpp), a process forked while
/// the program was still single-threaded: by offload::process_init() at the start of main(),
/// or by the first ProcessPool if no other thread runs yet.
///
/// Important consequence: a worker sees the program as it was when the fork server started,
/// not as it is when the call is made. Globals changed later, libraries loaded later with
/// dlopen(), and objects built later do not exist there: pass what a call needs as arguments.

#if !defined(__unix__) && !defined(__APPLE__)
#error "offload/process_pool.hpp needs a POSIX system (it forks worker processes)"
#endif

#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "codec.hpp"
#include "detail/call_counter.hpp"
#include "detail/fork_server.hpp"
#include "detail/frame.hpp"
#include "detail/keeper_pacing.hpp"
#include "detail/mailbox.hpp"
#include "detail/posix_io.hpp"
#include "detail/process_worker.hpp"
#include "detail/send_ahead_depth.hpp"
#include "errors.hpp"
#include "future.hpp"

namespace offload {
inline namespace v0 {

/// Configuration of a ProcessPool.
struct ProcessOptions {
  /// Worker processes; 0 means std::thread::hardware_concurrency().
  unsigned workers = 0;
  /// A worker is replaced by a fresh one after this many calls; 0 means never (this bounds
  /// the damage of leaks in the called code).
  unsigned max_calls_per_worker = 0;
  /// A call running longer is killed (SIGKILL) and fails with CallTimeout; 0 means no limit.
  std::chrono::milliseconds max_call_time{0};
  /// How many times a call whose worker crashed is re-run on a fresh worker before it fails
  /// with WorkerCrashed. Only crashes are retried, never exceptions or timeouts.
  unsigned max_retries = 0;
  /// Calls waiting for a worker; 0 means unbounded, otherwise submit() blocks while full.
  std::size_t max_queue = 0;
  /// The largest encoded argument list or result, in bytes; a bigger frame from a worker is a
  /// ProtocolError. Guards against a corrupt length making this process allocate gigabytes.
  std::size_t max_message_size = std::size_t{1} << 30;
  /// How long an idle worker keeps polling for its next call before it sleeps (at most 1 s).
  /// Waking a sleeping process costs microseconds (tens in a VM); a loop of short calls stays
  /// within the window and never pays it. The price: up to this much CPU after each call.
  std::chrono::microseconds idle_spin{200};
};

/// Counters of a ProcessPool (a snapshot; each field is exact, the set is not atomic).
struct ProcessStats {
  std::uint64_t submitted = 0;        ///< calls accepted by submit()/try_submit()
  std::uint64_t completed = 0;        ///< calls that returned a value
  std::uint64_t failed = 0;           ///< calls that ended with an exception of any kind
  std::uint64_t cancelled = 0;        ///< calls whose future asked to stop before they started
  std::uint64_t crashes = 0;          ///< worker deaths during a call (retried or not)
  std::uint64_t timeouts = 0;         ///< calls killed for exceeding max_call_time
  std::uint64_t retries = 0;          ///< re-runs after a crash
  std::uint64_t workers_started = 0;  ///< worker processes forked so far
  std::size_t queued = 0;             ///< calls waiting for a worker now
  unsigned busy = 0;                  ///< workers running a call now
};

namespace detail {

// --- calls --------------------------------------------------------------------------------------

inline void count(std::atomic<std::uint64_t>& counter) noexcept {
  // Relaxed: counters publish nothing; stats() reads a snapshot.
  counter.fetch_add(1, std::memory_order_relaxed);
}

/// A call on its way: the encoded request frame, and how to complete its Future.
class CallTicket {
 public:
  CallTicket() = default;
  CallTicket(const CallTicket&) = delete;
  CallTicket& operator=(const CallTicket&) = delete;
  virtual ~CallTicket() = default;

  /// Decodes a value frame's payload, counts it in `completed`, then completes the future
  /// (counting first, so that whoever sees the result also sees it counted).
  /// @throws ProtocolError when the payload does not decode to the result type.
  virtual void complete(std::span<const std::byte> payload,
                        std::atomic<std::uint64_t>& completed) = 0;
  /// Completes the future with `error`. Never throws.
  virtual void fail(std::exception_ptr error) noexcept = 0;
  /// True when the future's holder called request_stop().
  [[nodiscard]] virtual bool stop_requested() const noexcept = 0;

  std::vector<std::byte> request;  ///< a complete call frame, kept for retries
};

template <class R>
class TypedCallTicket final : public CallTicket {
 public:
  Future<R> get_future() { return promise_.get_future(); }

  void complete(std::span<const std::byte> payload,
                std::atomic<std::uint64_t>& completed) override {
    if constexpr (std::is_void_v<R>) {
      Reader(payload).expect_end();
      count(completed);
      promise_.set_value();
    } else {
      R value = offload::decode<R>(payload);
      count(completed);
      promise_.set_value(std::move(value));
    }
  }

  void fail(std::exception_ptr error) noexcept override {
    try {
      promise_.set_exception(std::move(error));
    } catch (...) {  // already satisfied: nothing left to tell anyone
    }
  }

  [[nodiscard]] bool stop_requested() const noexcept override { return promise_.stop_requested(); }

 private:
  Promise<R> promise_;
};

/// Which pool's keeper runs on this thread (nullptr elsewhere): lets blocking members refuse
/// to wait for work that only this very thread could do.
inline thread_local const void* keeper_of_pool = nullptr;

// --- shared state --------------------------------------------------------------------------------

/// One worker slot as the submitting threads see it. Guarded by PoolCore::mutex, except the
/// descriptors themselves, which are fixed after construction.
struct Slot {
  enum class Phase {
    unavailable,  // the keeper is busy with the worker itself (starting, replacing, retiring)
    idle,         // a worker waits: a submitter may hand it a call directly
    busy,         // a call is in flight (or waits to be re-sent after a crash)
  };
  Phase phase = Phase::unavailable;
  std::unique_ptr<CallTicket> call;   // the call in flight; only the keeper takes it out
  // The next calls, in order, already handed to the worker; added and taken only by the
  // keeper (which may read it without the mutex: no other thread changes it).
  std::deque<std::unique_ptr<CallTicket>> ahead;
  unsigned attempt = 0;               // crashes of `call` so far
  unsigned redeliveries = 0;          // workers that died before `call` reached them
  std::size_t sent = 0;               // bytes of call->request handed over (a ring takes all)
  bool announced = false;             // the ring told the worker that `call` comes by socket
  bool send_pending = false;          // the keeper must send call->request from `sent` on
  IoDeadline deadline = no_deadline;  // when the call in flight times out
  Clock::time_point begun{};          // when the call in flight was sent (its clock started)
  int channel = -1;                   // the worker's socket (owned by the keeper) while idle/busy
  FrameRing to_worker;                // the producer's handle on the worker's ring of calls
  pid_t pid = 0;                      // the worker's pid; 0 while there is none
  UniqueFd doorbell;                  // rung to wake the keeper: a send to finish, or closing
  UniqueFd timer;                     // expires at `deadline`
};

/// What the pool's submitters and keepers share. All members but `options`, the counters and
/// the slots' descriptors are guarded by `mutex`.
class PoolCore {
 public:
  explicit PoolCore(const ProcessOptions& opts) : options(opts), slots(opts.workers) {
    for (Slot& slot : slots) {
      slot.doorbell = make_doorbell();
      slot.timer = make_timer();
    }
  }

  /**
   * Hands `call` to an idle worker at once (sending it from this thread: no other thread has
   * to wake up for it), or queues it. With `block`, waits while a bounded queue is full;
   * without, returns false and leaves `call` untouched instead. Thread-safe.
   * @throws PoolClosed after shutdown; WouldDeadlock when a keeper thread would wait for room;
   *         ProtocolError when the encoded arguments exceed max_message_size.
   */
  bool accept(std::unique_ptr<CallTicket>& call, bool block) {
    const std::size_t payload = call->request.size() - frame_header_size;
    if (payload > options.max_message_size) {
      throw ProtocolError("offload: the call's arguments encode to " + std::to_string(payload) +
                          " bytes, more than max_message_size (" +
                          std::to_string(options.max_message_size) + ")");
    }
    std::unique_lock lock(mutex);
    if (block && queue_full() && keeper_of_pool == this) {
      throw WouldDeadlock(
          "offload: ProcessPool::submit from the pool's own keeper thread (a "
          "continuation) while its queue is full would wait forever");
    }
    if (block) not_full.wait(lock, [&] { return closing || !queue_full(); });
    if (closing) throw PoolClosed();
    if (!block && queue_full()) return false;
    count(submitted);
    if (server_lost) {
      lock.unlock();
      count(failed);
      call->fail(make_error<ForkServerLost>());
      return true;
    }
    if (Slot* slot = idle_slot()) {
      begin_call(*slot, std::move(call));
      send_without_blocking(*slot);
    } else {
      queue.push_back(std::move(call));
    }
    return true;
  }

  /// Hands a call that never ran back to the pool, before everything queued: to an idle
  /// worker at once (an idle keeper sleeps and would not look at the queue), else to the
  /// front of the queue. Expects `mutex` held.
  void requeue_locked(std::unique_ptr<CallTicket> call) {
    if (Slot* slot = idle_slot()) {
      begin_call(*slot, std::move(call));
      send_without_blocking(*slot);
    } else {
      queue.push_front(std::move(call));
    }
  }

  /// Refuses new calls from now on and wakes every keeper so it can finish. Thread-safe.
  void close() {
    {
      std::lock_guard lock(mutex);
      closing = true;
    }
    not_full.notify_all();
    for (Slot& slot : slots) ring(slot.doorbell.get());
  }

  // The members below expect `mutex` to be held.

  [[nodiscard]] bool queue_full() const noexcept {
    return options.max_queue != 0 && queue.size() >= options.max_queue;
  }

  Slot* idle_slot() noexcept {
    for (Slot& slot : slots) {
      if (slot.phase == Slot::Phase::idle) return &slot;
    }
    return nullptr;
  }

  std::unique_ptr<CallTicket> pop_queued() {
    std::unique_ptr<CallTicket> call = std::move(queue.front());
    queue.pop_front();
    not_full.notify_one();
    return call;
  }

  /// Makes `call` the slot's call in flight, starting its clock.
  void begin_call(Slot& slot, std::unique_ptr<CallTicket> call) {
    slot.call = std::move(call);
    slot.phase = Slot::Phase::busy;
    slot.attempt = 0;
    slot.redeliveries = 0;
    slot.sent = 0;
    slot.announced = false;
    slot.send_pending = false;
    start_clock(slot);
  }

  void start_clock(Slot& slot) noexcept {
    slot.begun = Clock::now();
    if (options.max_call_time.count() <= 0) {
      slot.deadline = no_deadline;
      return;
    }
    slot.deadline = slot.begun + options.max_call_time;
    arm_timer(slot.timer.get(), options.max_call_time);
  }

  /// Hands the slot's new call to its worker without blocking: a small one whole through the
  /// ring; a big one announced there and sent through the socket as far as it goes now.
  /// Whatever is left is left to the keeper (send_pending, and its doorbell rung).
  void send_without_blocking(Slot& slot) {
    const std::vector<std::byte>& request = slot.call->request;
    if (request.size() <= ring_frame_limit && slot.to_worker.push(request)) {
      slot.sent = request.size();
      nudge_if_asleep(slot);
      return;
    }
    // Announced only while the worker holds no other call (calls sent ahead are small), so
    // the ring has the room it keeps for this; if not (a corrupt ring), the keeper finds out.
    slot.announced = slot.to_worker.announce();
    if (slot.announced) {
      nudge_if_asleep(slot);
      const ssize_t sent = send_some(slot.channel, request);
      if (sent == static_cast<ssize_t>(request.size())) {
        slot.sent = request.size();
        return;
      }
      if (sent < 0 && (errno == EPIPE || errno == ECONNRESET)) return;  // dead: the keeper sees EOF
      slot.sent = sent > 0 ? static_cast<std::size_t>(sent) : 0;
    }
    slot.send_pending = true;
    ring(slot.doorbell.get());
  }

  /// After frames went into the slot's ring: wakes the worker if it announced it sleeps.
  static void nudge_if_asleep(Slot& slot) noexcept {
    if (!slot.to_worker.take_sleeper()) return;
    // 16 bytes into a socket that holds no partial frame of ours (a big call is sent only
    // while nothing else is in flight), so the send completes at once. If it fails, the
    // worker is gone, and its keeper learns that from the end of its stream.
    try {
      (void)send_all(slot.channel, control_frame(FrameKind::nudge));
    } catch (...) {
    }
  }

  const ProcessOptions options;
  mutable std::mutex mutex;
  std::condition_variable not_full;  // the bounded queue has room again, or closing
  std::deque<std::unique_ptr<CallTicket>> queue;
  std::vector<Slot> slots;  // one per keeper; never resized
  bool closing = false;
  bool server_lost = false;
  std::atomic<std::uint64_t> submitted{0}, completed{0}, failed{0}, cancelled{0}, crashes{0},
      timeouts{0}, retries{0}, workers_started{0};
};

// --- the keeper: one thread per worker process ---------------------------------------------------

/**
 * Owns one worker slot: a thread of the program that watches one worker process (its socket,
 * its call's deadline, its death), completes the futures of its calls, takes queued calls,
 * and replaces the worker when it crashes, times out or has served its quota. Every private
 * member runs on the keeper's own thread.
 */
class WorkerKeeper {
 public:
  WorkerKeeper(PoolCore& core, ForkServer& server, std::size_t index)
      : core_(core),
        slot_(core.slots[index]),
        session_(server.open_session()),
        incoming_(core.options.max_message_size),
        from_ring_(ring_frames()) {}

  WorkerKeeper(const WorkerKeeper&) = delete;
  WorkerKeeper& operator=(const WorkerKeeper&) = delete;

  /// Starts the keeper thread. Allocates (the thread).
  void start() {
    thread_ = std::thread([this] { run(); });
  }

  /// Waits for the keeper thread to end (after PoolCore::close()). Blocks.
  void join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Worker {
    pid_t pid;
    UniqueFd channel;     // non-blocking; our end of the worker's socket pair
    Mailbox mailbox;      // shared with the worker (see mailbox.hpp)
    FrameRing replies;    // the consumer's handle on the mailbox's ring of replies
    CallCounter started;  // calls the worker has begun to run (see call_counter.hpp)
    unsigned calls = 0;   // replies received from it
  };

  enum class Action { send, wait, exit };

  // Exceptions are handed to futures only after their handler has ended (here and below):
  // libstdc++ counts an exception's owners where ThreadSanitizer cannot see it, so a caller
  // done with the exception while our handler still runs would look like a race to TSan.

  void run() noexcept {
    keeper_of_pool = &core_;
    const KeeperPacing pacing;
    while (!done_) {
      bool server_lost = false;
      std::exception_ptr unexpected;
      try {
        step();
      } catch (const ForkServerLost&) {
        server_lost = true;
      } catch (...) {  // a system call failed unexpectedly: the worker's state is unknown
        unexpected = std::current_exception();
      }
      if (server_lost) {
        lose_server();
      } else if (unexpected) {
        fail_current(std::move(unexpected));
        discard_worker();
      }
    }
    discard_worker();
  }

  void step() {
    if (!worker_ && !start_worker()) return;
    switch (next_action()) {
      case Action::send:
        send_request();
        return;
      case Action::wait:
        wait_for_event();
        return;
      case Action::exit:
        done_ = true;
        return;
    }
  }

  /// Decides what to do next, taking a queued call when the worker is free.
  Action next_action() {
    std::lock_guard lock(core_.mutex);
    if (slot_.call == nullptr) {
      if (!core_.queue.empty()) {
        core_.begin_call(slot_, core_.pop_queued());
        slot_.send_pending = true;
      } else if (core_.closing) {
        slot_.phase = Slot::Phase::unavailable;
        return Action::exit;
      } else {
        slot_.phase = Slot::Phase::idle;  // from now on submitters send to us directly
        return Action::wait;
      }
    }
    if (!slot_.send_pending) return Action::wait;
    slot_.send_pending = false;
    if (slot_.sent == 0) core_.start_clock(slot_);  // a queued call or a retry starts now
    return Action::send;
  }

  void send_request() {
    CallTicket* call = nullptr;
    bool fresh = false;  // nothing of it went to this worker yet
    {
      std::lock_guard lock(core_.mutex);
      call = slot_.call.get();
      fresh = slot_.sent == 0 && !slot_.announced;
    }
    if (fresh && call->stop_requested()) {  // cancelled while it waited: it never runs
      cancel_current();
      return;
    }
    std::span<const std::byte> rest;
    IoDeadline deadline;
    {
      std::lock_guard lock(core_.mutex);
      if (fresh) core_.send_without_blocking(slot_);
      slot_.send_pending = false;  // what is left is sent below
      if (slot_.sent == call->request.size()) {
        send_ahead_locked(worker_->calls + 1);  // then the call just sent
        return;
      }
      if (!slot_.announced) {
        throw ProtocolError("offload: corrupt shared memory: no room in the ring of calls");
      }
      rest = std::span<const std::byte>(call->request).subspan(slot_.sent);
      deadline = slot_.deadline;
    }
    switch (send_all(worker_->channel.get(), rest, deadline)) {
      case IoResult::ok: {
        std::lock_guard lock(core_.mutex);
        slot_.sent = call->request.size();
        return;  // a big call: none is sent ahead of it
      }
      case IoResult::closed:
        on_worker_died();
        return;
      case IoResult::timed_out:
        on_timeout();
        return;
    }
  }

  void wait_for_event() {
    // Sleep only once the worker knows to nudge us (mailbox.hpp); a reply that came meanwhile
    // is taken at once instead.
    if (!worker_->replies.prepare_to_sleep()) {
      receive_from_worker();
      return;
    }
    pollfd events[3] = {{worker_->channel.get(), POLLIN, 0},
                        {slot_.doorbell.get(), POLLIN, 0},
                        {slot_.timer.get(), POLLIN, 0}};
    const int ready = ::poll(events, 3, -1);
    worker_->replies.woke();
    if (ready < 0) {
      if (errno == EINTR) return;
      throw_system_error("poll");
    }
    if (events[1].revents != 0) drain(slot_.doorbell.get());  // the next step sees why
    // Replies first: a call that finished just before its deadline, whose reply waited while
    // this thread was not scheduled, did not time out (and the reply moves the deadline on
    // to the next call).
    if (events[0].revents != 0 || worker_->replies.has_data()) receive_from_worker();
    if (events[2].revents != 0) {
      drain(slot_.timer.get());
      if (worker_ && deadline_passed()) on_timeout();
    }
  }

  bool deadline_passed() {
    std::lock_guard lock(core_.mutex);
    return slot_.phase == Slot::Phase::busy && slot_.call != nullptr &&
           Clock::now() >= slot_.deadline;
  }

  /// Takes every reply that arrived whole, in the worker's order, even if the worker died right
  /// after sending it; then its end of stream. (With calls sent ahead, several may be waiting.)
  void receive_from_worker() {
    // The socket first: the ring, read after it, then holds the announcement of every reply
    // the socket holds (the worker announces before it sends).
    const bool ended = drain_socket();
    const Clock::time_point since = call_begun();
    unsigned replies = 0;
    while (worker_) {
      std::optional<FrameView> frame;
      std::exception_ptr corrupt;
      try {
        frame = next_reply();
      } catch (const ProtocolError&) {
        corrupt = std::current_exception();
      }
      if (corrupt) {
        on_corrupt(std::move(corrupt));
        return;
      }
      if (!frame) break;
      on_reply(*frame);
      ++replies;
    }
    if (replies != 0) {
      depth_.on_replies(Clock::now(), since, replies);
    } else if (worker_) {
      // Woken by a worker that started its last call, whose replies we had taken already.
      std::lock_guard lock(core_.mutex);
      send_ahead_locked(worker_->calls + 1);
    }
    if (ended && worker_) on_worker_died();
  }

  /// Receives what the worker's socket holds; true at its end.
  bool drain_socket() {
    for (;;) {
      const std::span<std::byte> room = incoming_.prepare();
      const ssize_t got = receive_some(worker_->channel.get(), room);
      if (got < 0) return false;  // drained
      if (got == 0) return true;
      incoming_.commit(static_cast<std::size_t>(got));
      if (static_cast<std::size_t>(got) < room.size()) return false;  // drained, most likely
      // A whole frame goes out before more comes in: room for more now would mean moving
      // (for a big frame, reallocating and copying) the frame still in the buffer.
      if (incoming_.frame_ready()) return false;
    }
  }

  /// The next complete reply: from the ring, or from the socket where the ring announced one
  /// (mailbox.hpp). Nothing until it has arrived whole.
  /// @throws ProtocolError on a corrupt ring or stream, or a frame that is not a reply.
  std::optional<FrameView> next_reply() {
    for (;;) {
      if (socket_replies_due_ != 0) {
        drop_nudges(incoming_);
        std::optional<FrameView> frame = incoming_.next();
        if (!frame) return std::optional<FrameView>();
        --socket_replies_due_;
        return checked_reply(*frame);
      }
      std::optional<FrameView> frame = from_ring_.next();
      if (!frame && worker_->replies.pull(from_ring_) != 0) frame = from_ring_.next();
      if (!frame) break;
      if (frame->kind != FrameKind::via_socket) return checked_reply(*frame);
      ++socket_replies_due_;
    }
    // The ring was read after the socket, so whatever reply the socket holds was announced.
    // Anything else there is judged only now: the socket is not ordered with the ring, so
    // bytes the worker's code wrote into it are blamed on the call it runs now, never on a
    // reply that arrived whole.
    drop_nudges(incoming_);
    if (incoming_.frame_ready()) {
      throw ProtocolError("offload: corrupt stream: a worker sent a reply it did not announce");
    }
    return std::optional<FrameView>();
  }

  static FrameView checked_reply(const FrameView& frame) {
    if (frame.kind != FrameKind::value && frame.kind != FrameKind::error) {
      throw ProtocolError("offload: corrupt reply: a worker sent a frame of kind " +
                          std::to_string(static_cast<int>(frame.kind)));
    }
    return frame;
  }

  /// When the call in flight began: when it was sent, or, for a call sent ahead, when the
  /// reply before it was read. So the replies read next cover calls run back to back since
  /// then, which is what depth_ needs to estimate their duration.
  Clock::time_point call_begun() {
    std::lock_guard lock(core_.mutex);
    return slot_.begun;
  }

  /// Most bytes sent ahead, and the largest call in flight that calls are sent ahead of: small
  /// calls behind a small call, so that all of them fit the worker's ring of calls (with room
  /// to spare: see Mailbox::calls_capacity).
  static constexpr std::size_t max_ahead_bytes = 4096;
  static_assert(2 * max_ahead_bytes + 2 * frame_header_size <= Mailbox::calls_capacity);

  /**
   * Hands queued calls to the worker while it still runs the call in flight, so that it starts the
   * next one the moment it replies instead of waiting for this thread to be scheduled (tens of
   * microseconds per call when every core is busy). As many as depth_ allows (see
   * send_ahead_depth.hpp), and no more than share_of_queue_locked(). Safe because the worker counts
   * the calls it starts (call_counter.hpp): when it ends, the calls sent ahead that it never
   * started go back to the pool (requeue_ahead()). Not past the worker's call quota, and never a
   * call already asked to stop; such a call, once sent, runs (request_stop() stops only calls not
   * yet sent). `replies` counts the replies the worker will have sent when the call in flight is
   * done. Expects core_.mutex held.
   */
  void send_ahead_locked(unsigned replies) {
    if (slot_.call == nullptr || slot_.sent != slot_.call->request.size() ||
        slot_.call->request.size() > max_ahead_bytes) {
      return;
    }
    const unsigned quota = core_.options.max_calls_per_worker;
    std::size_t bytes = 0;
    for (const auto& call : slot_.ahead) bytes += call->request.size();
    bool sent_any = false;
    const std::size_t most = std::min<std::size_t>(depth_.depth(), share_of_queue_locked());
    while (slot_.ahead.size() < most && !core_.queue.empty()) {
      const auto waiting = static_cast<unsigned>(slot_.ahead.size());
      if (quota != 0 && replies + waiting + 1 > quota) break;  // it retires before that call
      const CallTicket& next = *core_.queue.front();
      if (next.stop_requested() || bytes + next.request.size() > max_ahead_bytes ||
          !slot_.to_worker.push(next.request)) {
        break;
      }
      bytes += next.request.size();
      slot_.ahead.push_back(core_.pop_queued());
      sent_any = true;
    }
    if (sent_any) PoolCore::nudge_if_asleep(slot_);
  }

  /// How many queued calls this worker may hold ahead: calls sent to it cannot go to another
  /// that runs out of work, so with several workers, half its even share of the queue (one
  /// at least). As the queue drains, the workers take ever fewer, and they finish a batch
  /// within about a call of each other. Expects core_.mutex held.
  std::size_t share_of_queue_locked() const {
    const std::size_t workers = core_.slots.size();
    if (workers == 1) return core_.queue.size();  // no other worker to keep calls for
    return std::max<std::size_t>(1, core_.queue.size() / (2 * workers));
  }

  /// A worker that ends never started the calls sent ahead to it: back to the pool they go,
  /// in front of everything queued and in their order.
  void requeue_ahead() {
    std::lock_guard lock(core_.mutex);
    while (!slot_.ahead.empty()) {
      core_.requeue_locked(std::move(slot_.ahead.back()));
      slot_.ahead.pop_back();
    }
  }

  void on_reply(const FrameView& reply) {
    if (!call_delivered()) {
      on_corrupt(make_error<ProtocolError>("offload: corrupt stream: a worker replied to no call"));
      return;
    }
    std::unique_ptr<CallTicket> call;
    const unsigned quota = core_.options.max_calls_per_worker;
    const bool retiring = quota != 0 && worker_->calls + 1 >= quota;
    {
      std::lock_guard lock(core_.mutex);
      call = std::move(slot_.call);
      slot_.phase = Slot::Phase::unavailable;
      if (!slot_.ahead.empty()) {
        // The worker has started it already (it was waiting in its ring): its clock starts.
        core_.begin_call(slot_, std::move(slot_.ahead.front()));
        slot_.ahead.pop_front();
        slot_.sent = slot_.call->request.size();
      } else if (!retiring && !core_.queue.empty()) {
        // Send the next queued call before completing this one: the worker starts on it
        // while we decode and wake the caller.
        core_.begin_call(slot_, core_.pop_queued());
        if (slot_.call->stop_requested()) {
          slot_.send_pending = true;  // send_request() cancels it without sending
        } else {
          core_.send_without_blocking(slot_);
        }
      }
      send_ahead_locked(worker_->calls + 2);  // this reply, then the call in flight
    }
    ++worker_->calls;
    if (reply.kind == FrameKind::value) {
      std::exception_ptr undecodable;
      try {
        call->complete(reply.payload, core_.completed);
      } catch (...) {
        undecodable = std::current_exception();
      }
      if (undecodable) fail(*call, std::move(undecodable));
    } else {
      fail(*call, remote_error(reply.payload));
    }
    incoming_.release_memory();
    from_ring_.release_memory();
    if (retiring) end_worker(false);  // replaced on the next step
  }

  static std::exception_ptr remote_error(std::span<const std::byte> payload) {
    try {
      RemoteException remote = decode_remote_exception(payload);
      return std::make_exception_ptr(RemoteError(std::move(remote.type_name), remote.message));
    } catch (...) {
      return std::current_exception();
    }
  }

  /// The worker's stream ended: it crashed (or exited), with or without a call in flight.
  void on_worker_died() {
    const CallProgress progress = call_progress();  // before take_call() empties the slot
    // Read before end_worker() unmaps it. The worker is dead, so the count is final.
    const bool started = worker_->started.started() > worker_->calls;
    std::unique_ptr<CallTicket> call = take_call();
    const std::size_t partial = incoming_.buffered();
    std::string death = end_worker(false);
    if (call == nullptr) return;  // it died idle: replaced on the next step
    if (!started && progress.redeliveries < max_redeliveries) {
      // It died before it began the call (killed while idle, say), so the call never ran:
      // the replacement gets it, and it does not count as a crash.
      resend(std::move(call), progress.attempt, progress.redeliveries + 1);
      return;
    }
    count(core_.crashes);
    if (progress.attempt < core_.options.max_retries) {
      count(core_.retries);
      resend(std::move(call), progress.attempt + 1, progress.redeliveries);
      return;
    }
    if (partial != 0) {
      death += " after sending " + std::to_string(partial) + " bytes of an incomplete reply";
    }
    death += started ? " while running the call" : " before the call reached it";
    fail(*call, make_error<WorkerCrashed>("offload: " + death + attempts(progress.attempt)));
  }

  /// Puts `call` back in the slot, to be sent to the next worker.
  void resend(std::unique_ptr<CallTicket> call, unsigned attempt, unsigned redeliveries) {
    std::lock_guard lock(core_.mutex);
    slot_.call = std::move(call);
    slot_.phase = Slot::Phase::busy;
    slot_.attempt = attempt;
    slot_.redeliveries = redeliveries;
    slot_.sent = 0;
    slot_.announced = false;
    slot_.send_pending = true;  // sent on the next step, once a new worker runs
  }

  /// How many workers may die before a call reaches them, before the call fails anyway.
  static constexpr unsigned max_redeliveries = 3;

  void on_timeout() {
    std::unique_ptr<CallTicket> call = take_call();
    const std::string death = end_worker(true);
    if (call == nullptr) return;
    count(core_.timeouts);
    fail(*call, make_error<CallTimeout>("offload: the call ran longer than max_call_time (" +
                                        std::to_string(core_.options.max_call_time.count()) +
                                        " ms); " + death));
  }

  void on_corrupt(std::exception_ptr error) {
    std::unique_ptr<CallTicket> call = take_call();
    end_worker(true);
    if (call != nullptr) fail(*call, std::move(error));
  }

  void cancel_current() {
    std::unique_ptr<CallTicket> call = take_call();
    count(core_.cancelled);
    fail(*call, make_error<TaskCancelled>());
  }

  /// Takes the call in flight (if any) out of the slot, which stops submitters from using it.
  std::unique_ptr<CallTicket> take_call() {
    std::lock_guard lock(core_.mutex);
    slot_.phase = Slot::Phase::unavailable;
    slot_.send_pending = false;
    return std::move(slot_.call);
  }

  struct CallProgress {
    bool delivered;         // the whole request was sent
    unsigned attempt;       // crashes so far
    unsigned redeliveries;  // workers that died before it reached them
  };

  CallProgress call_progress() {
    std::lock_guard lock(core_.mutex);
    const bool delivered = slot_.call != nullptr && slot_.sent == slot_.call->request.size();
    return {delivered, slot_.attempt, slot_.redeliveries};
  }

  /// Whether a call is in flight and was sent whole (only then may a reply come).
  bool call_delivered() { return call_progress().delivered; }

  static std::string attempts(unsigned attempt) {
    return attempt == 0 ? std::string() : " (" + std::to_string(attempt + 1) + " attempts)";
  }

  void fail(CallTicket& call, std::exception_ptr error) noexcept {
    count(core_.failed);  // first, so that whoever sees the failure also sees it counted
    call.fail(std::move(error));
  }

  /// Starts a worker; on failure fails one waiting call (so no caller waits forever on a
  /// machine that cannot fork) and backs off. Returns whether a worker runs.
  bool start_worker() {
    std::exception_ptr failure;
    try {
      auto [ours, theirs] = make_socket_pair(SOCK_STREAM);
      const UniqueFd memory = Mailbox::create();
      Mailbox mailbox(memory.get());
      const pid_t pid = session_.spawn(
          std::move(theirs), memory,
          WorkerSettings{core_.options.max_message_size, core_.options.idle_spin});
      set_nonblocking(ours.get());
      FrameRing replies = mailbox.replies();
      const CallCounter started = mailbox.calls_started();
      worker_.emplace(Worker{pid, std::move(ours), std::move(mailbox), replies, started});
      reset_streams();
      count(core_.workers_started);
      std::lock_guard lock(core_.mutex);
      slot_.channel = worker_->channel.get();
      slot_.to_worker = worker_->mailbox.calls();
      slot_.pid = pid;
      return true;
    } catch (const ForkServerLost&) {
      throw;
    } catch (...) {
      failure = std::current_exception();
    }
    back_off_after(std::move(failure));
    return false;
  }

  /// Forgets what the last worker sent (a new one starts from nothing).
  void reset_streams() {
    incoming_ = FrameAssembler(core_.options.max_message_size);
    from_ring_ = ring_frames();
    socket_replies_due_ = 0;
  }

  void back_off_after(std::exception_ptr error) {
    std::unique_ptr<CallTicket> victim;
    {
      std::lock_guard lock(core_.mutex);
      slot_.phase = Slot::Phase::unavailable;
      if (slot_.call != nullptr) {
        victim = std::move(slot_.call);
      } else if (!core_.queue.empty()) {
        victim = core_.pop_queued();
      }
      done_ = core_.closing && core_.queue.empty();
    }
    if (victim != nullptr) fail(*victim, std::move(error));
    if (!done_) {
      (void)wait_for_fd(slot_.doorbell.get(), POLLIN,
                        Clock::now() + std::chrono::milliseconds(100));
      drain(slot_.doorbell.get());
    }
  }

  /// Ends the worker (SIGKILL when `kill`, otherwise by closing its socket, which it reads as
  /// "exit now") and waits until the server has reaped it. The slot must be unavailable.
  /// Returns "worker process <pid> <how it ended>". Blocks.
  std::string end_worker(bool kill) {
    requeue_ahead();
    const pid_t pid = worker_->pid;
    if (kill) session_.kill(pid);
    {
      std::lock_guard lock(core_.mutex);
      slot_.channel = -1;
      slot_.to_worker = FrameRing();
      slot_.pid = 0;
    }
    worker_.reset();
    reset_streams();
    std::optional<int> status = session_.await_exit(pid, Clock::now() + std::chrono::seconds(10));
    if (!status) {  // still running although its socket is closed: no more patience
      session_.kill(pid);
      status = session_.await_exit(pid, no_deadline);
    }
    return "worker process " + std::to_string(pid) + " " + describe_exit(*status);
  }

  void discard_worker() noexcept {
    if (!worker_) return;
    {
      std::lock_guard lock(core_.mutex);
      slot_.phase = Slot::Phase::unavailable;
    }
    try {
      end_worker(!done_);
    } catch (...) {
      worker_.reset();  // the server is gone; closing our end is all that is left
    }
  }

  void fail_current(std::exception_ptr error) noexcept {
    std::unique_ptr<CallTicket> call;
    {
      std::lock_guard lock(core_.mutex);
      slot_.phase = Slot::Phase::unavailable;
      call = std::move(slot_.call);
    }
    if (call != nullptr) fail(*call, std::move(error));
  }

  /// The fork server is gone: fail this slot's call and everything queued, and stop.
  void lose_server() noexcept {
    std::vector<std::unique_ptr<CallTicket>> orphans;
    {
      std::lock_guard lock(core_.mutex);
      core_.server_lost = true;
      slot_.phase = Slot::Phase::unavailable;
      slot_.channel = -1;
      slot_.to_worker = FrameRing();
      slot_.pid = 0;
      if (slot_.call != nullptr) orphans.push_back(std::move(slot_.call));
      for (auto& call : slot_.ahead) orphans.push_back(std::move(call));
      slot_.ahead.clear();
      while (!core_.queue.empty()) orphans.push_back(core_.pop_queued());
    }
    for (auto& call : orphans) fail(*call, make_error<ForkServerLost>());
    worker_.reset();
    done_ = true;
  }

  PoolCore& core_;
  Slot& slot_;
  ServerSession session_;
  FrameAssembler incoming_;              // from the worker's socket
  FrameAssembler from_ring_;             // from the worker's ring of replies
  unsigned socket_replies_due_ = 0;      // announced in the ring, not yet taken from the socket
  std::optional<Worker> worker_;
  SendAheadDepth depth_;  // how many calls to send ahead (follows their duration)
  bool done_ = false;
  std::thread thread_;
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

// --- turning a callable into something a worker can call -------------------------------------

template <class F>
inline constexpr bool is_function_pointer_v =
    std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>;

/// `fn` as a plain function pointer: a function, a function pointer, or a capture-less,
/// non-generic lambda (through its conversion operator).
template <class F>
auto to_function_pointer(F& fn) {
  if constexpr (is_function_pointer_v<std::decay_t<F>>) {
    return static_cast<std::decay_t<F>>(fn);
  } else if constexpr (requires { requires is_function_pointer_v<decltype(+fn)>; }) {
    return +fn;
  } else {
    static_assert(always_false<F>,
                  "offload::ProcessPool::submit needs a function, a function pointer or a "
                  "capture-less, non-generic lambda: the worker process calls it by its "
                  "address, so it cannot carry captured state. Pass that state as arguments.");
  }
}

/// Stops compilation with the message naming the type, when T has no codec.
template <class T>
void report_if_no_codec() {
  if constexpr (!HasCodec<T>) (void)sizeof(TypeHasNoCodec<typename MissingCodecCulprit<T>::type>);
}

/// The result type of a callable object's (single, non-template) operator(), or void; used
/// only to keep a rejected submit() from causing follow-on errors.
template <class F>
struct ObjectCallResult {
  using type = void;
};
template <class F>
  requires requires { &F::operator(); }
struct ObjectCallResult<F> {
  template <class M>
  struct Of;
  template <class R, class C, class... A>
  struct Of<R (C::*)(A...)> {
    using type = std::decay_t<R>;
  };
  template <class R, class C, class... A>
  struct Of<R (C::*)(A...) const> {
    using type = std::decay_t<R>;
  };
  template <class R, class C, class... A>
  struct Of<R (C::*)(A...) noexcept> {
    using type = std::decay_t<R>;
  };
  template <class R, class C, class... A>
  struct Of<R (C::*)(A...) const noexcept> {
    using type = std::decay_t<R>;
  };
  using type = typename Of<decltype(&F::operator())>::type;
};

template <class Pointer>
struct FunctionSignature;
template <class R, class... Params>
struct FunctionSignature<R (*)(Params...)> {
  using Result = std::decay_t<R>;
  using Plain = R (*)(Params...);

  /// What the worker runs for this signature (instantiated only for valid calls).
  static constexpr Trampoline trampoline() { return &call_in_worker<R, Params...>; }

  /// Whether `fn(args...)` can run in a worker; each failed check but the codecs' stops
  /// compilation with its own message, and the caller compiles nothing more for an invalid
  /// call (one error each).
  template <class... Args>
  static constexpr bool check_call() {
    constexpr bool count_matches = sizeof...(Args) == sizeof...(Params);
    static_assert(count_matches,
                  "offload::ProcessPool::submit: the number of arguments does not match the "
                  "function's parameters (default arguments do not survive the conversion to "
                  "a function pointer: pass every argument)");
    if constexpr (!count_matches) {
      return false;
    } else {
      constexpr bool convertible = (std::is_constructible_v<std::decay_t<Params>, Args&&> && ...);
      static_assert(convertible,
                    "offload::ProcessPool::submit: an argument cannot be converted to the "
                    "type of its parameter");
      constexpr bool no_output_parameter =
          !((std::is_lvalue_reference_v<Params> &&
             !std::is_const_v<std::remove_reference_t<Params>>) ||
            ...);
      static_assert(no_output_parameter,
                    "offload::ProcessPool::submit: the function takes a non-const reference; a "
                    "worker would change its own copy and the change would be lost. Return the "
                    "new value instead.");
      return convertible && no_output_parameter && has_codecs();
    }
  }

  /// Whether every parameter and the result can cross (see report_missing_codecs()).
  static constexpr bool has_codecs() {
    if constexpr (std::is_void_v<Result>) {
      return (HasCodec<std::decay_t<Params>> && ...);
    } else {
      return (HasCodec<std::decay_t<Params>> && ...) && HasCodec<Result>;
    }
  }

  /// One readable error per type that cannot cross.
  static void report_missing_codecs() {
    (report_if_no_codec<std::decay_t<Params>>(), ...);
    if constexpr (!std::is_void_v<Result>) report_if_no_codec<Result>();
  }

  /// Encodes each argument as its parameter's (decayed) type, the type the worker decodes.
  template <class... Args>
  static void write_arguments(Writer& out, Args&&... args) {
    (write_argument<std::decay_t<Params>>(out, std::forward<Args>(args)), ...);
  }

  template <class Value, class Arg>
  static void write_argument(Writer& out, Arg&& arg) {
    if constexpr (std::is_same_v<std::decay_t<Arg>, Value>) {
      out.write<Value>(arg);
    } else {
      out.write<Value>(Value(std::forward<Arg>(arg)));
    }
  }
};
template <class R, class... Params>
struct FunctionSignature<R (*)(Params...) noexcept> : FunctionSignature<R (*)(Params...)> {};

}  // namespace detail

/**
 * @brief Starts the fork server now, while the program is still single-threaded.
 *
 * Call it first thing in main(). It is optional when the first ProcessPool is created before
 * any other thread starts; it is required when pools are created later, from a program that
 * by then runs threads. The server (one small process) then lives until the program exits.
 * Idempotent and thread-safe; blocks for one fork().
 * @throws offload::Error when other threads already run (forking now would be unsafe).
 */
inline void process_init() {
  detail::ForkServerRegistry& registry = detail::fork_server_registry();
  {
    std::lock_guard lock(registry.mutex);
    if (registry.kept) return;
    if ((registry.kept = registry.shared.lock())) return;
  }
  std::shared_ptr<detail::ForkServer> server =
      detail::acquire_fork_server("offload::process_init()");
  std::lock_guard lock(registry.mutex);
  registry.kept = std::move(server);
}

/**
 * @brief A pool of worker processes that run calls in isolation (the worker-farm model).
 *
 * submit() is thread-safe. Each worker runs one call at a time. A crash (signal or non-zero
 * exit) fails only the call it ran, with WorkerCrashed, after max_retries re-runs; a call over
 * max_call_time is killed and fails with CallTimeout; an exception thrown by the function
 * fails its call with RemoteError (type name and message); any other call is undisturbed.
 *
 * Owns (number of workers) keeper threads and worker processes. The destructor finishes every
 * queued call, then ends and reaps every worker: nothing outlives the pool but, when
 * process_init() was used, the fork server itself.
 */
class ProcessPool {
 public:
  /**
   * @brief Starts the workers.
   * @throws offload::Error when no fork server runs and other threads already run (call
   *         offload::process_init() at the start of main()); std::system_error when the
   *         fork server cannot be started.
   */
  explicit ProcessPool(ProcessOptions options = {})
      : server_(detail::acquire_fork_server("constructing an offload::ProcessPool")),
        core_(std::make_unique<detail::PoolCore>(with_defaults(options))) {
    const std::size_t workers = core_->slots.size();
    keepers_.reserve(workers);
    for (std::size_t slot = 0; slot < workers; ++slot) {
      keepers_.push_back(std::make_unique<detail::WorkerKeeper>(*core_, *server_, slot));
    }
    for (auto& keeper : keepers_) keeper->start();
  }

  ProcessPool(const ProcessPool&) = delete;
  ProcessPool& operator=(const ProcessPool&) = delete;

  /// Finishes every queued call, then ends and reaps every worker (see shutdown()).
  ~ProcessPool() {
    try {
      shutdown();
    } catch (...) {  // WouldDeadlock from a keeper thread: nothing sensible is left to do
    }
  }

  /**
   * @brief Runs `fn(args...)` in a worker process.
   *
   * `fn` is a function, function pointer or capture-less non-generic lambda; each argument is
   * converted to its parameter's type and encoded with Codec (compile error if a type has no
   * codec), the result comes back through Codec. When a worker is idle the call is sent to it
   * from this thread right away; otherwise it is queued. Thread-safe. Allocates the call.
   * Blocks while a bounded queue (max_queue) is full.
   * @return the future result; it fails with WorkerCrashed, CallTimeout, RemoteError or
   *         ProtocolError as described on the class, or TaskCancelled when request_stop()
   *         came before the call started.
   * @throws offload::PoolClosed after shutdown(); offload::ProtocolError when the encoded
   *         arguments exceed max_message_size; whatever a codec throws while encoding.
   */
  template <class F, class... Args>
  auto submit(F&& fn, Args&&... args) {
    auto [future, call] = make_call(fn, std::forward<Args>(args)...);
    core_->accept(call, true);
    return std::move(future);
  }

  /**
   * @brief Like submit(), but returns nothing instead of blocking when the queue is full.
   * Thread-safe; never blocks for long. @throws offload::PoolClosed after shutdown().
   */
  template <class F, class... Args>
  auto try_submit(F&& fn, Args&&... args) {
    auto [future, call] = make_call(fn, std::forward<Args>(args)...);
    using FutureType = std::remove_cvref_t<decltype(future)>;
    if (!core_->accept(call, false)) return std::optional<FutureType>();
    return std::optional<FutureType>(std::move(future));
  }

  /**
   * @brief Stops accepting calls, finishes the queued ones, ends and reaps every worker.
   *
   * Idempotent and thread-safe; blocks until done. A call that hangs without max_call_time
   * keeps it waiting: set max_call_time if that can happen.
   * @throws offload::WouldDeadlock when called from the pool's own keeper thread (from a
   *         continuation of one of its futures).
   */
  void shutdown() {
    if (detail::keeper_of_pool == core_.get()) {
      throw WouldDeadlock(
          "offload: ProcessPool::shutdown from a continuation running on the "
          "pool's own keeper thread would wait for itself");
    }
    std::lock_guard lock(shutdown_mutex_);
    if (keepers_.empty()) return;
    core_->close();
    for (auto& keeper : keepers_) keeper->join();
    keepers_.clear();  // closes the sessions: the server forgets them
    server_.reset();   // the last pool using a pool-started server ends it
  }

  /// Number of worker slots. Thread-safe; never blocks.
  [[nodiscard]] unsigned size() const noexcept { return core_->options.workers; }

  /// A snapshot of the pool's counters. Thread-safe; takes the pool's lock briefly.
  [[nodiscard]] ProcessStats stats() const {
    ProcessStats snapshot;
    const auto read = [](const std::atomic<std::uint64_t>& counter) {
      return counter.load(std::memory_order_relaxed);
    };
    snapshot.submitted = read(core_->submitted);
    snapshot.completed = read(core_->completed);
    snapshot.failed = read(core_->failed);
    snapshot.cancelled = read(core_->cancelled);
    snapshot.crashes = read(core_->crashes);
    snapshot.timeouts = read(core_->timeouts);
    snapshot.retries = read(core_->retries);
    snapshot.workers_started = read(core_->workers_started);
    std::lock_guard lock(core_->mutex);
    snapshot.queued = core_->queue.size();
    for (const detail::Slot& slot : core_->slots) {
      if (slot.phase == detail::Slot::Phase::busy) ++snapshot.busy;
    }
    return snapshot;
  }

  /// The process ids of the live workers (one being replaced is missing). Thread-safe.
  [[nodiscard]] std::vector<pid_t> worker_pids() const {
    std::lock_guard lock(core_->mutex);
    std::vector<pid_t> live;
    for (const detail::Slot& slot : core_->slots) {
      if (slot.pid != 0) live.push_back(slot.pid);
    }
    return live;
  }

 private:
  static ProcessOptions with_defaults(ProcessOptions options) {
    if (options.workers == 0) options.workers = std::max(1u, std::thread::hardware_concurrency());
    return options;
  }

  /// Builds the call's frame and its ticket; returns the ticket with its future.
  template <class F, class... Args>
  static auto make_call(F& fn, Args&&... args) {
    using Pointer = decltype(detail::to_function_pointer(fn));
    if constexpr (!detail::is_function_pointer_v<Pointer>) {
      return invalid_call<typename detail::ObjectCallResult<std::decay_t<F>>::type>();  // said why
    } else {
      using Signature = detail::FunctionSignature<Pointer>;
      if constexpr (!Signature::template check_call<Args...>()) {
        Signature::report_missing_codecs();  // the other checks have said why already
        return invalid_call<typename Signature::Result>();
      } else {
        return make_valid_call<Signature>(detail::to_function_pointer(fn),
                                          std::forward<Args>(args)...);
      }
    }
  }

  /// What make_call() returns for a call that does not compile, typed as the caller expects so
  /// that the one error already reported is the only one.
  template <class R>
  static auto invalid_call() {
    return std::pair<Future<R>, std::unique_ptr<detail::CallTicket>>();
  }

  template <class Signature, class... Args>
  static auto make_valid_call(typename Signature::Plain pointer, Args&&... args) {
    using R = typename Signature::Result;
    auto call = std::make_unique<detail::TypedCallTicket<R>>();
    Future<R> future = call->get_future();
    detail::begin_frame(call->request);
    Writer out(call->request);
    out.write(
        static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(Signature::trampoline())));
    out.write(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(pointer)));
    Signature::write_arguments(out, std::forward<Args>(args)...);
    detail::finish_frame(call->request, detail::FrameKind::call);
    return std::pair<Future<R>, std::unique_ptr<detail::CallTicket>>(std::move(future),
                                                                     std::move(call));
  }

  std::shared_ptr<detail::ForkServer> server_;
  std::unique_ptr<detail::PoolCore> core_;
  std::vector<std::unique_ptr<detail::WorkerKeeper>> keepers_;
  std::mutex shutdown_mutex_;
};

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_PROCESS_POOL_HPP

#ifndef OFFLOAD_DETAIL_PROCESS_KEEPER_HPP
#define OFFLOAD_DETAIL_PROCESS_KEEPER_HPP

/// @file detail/process/keeper.hpp
/// The keeper: one thread of the program per worker process.

#include <sys/types.h>

#include <algorithm>
#include <chrono>
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
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "busy_meter.hpp"
#include "call_counter.hpp"
#include "call_ticket.hpp"
#include "fork_server.hpp"
#include "frame.hpp"
#include "keeper_pacing.hpp"
#include "mailbox.hpp"
#include "pool_core.hpp"
#include "posix_io.hpp"
#include "send_ahead_depth.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

// --- the keeper: one thread per worker process ---------------------------------------------------

/**
 * Owns one worker slot: a thread of the program that watches one worker process (its socket,
 * its call's deadline, its death), completes the futures of its calls, takes queued calls,
 * and replaces the worker when it crashes, times out or has served its quota. Every private
 * member runs on the keeper's own thread.
 */
class WorkerKeeper {
 public:
  WorkerKeeper(PoolCore& core, ForkServer& servers, std::size_t index)
      : core_(core),
        slot_(core.slots[index]),
        servers_(servers),
        session_(std::in_place, servers, servers.open_session()),
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
    UniqueFd channel;               // non-blocking; our end of the worker's socket pair
    Mailbox mailbox;                // shared with the worker (see mailbox.hpp)
    FrameRing replies;              // the consumer's handle on the mailbox's ring of replies
    CallCounter started;            // calls the worker has begun to run (see call_counter.hpp)
    BusyMeter busy;                 // what it has run, and for how long (see busy_meter.hpp)
    unsigned calls = 0;             // replies received from it
    BusyReading busy_seen{};        // busy as read last, for depth_
    bool retire_when_done = false;  // it ran out of memory: no more calls; replace it when idle
  };

  enum class Action { send, wait, exit };

  // Exceptions are handed to futures only after their handler has ended (here and below):
  // libstdc++ counts an exception's owners where ThreadSanitizer cannot see it, so a caller
  // done with the exception while our handler still runs would look like a race to TSan.

  void run() noexcept {
    keeper_of_pool = &core_;
    const KeeperPacing pacing;
    while (!done_) {
      std::optional<std::string> servers_lost;
      std::exception_ptr unexpected;
      try {
        step();
      } catch (const ForkServerLost& lost) {
        servers_lost = lost.what();
      } catch (...) {  // a system call failed unexpectedly: the worker's state is unknown
        unexpected = std::current_exception();
      }
      if (servers_lost) {
        lose_servers(*servers_lost);
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
      if (worker_) learn_call_duration();  // unless a reply retired it
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

  /// Tells depth_ what the worker has run since the last reading (replies were read just now,
  /// or the worker has ended).
  void learn_call_duration() noexcept {
    const BusyReading now = worker_->busy.read();
    const BusyReading run = busy_between(worker_->busy_seen, now);
    worker_->busy_seen = now;
    depth_.on_calls_run(run.calls,
                        std::chrono::microseconds(static_cast<std::int64_t>(run.micros)));
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
    if (worker_->retire_when_done || slot_.call == nullptr ||
        slot_.sent != slot_.call->request.size() || slot_.call->request.size() > max_ahead_bytes) {
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

  /// The calls sent ahead to a worker that has ended: those it never started go back to the
  /// pool, in front of everything queued and in their order; the first `started` (begun, then
  /// ended with it) are returned.
  std::vector<std::unique_ptr<CallTicket>> requeue_ahead(std::size_t started) {
    std::lock_guard lock(core_.mutex);
    std::vector<std::unique_ptr<CallTicket>> begun;
    for (std::size_t i = 0; i < started && !slot_.ahead.empty(); ++i) {
      begun.push_back(std::move(slot_.ahead.front()));
      slot_.ahead.pop_front();
    }
    while (!slot_.ahead.empty()) {
      core_.requeue_locked(std::move(slot_.ahead.back()));
      slot_.ahead.pop_back();
    }
    return begun;
  }

  /// How many calls sent ahead the worker, now ended, had started: it runs them in order,
  /// after the call in flight, so every call it started beyond those it replied to but that
  /// one. (A worker ended for a timeout may have finished that call, and started the next,
  /// just before the keeper ended it.)
  [[nodiscard]] std::size_t ahead_started() const noexcept {
    const std::uint64_t started = worker_->started.started();
    const std::uint64_t answered_or_in_flight = std::uint64_t{worker_->calls} + 1;
    return started > answered_or_in_flight
               ? static_cast<std::size_t>(started - answered_or_in_flight)
               : 0;
  }

  /// Calls that a worker ended by the keeper (for another call's timeout, or a corrupt stream)
  /// had started: retried while `max_retries` allows, else failed as crashes. Requeued as if
  /// never started, they ran twice without any retry allowed.
  void end_begun_ahead(std::vector<std::unique_ptr<CallTicket>> begun, const std::string& death) {
    for (auto& call : begun) {
      if (retry_after_crash(*call)) {
        std::lock_guard lock(core_.mutex);
        core_.requeue_locked(std::move(call));
        continue;
      }
      fail(*call, make_error<WorkerCrashed>("offload: " + death +
                                            " while running this call (sent ahead of one "
                                            "that failed, for which it was ended)" +
                                            attempts(call->crashes)));
    }
  }

  /// Counts a crash of `call`, and whether max_retries allows another attempt (then counted
  /// as a retry, and in call.crashes).
  bool retry_after_crash(CallTicket& call) {
    count(core_.crashes);
    if (call.crashes >= core_.options.max_retries) return false;
    ++call.crashes;
    count(core_.retries);
    return true;
  }

  void on_reply(const FrameView& reply) {
    if (!call_delivered()) {
      on_corrupt(make_error<ProtocolError>("offload: corrupt stream: a worker replied to no call"));
      return;
    }
    std::unique_ptr<CallTicket> call;
    const unsigned quota = core_.options.max_calls_per_worker;
    bool out_of_memory = false;
    std::exception_ptr remote;
    if (reply.kind == FrameKind::error) remote = remote_error(reply.payload, out_of_memory);
    // Known before anything more is sent to the worker: a retiring worker gets no next call.
    // One that ran out of memory still finishes the calls it has started or holds ahead.
    const bool retiring = quota != 0 && worker_->calls + 1 >= quota;
    if (out_of_memory) worker_->retire_when_done = true;
    bool nothing_left = false;
    {
      std::lock_guard lock(core_.mutex);
      call = std::move(slot_.call);
      slot_.phase = Slot::Phase::unavailable;
      if (!slot_.ahead.empty()) {
        // The worker has started it already (it was waiting in its ring): its clock starts.
        core_.begin_call(slot_, std::move(slot_.ahead.front()));
        slot_.ahead.pop_front();
        slot_.sent = slot_.call->request.size();
      } else if (!retiring && !worker_->retire_when_done && !core_.queue.empty()) {
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
      nothing_left = slot_.call == nullptr;
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
      fail(*call, std::move(remote));
    }
    incoming_.release_memory();
    from_ring_.release_memory();
    if (retiring || (worker_->retire_when_done && nothing_left)) {
      end_worker(false);  // replaced on the next step
    }
  }

  /// The RemoteError a worker's error frame describes. Sets `out_of_memory` when the call
  /// threw std::bad_alloc: a worker that ran out (of max_memory_per_worker, or of the
  /// machine's) may be left with a heap in pieces, so it is replaced.
  static std::exception_ptr remote_error(std::span<const std::byte> payload, bool& out_of_memory) {
    try {
      RemoteException remote = decode_remote_exception(payload);
      out_of_memory = remote.type_name == "std::bad_alloc";
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
      resend(std::move(call), progress.redeliveries + 1);
      return;
    }
    if (retry_after_crash(*call)) {
      resend(std::move(call), progress.redeliveries);
      return;
    }
    if (partial != 0) {
      death += " after sending " + std::to_string(partial) + " bytes of an incomplete reply";
    }
    death += started ? " while running the call" : " before the call reached it";
    fail(*call, make_error<WorkerCrashed>("offload: " + death + attempts(call->crashes)));
  }

  /// Puts `call` back in the slot, to be sent to the next worker.
  void resend(std::unique_ptr<CallTicket> call, unsigned redeliveries) {
    std::lock_guard lock(core_.mutex);
    slot_.call = std::move(call);
    slot_.phase = Slot::Phase::busy;
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
    unsigned redeliveries;  // workers that died before it reached them
  };

  CallProgress call_progress() {
    std::lock_guard lock(core_.mutex);
    const bool delivered = slot_.call != nullptr && slot_.sent == slot_.call->request.size();
    return {delivered, slot_.redeliveries};
  }

  /// Whether a call is in flight and was sent whole (only then may a reply come).
  bool call_delivered() { return call_progress().delivered; }

  /// " (N attempts)" for a call that failed after `crashes` earlier crashes, each retried.
  static std::string attempts(unsigned crashes) {
    return crashes == 0 ? std::string() : " (" + std::to_string(crashes + 1) + " attempts)";
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
      const pid_t pid =
          session().spawn(std::move(theirs), memory,
                          WorkerSettings{core_.options.max_message_size, core_.options.idle_spin,
                                         core_.options.max_memory_per_worker});
      set_nonblocking(ours.get());
      FrameRing replies = mailbox.replies();
      const CallCounter started = mailbox.calls_started();
      const BusyMeter busy = mailbox.busy();
      worker_.emplace(Worker{pid, std::move(ours), std::move(mailbox), replies, started, busy});
      reset_streams();
      count(core_.workers_started);
      std::lock_guard lock(core_.mutex);
      slot_.channel = worker_->channel.get();
      slot_.to_worker = worker_->mailbox.calls();
      slot_.pid = pid;
      return true;
    } catch (const ServerSessionLost&) {
      session_.reset();  // its server died: the next step opens a session on the other
      return false;
    } catch (const ForkServerLost&) {
      throw;
    } catch (...) {
      failure = std::current_exception();
    }
    back_off_after(std::move(failure));
    return false;
  }

  /// The session workers are started through, opened anew on a live server when the last
  /// one's server died. @throws ForkServerLost when no server is left.
  ServerSession& session() {
    if (!session_) session_.emplace(servers_, servers_.open_session());
    return *session_;
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
    const pid_t pid = worker_->pid;
    if (kill) use_session([&](ServerSession& session) { session.kill(pid); });
    {
      std::lock_guard lock(core_.mutex);
      slot_.channel = -1;
      slot_.to_worker = FrameRing();
      slot_.pid = 0;
    }
    worker_->channel.reset();  // a worker not killed reads the end of its socket as "exit now"
    std::optional<int> status;
    use_session([&](ServerSession& session) { status = await_end(session, pid); });
    // It has ended (or its server has, and it dies with it), so its count of calls started is
    // final: only now can the calls sent ahead be told apart.
    std::vector<std::unique_ptr<CallTicket>> begun = requeue_ahead(ahead_started());
    learn_call_duration();  // its last calls too (a quota or a crash ended it after a batch)
    worker_.reset();
    reset_streams();
    std::string death =
        !status
            // Its server died, and it with the server (a worker's death signal): nobody is
            // left to tell how; the next worker starts through a session on the other server.
            ? "worker process " + std::to_string(pid) + " died with its fork server process"
            : "worker process " + std::to_string(pid) + " " + describe_exit(*status);
    end_begun_ahead(std::move(begun), death);
    return death;
  }

  /// The wait status of worker `pid`, whose socket is closed. @throws ServerSessionLost,
  /// also when the server itself stopped answering (then it is killed, and its workers with
  /// it): waiting for it without end held this keeper, and the pool's shutdown, for ever.
  static int await_end(ServerSession& session, pid_t pid) {
    constexpr std::chrono::seconds patience{10};
    std::optional<int> status = session.await_exit(pid, Clock::now() + patience);
    if (!status) {  // still running although its socket is closed: no more patience
      session.kill(pid);
      status = session.await_exit(pid, Clock::now() + patience);
    }
    if (!status) {  // nor killed: the server no longer reaps (stopped, say)
      session.condemn();
      throw ServerSessionLost();
    }
    return *status;
  }

  /// Runs `use(session)` on the open session, if any; a session whose server died is dropped
  /// (and opened anew on the other server when the next worker starts).
  template <class Use>
  void use_session(Use use) {
    if (!session_) return;
    try {
      use(*session_);
    } catch (const ServerSessionLost&) {
      session_.reset();
    }
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

  /// No fork server is left: fail this slot's call and everything queued, and stop. From now
  /// on submit() fails every call at once (PoolCore::accept()). Every keeper ends here, so the
  /// last one also fails what the others requeued before they stopped.
  void lose_servers(const std::string& why) noexcept {
    std::vector<std::unique_ptr<CallTicket>> orphans;
    {
      std::lock_guard lock(core_.mutex);
      if (core_.servers_lost.empty()) core_.servers_lost = why;
      slot_.phase = Slot::Phase::unavailable;
      slot_.channel = -1;
      slot_.to_worker = FrameRing();
      slot_.pid = 0;
      if (slot_.call != nullptr) orphans.push_back(std::move(slot_.call));
      for (auto& call : slot_.ahead) orphans.push_back(std::move(call));
      slot_.ahead.clear();
      while (!core_.queue.empty()) orphans.push_back(core_.pop_queued());
    }
    for (auto& call : orphans) fail(*call, make_error<Error>(why));
    worker_.reset();
    session_.reset();
    done_ = true;
  }

  PoolCore& core_;
  Slot& slot_;
  ForkServer& servers_;
  std::optional<ServerSession> session_;  // empty once its server died, until reopened
  FrameAssembler incoming_;               // from the worker's socket
  FrameAssembler from_ring_;              // from the worker's ring of replies
  unsigned socket_replies_due_ = 0;       // announced in the ring, not yet taken from the socket
  std::optional<Worker> worker_;
  SendAheadDepth depth_;  // how many calls to send ahead (follows their duration)
  bool done_ = false;
  std::thread thread_;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_KEEPER_HPP

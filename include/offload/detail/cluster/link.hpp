#ifndef OFFLOAD_DETAIL_CLUSTER_LINK_HPP
#define OFFLOAD_DETAIL_CLUSTER_LINK_HPP

/// @file detail/cluster/link.hpp
/// A rank's link to the others: one communication thread that owns every MPI call, from
/// MPI_Init_thread to MPI_Finalize (so MPI_THREAD_FUNNELED is all it asks for). Other threads
/// hand it messages with post(); what arrives it gives to the rank's Role (the driver on rank
/// 0, a server elsewhere), on the same thread. Nothing it calls waits for another rank: sends
/// are MPI_Isend, arrivals are found with MPI_Improbe and received with MPI_Imrecv (a head, or
/// a piece of at most 4 KiB, already here whole, with MPI_Mrecv).
///
/// Open MPI has no blocking wait that does not poll, so the thread polls: it probes without
/// blocking (MPI_Improbe), and when nothing came it asks its Role how long it may sleep. A
/// role expecting an answer soon says "spin" (yield between probes), one that expects nothing
/// says "sleep until woken", in between a sleep that grows with the idle time. post() wakes a
/// sleeping thread at once, so only arrivals from other ranks wait for the next probe.

// The C API only: MPI's old C++ bindings are deprecated and do not compile warning-free.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "program_image.hpp"
#include "wire.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

using ClusterClock = std::chrono::steady_clock;

/// How long the communication thread may wait before it probes again.
struct LinkWait {
  enum class Kind { spin, sleep, until_woken } kind = Kind::until_woken;
  std::chrono::microseconds sleep{0};
};

class MpiLink;

/// What a rank does with the messages it gets. Every member runs on the communication thread.
class LinkRole {
 public:
  LinkRole() = default;
  LinkRole(const LinkRole&) = delete;
  LinkRole& operator=(const LinkRole&) = delete;
  virtual ~LinkRole() = default;

  /// One complete message from `peer`.
  virtual void on_message(int peer, const WireHead& head, std::vector<std::byte> body) = 0;
  /// Work of its own (the driver sends queued calls here); true when it did some.
  virtual bool pump() = 0;
  /// How long the thread may wait, `idle` after it last sent or received anything.
  virtual LinkWait next_wait(ClusterClock::duration idle) = 0;
  /// True once the rank is done: the thread finishes its sends, finalizes MPI and ends.
  virtual bool finished() = 0;
};

/// What each rank tells rank 0 at start-up.
struct RankHello {
  std::uint64_t program_hash;
  std::uint64_t program_size;
  std::uint32_t protocol;
  std::int32_t pid;
  std::uint32_t hardware_threads;
  std::uint32_t reserved;
};

/// The driver spins (yielding) while it waits for answers to calls shorter than this: they
/// come back before a sleeping thread would even wake up (tens of microseconds in a VM).
inline constexpr std::chrono::microseconds short_call{240};
/// How long a serving rank spins after its last answer before it sleeps (RankServer).
inline constexpr std::chrono::microseconds answer_spin{1000};

/// True on the communication thread: blocking there for work it must itself do would hang.
inline thread_local bool on_cluster_link_thread = false;

/**
 * The communication thread and its queues. One per process, made by start() and never
 * destroyed (the thread has ended by then: it is joined at exit or when serving ends).
 */
class MpiLink {
 public:
  using RoleFactory = std::unique_ptr<LinkRole> (*)(MpiLink&);

  /// Starts the thread, which initialises MPI, greets rank 0 and makes this rank's role with
  /// `make_role`; returns once that is done. @throws ClusterError when MPI cannot start or
  /// does not grant MPI_THREAD_FUNNELED.
  static MpiLink& start(RoleFactory make_role) {
    auto* link = new MpiLink();  // lives for the rest of the program (see the class comment)
    link->thread_ = std::thread([link, make_role] { link->run(make_role); });
    std::unique_lock lock(link->mutex_);
    link->changed_.wait(lock, [&] { return link->phase_ != Phase::starting; });
    if (link->phase_ == Phase::failed) {
      lock.unlock();
      link->thread_.join();
      throw ClusterError(link->failure_);
    }
    return *link;
  }

  MpiLink(const MpiLink&) = delete;
  MpiLink& operator=(const MpiLink&) = delete;

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }
  /// Every rank's greeting, by rank (filled on rank 0 only).
  [[nodiscard]] const std::vector<RankHello>& hellos() const noexcept { return hellos_; }
  [[nodiscard]] LinkRole& role() noexcept { return *role_; }

  /// Queues `message` for sending and, with `wake`, wakes the thread; without, the message
  /// leaves when the thread next looks (woken by another post, or its sleep over).
  /// Thread-safe; never blocks for long.
  void post(WireMessage message, bool wake = true) {
    std::lock_guard lock(mutex_);
    posted_.push_back(std::move(message));
    if (wake) wake_locked();
  }

  /// Makes the thread look at its role again (its pump() has work). Thread-safe.
  void wake() {
    std::lock_guard lock(mutex_);
    wake_locked();
  }

  /// Waits until the thread has ended (after the role finished and MPI was finalized).
  void join() {
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
  }

  /// Ends the whole MPI job now with `code` (MPI_Abort, called by the communication thread).
  /// If that thread cannot do it within a few seconds (stuck in MPI), this process exits,
  /// which the MPI runtime also turns into the end of the job. Never returns.
  [[noreturn]] void abort_job(int code) {
    if (on_cluster_link_thread) abort_from_link_thread(code);
    {
      std::lock_guard lock(mutex_);
      abort_code_ = code;
      wake_locked();
    }
    std::this_thread::sleep_for(std::chrono::seconds(5));
    std::_Exit(code);
  }

 private:
  enum class Phase { starting, running, failed };

  /// One message being sent: its head and body stay put until every request completed.
  struct Outgoing {
    WireMessage message;
    std::vector<MPI_Request> requests;
  };
  /// A message whose head came, with the receives of its body's pieces (MPI_Imrecv, straight
  /// into place). Messages are handed to the role in the order their heads came.
  struct Incoming {
    int peer = 0;
    WireHead head{};
    std::vector<std::byte> body;
    std::size_t matched = 0;  // body bytes whose pieces have a receive started
    std::vector<MPI_Request> requests;

    [[nodiscard]] bool fully_matched() const noexcept { return matched == body.size(); }
  };

  static constexpr int tag = 0x0FF1;
  /// Pieces up to this size are received with MPI_Mrecv: MPI implementations send them
  /// eagerly (Open MPI's shared-memory transport up to 4 KiB), so they are here already.
  static constexpr std::size_t eager_piece = 4096;

  MpiLink() = default;

  void run(RoleFactory make_role) {
    on_cluster_link_thread = true;
    try {
      initialise(make_role);
    } catch (const std::exception& e) {
      std::lock_guard lock(mutex_);
      failure_ = e.what();
      phase_ = Phase::failed;
      changed_.notify_all();
      return;
    }
    try {
      serve();
      finalize();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "offload: rank %d: the cluster link failed: %s\n", rank_, e.what());
      abort_from_link_thread(70);  // EX_SOFTWARE: never leave the other ranks waiting
    }
  }

  void initialise(RoleFactory make_role) {
    int provided = 0;
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
      throw ClusterError("offload: MPI_Init_thread failed");
    }
    if (provided < MPI_THREAD_FUNNELED) {
      MPI_Finalize();
      throw ClusterError("offload: this MPI grants only MPI_THREAD_SINGLE; the cluster needs "
                         "MPI_THREAD_FUNNELED (one thread makes every MPI call)");
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);  // apart from any MPI traffic of the program's own
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    gather_hellos();
    role_ = make_role(*this);
    std::lock_guard lock(mutex_);
    phase_ = Phase::running;
    changed_.notify_all();
  }

  void gather_hellos() {
    const ProgramFingerprint program = this_program_fingerprint();
    RankHello mine{program.hash, program.size, cluster_protocol_version,
                   static_cast<std::int32_t>(::getpid()),
                   std::max(1u, std::thread::hardware_concurrency()), 0};
    if (rank_ == 0) hellos_.resize(static_cast<std::size_t>(size_));
    MPI_Gather(&mine, sizeof mine, MPI_BYTE, rank_ == 0 ? hellos_.data() : nullptr, sizeof mine,
               MPI_BYTE, 0, comm_);
  }

  void serve() {
    auto last_activity = ClusterClock::now();
    for (;;) {
      if (const int code = pending_abort()) abort_from_link_thread(code);
      bool active = start_posted_sends();
      active |= complete_sends();
      active |= receive();
      active |= complete_receives();
      active |= role_->pump();
      if (active) {
        last_activity = ClusterClock::now();
        continue;
      }
      if (role_->finished() && sending_.empty() && receiving_.empty() && posted_empty()) return;
      idle(role_->next_wait(ClusterClock::now() - last_activity));
    }
  }

  void finalize() {
    MPI_Comm_free(&comm_);
    MPI_Finalize();
  }

  [[noreturn]] void abort_from_link_thread(int code) {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; should it, end this process at least
  }

  // --- sending ------------------------------------------------------------------------------

  bool start_posted_sends() {
    std::vector<WireMessage> batch;
    {
      std::lock_guard lock(mutex_);
      if (posted_.empty()) return false;
      batch.swap(posted_);
    }
    for (WireMessage& message : batch) send_now(std::move(message));
    return true;
  }

  /// Starts sending `message`: its head, then its body in pieces MPI can count.
  void send_now(WireMessage message) {
    auto out = std::make_unique<Outgoing>();
    out->message = std::move(message);
    WireMessage& m = out->message;
    m.head.body_size = m.body.size();
    out->requests.reserve(1 + m.body.size() / max_mpi_message + 1);
    isend(&m.head, sizeof m.head, m.peer, out->requests);
    for (std::size_t sent = 0; sent < m.body.size(); sent += max_mpi_message) {
      isend(m.body.data() + sent, std::min(max_mpi_message, m.body.size() - sent), m.peer,
            out->requests);
    }
    sending_.push_back(std::move(out));
  }

  void isend(const void* data, std::size_t size, int peer, std::vector<MPI_Request>& requests) {
    MPI_Request request = MPI_REQUEST_NULL;
    MPI_Isend(data, static_cast<int>(size), MPI_BYTE, peer, tag, comm_, &request);
    requests.push_back(request);
  }

  /// Forgets the messages MPI is done with; true when one finished.
  bool complete_sends() {
    bool any = false;
    for (auto it = sending_.begin(); it != sending_.end();) {
      int done = 0;
      MPI_Testall(static_cast<int>((*it)->requests.size()), (*it)->requests.data(), &done,
                  MPI_STATUSES_IGNORE);
      if (done != 0) {
        it = sending_.erase(it);
        any = true;
      } else {
        ++it;
      }
    }
    return any;
  }

  bool posted_empty() {
    std::lock_guard lock(mutex_);
    return posted_.empty();
  }

  // --- receiving ----------------------------------------------------------------------------

  /// Takes what has arrived (a bounded number of messages, so sends are not starved). A probe
  /// that finds nothing is repeated once: Open MPI's shared-memory transport may move a
  /// message in during the probe's progress without that probe seeing it, and the next one
  /// would otherwise come a whole sleep later (an idle rank took 5-10 ms, not 2.5, to see a
  /// call).
  bool receive() {
    bool any = false;
    for (int i = 0, misses = 0; i < 64;) {
      int found = 0;
      MPI_Message message = MPI_MESSAGE_NULL;
      MPI_Status status;
      MPI_Improbe(MPI_ANY_SOURCE, tag, comm_, &found, &message, &status);
      if (found == 0) {
        if (++misses == 2) break;
        continue;
      }
      ++i;
      any = true;
      int count = 0;
      MPI_Get_count(&status, MPI_BYTE, &count);
      take(status.MPI_SOURCE, message, static_cast<std::size_t>(count));
    }
    return any;
  }

  /// A probed message from `peer`: the head of a new message (received at once: it is small
  /// and already here), or the next piece of the body its last head announced (a receive
  /// started into place, completed by complete_receives()).
  void take(int peer, MPI_Message& message, std::size_t count) {
    const auto open = std::find_if(receiving_.rbegin(), receiving_.rend(), [&](const auto& in) {
      return in->peer == peer;
    });
    if (open == receiving_.rend() || (*open)->fully_matched()) {
      auto in = std::make_unique<Incoming>();
      in->peer = peer;
      if (count != sizeof(WireHead)) {
        throw ProtocolError("offload: a cluster message head of " + std::to_string(count) +
                            " bytes from rank " + std::to_string(peer));
      }
      MPI_Mrecv(&in->head, sizeof in->head, MPI_BYTE, &message, MPI_STATUS_IGNORE);
      if (in->head.body_size > max_cluster_body) {
        throw ProtocolError("offload: a cluster message announces a body of " +
                            std::to_string(in->head.body_size) + " bytes");
      }
      in->body.resize(static_cast<std::size_t>(in->head.body_size));
      receiving_.push_back(std::move(in));
      complete_receives();  // a head without a body is whole already
      return;
    }
    Incoming& in = **open;
    if (count == 0 || count > in.body.size() - in.matched) {
      throw ProtocolError("offload: a cluster message body longer than its head said");
    }
    if (count <= eager_piece) {
      // Already here whole (MPI sends messages this small eagerly): a copy, no waiting. A
      // receive started and tested later instead made each round trip 10-20 us slower.
      MPI_Mrecv(in.body.data() + in.matched, static_cast<int>(count), MPI_BYTE, &message,
                MPI_STATUS_IGNORE);
    } else {
      MPI_Request request = MPI_REQUEST_NULL;
      MPI_Imrecv(in.body.data() + in.matched, static_cast<int>(count), MPI_BYTE, &message,
                 &request);
      in.requests.push_back(request);
    }
    in.matched += count;
    complete_receives();  // at once: the probes that follow cost microseconds each
  }

  /// Hands the role every message at the front whose body has arrived whole.
  bool complete_receives() {
    bool any = false;
    while (!receiving_.empty()) {
      Incoming& in = *receiving_.front();
      if (!in.fully_matched()) break;
      int done = 1;
      if (!in.requests.empty()) {
        MPI_Testall(static_cast<int>(in.requests.size()), in.requests.data(), &done,
                    MPI_STATUSES_IGNORE);
      }
      if (done == 0) break;
      const std::unique_ptr<Incoming> complete = std::move(receiving_.front());
      receiving_.pop_front();
      role_->on_message(complete->peer, complete->head, std::move(complete->body));
      any = true;
    }
    return any;
  }

  // --- waiting ------------------------------------------------------------------------------

  void idle(LinkWait wait) {
    if (wait.kind == LinkWait::Kind::spin) {
      ::sched_yield();
      return;
    }
    std::unique_lock lock(mutex_);
    sleeping_ = true;
    const auto woken = [&] { return woken_; };
    if (wait.kind == LinkWait::Kind::until_woken) {
      changed_.wait(lock, woken);
    } else {
      changed_.wait_for(lock, wait.sleep, woken);
    }
    sleeping_ = false;
    woken_ = false;
  }

  void wake_locked() {
    woken_ = true;
    if (sleeping_) changed_.notify_all();
  }

  int pending_abort() {
    std::lock_guard lock(mutex_);
    return abort_code_;
  }

  // Fixed once the thread has started (read by other threads only after start() returned).
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::vector<RankHello> hellos_;
  std::unique_ptr<LinkRole> role_;
  std::thread thread_;

  // Only the communication thread touches these.
  std::deque<std::unique_ptr<Outgoing>> sending_;
  std::deque<std::unique_ptr<Incoming>> receiving_;

  std::mutex mutex_;  // guards what follows
  std::condition_variable changed_;
  Phase phase_ = Phase::starting;
  std::string failure_;
  std::vector<WireMessage> posted_;
  bool woken_ = false;
  bool sleeping_ = false;
  int abort_code_ = 0;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CLUSTER_LINK_HPP

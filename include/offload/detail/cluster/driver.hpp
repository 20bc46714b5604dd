#ifndef OFFLOAD_DETAIL_CLUSTER_DRIVER_HPP
#define OFFLOAD_DETAIL_CLUSTER_DRIVER_HPP

/// @file detail/cluster/driver.hpp
/// Rank 0's side of the cluster: each ClusterPool's queue of calls, and which serving rank
/// runs which call.
///
/// Scheduling: the least-loaded serving rank (calls in flight per worker) takes the next call,
/// and no rank holds more than DriverRank::capacity(): about 16 ms of work at the pace it
/// answers, enough that its workers never wait for the driver to hear an answer and send
/// more, and a bound on how long a slow rank can hold up the end of a job.
/// Once the queue is empty, the ranks' backlogs are all that is left, and one rank may run dry
/// while another still holds many milliseconds of calls it has not begun (its pace misjudged,
/// or its cores taken by something else): the driver then recalls the newest of those and
/// sends them to the ranks with less (maybe_recall()). In the heavy array of cluster_bench the
/// first rank to finish stood idle 0-12 ms, 3.5-5 ms on average, before the other was done.
/// A call whose worker crashed goes back to the front of the queue, for another rank when
/// there is one, until it used max_retries. Every attempt counts on the rank that ran it, and
/// a recalled call only on the rank that runs it (sent == completed + failed + in flight, rank
/// by rank).
///
/// Futures are completed on the communication thread, without any lock held: continuations
/// run there, so they must be short and never wait for another cluster call.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "../process/call_ticket.hpp"
#include "../process/frame.hpp"
#include "link.hpp"
#include "program_image.hpp"
#include "wire.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// What a ClusterPool says when used after the driver's main returned.
inline constexpr const char* ended_message =
    "offload::ClusterPool: the cluster has ended (main returned)";

/// One call on the driver: its ticket (which keeps the encoded request for retries), where
/// its function lies in the program image, and where it has been.
struct DriverCall {
  std::uint64_t id = 0;
  std::unique_ptr<CallTicket> ticket;
  std::uint64_t trampoline = 0;  // image offsets (program_image.hpp)
  std::uint64_t function = 0;
  unsigned attempt = 0;   // crashes so far
  int avoid_rank = -1;    // the rank it last crashed on, or was recalled from
  ClusterClock::time_point sent{};
};

/// A future to complete, taken out under the lock and settled after it is released.
struct Settlement {
  std::unique_ptr<CallTicket> ticket;
  std::exception_ptr error;            // or, when null, a value:
  std::vector<std::byte> payload;
  std::atomic<std::uint64_t>* counter = nullptr;  // the rank's count of the outcome
};

/// A serving rank as one ClusterPool sees it.
struct DriverRank {
  int rank = 0;
  unsigned workers = 0;   // 0 until its pool opened
  bool answered = false;  // pool_opened (or its failure) arrived
  bool closed = false;    // pool_closed arrived
  std::string failure;    // why its pool did not open
  std::unordered_map<std::uint64_t, DriverCall> in_flight;
  std::atomic<std::uint64_t> sent{0}, completed{0}, failed{0};

  /// The most calls the rank may hold: about `backlog` of work at the pace it answers, so
  /// that its workers never wait while answers travel to the driver and more calls travel
  /// back (the rank's ProcessPool answers a batch of calls sent ahead only when its worker
  /// starts the batch's last, so that round takes milliseconds: with 2 calls per worker the
  /// heavy array's workers stood idle 25-35 % of the time, with 18 5-10 %). A time, not a
  /// count, because a rank's backlog is also how long it keeps running once the driver's
  /// queue is empty: bounded in time, a slow rank cannot hold up the end for long. Between
  /// 2 per worker + 2 (until its pace is known) and 64 per worker + 2.
  [[nodiscard]] std::size_t capacity() const noexcept {
    const std::size_t least = 2 * std::size_t{workers} + 2;
    const std::size_t most = 64 * std::size_t{workers} + 2;
    if (answer_interval.count() <= 0) return least;
    const auto fits = static_cast<std::size_t>(backlog / answer_interval);
    return std::clamp(fits, least, most);
  }

  /// Notes a call about to be sent. A rank that held none was idle, not slow: the time to its
  /// next answer counts from now. Counted from its last answer, a pause of the program's
  /// (the serial loop between two heavy arrays in cluster_bench, 160 ms) made one answer
  /// look 16 ms late (the clamp in paced()): the average went from 0.42 to 2.4 ms, and the
  /// capacity from 38 calls to 6, recovering over the next dozen answers. Six calls did not
  /// cover the answers' trip to the driver and the refills' trip back.
  void sending(ClusterClock::time_point now) noexcept {
    if (in_flight.empty()) last_answer = now;
  }

  /// Notes an answer: the moving average of the time between two answers of this rank.
  void paced(ClusterClock::time_point now) noexcept {
    if (last_answer != ClusterClock::time_point{}) {
      const auto gap = std::min<ClusterClock::duration>(now - last_answer, backlog);
      answer_interval = answer_interval.count() == 0 ? gap : (answer_interval * 7 + gap) / 8;
    }
    last_answer = now;
  }

  /// How many more calls it may hold now.
  [[nodiscard]] std::size_t room() const noexcept {
    return capacity() - std::min(capacity(), in_flight.size());
  }

  /// The time it takes per call: the time between its answers, or before its first answer,
  /// its oldest call's age per worker (a lower bound on how slow it is).
  [[nodiscard]] ClusterClock::duration pace(ClusterClock::time_point now) const {
    if (answer_interval.count() > 0) return answer_interval;
    ClusterClock::duration oldest{0};
    for (const auto& [id, call] : in_flight) oldest = std::max(oldest, now - call.sent);
    return oldest / std::max(1u, workers);
  }

  /// How long the rank needs for the calls it holds, at its pace.
  [[nodiscard]] ClusterClock::duration work_left(ClusterClock::time_point now) const {
    return pace(now) * static_cast<ClusterClock::rep>(in_flight.size());
  }

  static constexpr std::chrono::milliseconds backlog{16};
  ClusterClock::time_point last_answer{};
  ClusterClock::duration answer_interval{0};
  bool recalling = false;  // a recall was sent, its answer has not come
  // Its last recall gave nothing back (all it holds has begun, or was sent ahead to a
  // worker): none is asked again until its calls change, or recalls would go back and forth
  // every few milliseconds while it finishes.
  bool nothing_to_recall = false;
};

/// One ClusterPool's state on rank 0. Submitting threads and the communication thread share
/// it; `mutex` guards everything but the ranks' counters.
class DriverPool {
 public:
  struct Settings {
    unsigned workers_per_rank;
    std::chrono::milliseconds max_call_time;
    unsigned max_retries;
    std::size_t max_queue;
  };

  DriverPool(MpiLink& link, std::uint32_t id, Settings settings, const std::vector<int>& ranks)
      : link_(link), id_(id), settings_(settings), ranks_(ranks.size()) {
    for (std::size_t i = 0; i < ranks.size(); ++i) ranks_[i].rank = ranks[i];
  }

  [[nodiscard]] std::uint32_t id() const noexcept { return id_; }

  /// Asks every rank to open its pool and waits for all answers.
  /// @throws ClusterError naming each rank that could not, after closing the others' pools,
  ///         or when the driver's main returned meanwhile; WouldDeadlock on the communication
  ///         thread (which brings the answers).
  void open() {
    if (on_cluster_link_thread) {
      throw WouldDeadlock("offload: a ClusterPool made in a continuation (the cluster's "
                          "communication thread) would wait for itself to open it");
    }
    for (const DriverRank& rank : ranks_) {
      post(rank.rank, WireKind::open_pool, settings_.workers_per_rank,
           static_cast<std::uint64_t>(settings_.max_call_time.count()));
    }
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return lost_ || every_rank(&DriverRank::answered); });
    if (lost_) throw ClusterError(ended_message);
    std::string failures;
    for (const DriverRank& rank : ranks_) {
      if (!rank.failure.empty()) failures += (failures.empty() ? "" : "; ") + rank.failure;
    }
    if (failures.empty()) return;
    lock.unlock();
    close();
    throw ClusterError("offload::ClusterPool: " + failures);
  }

  /// Queues a call (waiting while a bounded queue is full). @throws PoolClosed once closing;
  /// ClusterError when the function cannot cross or the driver's main returned; WouldDeadlock
  /// when the communication thread would wait for room only it can make.
  void accept(std::unique_ptr<CallTicket> ticket) {
    DriverCall call;
    Reader in(std::span<const std::byte>(ticket->request).subspan(frame_header_size));
    const CallTarget target = read_call_target(in);
    call.trampoline = image_offset(target.trampoline);
    call.function = image_offset(target.function);
    call.ticket = std::move(ticket);
    {
      std::unique_lock lock(mutex_);
      if (queue_full() && on_cluster_link_thread) {
        throw WouldDeadlock("offload: ClusterPool::submit from a continuation (the cluster's "
                            "communication thread) while the queue is full would wait forever");
      }
      changed_.wait(lock, [&] { return closing_ || !queue_full(); });
      if (lost_) throw ClusterError(ended_message);
      if (closing_) throw PoolClosed();
      call.id = next_call_++;
      queue_.push_back(std::move(call));
    }
    link_.wake();
  }

  /// Stops accepting calls, waits until every call ended, then closes the ranks' pools.
  /// @throws WouldDeadlock on the communication thread.
  void close() {
    if (on_cluster_link_thread) {
      throw WouldDeadlock("offload: a ClusterPool shut down from a continuation (the cluster's "
                          "communication thread) would wait for itself");
    }
    std::unique_lock lock(mutex_);
    closing_ = true;
    changed_.notify_all();
    changed_.wait(lock, [&] { return lost_ || (queue_.empty() && nothing_in_flight()); });
    if (lost_) return;
    for (const DriverRank& rank : ranks_) {
      if (rank.workers != 0) post(rank.rank, WireKind::close_pool, 0, 0);
    }
    changed_.wait(lock, [&] { return lost_ || every_open_rank_closed(); });
  }

  /// The driver's main returned with this pool still open: its calls can no longer run.
  void lose(const std::string& why) {
    std::vector<Settlement> settle;
    {
      std::lock_guard lock(mutex_);
      lost_ = closing_ = true;
      for (DriverCall& call : queue_) settle.push_back(failure(std::move(call), why));
      queue_.clear();
      for (DriverRank& rank : ranks_) {
        for (auto& [id, call] : rank.in_flight) settle.push_back(failure(std::move(call), why));
        rank.in_flight.clear();
      }
      changed_.notify_all();
    }
    settle_all(settle);
  }

  /// Per rank: calls sent, completed, failed.
  template <class Visit>
  void visit_counters(Visit&& visit) const {
    for (const DriverRank& rank : ranks_) {
      visit(rank.rank, rank.sent.load(std::memory_order_relaxed),
            rank.completed.load(std::memory_order_relaxed),
            rank.failed.load(std::memory_order_relaxed));
    }
  }

  // --- on the communication thread ----------------------------------------------------------

  /// Sends queued calls to the ranks with room; true when it sent or settled any.
  bool pump() {
    std::vector<Settlement> settle;
    bool sent = false;
    {
      std::lock_guard lock(mutex_);
      sent = dispatch_locked(settle);
      if (queue_.empty()) sent |= maybe_recall();
      if (sent || !settle.empty()) changed_.notify_all();  // room in a bounded queue
    }
    settle_all(settle);
    return sent || !settle.empty();
  }

  void on_message(int peer, const WireHead& head, std::vector<std::byte> body) {
    std::vector<Settlement> settle;
    {
      std::lock_guard lock(mutex_);
      if (lost_) return;  // answers to calls lose() failed already: nobody waits for them
      DriverRank& rank = rank_of(peer);
      switch (head.kind) {
        case WireKind::pool_opened: opened(rank, head, body); break;
        case WireKind::pool_closed: rank.closed = true; break;
        case WireKind::value: settle.push_back(value(rank, head, std::move(body))); break;
        case WireKind::error: error(rank, head, body, settle); break;
        case WireKind::recalled:
          recalled(rank, body, settle);
          break;
        default: throw ProtocolError("offload: the driver got a driver's message");
      }
      changed_.notify_all();
    }
    settle_all(settle);
  }

  /// Whether the communication thread must probe for answers; the typical time a call takes
  /// from send to answer (0 when unknown), and whether calls wait to be sent.
  [[nodiscard]] bool expects_answers(ClusterClock::duration& typical, bool& queued) {
    std::lock_guard lock(mutex_);
    typical = typical_call_;
    queued = !queue_.empty();
    return !every_rank(&DriverRank::answered) || !nothing_in_flight() ||
           (closing_ && !lost_ && !every_open_rank_closed());
  }

 private:
  [[nodiscard]] bool queue_full() const noexcept {
    return settings_.max_queue != 0 && queue_.size() >= settings_.max_queue;
  }

  [[nodiscard]] bool every_rank(bool DriverRank::*flag) const {
    return std::all_of(ranks_.begin(), ranks_.end(), [&](const DriverRank& r) { return r.*flag; });
  }

  /// Every rank whose pool opened has answered close_pool.
  [[nodiscard]] bool every_open_rank_closed() const {
    return std::all_of(ranks_.begin(), ranks_.end(),
                       [](const DriverRank& r) { return r.workers == 0 || r.closed; });
  }

  [[nodiscard]] bool nothing_in_flight() const {
    return std::all_of(ranks_.begin(), ranks_.end(),
                       [](const DriverRank& r) { return r.in_flight.empty(); });
  }

  DriverRank& rank_of(int peer) {
    for (DriverRank& rank : ranks_) {
      if (rank.rank == peer) return rank;
    }
    throw ProtocolError("offload: a message from rank " + std::to_string(peer) +
                        ", which serves no ClusterPool");
  }

  /// Sends queued calls, in order, to ranks with room while there are any; those asked to stop
  /// go to `settle`, cancelled. True when it sent any. Expects mutex_ held.
  bool dispatch_locked(std::vector<Settlement>& settle) {
    bool sent = false;
    while (!queue_.empty()) {
      DriverCall& next = queue_.front();
      if (next.ticket->stop_requested()) {
        settle.push_back({std::move(next.ticket), make_error<TaskCancelled>(), {}, nullptr});
        queue_.pop_front();
        continue;
      }
      DriverRank* rank = choose_rank(next.avoid_rank);
      if (rank == nullptr) break;
      send_call(*rank, std::move(next));
      queue_.pop_front();
      sent = true;
    }
    return sent;
  }

  /// The open rank with the fewest calls per worker that has room, skipping `avoid` while
  /// another rank is open (that one may be full: the call then waits for it). Ties go round.
  DriverRank* choose_rank(int avoid) {
    const bool others_open = std::any_of(ranks_.begin(), ranks_.end(), [&](const DriverRank& r) {
      return r.workers != 0 && r.rank != avoid;
    });
    DriverRank* best = nullptr;
    for (std::size_t step = 0; step < ranks_.size(); ++step) {
      DriverRank& rank = ranks_[(rotation_ + step) % ranks_.size()];
      if (rank.workers == 0 || rank.room() == 0) continue;
      if (others_open && rank.rank == avoid) continue;
      if (best == nullptr ||
          rank.in_flight.size() * best->workers < best->in_flight.size() * rank.workers) {
        best = &rank;
      }
    }
    if (best != nullptr) rotation_ = (rotation_ + 1) % ranks_.size();
    return best;
  }

  void send_call(DriverRank& rank, DriverCall call) {
    const std::vector<std::byte>& request = call.ticket->request;
    const std::size_t arguments = frame_header_size + 2 * sizeof(std::uint64_t);
    WireMessage message{rank.rank,
                        WireHead{WireKind::call, id_, call.id, call.trampoline, call.function, 0},
                        {request.begin() + static_cast<std::ptrdiff_t>(arguments), request.end()}};
    call.sent = ClusterClock::now();
    rank.sending(call.sent);
    rank.nothing_to_recall = false;
    link_.post(std::move(message));
    rank.sent.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t id = call.id;
    rank.in_flight.emplace(id, std::move(call));
  }

  void opened(DriverRank& rank, const WireHead& head, std::span<const std::byte> body) {
    rank.answered = true;
    if (head.a != 0) {
      rank.workers = static_cast<unsigned>(head.a);
      link_.wake();  // calls may wait for this rank
    } else {
      rank.failure = Reader(body).read<std::string>();
    }
  }

  DriverCall take(DriverRank& rank, std::uint64_t id) {
    const auto found = rank.in_flight.find(id);
    if (found == rank.in_flight.end()) {
      throw ProtocolError("offload: an answer from rank " + std::to_string(rank.rank) +
                          " to a call it does not hold");
    }
    DriverCall call = std::move(found->second);
    rank.in_flight.erase(found);
    rank.nothing_to_recall = false;
    rank.paced(ClusterClock::now());
    // A moving average of send-to-answer times, for how often to probe (next_wait()).
    const auto took = ClusterClock::now() - call.sent;
    typical_call_ = typical_call_.count() == 0 ? took : (typical_call_ * 7 + took) / 8;
    return call;
  }

  Settlement value(DriverRank& rank, const WireHead& head, std::vector<std::byte> body) {
    DriverCall call = take(rank, head.id);
    return {std::move(call.ticket), nullptr, std::move(body), &rank.completed};
  }

  void error(DriverRank& rank, const WireHead& head, std::span<const std::byte> body,
             std::vector<Settlement>& settle) {
    DriverCall call = take(rank, head.id);
    rank.failed.fetch_add(1, std::memory_order_relaxed);
    const auto kind = static_cast<ErrorKind>(head.a);
    if (kind == ErrorKind::worker_crashed && call.attempt < settings_.max_retries && !lost_) {
      ++call.attempt;
      call.avoid_rank = rank.rank;
      queue_.push_front(std::move(call));
      link_.wake();
      return;
    }
    settle.push_back(
        {std::move(call.ticket), decode_error(kind, body, rank.rank, call.attempt + 1), {}, nullptr});
  }

  /**
   * With nothing queued: when one rank holds at least recall_gap more work than another (see
   * work_left()), asks it for half the difference back, as calls it has not begun, and no more
   * than the other has room for (a call with nowhere to go would only wait in the queue). One
   * recall per rank at a time; the calls come back in `recalled()`. What the recall costs, a
   * few messages and the wait for the busy rank to read one (up to 2 ms:
   * RankServer::next_wait()), is why a smaller gap is left. True when it sent one. Expects
   * mutex_ held.
   */
  bool maybe_recall() {
    if (lost_) return false;
    const ClusterClock::time_point now = ClusterClock::now();
    DriverRank* most = nullptr;  // the most work left among the ranks that may be asked
    DriverRank* least = nullptr;
    ClusterClock::duration most_left{0};
    ClusterClock::duration least_left{0};
    for (DriverRank& rank : ranks_) {
      if (rank.workers == 0 || rank.closed) continue;
      const ClusterClock::duration left = rank.work_left(now);
      if (least == nullptr || left < least_left) {
        least = &rank;
        least_left = left;
      }
      if (rank.recalling || rank.nothing_to_recall) continue;
      if (most == nullptr || left > most_left) {
        most = &rank;
        most_left = left;
      }
    }
    if (most == nullptr || most == least || most_left - least_left < recall_gap) return false;
    // most_left >= recall_gap, so the pace that made it is not zero.
    const auto calls = std::min<std::uint64_t>(
        static_cast<std::uint64_t>((most_left - least_left) / 2 / most->pace(now)), least->room());
    if (calls == 0) return false;
    most->recalling = true;
    post(most->rank, WireKind::recall, calls, 0);
    return true;
  }

  /// A rank gave calls back (`recalled`): they no longer count as sent to it, and go out again
  /// at once, before anything queued and in the order they were submitted, to other ranks:
  /// each avoids the rank it came from (instead of a rank it crashed on, where it ran already
  /// again since), or the rank with the fewest calls could be that one, and the same calls go
  /// back and forth. At once, because a continuation run before the next pump() that submits
  /// would find a bounded queue full of them, and fail with WouldDeadlock.
  void recalled(DriverRank& rank, std::span<const std::byte> body,
                std::vector<Settlement>& settle) {
    rank.recalling = false;
    Reader in(body);
    auto ids = in.read<std::vector<std::uint64_t>>();
    in.expect_end();
    rank.nothing_to_recall = ids.empty();
    std::sort(ids.begin(), ids.end(), std::greater<>());
    for (const std::uint64_t id : ids) {
      const auto found = rank.in_flight.find(id);
      if (found == rank.in_flight.end()) {
        throw ProtocolError("offload: rank " + std::to_string(rank.rank) +
                            " gave back a call it does not hold");
      }
      found->second.avoid_rank = rank.rank;
      queue_.push_front(std::move(found->second));
      rank.in_flight.erase(found);
      rank.sent.fetch_sub(1, std::memory_order_relaxed);
    }
    dispatch_locked(settle);
  }

  static Settlement failure(DriverCall call, const std::string& why) {
    return {std::move(call.ticket), make_error<ClusterError>(why), {}, nullptr};
  }

  /// Completes the futures (running their continuations) with no lock held.
  static void settle_all(std::vector<Settlement>& settle) {
    for (Settlement& s : settle) {
      if (s.error) {
        s.ticket->fail(std::move(s.error));
        continue;
      }
      try {
        s.ticket->complete(s.payload, *s.counter);
      } catch (...) {  // the result did not decode: the call failed after all
        s.ticket->fail(std::current_exception());
      }
    }
  }

  void post(int rank, WireKind kind, std::uint64_t a, std::uint64_t b) {
    link_.post(WireMessage{rank, WireHead{kind, id_, 0, a, b, 0}, {}});
  }

  /// The least difference in work left between two ranks that a recall evens out.
  static constexpr std::chrono::milliseconds recall_gap{4};

  MpiLink& link_;
  const std::uint32_t id_;
  const Settings settings_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<DriverRank> ranks_;
  std::deque<DriverCall> queue_;
  std::uint64_t next_call_ = 1;
  std::size_t rotation_ = 0;
  ClusterClock::duration typical_call_{0};
  bool closing_ = false;
  bool lost_ = false;
};

/// The role of rank 0: the ClusterPools alive now, and the job's end.
class ClusterDriver final : public LinkRole {
 public:
  explicit ClusterDriver(MpiLink& link) : link_(link) {}

  /// Ranks whose program differs from rank 0's, as a sentence; empty when all match.
  [[nodiscard]] std::string mismatched_ranks() const {
    const std::vector<RankHello>& hellos = link_.hellos();
    std::string list;
    for (std::size_t r = 1; r < hellos.size(); ++r) {
      if (hellos[r].program_hash != hellos[0].program_hash ||
          hellos[r].program_size != hellos[0].program_size ||
          hellos[r].protocol != hellos[0].protocol) {
        list += (list.empty() ? "" : ", ") + std::to_string(r);
      }
    }
    return list;
  }

  std::shared_ptr<DriverPool> add_pool(DriverPool::Settings settings) {
    std::vector<int> ranks;
    for (int r = 1; r < link_.size(); ++r) ranks.push_back(r);
    std::lock_guard lock(mutex_);
    if (ending_) throw ClusterError(ended_message);
    auto pool = std::make_shared<DriverPool>(link_, next_pool_++, settings, ranks);
    pools_.push_back(pool);
    return pool;
  }

  void remove_pool(const DriverPool& pool) {
    std::lock_guard lock(mutex_);
    std::erase_if(pools_, [&](const std::shared_ptr<DriverPool>& p) { return p.get() == &pool; });
  }

  /// The driver's main returned: pools still open lose their calls; the serving ranks stop.
  void end() {
    std::vector<std::shared_ptr<DriverPool>> left;
    {
      std::lock_guard lock(mutex_);
      if (ending_) return;
      ending_ = true;
      left = pools_;
    }
    for (const auto& pool : left) pool->lose("offload: the driver's main returned first");
    // The finishes are posted before finished() can say so: the communication thread ends as
    // soon as the role is finished and nothing is posted, and it may look at any moment.
    // (Posted after, a thread that looked in between ended without telling the ranks: one
    // serving rank never finished, and the job hung in MPI_Finalize.)
    std::lock_guard lock(mutex_);
    for (int r = 1; r < link_.size(); ++r) {
      link_.post(WireMessage{r, WireHead{WireKind::finish, 0, 0, 0, 0, 0}, {}});
    }
    ended_ = true;
    link_.wake();  // with no serving rank (mpirun -np 1) nothing was posted to wake it
  }

  void on_message(int peer, const WireHead& head, std::vector<std::byte> body) override {
    if (head.kind == WireKind::finished) {
      std::lock_guard lock(mutex_);
      ++ranks_finished_;
      return;
    }
    if (const std::shared_ptr<DriverPool> pool = find(head.pool)) {
      pool->on_message(peer, head, std::move(body));
    }  // else: an answer for a pool that was lost at the end; nobody waits for it
  }

  bool pump() override {
    bool any = false;
    for (const auto& pool : snapshot()) any |= pool->pump();
    return any;
  }

  /// Sleeps until woken (by submit()) while no answer is due. With answers due, it spins
  /// (yielding) for short calls, whose answers come before a sleeping thread would even wake
  /// up, but never longer than a short call takes: a spinning thread competes for a core
  /// with the ranks' keepers and workers (after a burst of tiny calls, its stale estimate
  /// made it spin through the start of a heavy one and delayed a rank's keeper by 3 ms).
  /// Otherwise it probes about eight times per typical call: at most every 4 ms while calls
  /// wait to be sent, every 0.5 ms once none does. Once main returned, every 1 ms until each
  /// serving rank said `finished`.
  LinkWait next_wait(ClusterClock::duration idle) override {
    using namespace std::chrono;
    {
      std::lock_guard lock(mutex_);
      if (ended_) return {LinkWait::Kind::sleep, 1ms};  // until every rank said finished
    }
    bool expecting = false;
    bool queued = false;
    ClusterClock::duration typical{0};
    for (const auto& pool : snapshot()) {
      ClusterClock::duration t{0};
      bool q = false;
      if (pool->expects_answers(t, q)) {
        expecting = true;
        queued = queued || q;
        typical = std::max(typical, t);
      }
    }
    if (!expecting) return {};
    if (typical < short_call && idle < short_call) return {LinkWait::Kind::spin, {}};
    // Calls still queued: the ranks hold ~16 ms of work, a probe every few ms refills them in
    // time (each wake-up of this thread takes a core from a worker). None queued: the
    // answers are the end of someone's wait.
    const microseconds most = queued ? 4ms : 500us;
    return {LinkWait::Kind::sleep,
            std::clamp<microseconds>(duration_cast<microseconds>(typical) / 8, 50us, most)};
  }

  /// Once every serving rank said `finished`: all they sent before it has been received, and
  /// they send nothing after, so no send of theirs is left waiting for a driver that is gone.
  bool finished() override {
    std::lock_guard lock(mutex_);
    return ended_ && ranks_finished_ == link_.size() - 1;
  }

 private:
  std::vector<std::shared_ptr<DriverPool>> snapshot() {
    std::lock_guard lock(mutex_);
    return pools_;
  }

  std::shared_ptr<DriverPool> find(std::uint32_t id) {
    std::lock_guard lock(mutex_);
    for (const auto& pool : pools_) {
      if (pool->id() == id) return pool;
    }
    return nullptr;
  }

  MpiLink& link_;
  std::mutex mutex_;
  std::vector<std::shared_ptr<DriverPool>> pools_;
  std::uint32_t next_pool_ = 1;
  bool ending_ = false;     // end() began: no new pool
  bool ended_ = false;      // the serving ranks' finishes are posted
  int ranks_finished_ = 0;  // serving ranks that answered `finish`
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CLUSTER_DRIVER_HPP

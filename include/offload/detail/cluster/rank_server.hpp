#ifndef OFFLOAD_DETAIL_CLUSTER_RANK_SERVER_HPP
#define OFFLOAD_DETAIL_CLUSTER_RANK_SERVER_HPP

/// @file detail/cluster/rank_server.hpp
/// What a serving rank (1..N-1) does: for each of the driver's ClusterPools it runs a local
/// ProcessPool, and it hands that pool the calls as they arrive, still encoded. Because the
/// call runs in the local pool exactly as on one machine, a crash, a timeout or an exception
/// ends the call with the same error, and the rank goes on serving. The pools do not retry:
/// the driver retries a crashed call itself, on another rank where there is one.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "../../process_pool.hpp"
#include "link.hpp"
#include "program_image.hpp"
#include "wire.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// Hands a ProcessPool a call that is already encoded (its ticket built by the caller), and
/// takes queued ones back.
struct ProcessPoolAccess {
  static void submit(ProcessPool& pool, std::unique_ptr<CallTicket>& call) {
    pool.core_->accept(call, true);
  }
  static std::vector<std::unique_ptr<CallTicket>> withdraw_newest(ProcessPool& pool,
                                                                  std::size_t most) {
    return pool.core_->withdraw_newest(most);
  }
};

/// The calls a serving rank's pools run or hold now, how long a call typically takes here,
/// from arrival to answer, and whether the rank is finishing.
struct RankLoad {
  std::atomic<std::size_t> in_flight{0};
  /// The driver said finish: calls not started never start, and no answer is sent (the driver
  /// failed those calls already, and ends once the rank says `finished`).
  std::atomic<bool> finishing{false};
  std::atomic<std::int64_t> typical_ns{0};  // a moving average; concurrent updates may lose
                                            // one sample, harmlessly

  void record(ClusterClock::duration took) noexcept {
    const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(took).count();
    const std::int64_t before = typical_ns.load(std::memory_order_relaxed);
    typical_ns.store(before == 0 ? ns : (before * 7 + ns) / 8, std::memory_order_relaxed);
  }
  [[nodiscard]] bool calls_are_short() const noexcept {
    return std::chrono::nanoseconds(typical_ns.load(std::memory_order_relaxed)) < short_call;
  }
};

/// A call from the driver, run by a local pool: its ticket sends the result, or the error,
/// back to rank 0 instead of completing a future here.
class RelayTicket final : public CallTicket {
 public:
  /// Counts itself in `load` until settled.
  RelayTicket(MpiLink& link, const WireHead& head, RankLoad& load)
      : link_(link), pool_(head.pool), id_(head.id), load_(load) {
    load_.in_flight.fetch_add(1, std::memory_order_relaxed);
  }
  RelayTicket(const RelayTicket&) = delete;
  RelayTicket& operator=(const RelayTicket&) = delete;

  /// A ticket is always settled by its pool; should one be dropped, the driver still hears.
  ~RelayTicket() override {
    if (!settled_) fail(make_error<PoolClosed>("offload: the rank's process pool dropped this call"));
  }

  void complete(std::span<const std::byte> payload,
                std::atomic<std::uint64_t>& completed) override {
    WireMessage reply{0, reply_head(WireKind::value), {payload.begin(), payload.end()}};
    count(completed);
    settle(std::move(reply));
  }

  void fail(std::exception_ptr error) noexcept override {
    try {
      ErrorKind kind = ErrorKind::other;
      std::vector<std::byte> body = encode_error(std::move(error), kind);
      WireMessage reply{0, reply_head(WireKind::error), std::move(body)};
      reply.head.a = static_cast<std::uint64_t>(kind);
      settle(std::move(reply));
    } catch (...) {
      // Out of memory while telling the driver: nothing can carry the news; the job is lost.
      link_.abort_job(71);
    }
  }

  [[nodiscard]] bool stop_requested() const noexcept override {
    return load_.finishing.load(std::memory_order_relaxed);
  }

  /// The call goes back to the driver unrun (its pool gave it up: withdraw_newest()), so it
  /// sends no answer from here. Returns its id.
  std::uint64_t withdrawn() noexcept {
    settled_ = true;
    load_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    return id_;
  }

 private:
  [[nodiscard]] WireHead reply_head(WireKind kind) const noexcept {
    return WireHead{kind, pool_, id_, 0, 0, 0};
  }

  /// Sends the answer, waking the communication thread. That costs one wake-up per batch, not
  /// per answer: the pool's keeper settles the replies of a batch of calls sent ahead one
  /// right after the other, and they all join the first before the thread runs. (Holding
  /// answers back until the rank ran low, to save wake-ups, left workers idle 5-10 % of the
  /// heavy array: the refills then reached the rank only at its next wake-up.)
  void settle(WireMessage reply) {
    settled_ = true;
    load_.record(ClusterClock::now() - arrived_);
    load_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    if (!load_.finishing.load(std::memory_order_relaxed)) link_.post(std::move(reply));
  }

  MpiLink& link_;
  std::uint32_t pool_;
  std::uint64_t id_;
  RankLoad& load_;
  ClusterClock::time_point arrived_ = ClusterClock::now();
  bool settled_ = false;
};

/// The role of ranks 1..N-1.
class RankServer final : public LinkRole {
 public:
  explicit RankServer(MpiLink& link) : link_(link) {}

  ~RankServer() override { shut_down_pools(); }

  void on_message(int peer, const WireHead& head, std::vector<std::byte> body) override {
    if (peer != 0) throw ProtocolError("offload: a serving rank got a message from a non-driver");
    if (finished_) return;  // what the driver sent before it ended: it waits for nothing more
    switch (head.kind) {
      case WireKind::open_pool: return open_pool(head);
      case WireKind::call: return call(head, body);
      case WireKind::recall:
        return recall(head);
      case WireKind::close_pool: return close_pool(head);
      case WireKind::finish: return finish();
      default: throw ProtocolError("offload: a serving rank got a driver's message");
    }
  }

  bool pump() override { return false; }

  /// Answers wake the thread (post()), so while calls run it sleeps. After the last answer
  /// to short calls it spins for a millisecond: a driver that waited for the answer often
  /// sends the next call at once, and a rank asleep when it comes makes it wait for the next
  /// probe (a shorter spin falls into that: the slower round trips leave the rank asleep for
  /// the next call too). After long calls it does not spin: a spinning thread, even one that
  /// yields, preempts the workers of the ranks beside it tens of thousands of times a second.
  /// Then it probes less and less often, down to every 5 ms: 200 probes a second, 0.5-1 % of
  /// a core in a VM where each wake-up costs ~40 us (2 ms cost 2 %).
  LinkWait next_wait(ClusterClock::duration idle) override {
    using namespace std::chrono;
    if (load_.in_flight.load(std::memory_order_relaxed) != 0) return {LinkWait::Kind::sleep, 2ms};
    if (idle < answer_spin && load_.calls_are_short()) return {LinkWait::Kind::spin, {}};
    const auto backoff = duration_cast<microseconds>(idle) / 8;
    return {LinkWait::Kind::sleep, std::clamp<microseconds>(backoff, 100us, 5ms)};
  }

  bool finished() override { return finished_; }

 private:
  void open_pool(const WireHead& head) {
    WireMessage reply{0, WireHead{WireKind::pool_opened, head.pool, 0, 0, 0, 0}, {}};
    try {
      ProcessOptions options;
      options.workers = static_cast<unsigned>(head.a);
      options.max_call_time = std::chrono::milliseconds(head.b);
      options.max_retries = 0;  // the driver retries, on another rank where there is one
      auto pool = std::make_unique<ProcessPool>(options);
      reply.head.a = pool->size();
      pools_[head.pool] = std::move(pool);
    } catch (const std::exception& e) {
      const std::string why = "rank " + std::to_string(link_.rank()) +
                              " could not start its process pool: " + e.what();
      Writer(reply.body).write(why);
    }
    link_.post(std::move(reply));
  }

  void call(const WireHead& head, std::span<const std::byte> arguments) {
    std::unique_ptr<CallTicket> ticket = std::make_unique<RelayTicket>(link_, head, load_);
    try {
      const auto found = pools_.find(head.pool);
      if (found == pools_.end()) throw ProtocolError("offload: a call for a pool this rank lacks");
      begin_frame(ticket->request);
      Writer out(ticket->request);
      out.write(image_address(head.a));
      out.write(image_address(head.b));
      out.write_bytes(arguments.data(), arguments.size());
      finish_frame(ticket->request, FrameKind::call);
      ProcessPoolAccess::submit(*found->second, ticket);
    } catch (...) {
      if (ticket) ticket->fail(std::current_exception());
    }
  }

  /// The driver wants back up to head.a of the pool's calls (another rank is running dry):
  /// those still queued, the newest first. The reply lists them, maybe none.
  void recall(const WireHead& head) {
    std::vector<std::uint64_t> ids;
    if (const auto found = pools_.find(head.pool); found != pools_.end()) {
      for (auto& ticket : ProcessPoolAccess::withdraw_newest(*found->second, head.a)) {
        ids.push_back(static_cast<RelayTicket&>(*ticket).withdrawn());  // its only kind here
      }
    }
    WireMessage reply{0, WireHead{WireKind::recalled, head.pool, 0, 0, 0, 0}, {}};
    Writer(reply.body).write(ids);
    link_.post(std::move(reply));
  }

  void close_pool(const WireHead& head) {
    const auto found = pools_.find(head.pool);
    if (found != pools_.end()) {
      found->second->shutdown();  // the driver waited for its calls: this finishes at once
      pools_.erase(found);
    }
    link_.post(WireMessage{0, WireHead{WireKind::pool_closed, head.pool, 0, 0, 0, 0}, {}});
  }

  /// The driver's main returned. Calls of pools it left open still run or wait here: those
  /// not started never start, the running ones end (a hang at its max_call_time, if any), and
  /// no answer goes out. Then the rank's last message, after which the driver may finalize:
  /// an answer sent after it could find the driver gone, and a big one (sent only once the
  /// receiver matches it) would hold this rank forever.
  void finish() {
    load_.finishing.store(true, std::memory_order_relaxed);
    shut_down_pools();
    finished_ = true;
    link_.post(WireMessage{0, WireHead{WireKind::finished, 0, 0, 0, 0, 0}, {}});
  }

  void shut_down_pools() {
    for (auto& [id, pool] : pools_) pool->shutdown();
    pools_.clear();
  }

  MpiLink& link_;
  std::unordered_map<std::uint32_t, std::unique_ptr<ProcessPool>> pools_;
  RankLoad load_;  // calls handed to a pool and not yet answered
  bool finished_ = false;
};

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CLUSTER_RANK_SERVER_HPP

// ClusterPool: run under `mpirun -np 3` (main() is in support/cluster_main.cpp) (rank 0 runs these cases, ranks 1 and 2 serve), and
// alone without mpirun, where the pool runs its calls locally (cases tagged [ranks] need
// serving ranks and are left out there: `cluster_test "~[ranks]"`).
//
// Built with OFFLOAD_CLUSTER_MAX_MPI_MESSAGE at 1 MiB, so that an 8 MiB argument crosses in
// pieces, as one over MPI's int count would.

#include <offload/cluster.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "catch.hpp"

// Fault tests need the plain signal a crash raises, not a sanitizer's report and exit code.
extern "C" const char* __asan_default_options() {
  return "handle_segv=0:handle_sigbus=0:handle_sigfpe=0";
}
extern "C" const char* __tsan_default_options() {
  return "handle_segv=0:handle_sigbus=0:handle_sigfpe=0";
}
extern "C" const char* __ubsan_default_options() {
  return "handle_segv=0:handle_sigbus=0:handle_sigfpe=0";
}

using namespace std::chrono_literals;
using offload::ClusterOptions;
using offload::ClusterPool;

namespace {

/// The MPI rank of the process running a call (its worker inherits the rank's environment);
/// -1 without mpirun.
int rank_here() {
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  return rank == nullptr ? -1 : std::atoi(rank);
}

enum class Colour : std::uint8_t { red = 1, green = 7 };

struct Point {
  double x = 0;
  double y = 0;
  friend bool operator==(const Point&, const Point&) = default;
};

}  // namespace

template <>
struct offload::Codec<Point> {
  static void encode(Writer& out, const Point& p) {
    out.write(p.x);
    out.write(p.y);
  }
  static Point decode(Reader& in) {
    Point p;
    p.x = in.read<double>();
    p.y = in.read<double>();
    return p;
  }
};

namespace {

using Everything =
    std::tuple<bool, char, std::int8_t, std::uint16_t, int, std::uint64_t, float, double, Colour,
               std::string, std::vector<int>, std::array<std::int16_t, 3>,
               std::pair<std::string, double>, std::optional<std::string>,
               std::map<std::string, std::vector<double>>, Point, std::vector<Point>>;

Everything echo_everything(Everything value) { return value; }

std::pair<int, int> tagged(int i) { return {i, rank_here()}; }

int square(int x) { return x * x; }

int crash_with_segfault(int) {
  ::raise(SIGSEGV);
  return 0;
}
int crash_with_abort(int) { std::abort(); }
int exit_with_three(int) { ::_exit(3); }
int throw_runtime_error(int x) { throw std::runtime_error("bad input " + std::to_string(x)); }
int hang_forever(int) {
  for (;;) ::pause();
}
/// 600 ms on rank 1, 5 ms elsewhere: a rank far slower than its peer.
std::pair<int, int> slow_on_rank_one(int i) {
  std::this_thread::sleep_for(std::chrono::milliseconds(rank_here() == 1 ? 600 : 5));
  return {i, rank_here()};
}

int sleep_for_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

/// Crashes when `marker` does not exist yet (creating it), succeeds once it does: a call that
/// crashes on its first attempt only, wherever the retry runs (the ranks share this machine).
int crash_first_time(std::string marker) {
  struct stat info {};
  if (::stat(marker.c_str(), &info) != 0) {
    if (std::FILE* f = std::fopen(marker.c_str(), "w")) std::fclose(f);
    ::raise(SIGSEGV);
  }
  return rank_here();
}

std::uint64_t checksum(std::vector<std::uint8_t> bytes) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) sum += bytes[i] * (i % 251 + 1);
  return sum;
}

std::vector<std::uint8_t> reversed(std::vector<std::uint8_t> bytes) {
  return {bytes.rbegin(), bytes.rend()};
}

/// 100 ordinary calls around one faulty one: all succeed, and the faulty one fails with
/// `Expected`, whose message is returned.
template <class Expected, class Fault>
std::string contain_fault(Fault fault, ClusterOptions options = {.workers_per_rank = 1}) {
  ClusterPool cluster(options);
  std::vector<offload::Future<int>> before, after;
  for (int i = 0; i < 50; ++i) before.push_back(cluster.submit(square, i));
  auto faulty = cluster.submit(fault, 7);
  for (int i = 50; i < 100; ++i) after.push_back(cluster.submit(square, i));
  std::string message;
  try {
    faulty.get();
  } catch (const Expected& error) {
    message = error.what();
  }
  for (int i = 0; i < 50; ++i) CHECK(before[static_cast<std::size_t>(i)].get() == i * i);
  for (int i = 50; i < 100; ++i) CHECK(after[static_cast<std::size_t>(i - 50)].get() == i * i);
  // The rank that ran the fault still serves: every rank answers again.
  std::vector<offload::Future<int>> again;
  for (int i = 0; i < 10; ++i) again.push_back(cluster.submit(square, i));
  for (int i = 0; i < 10; ++i) CHECK(again[static_cast<std::size_t>(i)].get() == i * i);
  for (const offload::RankStats& rank : cluster.stats().per_rank) {
    CHECK(rank.sent == rank.completed + rank.failed);
    CHECK(rank.completed > 0);
  }
  CHECK_FALSE(message.empty());
  return message;
}

std::string marker_path(const char* name) {
  return "/tmp/offload_cluster_test_" + std::to_string(::getpid()) + "_" + name;
}

}  // namespace

// --- calls -----------------------------------------------------------------------------------

TEST_CASE("every codec type crosses to every rank and back", "[cluster]") {
  ClusterPool cluster({.workers_per_rank = 1});
  const Everything value{true, 'x', std::int8_t{-5}, std::uint16_t{65535}, -123456,
                         std::uint64_t{1} << 60, 1.5f, -2.25, Colour::green,
                         std::string("h\0llo", 5), std::vector<int>{1, -2, 3},
                         std::array<std::int16_t, 3>{-1, 0, 1}, std::pair<std::string, double>{"pi", 3.14},
                         std::optional<std::string>("present"),
                         std::map<std::string, std::vector<double>>{{"a", {1.0}}, {"", {}}},
                         Point{1.0, -1.0}, std::vector<Point>{{0, 0}, {2, 3}}};
  std::vector<offload::Future<Everything>> answers;
  for (int i = 0; i < 8; ++i) answers.push_back(cluster.submit(echo_everything, value));
  for (auto& answer : answers) CHECK(answer.get() == value);
  for (const offload::RankStats& rank : cluster.stats().per_rank) CHECK(rank.completed > 0);
  CHECK(cluster.stats().per_rank.size() == cluster.ranks());
}

TEST_CASE("2,000 small calls are each answered once with their own value", "[cluster]") {
  ClusterPool cluster({.workers_per_rank = 2});
  std::vector<offload::Future<std::pair<int, int>>> answers;
  for (int i = 0; i < 2000; ++i) answers.push_back(cluster.submit(tagged, i));
  std::map<int, int> calls_per_rank;
  int wrong = 0;
  for (int i = 0; i < 2000; ++i) {
    const auto [value, rank] = answers[static_cast<std::size_t>(i)].get();
    if (value != i) ++wrong;
    ++calls_per_rank[rank];
  }
  CHECK(wrong == 0);
  std::uint64_t completed = 0;
  for (const offload::RankStats& rank : cluster.stats().per_rank) {
    CHECK(rank.completed > 0);  // both serving ranks answered some
    CHECK(rank.sent == rank.completed);
    CHECK(rank.failed == 0);
    CHECK(calls_per_rank[rank.rank] == static_cast<int>(rank.completed));
    completed += rank.completed;
  }
  if (cluster.ranks() > 0) CHECK(completed == 2000);
}

TEST_CASE("both serving ranks take calls, and each reports its own", "[cluster][ranks]") {
  ClusterPool cluster({.workers_per_rank = 1});
  REQUIRE(cluster.ranks() == 2);
  std::vector<offload::Future<std::pair<int, int>>> answers;
  for (int i = 0; i < 200; ++i) answers.push_back(cluster.submit(tagged, i));
  std::set<int> ranks;
  for (auto& answer : answers) ranks.insert(answer.get().second);
  CHECK(ranks == std::set<int>{1, 2});
  const offload::ClusterStats stats = cluster.stats();
  REQUIRE(stats.per_rank.size() == 2);
  CHECK(stats.per_rank[0].rank == 1);
  CHECK(stats.per_rank[1].rank == 2);
  CHECK(stats.per_rank[0].sent + stats.per_rank[1].sent == 200);
}

TEST_CASE("calls a slow rank has not begun move to a rank that ran dry", "[cluster][ranks]") {
  // Each rank takes 4 calls at first (2 per worker + 2, its pace unknown), and rank 2 the
  // rest. Rank 1 begins one and has one sent ahead to its worker; the driver recalls the
  // other two once rank 2 has little left, and rank 2 runs them. Without the recall rank 1
  // ran all four, 2.4 s.
  ClusterPool cluster({.workers_per_rank = 1});
  REQUIRE(cluster.ranks() == 2);
  std::vector<offload::Future<std::pair<int, int>>> answers;
  for (int i = 0; i < 12; ++i) answers.push_back(cluster.submit(slow_on_rank_one, i));
  std::map<int, std::uint64_t> calls_per_rank;
  for (int i = 0; i < 12; ++i) {
    const auto [value, rank] = answers[static_cast<std::size_t>(i)].get();
    CHECK(value == i);
    ++calls_per_rank[rank];
  }
  CHECK(calls_per_rank[1] <= 2);
  std::uint64_t sent = 0;
  for (const offload::RankStats& rank : cluster.stats().per_rank) {
    CHECK(rank.sent == rank.completed);  // a recalled call counts where it ran, once
    CHECK(rank.completed == calls_per_rank[rank.rank]);
    sent += rank.sent;
  }
  CHECK(sent == 12);
}

TEST_CASE("an 8 MiB argument and an 8 MiB result cross intact", "[cluster]") {
  ClusterPool cluster({.workers_per_rank = 1});
  std::vector<std::uint8_t> big(8u << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>(i * 7 + i / 4096);
  CHECK(cluster.submit(checksum, big).get() == checksum(big));
  const std::vector<std::uint8_t> back = cluster.submit(reversed, big).get();
  REQUIRE(back.size() == big.size());
  CHECK(std::equal(back.rbegin(), back.rend(), big.begin()));
  CHECK(cluster.submit(checksum, std::vector<std::uint8_t>()).get() == 0);
}

// --- faults ----------------------------------------------------------------------------------

TEST_CASE("each kind of fault fails only its own call, and the rank goes on", "[cluster]") {
  SECTION("segmentation fault") {
    CHECK_THAT(contain_fault<offload::WorkerCrashed>(crash_with_segfault),
               Catch::Matchers::Contains("SIGSEGV"));
  }
  SECTION("abort") {
    CHECK_THAT(contain_fault<offload::WorkerCrashed>(crash_with_abort),
               Catch::Matchers::Contains("SIGABRT"));
  }
  SECTION("_exit(3)") {
    CHECK_THAT(contain_fault<offload::WorkerCrashed>(exit_with_three),
               Catch::Matchers::Contains("exited with code 3"));
  }
  SECTION("an exception, with its type and message") {
    ClusterPool cluster({.workers_per_rank = 1});
    try {
      cluster.submit(throw_runtime_error, 5).get();
      FAIL("no exception");
    } catch (const offload::RemoteError& error) {
      CHECK(error.type_name() == "std::runtime_error");
      CHECK(std::string(error.what()) == "std::runtime_error: bad input 5");
    }
    CHECK_THAT(contain_fault<offload::RemoteError>(throw_runtime_error),
               Catch::Matchers::Contains("bad input 7"));
  }
  SECTION("a hang, killed at max_call_time") {
    const auto start = std::chrono::steady_clock::now();
    const std::string message = contain_fault<offload::CallTimeout>(
        hang_forever, {.workers_per_rank = 1, .max_call_time = 500ms});
    CHECK_THAT(message, Catch::Matchers::Contains("max_call_time"));
    CHECK(std::chrono::steady_clock::now() - start >= 500ms);
  }
}

TEST_CASE("a call that crashes on its first attempt succeeds with max_retries = 1",
          "[cluster]") {
  const std::string marker = marker_path("retry");
  std::remove(marker.c_str());
  ClusterPool cluster({.workers_per_rank = 1, .max_retries = 1});
  const int ran_on = cluster.submit(crash_first_time, marker).get();
  std::remove(marker.c_str());
  std::uint64_t failed = 0, completed = 0;
  for (const offload::RankStats& rank : cluster.stats().per_rank) {
    failed += rank.failed;
    completed += rank.completed;
    CHECK(rank.sent == rank.completed + rank.failed);
  }
  if (cluster.ranks() == 2) {
    CHECK(failed == 1);
    CHECK(completed == 1);
    // The retry went to the other rank: the one that crashed is the one that did not answer.
    for (const offload::RankStats& rank : cluster.stats().per_rank) {
      CHECK((rank.rank == ran_on) == (rank.completed == 1));
    }
  }
  SECTION("without a retry the same call fails") {
    std::remove(marker.c_str());
    ClusterPool strict({.workers_per_rank = 1});
    CHECK_THROWS_AS(strict.submit(crash_first_time, marker).get(), offload::WorkerCrashed);
    std::remove(marker.c_str());
  }
}

TEST_CASE("stats() follow what happened", "[cluster]") {
  ClusterPool cluster({.workers_per_rank = 1});
  std::vector<offload::Future<int>> good, bad;
  for (int i = 0; i < 40; ++i) good.push_back(cluster.submit(square, i));
  for (int i = 0; i < 4; ++i) bad.push_back(cluster.submit(throw_runtime_error, i));
  for (auto& f : good) f.get();
  for (auto& f : bad) CHECK_THROWS_AS(f.get(), offload::RemoteError);
  std::uint64_t sent = 0, completed = 0, failed = 0;
  for (const offload::RankStats& rank : cluster.stats().per_rank) {
    sent += rank.sent;
    completed += rank.completed;
    failed += rank.failed;
  }
  if (cluster.ranks() > 0) {
    CHECK(sent == 44);
    CHECK(completed == 40);
    CHECK(failed == 4);
  } else {
    CHECK(cluster.stats().per_rank.empty());
  }
}

// --- life cycle --------------------------------------------------------------------------------

TEST_CASE("pools one after another, and two at once, each with their own workers",
          "[cluster]") {
  for (int round = 0; round < 3; ++round) {
    ClusterPool cluster({.workers_per_rank = static_cast<unsigned>(1 + round)});
    CHECK(cluster.submit(square, round).get() == round * round);
  }
  ClusterPool first({.workers_per_rank = 1});
  ClusterPool second({.workers_per_rank = 1, .max_call_time = 300ms});
  auto slow = second.submit(hang_forever, 0);
  CHECK(first.submit(square, 9).get() == 81);
  CHECK_THROWS_AS(slow.get(), offload::CallTimeout);
}

TEST_CASE("shutdown finishes queued calls, then submit fails with PoolClosed", "[cluster]") {
  ClusterPool cluster({.workers_per_rank = 1, .max_queue = 4});
  std::vector<offload::Future<int>> answers;
  for (int i = 0; i < 100; ++i) answers.push_back(cluster.submit(square, i));  // blocks at 4
  cluster.shutdown();
  for (int i = 0; i < 100; ++i) CHECK(answers[static_cast<std::size_t>(i)].get() == i * i);
  CHECK_THROWS_AS(cluster.submit(square, 1), offload::PoolClosed);
  cluster.shutdown();  // idempotent
}

TEST_CASE("a call cancelled before it was sent never runs", "[cluster]") {
  ClusterPool cluster({.workers_per_rank = 1});
  // More calls than the ranks hold (16 per worker + 2, docs/cluster.md), so that the last
  // one waits on the driver.
  std::vector<offload::Future<int>> blockers;
  const unsigned ranks = std::max(1u, cluster.ranks());
  for (unsigned i = 0; i < 20 * ranks; ++i) blockers.push_back(cluster.submit(sleep_for_ms, 50));
  auto cancelled = cluster.submit(square, 3);
  cancelled.request_stop();
  CHECK_THROWS_AS(cancelled.get(), offload::TaskCancelled);
  for (auto& blocker : blockers) CHECK(blocker.get() == 50);
}

TEST_CASE("a ClusterPool made in a continuation fails with WouldDeadlock, never hangs",
          "[cluster][ranks]") {
  // Continuations run on the communication thread, which brings the answers opening waits for.
  ClusterPool cluster({.workers_per_rank = 1});
  auto made = cluster.submit(square, 2).then([](int) {
    try {
      ClusterPool inner({.workers_per_rank = 1});
      return std::string("opened");
    } catch (const offload::WouldDeadlock&) {
      return std::string("WouldDeadlock");
    }
  });
  CHECK(made.get() == "WouldDeadlock");
  CHECK(cluster.submit(square, 3).get() == 9);
}

TEST_CASE("a function from outside the executable is refused with ClusterError",
          "[cluster][ranks]") {
  ClusterPool cluster({.workers_per_rank = 1});
  // A libc function lives in a shared library, at a different address on each rank.
  CHECK_THROWS_AS(cluster.submit(static_cast<int (*)(int)>(&::abs), -3), offload::ClusterError);
  CHECK(cluster.submit(square, 3).get() == 9);
}

// ProcessPool: calls in worker processes, every kind of fault contained to its own call, and
// process hygiene (no zombie, no orphan, nothing left after the pool or after its parent).
//
// This program has its own main(): it calls offload::process_init() first, as programs using
// process pools should, and it doubles as the helper processes of the hygiene tests
// (re-executed with a "--helper-..." argument).

#include <offload/process_pool.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include "catch.hpp"
#include "catch_session.hpp"

extern char** environ;

// Fault tests need the plain signal a crash raises, not a sanitizer's report and exit code.
// And an allocation over max_memory_per_worker must throw std::bad_alloc, as it does without
// a sanitizer, rather than end the worker with the sanitizer's report.
extern "C" const char* __asan_default_options() {
  return "handle_segv=0:handle_sigbus=0:handle_sigfpe=0:allocator_may_return_null=1";
}
extern "C" const char* __tsan_default_options() {
  return "handle_segv=0:handle_sigbus=0:handle_sigfpe=0:allocator_may_return_null=1";
}
extern "C" const char* __ubsan_default_options() {
  return "handle_segv=0:handle_sigbus=0:handle_sigfpe=0";
}

namespace {

using namespace std::chrono_literals;
using offload::ProcessOptions;
using offload::ProcessPool;

// --- functions the workers run -------------------------------------------------------------

int square(int x) { return x * x; }
int worker_pid() { return static_cast<int>(::getpid()); }
void do_nothing() {}
std::string shout(const std::string& text) { return text + "!"; }
double scale(double x, float by) noexcept { return x * by; }

int crash_with_segfault(int) {
  std::raise(SIGSEGV);
  return 0;
}
int crash_with_abort(int) { std::abort(); }
int exit_with_three(int) { std::exit(3); }
int throw_runtime_error(int x) { throw std::runtime_error("bad input " + std::to_string(x)); }
int hang_forever(int) {
  for (;;) ::pause();
}

struct BadInput {
  int code;
};
int throw_non_standard(int code) { throw BadInput{code}; }

/// Busy for `us` microseconds (no sleep: the call must run right up to a deadline).
int spin_for_us(int us) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  while (std::chrono::steady_clock::now() < until) {
  }
  return us;
}

/// Notes `id` in `file` (one line per run), then stays busy 2 ms, so that a kill lands mid-run.
int note_run_then_spin(std::string file, int id) {
  std::ofstream(file, std::ios::app) << id << "\n";
  return spin_for_us(2000) > 0 ? id : -1;
}

/// Crashes on its first attempt: the marker file tells the second attempt it came before.
int crash_once(std::string marker) {
  if (::access(marker.c_str(), F_OK) != 0) {
    std::ofstream(marker) << "crashed once\n";
    std::abort();
  }
  return 42;
}

/// Every tenth call crashes.
int crash_every_tenth(int i) {
  if (i % 10 == 9) std::abort();
  return i + 1;
}

std::size_t sleep_then_size(std::string text, int milliseconds) {
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
  return text.size();
}

std::tuple<std::size_t, std::string, std::map<std::string, int>> summarise(
    std::vector<std::string> words, std::optional<int> bonus) {
  std::map<std::string, int> lengths;
  std::string joined;
  for (const auto& word : words) {
    lengths[word] = static_cast<int>(word.size()) + bonus.value_or(0);
    joined += word;
  }
  return {words.size(), joined, lengths};
}

/// Kills the fork server that forked this worker (the worker dies with it).
int kill_own_fork_server(int) {
  ::kill(::getppid(), SIGKILL);
  for (;;) ::pause();
}

/// Allocates and touches `mebibytes` MiB; returns a checksum so nothing is optimised away.
long allocate_mebibytes(int mebibytes) {
  const std::size_t size = static_cast<std::size_t>(mebibytes) << 20;
  std::unique_ptr<char[]> block(new char[size]);
  std::memset(block.get(), 1, size);
  long sum = 0;
  for (std::size_t i = 0; i < size; i += 4096) sum += block[i];
  return sum;
}

/// Busy for about `microseconds`, then returns `value`.
int busy_then_return(int value, int microseconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(microseconds);
  while (std::chrono::steady_clock::now() < until) {
  }
  return value;
}

std::string reverse_big(std::string text) { return std::string(text.rbegin(), text.rend()); }

/// `tag` followed by dots up to `size` characters (the argument's own size does not matter).
std::string tag_padded(std::string tag, std::string /*ballast*/, std::size_t size) {
  tag.resize(std::max(size, tag.size()), '.');
  return tag;
}

/// Writes garbage into the worker's own socket (descriptor 3), then runs on. (The socket is not
/// ordered with the ring replies travel through, so the pool blames such bytes on the call
/// running when it reads them: this one, as it never ends.)
int send_garbage(int) {
  const char garbage[32] = "this is not an offload frame!!!";
  [[maybe_unused]] const ssize_t n = ::write(3, garbage, sizeof garbage);
  for (;;) ::pause();
}

/// Sends a valid header promising 100 bytes, two of them, then dies.
int send_truncated_frame(int) {
  std::vector<std::byte> frame;
  offload::detail::begin_frame(frame);
  frame.resize(frame.size() + 100);
  offload::detail::finish_frame(frame, offload::detail::FrameKind::value);
  [[maybe_unused]] const ssize_t n =
      ::write(3, frame.data(), offload::detail::frame_header_size + 2);
  ::_exit(0);
}

/// Sends a header announcing a payload far over max_message_size.
int send_oversized_frame(int) {
  std::vector<std::byte> frame;
  offload::detail::begin_frame(frame);
  offload::detail::finish_frame(frame, offload::detail::FrameKind::value);
  const std::uint64_t huge = std::uint64_t{1} << 40;
  std::memcpy(frame.data() + 8, &huge, 8);
  [[maybe_unused]] const ssize_t n = ::write(3, frame.data(), frame.size());
  for (;;) ::pause();
}

// --- process inspection through /proc --------------------------------------------------------

struct ProcessInfo {
  pid_t pid;
  char state;
  pid_t parent;
  std::string name;  // the command name (comm), at most 15 characters
};

/// A /proc `stat` file: the command name, and the fields after it (from field 3, the state).
struct StatLine {
  std::string name;
  std::istringstream fields;
};

std::optional<StatLine> read_stat(const std::string& path) {
  std::ifstream stat(path);
  std::string line;
  if (!std::getline(stat, line)) return std::nullopt;  // gone meanwhile
  const auto open = line.find('(');
  const auto close = line.rfind(')');  // the name may itself hold parentheses
  if (open == std::string::npos || close == std::string::npos) return std::nullopt;
  return StatLine{line.substr(open + 1, close - open - 1),
                  std::istringstream(line.substr(close + 2))};
}

std::optional<ProcessInfo> read_process(pid_t pid) {
  std::optional<StatLine> stat = read_stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return std::nullopt;
  ProcessInfo info{pid, '?', 0, stat->name};
  stat->fields >> info.state >> info.parent;
  return info;
}

/// Whether process `pid` has ended: gone, or a zombie nobody has reaped yet.
bool has_ended(pid_t pid) {
  const std::optional<ProcessInfo> info = read_process(pid);
  return !info || info->state == 'Z';
}

/// The sanitizers' runtime starts llvm-symbolizer as a child of the test process the first
/// time it symbolizes a stack (TSan does so to match tests/tsan.supp); it is not ours to count.
bool is_sanitizer_helper(const ProcessInfo& process) {
  return process.name.starts_with("llvm-symbolizer");
}

std::vector<ProcessInfo> children_of(pid_t parent) {
  std::vector<ProcessInfo> children;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return children;
  while (const dirent* entry = ::readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0') continue;
    const auto info = read_process(static_cast<pid_t>(pid));
    if (info && info->parent == parent && !is_sanitizer_helper(*info)) {
      children.push_back(*info);
    }
  }
  ::closedir(proc);
  return children;
}

/// The fork server new sessions open on.
pid_t fork_server_pid() { return offload::detail::running_fork_server()->pid(); }

/// Every live fork server process of this program (two, but for moments after one died).
std::vector<pid_t> fork_server_pids() { return offload::detail::running_fork_server()->pids(); }

bool contains(const std::vector<pid_t>& pids, pid_t pid) {
  return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

/// Waits (bounded) until `condition` holds; true if it did.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds limit = 10s) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

/**
 * While it lives, this process is a child subreaper: the workers of a fork server that dies
 * (they die with it) are re-parented here instead of to init, which in a container may never
 * reap them. So a test can see them dead and reap them; it reaps only offload workers, by
 * pid, and never touches the fork servers (our children too, reaped by the library).
 */
class SubreaperScope {
 public:
  SubreaperScope() { REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0); }
  SubreaperScope(const SubreaperScope&) = delete;
  SubreaperScope& operator=(const SubreaperScope&) = delete;
  ~SubreaperScope() {
    (void)eventually([] { return reap_orphans() == 0; });
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  }

  /// Reaps the orphaned workers that have died, and the fork servers of helper processes
  /// that died after their helper (they outlive it by a moment: they exit when it does, and
  /// a loaded machine gets to them late); returns how many of those are still alive.
  static std::size_t reap_orphans() {
    std::size_t alive = 0;
    const std::vector<pid_t> own_servers = fork_server_pids();
    for (const ProcessInfo& child : children_of(::getpid())) {
      const bool orphaned_server =
          child.name == "offload-forksrv" &&
          std::find(own_servers.begin(), own_servers.end(), child.pid) == own_servers.end();
      if (child.name != "offload-worker" && !orphaned_server) continue;
      if (child.state == 'Z') {
        ::waitpid(child.pid, nullptr, WNOHANG);
      } else {
        ++alive;
      }
    }
    return alive;
  }
};

/// Runs this test program again as a helper; returns its pid and the read end of its stdout.
std::pair<pid_t, int> spawn_helper(const char* mode) {
  int out[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  char self[] = "/proc/self/exe";
  std::string mode_arg = mode;
  char* argv[] = {self, mode_arg.data(), nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  REQUIRE(rc == 0);
  return {pid, out[0]};
}

std::string read_all(int fd) {
  std::string text;
  char buffer[256];
  ssize_t n = 0;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0)
    text.append(buffer, static_cast<std::size_t>(n));
  return text;
}

std::string read_line(int fd) {
  std::string line;
  char c = 0;
  while (::read(fd, &c, 1) == 1 && c != '\n') line += c;
  return line;
}

int wait_for_exit_code(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/// Runs this test program again as the helper `mode` to its end: its exit code and output.
std::pair<int, std::string> run_helper(const char* mode) {
  auto [helper, output] = spawn_helper(mode);
  std::string report = read_all(output);
  ::close(output);
  return {wait_for_exit_code(helper), std::move(report)};
}

/// Checks that 100 ordinary calls all succeed around one faulty call, and returns the faulty
/// call's exception message (after checking its type).
template <class Expected, class Fault>
std::string contain_fault(Fault fault, ProcessOptions options = {.workers = 2}) {
  ProcessPool pool(options);
  std::vector<offload::Future<int>> before, after;
  for (int i = 0; i < 50; ++i) before.push_back(pool.submit(square, i));
  auto faulty = pool.submit(fault, 7);
  for (int i = 50; i < 100; ++i) after.push_back(pool.submit(square, i));
  std::string message;
  try {
    faulty.get();
  } catch (const Expected& error) {
    message = error.what();
  }
  for (int i = 0; i < 50; ++i) CHECK(before[static_cast<std::size_t>(i)].get() == i * i);
  for (int i = 50; i < 100; ++i) CHECK(after[static_cast<std::size_t>(i - 50)].get() == i * i);
  CHECK_FALSE(message.empty());
  return message;
}

}  // namespace

// --- calls -----------------------------------------------------------------------------------

TEST_CASE("calls run in worker processes and return their results", "[process_pool]") {
  ProcessPool pool({.workers = 2});
  CHECK(pool.size() == 2);
  CHECK(pool.submit(square, 12).get() == 144);
  CHECK(pool.submit([](int a, int b) { return a - b; }, 10, 3).get() == 7);
  CHECK(pool.submit(shout, "hello").get() == "hello!");
  CHECK(pool.submit(scale, 2.0, 1.5f).get() == 3.0);
  pool.submit(do_nothing).get();
  const int pid = pool.submit(worker_pid).get();
  CHECK(pid != ::getpid());

  SECTION("rich argument and result types cross through their codecs") {
    auto [count, joined, lengths] =
        pool.submit(summarise, std::vector<std::string>{"ab", "c", ""}, std::optional<int>(10))
            .get();
    CHECK(count == 3);
    CHECK(joined == "abc");
    CHECK(lengths == std::map<std::string, int>{{"", 10}, {"ab", 12}, {"c", 11}});
  }
  SECTION("empty and 64 MiB values cross intact") {
    CHECK(pool.submit(reverse_big, std::string()).get().empty());
    std::string big(64u << 20, 'a');
    for (std::size_t i = 0; i < big.size(); i += 1000) big[i] = static_cast<char>('b' + i % 20);
    const std::string back = pool.submit(reverse_big, big).get();
    REQUIRE(back.size() == big.size());
    CHECK(std::equal(back.rbegin(), back.rend(), big.begin()));
  }
  SECTION("many threads submit at once and every call is answered exactly once") {
    std::atomic<int> wrong{0};
    std::vector<std::thread> submitters;
    for (int t = 0; t < 4; ++t) {
      submitters.emplace_back([&pool, &wrong, t] {
        std::vector<offload::Future<int>> futures;
        for (int i = 0; i < 100; ++i) futures.push_back(pool.submit(square, t * 1000 + i));
        for (int i = 0; i < 100; ++i) {
          if (futures[static_cast<std::size_t>(i)].get() != (t * 1000 + i) * (t * 1000 + i))
            ++wrong;
        }
      });
    }
    for (auto& submitter : submitters) submitter.join();
    CHECK(wrong == 0);
    const offload::ProcessStats stats = pool.stats();
    CHECK(stats.failed == 0);
    CHECK(stats.completed == stats.submitted);
  }
}

// --- faults ----------------------------------------------------------------------------------

TEST_CASE("each kind of fault fails only its own call", "[process_pool][faults]") {
  SECTION("segmentation fault") {
    CHECK_THAT(contain_fault<offload::WorkerCrashed>(crash_with_segfault),
               Catch::Matchers::Contains("SIGSEGV"));
  }
  SECTION("abort") {
    CHECK_THAT(contain_fault<offload::WorkerCrashed>(crash_with_abort),
               Catch::Matchers::Contains("SIGABRT"));
  }
  SECTION("exit(3)") {
    CHECK_THAT(contain_fault<offload::WorkerCrashed>(exit_with_three),
               Catch::Matchers::Contains("exited with code 3"));
  }
  SECTION("an exception, with its type and message") {
    ProcessPool pool({.workers = 2});
    try {
      pool.submit(throw_runtime_error, 5).get();
      FAIL("no exception");
    } catch (const offload::RemoteError& error) {
      CHECK(error.type_name() == "std::runtime_error");
      CHECK_THAT(error.what(), Catch::Matchers::Contains("bad input 5"));
    }
    try {
      pool.submit(throw_non_standard, 1).get();
      FAIL("no exception");
    } catch (const offload::RemoteError& error) {
      CHECK_THAT(error.type_name(), Catch::Matchers::Contains("BadInput"));
    }
    CHECK_THAT(contain_fault<offload::RemoteError>(throw_runtime_error),
               Catch::Matchers::Contains("bad input 7"));
    CHECK(pool.stats().crashes == 0);  // an exception does not cost the worker its life
  }
  SECTION("a hang, killed at max_call_time") {
    const auto start = std::chrono::steady_clock::now();
    const std::string message =
        contain_fault<offload::CallTimeout>(hang_forever, {.workers = 2, .max_call_time = 500ms});
    CHECK_THAT(message,
               Catch::Matchers::Contains("max_call_time") && Catch::Matchers::Contains("SIGKILL"));
    CHECK(std::chrono::steady_clock::now() - start >= 500ms);
  }
}

TEST_CASE("1,000 calls of which every tenth crashes: all answered, crashes counted exactly",
          "[process_pool][faults]") {
  ProcessPool pool({.workers = 2});
  std::vector<offload::Future<int>> futures;
  for (int i = 0; i < 1000; ++i) futures.push_back(pool.submit(crash_every_tenth, i));
  int values = 0;
  int crashes = 0;
  for (int i = 0; i < 1000; ++i) {
    try {
      const int value = futures[static_cast<std::size_t>(i)].get();
      CHECK(value == i + 1);
      ++values;
    } catch (const offload::WorkerCrashed& error) {
      CHECK(i % 10 == 9);
      CHECK_THAT(error.what(), Catch::Matchers::Contains("SIGABRT"));
      ++crashes;
    }
  }
  CHECK(values == 900);
  CHECK(crashes == 100);
  const offload::ProcessStats stats = pool.stats();
  CHECK(stats.crashes == 100);
  CHECK(stats.failed == 100);
  CHECK(stats.completed == 900);
  CHECK(stats.retries == 0);
}

TEST_CASE("a crash is retried up to max_retries", "[process_pool][faults]") {
  char directory[] = "/tmp/offload-retry-XXXXXX";
  REQUIRE(::mkdtemp(directory) != nullptr);
  const std::string marker = std::string(directory) + "/crashed";

  SECTION("a transient crash succeeds on the retry") {
    ProcessPool pool({.workers = 1, .max_retries = 2});
    CHECK(pool.submit(crash_once, marker).get() == 42);
    const offload::ProcessStats stats = pool.stats();
    CHECK(stats.crashes == 1);
    CHECK(stats.retries == 1);
    CHECK(stats.failed == 0);
  }
  SECTION("a permanent crash fails after 1 + max_retries attempts") {
    ProcessPool pool({.workers = 1, .max_retries = 2});
    CHECK_THROWS_WITH(pool.submit(crash_with_abort, 0).get(),
                      Catch::Matchers::Contains("3 attempts"));
    CHECK(pool.stats().crashes == 3);
    CHECK(pool.stats().retries == 2);
  }
  SECTION("no retry by default, and none for exceptions") {
    ProcessPool pool({.workers = 1});
    CHECK_THROWS_AS(pool.submit(crash_once, marker).get(), offload::WorkerCrashed);
    ProcessPool retrying({.workers = 1, .max_retries = 3});
    CHECK_THROWS_AS(retrying.submit(throw_runtime_error, 1).get(), offload::RemoteError);
    CHECK(retrying.stats().retries == 0);
  }
  std::remove(marker.c_str());
  ::rmdir(directory);
}

TEST_CASE("a worker is replaced after max_calls_per_worker calls", "[process_pool]") {
  ProcessPool pool({.workers = 1, .max_calls_per_worker = 3});
  std::vector<int> pids;
  for (int i = 0; i < 9; ++i) pids.push_back(pool.submit(worker_pid).get());
  for (int group = 0; group < 3; ++group) {
    CHECK(pids[static_cast<std::size_t>(group * 3)] ==
          pids[static_cast<std::size_t>(group * 3 + 1)]);
    CHECK(pids[static_cast<std::size_t>(group * 3)] ==
          pids[static_cast<std::size_t>(group * 3 + 2)]);
  }
  CHECK(std::set<int>(pids.begin(), pids.end()).size() == 3);
}

TEST_CASE("corrupt, truncated and oversized frames from a worker fail with a clear error",
          "[process_pool][faults]") {
  SECTION("garbage instead of a frame") {
    CHECK_THAT(contain_fault<offload::ProtocolError>(send_garbage),
               Catch::Matchers::Contains("corrupt frame"));
  }
  SECTION("a frame cut short by the worker's death") {
    CHECK_THAT(contain_fault<offload::WorkerCrashed>(send_truncated_frame),
               Catch::Matchers::Contains("exited with code 0") &&
                   Catch::Matchers::Contains("18 bytes of an incomplete reply"));
  }
  SECTION("arguments larger than max_message_size are refused by submit") {
    ProcessPool pool({.workers = 1, .max_message_size = 1 << 10});
    CHECK_THROWS_WITH(pool.submit(reverse_big, std::string(2000, 'x')),
                      Catch::Matchers::Contains("more than max_message_size"));
    CHECK(pool.submit(reverse_big, std::string(100, 'x')).get().size() == 100);
  }
  SECTION("a frame larger than max_message_size") {
    CHECK_THAT(contain_fault<offload::ProtocolError>(send_oversized_frame,
                                                     {.workers = 2, .max_message_size = 1 << 20}),
               Catch::Matchers::Contains("exceeds the limit"));
  }
}

TEST_CASE("a worker killed while idle is replaced, and no call fails for it",
          "[process_pool][faults]") {
  ProcessPool pool({.workers = 1});
  REQUIRE(eventually([&] { return pool.worker_pids().size() == 1; }));
  const pid_t victim = pool.worker_pids().front();
  REQUIRE(::kill(victim, SIGKILL) == 0);  // as the OOM killer would
  // No waiting: kill() returns before the process is gone, so the first call is likely sent
  // into the socket of a dying process that will never run it. The pool must notice that
  // the call never started and give it to the replacement.
  for (int i = 0; i < 20; ++i) CHECK(pool.submit(square, i).get() == i * i);
  const offload::ProcessStats stats = pool.stats();
  CHECK(stats.crashes == 0);
  CHECK(stats.failed == 0);
  CHECK(stats.workers_started == 2);
  CHECK(pool.submit(worker_pid).get() != victim);
}

// --- queueing, cancellation, shutdown ---------------------------------------------------------

TEST_CASE("a bounded queue refuses try_submit when full", "[process_pool]") {
  ProcessPool pool({.workers = 1, .max_queue = 1});
  auto running = pool.submit(sleep_then_size, "running", 300);
  REQUIRE(eventually([&] { return pool.stats().busy == 1; }));
  auto queued = pool.submit(sleep_then_size, "queued", 0);
  CHECK_FALSE(pool.try_submit(sleep_then_size, "refused", 0).has_value());
  CHECK(running.get() == 7);
  CHECK(queued.get() == 6);
  auto accepted = pool.try_submit(sleep_then_size, "accepted", 0);
  REQUIRE(accepted.has_value());
  CHECK(accepted->get() == 8);
}

// While a worker runs a call, the next queued one is sent ahead into its socket (a small one
// behind a small one). The worker counts the calls it starts, so a call sent ahead to a worker
// that then dies (crash, timeout) never ran, and goes to the replacement.

TEST_CASE("a call sent ahead to a worker whose current call crashes runs on the replacement",
          "[process_pool][faults]") {
  ProcessPool pool({.workers = 1});
  auto slow = pool.submit(sleep_then_size, "slow", 100);  // straight to the idle worker
  REQUIRE(eventually([&] { return pool.stats().busy == 1; }));
  auto crash = pool.submit(crash_with_abort, 0);  // queued: sent when `slow` replies
  auto behind = pool.submit(square, 3);           // queued: sent ahead of `crash`'s end
  auto last = pool.submit(square, 4);
  CHECK(slow.get() == 4);
  CHECK_THROWS_AS(crash.get(), offload::WorkerCrashed);
  CHECK(behind.get() == 9);
  CHECK(last.get() == 16);
  const offload::ProcessStats stats = pool.stats();
  CHECK(stats.crashes == 1);
  CHECK(stats.failed == 1);
  CHECK(stats.completed == 3);
  CHECK(stats.workers_started == 2);
}

TEST_CASE("a call sent ahead to a worker whose current call times out runs on the replacement",
          "[process_pool][faults]") {
  ProcessPool pool({.workers = 1, .max_call_time = 300ms});
  auto slow = pool.submit(sleep_then_size, "slow", 50);
  REQUIRE(eventually([&] { return pool.stats().busy == 1; }));
  auto hang = pool.submit(hang_forever, 0);
  auto behind = pool.submit(square, 5);
  CHECK(slow.get() == 4);
  CHECK_THROWS_AS(hang.get(), offload::CallTimeout);
  CHECK(behind.get() == 25);
  CHECK(pool.stats().timeouts == 1);
  CHECK(pool.stats().crashes == 0);
}

TEST_CASE("a call sent ahead of one that times out runs at most once, without retries",
          "[process_pool][faults]") {
  // The call in flight ends at its deadline, give or take microseconds: the worker may
  // finish it and start the one sent ahead just before the keeper ends it for the timeout.
  // That one then ran twice: requeued as if never started.
  char directory[] = "/tmp/offload-ahead-XXXXXX";
  REQUIRE(::mkdtemp(directory) != nullptr);
  const std::string runs = std::string(directory) + "/runs";
  ProcessPool pool({.workers = 1, .max_call_time = 5ms});
  constexpr int rounds = 300;
  for (int round = 0; round < rounds; ++round) {
    auto at_deadline = pool.submit(spin_for_us, 4900 + (round % 40) * 5);
    auto behind = pool.submit(note_run_then_spin, runs, round);
    (void)at_deadline.wait_for(10s);
    try {
      const int value = behind.get();
      CHECK(value == round);
    } catch (const offload::WorkerCrashed&) {  // begun, then ended with its worker
    } catch (const offload::CallTimeout&) {    // a loaded machine: 2 ms took over 5
    }
  }
  std::map<int, int> seen;
  std::ifstream in(runs);
  for (int id = 0; in >> id;) ++seen[id];
  int twice = 0;
  for (const auto& [id, count] : seen) twice += count > 1 ? 1 : 0;
  CHECK(twice == 0);
  ::unlink(runs.c_str());
  ::rmdir(directory);
}

// --- the mailbox: rings of frames in shared memory (mailbox.hpp) ------------------------------

namespace {

using offload::detail::FrameAssembler;
using offload::detail::FrameKind;
using offload::detail::FrameRing;

std::vector<std::byte> value_frame(std::size_t payload_size, unsigned seed) {
  std::vector<std::byte> frame;
  offload::detail::begin_frame(frame);
  for (std::size_t i = 0; i < payload_size; ++i) {
    frame.push_back(static_cast<std::byte>((i + seed) * 7));
  }
  offload::detail::finish_frame(frame, FrameKind::value);
  return frame;
}

/// A ring over memory of the test's own, so that the test can corrupt it.
struct PrivateRing {
  explicit PrivateRing(std::size_t capacity) : bytes(capacity) {}
  FrameRing handle() { return FrameRing(&control, bytes.data(), bytes.size()); }
  offload::detail::RingControl control{};
  std::vector<std::byte> bytes;
};

}  // namespace

TEST_CASE("frames cross a mailbox ring whole and in order, across its end",
          "[process_pool][mailbox]") {
  const offload::detail::UniqueFd memory = offload::detail::Mailbox::create();
  const offload::detail::Mailbox mailbox(memory.get());
  FrameRing producer = mailbox.replies();
  FrameRing consumer = mailbox.replies();
  FrameAssembler received(1 << 20);
  std::vector<std::vector<std::byte>> sent;
  std::size_t checked = 0;
  for (unsigned round = 0; round < 400; ++round) {  // 400 frames of up to 4 KiB: many wraps
    sent.push_back(value_frame((round * 997) % (offload::detail::ring_frame_limit - 16), round));
    REQUIRE(producer.push(sent.back()));
    if (round % 3 != 2) continue;  // let a few collect first
    consumer.pull(received);
    while (std::optional<offload::detail::FrameView> frame = received.next()) {
      REQUIRE(checked < sent.size());
      const std::span<const std::byte> expected =
          std::span<const std::byte>(sent[checked]).subspan(offload::detail::frame_header_size);
      CHECK(std::equal(frame->payload.begin(), frame->payload.end(), expected.begin(),
                       expected.end()));
      ++checked;
    }
  }
  consumer.pull(received);
  while (received.next()) ++checked;
  CHECK(checked == sent.size());
  CHECK_FALSE(consumer.has_data());
}

TEST_CASE("a full ring refuses frames but keeps room to announce one", "[process_pool][mailbox]") {
  PrivateRing ring(1024);
  FrameRing producer = ring.handle();
  FrameRing consumer = ring.handle();
  const std::vector<std::byte> frame = value_frame(84, 1);  // 100 bytes
  int pushed = 0;
  while (producer.push(frame)) ++pushed;
  CHECK(pushed == 10);  // 1000 bytes; the next would leave no room for an announcement
  CHECK(producer.announce());
  FrameAssembler received(1 << 20);
  CHECK(consumer.pull(received) == 1016);
  for (int i = 0; i < pushed; ++i) CHECK(received.next()->kind == FrameKind::value);
  CHECK(received.next()->kind == FrameKind::via_socket);
  CHECK(producer.push(frame));  // taken frames free their room
}

TEST_CASE("a consumer that announces its sleep is nudged once", "[process_pool][mailbox]") {
  PrivateRing ring(1024);
  FrameRing producer = ring.handle();
  FrameRing consumer = ring.handle();
  CHECK_FALSE(producer.take_sleeper());       // awake: no nudge
  CHECK(consumer.prepare_to_sleep());          // nothing there: it may sleep
  REQUIRE(producer.push(value_frame(8, 2)));
  CHECK(producer.take_sleeper());              // so the producer must nudge it,
  CHECK_FALSE(producer.take_sleeper());        // once
  CHECK_FALSE(consumer.prepare_to_sleep());    // a frame waits: no sleeping
  CHECK_FALSE(producer.take_sleeper());
  consumer.woke();
}

TEST_CASE("corrupt ring indices are a ProtocolError or a full ring, never a wild copy",
          "[process_pool][mailbox][corrupt]") {
  PrivateRing ring(1024);
  FrameRing producer = ring.handle();
  FrameRing consumer = ring.handle();
  FrameAssembler received(1 << 20);
  SECTION("a producer index beyond the ring") {
    ring.control.tail = 5000;
    CHECK_THROWS_AS(consumer.pull(received), offload::ProtocolError);
  }
  SECTION("a producer index behind the consumer's") {
    REQUIRE(producer.push(value_frame(8, 3)));
    consumer.pull(received);
    ring.control.tail = 0;
    CHECK_THROWS_AS(consumer.pull(received), offload::ProtocolError);
  }
  SECTION("a consumer index ahead of the producer's") {
    ring.control.head = 4096;
    CHECK_FALSE(producer.push(value_frame(8, 4)));
    CHECK_FALSE(producer.announce());
  }
  SECTION("a published header claiming more than a ring frame holds") {
    std::vector<std::byte> frame = value_frame(8, 5);
    const std::uint64_t claimed = offload::detail::ring_frame_limit;  // + header: too big
    std::memcpy(frame.data() + 8, &claimed, 8);
    REQUIRE(producer.push(frame));
    FrameAssembler ring_side = offload::detail::ring_frames();
    consumer.pull(ring_side);
    CHECK_THROWS_AS(ring_side.next(), offload::ProtocolError);  // not awaited
  }
  SECTION("garbage published as frames") {
    std::fill(ring.bytes.begin(), ring.bytes.end(), std::byte{0x5a});
    ring.control.tail = 64;
    consumer.pull(received);
    CHECK_THROWS_AS(received.next(), offload::ProtocolError);
  }
}

TEST_CASE("workers and keepers that sleep between calls are woken for every one",
          "[process_pool][mailbox]") {
  // No polling before sleeping: every call finds its worker asleep, so each must be nudged.
  ProcessPool pool({.workers = 2, .idle_spin = std::chrono::microseconds(0)});
  for (int round = 0; round < 60; ++round) {
    std::vector<offload::Future<int>> calls;
    const int count = round % 9 + 1;
    for (int i = 0; i < count; ++i) calls.push_back(pool.submit(square, round + i));
    for (int i = 0; i < count; ++i) {
      CHECK(calls[static_cast<std::size_t>(i)].get() == (round + i) * (round + i));
    }
    if (round % 6 == 0) std::this_thread::sleep_for(2ms);  // everyone falls asleep
  }
  CHECK(pool.stats().failed == 0);
}

TEST_CASE("calls and replies too big for the ring keep their place among the small ones",
          "[process_pool][mailbox]") {
  ProcessPool pool({.workers = 2});
  const std::size_t big = offload::detail::ring_frame_limit * 3;
  for (int round = 0; round < 3; ++round) {  // the first round also teaches the send-ahead depth
    std::vector<offload::Future<std::string>> results;
    std::vector<std::size_t> sizes;
    for (int i = 0; i < 300; ++i) {
      const std::size_t size = i % 7 == 3 ? big : 10;          // every 7th reply is big
      const std::size_t ballast = i % 11 == 5 ? big : 0;       // every 11th call is big
      results.push_back(
          pool.submit(tag_padded, std::to_string(i), std::string(ballast, 'b'), size));
      sizes.push_back(size);
    }
    for (int i = 0; i < 300; ++i) {
      const std::string result = results[static_cast<std::size_t>(i)].get();
      CHECK(result.size() == sizes[static_cast<std::size_t>(i)]);
      CHECK(result.substr(0, result.find('.')) == std::to_string(i));
    }
  }
  CHECK(pool.stats().failed == 0);
  CHECK(pool.stats().workers_started == 2);
}

// How many calls wait in a worker's ring follows how long calls take (send_ahead_depth.hpp):
// about five milliseconds of work, one call when nothing is known yet, eight at most.

TEST_CASE("the send-ahead depth follows the calls' duration", "[process_pool][ahead]") {
  using offload::detail::SendAheadDepth;
  using namespace std::chrono;
  SendAheadDepth depth;
  CHECK(depth.depth() == 1);  // nothing known
  depth.on_calls_run(2, 100us);  // 50 us a call
  CHECK(depth.depth() == SendAheadDepth::max_depth);
  for (int i = 1; i <= 20; ++i) depth.on_calls_run(1, 10ms);
  CHECK(depth.depth() == 1);  // 10 ms calls: none but the next
  for (int i = 1; i <= 40; ++i) depth.on_calls_run(4, 4800us);
  CHECK(depth.depth() == 4);  // 1.2 ms calls: 4 of them make 5 ms of work
  depth.on_calls_run(1, -1ms);  // a negative time (none comes from a meter): ignored
  depth.on_calls_run(0, 1ms);   // no calls: nothing to learn
  CHECK(depth.depth() == 4);
}

TEST_CASE("a busy meter reads back what the worker ran, across its counter's wrap",
          "[process_pool][ahead]") {
  using offload::detail::BusyMeter;
  using offload::detail::BusyReading;
  using namespace std::chrono;
  alignas(std::atomic_ref<std::uint64_t>::required_alignment) std::uint64_t word = 0;
  BusyMeter worker(&word);
  const BusyMeter keeper(&word);
  CHECK(keeper.read().calls == 0);
  worker.add(1500ns);
  worker.add(2500ns);
  BusyReading seen = keeper.read();
  CHECK(seen.calls == 2);
  CHECK(seen.micros == 4);
  // Past the count's 24 bits: differences stay right.
  for (std::uint64_t i = 0; i < BusyMeter::count_mask - 1; ++i) worker.add(0ns);
  worker.add(3ms);
  const BusyReading now = keeper.read();
  const BusyReading run = offload::detail::busy_between(seen, now);
  CHECK(now.calls == 1);                      // 2^24 + 1 calls, modulo 2^24
  CHECK(run.calls == BusyMeter::count_mask);  // 2^24 - 1 since `seen`
  CHECK(run.micros == 3000);
  CHECK(BusyMeter().read().calls == 0);  // no memory: measures nothing
  // The microseconds' 40 bits wrap too (after 12 days busy).
  const BusyReading late{5, BusyMeter::micros_mask - 9};
  const BusyReading later = offload::detail::busy_between(late, BusyReading{7, 20});
  CHECK(later.calls == 2);
  CHECK(later.micros == 30);
}

TEST_CASE("a meter a worker scribbled over moves the send-ahead depth only within its bounds",
          "[process_pool][ahead]") {
  using offload::detail::BusyMeter;
  using offload::detail::SendAheadDepth;
  SendAheadDepth depth;
  // One call of 2^40 us (a word of all ones): one call ahead, not zero.
  depth.on_calls_run(1,
                     std::chrono::microseconds(static_cast<std::int64_t>(BusyMeter::micros_mask)));
  CHECK(depth.depth() == 1);
  // Many calls in no time: eight, not more.
  for (int i = 0; i < 200; ++i)
    depth.on_calls_run(BusyMeter::count_mask, std::chrono::microseconds(0));
  CHECK(depth.depth() == SendAheadDepth::max_depth);
}

/// Runs 200 short calls on `pool` (so its keeper has seen calls take microseconds), then
/// starts a 50 ms call, sleep_then_size("first", 50); returns once that call runs.
static offload::Future<std::size_t> run_short_calls_then_start(ProcessPool& pool) {
  std::vector<offload::Future<int>> warm_up;
  for (int i = 0; i < 200; ++i) warm_up.push_back(pool.submit(square, i));
  offload::when_all(std::move(warm_up)).get();
  auto started = pool.submit(sleep_then_size, "first", 50);
  REQUIRE(eventually([&] { return pool.stats().busy == 1; }));
  return started;
}

TEST_CASE("after short calls, several queued calls are sent ahead at once",
          "[process_pool][ahead]") {
  ProcessPool pool({.workers = 1});
  auto first = run_short_calls_then_start(pool);
  auto second = pool.submit(sleep_then_size, "second", 300);
  std::vector<offload::Future<int>> behind;
  for (int i = 0; i < 3; ++i) behind.push_back(pool.submit(square, i));
  // The keeper sends `second`, then the three small calls ahead, before it completes `first`.
  CHECK(first.get() == 5);
  for (auto& call : behind) call.request_stop();  // too late: a call sent runs
  CHECK(second.get() == 6);
  for (int i = 0; i < 3; ++i) CHECK(behind[static_cast<std::size_t>(i)].get() == i * i);
  CHECK(pool.stats().cancelled == 0);
}

TEST_CASE("every call sent ahead of a crash runs on the replacement",
          "[process_pool][ahead][faults]") {
  ProcessPool pool({.workers = 1});
  auto first = run_short_calls_then_start(pool);
  auto crash = pool.submit(crash_with_abort, 0);
  std::vector<offload::Future<int>> behind;
  for (int i = 0; i < 5; ++i) behind.push_back(pool.submit(worker_pid));
  CHECK(first.get() == 5);
  CHECK_THROWS_AS(crash.get(), offload::WorkerCrashed);
  const int replacement = behind.front().get();
  for (std::size_t i = 1; i < behind.size(); ++i) CHECK(behind[i].get() == replacement);
  const offload::ProcessStats stats = pool.stats();
  CHECK(stats.crashes == 1);
  CHECK(stats.retries == 0);
  CHECK(stats.failed == 1);
  CHECK(stats.workers_started == 2);
}

TEST_CASE("queued calls respect max_calls_per_worker exactly", "[process_pool]") {
  ProcessPool pool({.workers = 1, .max_calls_per_worker = 3});
  std::vector<offload::Future<int>> futures;
  for (int i = 0; i < 9; ++i) futures.push_back(pool.submit(worker_pid));  // most of them queued
  std::vector<int> pids;
  for (auto& future : futures) pids.push_back(future.get());
  for (std::size_t group = 0; group < 3; ++group) {
    CHECK(pids[group * 3] == pids[group * 3 + 1]);
    CHECK(pids[group * 3] == pids[group * 3 + 2]);
  }
  CHECK(std::set<int>(pids.begin(), pids.end()).size() == 3);
  // The third worker retires after the ninth call and is replaced at once, perhaps only
  // after that call's future is ready: four workers in all, never more.
  CHECK(eventually([&] { return pool.stats().workers_started == 4; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(pool.stats().workers_started == 4);
}

TEST_CASE("keeper pacing leaves the scheduling policy and nice value alone",
          "[process_pool][pacing]") {
  using offload::detail::KeeperPacing;
  // Catch2 is not thread-safe: the threads record, the test checks.
  int other_policy = -1;
  int other_nice = 0;
  int wanted_nice = 0;
  std::thread([&] {
    errno = 0;
    wanted_nice = ::nice(1);  // a thread's own nice value (Linux): 1 more than before
    const KeeperPacing pacing;
    other_policy = ::sched_getscheduler(0);
    errno = 0;
    other_nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
  }).join();
  CHECK(other_policy == SCHED_OTHER);
  CHECK(other_nice == wanted_nice);

  int idle_policy = -1;
  bool idle_set = false;
  std::thread([&] {
    const sched_param none{};
    idle_set = ::sched_setscheduler(0, SCHED_IDLE, &none) == 0;
    const KeeperPacing pacing;
    idle_policy = ::sched_getscheduler(0);
  }).join();
  REQUIRE(idle_set);
  CHECK(idle_policy == SCHED_IDLE);  // the program chose it: not the keeper's to change
}

TEST_CASE("a call cancelled while queued never runs", "[process_pool]") {
  ProcessPool pool({.workers = 1});
  auto running = pool.submit(sleep_then_size, "running", 200);
  REQUIRE(eventually([&] { return pool.stats().busy == 1; }));
  auto queued = pool.submit(sleep_then_size, "queued", 0);
  CHECK(queued.request_stop());
  CHECK_THROWS_AS(queued.get(), offload::TaskCancelled);
  CHECK(running.get() == 7);
  CHECK(pool.stats().cancelled == 1);
}

TEST_CASE("shutdown finishes every queued call, then refuses new ones", "[process_pool]") {
  std::vector<offload::Future<std::size_t>> futures;
  {
    ProcessPool pool({.workers = 2});
    for (int i = 0; i < 20; ++i)
      futures.push_back(
          pool.submit(sleep_then_size, std::string(static_cast<std::size_t>(i), 'x'), 10));
    pool.shutdown();
    pool.shutdown();  // idempotent
    CHECK_THROWS_AS(pool.submit(square, 1), offload::PoolClosed);
  }
  for (std::size_t i = 0; i < futures.size(); ++i) CHECK(futures[i].get() == i);
}

// --- surviving its own processes ------------------------------------------------------------

TEST_CASE("the fork server killed while the pool is idle: the next 100 calls succeed",
          "[process_pool][resilience]") {
  SubreaperScope orphans_come_here;
  ProcessPool pool({.workers = 2});
  CHECK(pool.submit(square, 2).get() == 4);
  REQUIRE(eventually([&] { return pool.worker_pids().size() == 2; }));
  const std::vector<pid_t> old_workers = pool.worker_pids();
  const pid_t server = fork_server_pid();
  REQUIRE(::kill(server, SIGKILL) == 0);
  // Dying takes a while (see helper_servers_lost()), and until the server is gone its workers
  // live on and answer calls: calls sent at once ran on them (the check below saw an old
  // worker in one run in 300 on a busy machine), and one running as its worker died failed
  // as a crash, as it must (the pool cannot tell that from a call that killed its own
  // server, next case). The pool stays idle until the server and its workers are gone.
  REQUIRE(eventually([&] {
    return has_ended(server) && std::all_of(old_workers.begin(), old_workers.end(), has_ended);
  }));
  for (int i = 0; i < 100; ++i) CHECK(pool.submit(square, i).get() == i * i);
  // The survivor started a replacement; the dead server was reaped; its workers died with it.
  CHECK(eventually([&] {
    const std::vector<pid_t> servers = fork_server_pids();
    return servers.size() == 2 && !contains(servers, server);
  }));
  CHECK_FALSE(read_process(server).has_value());
  // Replaced: a keeper whose worker died while it had no call learns it from the end of the
  // worker's stream, which it may read after the 100 calls ran elsewhere.
  CHECK(eventually([&] {
    const std::vector<pid_t> new_workers = pool.worker_pids();
    return std::none_of(old_workers.begin(), old_workers.end(),
                        [&](pid_t pid) { return contains(new_workers, pid); });
  }));
  CHECK(pool.stats().failed == 0);
}

TEST_CASE("a call that kills its own fork server fails as a crash; the pool goes on",
          "[process_pool][resilience]") {
  SubreaperScope orphans_come_here;
  ProcessPool pool({.workers = 2});
  CHECK_THROWS_AS(pool.submit(kill_own_fork_server, 0).get(), offload::WorkerCrashed);
  std::vector<offload::Future<int>> calls;
  for (int i = 0; i < 50; ++i) calls.push_back(pool.submit(square, i));
  for (int i = 0; i < 50; ++i) CHECK(calls[static_cast<std::size_t>(i)].get() == i * i);
  CHECK(eventually([] { return fork_server_pids().size() == 2; }));
}

TEST_CASE("chaos: 20,000 calls while a random process of the pool is killed every 5 ms",
          "[process_pool][resilience][chaos]") {
  SubreaperScope orphans_come_here;
  constexpr int calls = 20'000;
  std::atomic<bool> done{false};
  std::atomic<int> worker_kills{0}, server_kills{0};
  {
    ProcessPool pool({.workers = 2, .max_retries = 3});
    // Every fourth kill hits a fork server (the one in use or its buddy), the rest a worker.
    std::thread killer([&] {
      std::minstd_rand random(12345);
      for (unsigned round = 0; !done.load(); ++round) {
        std::this_thread::sleep_for(5ms);
        const bool server = round % 4 == 3;
        const std::vector<pid_t> victims = server ? fork_server_pids() : pool.worker_pids();
        if (victims.empty()) continue;
        if (::kill(victims[random() % victims.size()], SIGKILL) == 0) {
          ++(server ? server_kills : worker_kills);
        }
      }
    });
    std::vector<offload::Future<int>> futures;
    futures.reserve(calls);
    for (int i = 0; i < calls; ++i) futures.push_back(pool.submit(busy_then_return, i, 50));
    int right = 0, wrong = 0, offload_errors = 0, other_errors = 0;
    for (int i = 0; i < calls; ++i) {
      try {
        (futures[static_cast<std::size_t>(i)].get() == i ? right : wrong) += 1;
      } catch (const offload::Error&) {
        ++offload_errors;
      } catch (...) {
        ++other_errors;
      }
    }
    done = true;
    killer.join();
    INFO("worker kills " << worker_kills << ", server kills " << server_kills << ", errors "
                         << offload_errors);
    CHECK(wrong == 0);
    CHECK(other_errors == 0);  // never a std::future_error or anything else
    CHECK(right + offload_errors == calls);
    CHECK(right >= calls * 99 / 100);
    CHECK(server_kills >= 3);
    CHECK(worker_kills >= 9);
  }
  // After the pool: no worker of it lives, and two fork servers serve the next pool.
  CHECK(eventually([] { return SubreaperScope::reap_orphans() == 0; }));
  CHECK(eventually([] {
    const std::vector<pid_t> servers = fork_server_pids();
    if (servers.size() != 2) return false;
    for (pid_t server : servers) {
      if (!children_of(server).empty()) return false;
    }
    return true;
  }));
  ProcessPool next({.workers = 2});
  CHECK(next.submit(square, 12).get() == 144);
}

TEST_CASE("with both fork servers gone, every call fails with an offload::Error, never hangs",
          "[process_pool][resilience]") {
  SubreaperScope orphans_come_here;
  const auto [exit_code, report] = run_helper("--helper-servers-lost");
  CHECK(exit_code == 0);
  CHECK_THAT(report, Catch::Matchers::StartsWith("ok:") &&
                         Catch::Matchers::Contains("fork server"));
}

TEST_CASE("submitters blocked on a full queue all return when both fork servers are lost",
          "[process_pool][resilience]") {
  SubreaperScope orphans_come_here;
  const auto [exit_code, report] = run_helper("--helper-blocked-submitters");
  CHECK(exit_code == 0);
  CHECK(report == "ok\n");
}

TEST_CASE("a fork server that stops answering is condemned; the pool goes on and shuts down",
          "[process_pool][resilience]") {
  SubreaperScope orphans_come_here;
  const auto [exit_code, report] = run_helper("--helper-server-stopped");  // about 20 s
  CHECK(exit_code == 0);
  CHECK(report == "ok\n");
}

TEST_CASE("a pool whose keeper thread cannot start throws, and leaves no worker",
          "[process_pool][resilience][hygiene]") {
  SubreaperScope orphans_come_here;
  const auto [exit_code, report] = run_helper("--helper-keeper-thread-fails");
  CHECK(exit_code == 0);
  if (report.starts_with("skipped")) {
    WARN("not run: " << report);
  } else {
    CHECK(report == "ok\n");
  }
}

TEST_CASE("destroying the pool while its fork server is being replaced leaves no process",
          "[process_pool][resilience][hygiene]") {
  SubreaperScope orphans_come_here;
  const std::vector<pid_t> our_servers = fork_server_pids();
  for (int round = 0; round < 5; ++round) {
    const auto [exit_code, report] = run_helper("--helper-destroy-while-replacing");
    CHECK(exit_code == 0);
    CHECK(report == "ok\n");
  }
  // Anything the helpers left would have been re-parented to us: only our own servers remain.
  CHECK(eventually([] { return SubreaperScope::reap_orphans() == 0; }));
  for (const ProcessInfo& child : children_of(::getpid())) {
    INFO(child.name << " " << child.pid << " " << child.state);
    CHECK((contains(our_servers, child.pid) || child.name == "offload-worker"));
  }
}

TEST_CASE("a call over max_memory_per_worker fails, its worker is replaced, others succeed",
          "[process_pool][resilience]") {
  ProcessPool pool({.workers = 2, .max_memory_per_worker = std::size_t{256} << 20});
  CHECK(pool.submit(allocate_mebibytes, 64).get() == 64L * 256);  // within the limit
  std::vector<offload::Future<int>> before, after;
  for (int i = 0; i < 50; ++i) before.push_back(pool.submit(square, i));
  const std::uint64_t started = pool.stats().workers_started;
  auto greedy = pool.submit(allocate_mebibytes, 1024);
  for (int i = 50; i < 100; ++i) after.push_back(pool.submit(square, i));
  std::string failure;
  try {
    greedy.get();
  } catch (const offload::RemoteError& error) {
    CHECK(error.type_name() == "std::bad_alloc");
    failure = error.what();
  } catch (const offload::WorkerCrashed& error) {  // the allocation failure killed the worker
    failure = error.what();
  }
  CHECK_FALSE(failure.empty());
  for (int i = 0; i < 50; ++i) CHECK(before[static_cast<std::size_t>(i)].get() == i * i);
  for (int i = 50; i < 100; ++i) CHECK(after[static_cast<std::size_t>(i - 50)].get() == i * i);
  CHECK(eventually([&] { return pool.stats().workers_started > started; }));
}

TEST_CASE("a worker stopped with SIGSTOP is a hang: CallTimeout, and the pool goes on",
          "[process_pool][resilience]") {
  ProcessPool pool({.workers = 1, .max_call_time = 300ms});
  SECTION("stopped while idle") {
    CHECK(pool.submit(square, 3).get() == 9);
    REQUIRE(eventually([&] { return pool.worker_pids().size() == 1; }));
    REQUIRE(::kill(pool.worker_pids()[0], SIGSTOP) == 0);
    CHECK_THROWS_AS(pool.submit(square, 4).get(), offload::CallTimeout);
  }
  SECTION("stopped during a call") {
    auto slow = pool.submit(sleep_then_size, std::string("abc"), 200);
    REQUIRE(eventually([&] { return pool.stats().busy == 1 && pool.worker_pids().size() == 1; }));
    REQUIRE(::kill(pool.worker_pids()[0], SIGSTOP) == 0);
    CHECK_THROWS_AS(slow.get(), offload::CallTimeout);
  }
  CHECK(pool.submit(square, 5).get() == 25);
  CHECK(pool.stats().timeouts == 1);
}

// --- process hygiene --------------------------------------------------------------------------

TEST_CASE("no worker, zombie or orphan remains after the pool is destroyed",
          "[process_pool][hygiene]") {
  const pid_t server = fork_server_pid();
  std::vector<pid_t> workers;
  {
    ProcessPool pool({.workers = 3, .max_call_time = 500ms});
    REQUIRE(eventually([&] { return pool.worker_pids().size() == 3; }));
    workers = pool.worker_pids();
    CHECK_THROWS(pool.submit(crash_with_abort, 0).get());
    CHECK_THROWS(pool.submit(hang_forever, 0).get());
    CHECK(pool.submit(square, 3).get() == 9);
    CHECK(eventually([&] { return children_of(server).size() == 3; }));
    for (pid_t pid : pool.worker_pids()) workers.push_back(pid);
  }
  CHECK(children_of(server).empty());  // every worker ended and reaped by the server
  const std::vector<pid_t> servers = fork_server_pids();
  CHECK(servers.size() == 2);
  for (const ProcessInfo& child : children_of(::getpid())) {
    CHECK(contains(servers, child.pid));  // our only children are the fork servers, alive
    CHECK(child.state != 'Z');
  }
  for (pid_t pid : workers) {
    const auto info = read_process(pid);
    CHECK((!info || (info->parent != server && info->parent != ::getpid())));
  }
}

TEST_CASE("a fork server started by the pool ends with it", "[process_pool][hygiene]") {
  const auto [exit_code, report] = run_helper("--helper-pool-without-init");
  CHECK(exit_code == 0);
  CHECK(report == "ok\n");
}

TEST_CASE("a parent killed with SIGKILL leaves no process behind", "[process_pool][hygiene]") {
  // Orphans are re-parented to us while this test runs, so we can see them die and reap them.
  REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  auto [helper, output] = spawn_helper("--helper-killed-parent");
  std::istringstream line(read_line(output));
  std::vector<pid_t> descendants;
  for (pid_t pid = 0; line >> pid;) descendants.push_back(pid);
  REQUIRE(descendants.size() == 4);  // the two fork servers and two workers
  ::kill(helper, SIGKILL);
  CHECK(wait_for_exit_code(helper) == 128 + SIGKILL);
  ::close(output);
  for (pid_t pid : descendants) {
    // Dead means: reaped by us (it was re-parented here) or already gone.
    const bool dead = eventually([pid] {
      if (::waitpid(pid, nullptr, WNOHANG) == pid) return true;
      return !read_process(pid).has_value();
    });
    CHECK(dead);
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
}

TEST_CASE("no pool is forked from a multi-threaded process without process_init()",
          "[process_pool][hygiene]") {
  const auto [exit_code, report] = run_helper("--helper-threaded-without-init");
  CHECK(exit_code == 0);
  CHECK_THAT(report, Catch::Matchers::StartsWith("refused:") &&
                         Catch::Matchers::Contains("process_init()"));
}

// --- helper processes -------------------------------------------------------------------------

namespace {

/// No process_init(): the pool starts its own fork server and must end it.
int helper_pool_without_init() {
  pid_t server = 0;
  {
    ProcessPool pool({.workers = 2});
    if (pool.submit(square, 4).get() != 16) return 1;
    server = fork_server_pid();
    if (children_of(::getpid()).size() != 2) return 2;  // the two fork servers
  }
  if (!children_of(::getpid()).empty()) return 3;  // the server was ended and reaped
  if (read_process(server).has_value()) return 4;
  std::printf("ok\n");
  return 0;
}

/// Creates a pool, reports the pids below it, and waits to be killed.
int helper_killed_parent() {
  ProcessPool pool({.workers = 2});
  if (!eventually([&] { return pool.worker_pids().size() == 2; })) return 1;
  std::vector<pid_t> pids = pool.worker_pids();
  const std::vector<pid_t> servers = fork_server_pids();
  if (servers.size() != 2) return 2;
  std::printf("%d %d %d %d\n", static_cast<int>(servers[0]), static_cast<int>(servers[1]),
              static_cast<int>(pids[0]), static_cast<int>(pids[1]));
  std::fflush(stdout);
  for (;;) ::pause();
}

/// Kills both fork servers (stopped first, so neither can replace the other), then checks that
/// calls, queued or new, fail with an offload::Error in bounded time.
int helper_servers_lost() {
  offload::process_init();
  ProcessPool pool({.workers = 2});
  if (pool.submit(square, 4).get() != 16) return 1;
  const std::vector<pid_t> servers = fork_server_pids();
  if (servers.size() != 2) return 2;
  for (pid_t server : servers) ::kill(server, SIGSTOP);
  for (pid_t server : servers) ::kill(server, SIGKILL);
  // Dying takes a while (under a sanitizer, unmapping its shadow memory takes tens of ms), and
  // until a server is gone its workers live on and answer calls.
  const bool gone =
      eventually([&] { return std::all_of(servers.begin(), servers.end(), has_ended); });
  if (!gone) return 7;
  std::string message;
  for (int i = 0; i < 20; ++i) {
    auto call = pool.submit(square, i);
    if (call.wait_for(20s) != offload::FutureStatus::ready) return 3;  // a hang
    try {
      call.get();
    } catch (const offload::Error& error) {
      message = error.what();
    } catch (...) {
      return 4;
    }
  }
  if (message.empty()) return 5;  // every call succeeded: no server was lost?
  try {
    pool.submit(square, 1).get();  // from now on, at once
    return 6;
  } catch (const offload::Error& error) {
    message = error.what();
  }
  std::printf("ok: %s\n", message.c_str());
  return 0;
}

/// Three threads blocked in submit() on a full queue when both fork servers are lost: each
/// must return (its call failing with an offload::Error), not only the one that the queued
/// call's failure made room for.
int helper_blocked_submitters_servers_lost() {
  offload::process_init();
  ProcessPool pool({.workers = 1, .max_queue = 1});
  auto running = pool.submit(sleep_then_size, "running", 500);
  auto queued = pool.submit(sleep_then_size, "queued", 0);  // the queue is full
  std::atomic<int> returned{0};
  std::vector<std::thread> submitters;
  for (int i = 0; i < 3; ++i) {
    submitters.emplace_back([&] {
      try {
        pool.submit(sleep_then_size, "blocked", 0).get();
      } catch (const offload::Error&) {
      }
      ++returned;
    });
  }
  std::this_thread::sleep_for(100ms);  // all three blocked on the full queue
  const std::vector<pid_t> servers = fork_server_pids();
  if (servers.size() != 2) return 2;
  for (pid_t server : servers) ::kill(server, SIGSTOP);
  for (pid_t server : servers) ::kill(server, SIGKILL);
  if (!eventually([&] { return returned == 3; }, 20s)) {
    std::printf("%d of 3 blocked submitters returned\n", returned.load());
    std::fflush(stdout);
    std::_Exit(3);  // the others are stuck: joining them would hang
  }
  for (auto& submitter : submitters) submitter.join();
  std::printf("ok\n");
  return 0;
}

/// Stops the fork server of the only worker, then kills that worker: the keeper's wait for
/// the server to report it reaped must end (the server condemned as hung), the next call
/// must run through the other server, and the pool must shut down.
int helper_server_stopped() {
  offload::process_init();
  int code = 0;
  {
    ProcessPool pool({.workers = 1});
    const int worker = pool.submit(worker_pid).get();
    const pid_t server = read_process(worker)->parent;
    ::kill(server, SIGSTOP);
    ::kill(worker, SIGKILL);
    auto next = pool.submit(square, 7);
    if (next.wait_for(60s) != offload::FutureStatus::ready) {
      std::printf("the call after the worker's death never ended\n");
      std::fflush(stdout);
      std::_Exit(3);  // the keeper is stuck: shutting the pool down would hang
    }
    if (next.get() != 49) code = 4;
    if (!eventually([&] { return has_ended(server); })) code = 5;
  }
  std::printf(code == 0 ? "ok\n" : "failed\n");
  return code;
}

/// Kills the fork server in use and destroys the pool (whose servers end with it) at once,
/// while the other server replaces the dead one: no server, new or old, may remain.
int helper_destroy_while_replacing() {
  {
    ProcessPool pool({.workers = 2});
    if (pool.submit(square, 4).get() != 16) return 1;
    ::kill(fork_server_pid(), SIGKILL);
  }
  // Every server, old or new, is our child (workers are the servers'): all must be reaped.
  if (!children_of(::getpid()).empty()) return 2;
  std::printf("ok\n");
  return 0;
}

/// Starts a thread, then tries to create a pool without process_init().
int helper_threaded_without_init() {
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    while (!stop) std::this_thread::sleep_for(1ms);
  });
  int code = 0;
  try {
    ProcessPool pool({.workers = 1});
    std::printf("created a pool\n");
    code = 1;
  } catch (const offload::Error& error) {
    std::printf("refused: %s\n", error.what());
  }
  stop = true;
  busy.join();
  return code;
}

/// This process's threads, from /proc/self/status (0 if unreadable).
rlim_t threads_of_this_process() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("Threads:")) return std::strtoul(line.c_str() + 8, nullptr, 10);
  }
  return 0;
}

/// Makes a pool of two workers when only one more thread can start (RLIMIT_NPROC): the
/// constructor must throw std::system_error once the keeper that did start, and its worker,
/// have ended (it called std::terminate: a joinable keeper thread destroyed); then a pool
/// must run calls. RLIMIT_NPROC binds only an unprivileged user, so the helper becomes a user
/// of its own (for good: it is a helper process), one no other helper shares; where it cannot
/// (not root, or a user namespace without that uid) it reports "skipped".
int helper_keeper_thread_fails() {
  offload::process_init();
  // A thread first, so that sanitizer runtimes' own background threads already run.
  std::thread([] {}).join();
  const auto own_user = static_cast<uid_t>(200000 + ::getpid() % 100000);
  if (::geteuid() != 0 || ::setuid(own_user) != 0) {
    std::printf("skipped: cannot become an unprivileged user of its own\n");
    return 0;
  }
  // A changed user makes it undumpable, and LeakSanitizer may then not trace its threads at exit.
  if (::prctl(PR_SET_DUMPABLE, 1) != 0) return 2;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NPROC, &limit) != 0) return 2;
  const rlimit loose = limit;
  // The joined thread may still be counted for a moment: wait until the count settles.
  rlim_t threads = threads_of_this_process();
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(2ms);
    const rlim_t now = threads_of_this_process();
    if (now == threads) break;
    threads = now;
  }
  limit.rlim_cur = threads + 1;  // room for one keeper thread
  if (::setrlimit(RLIMIT_NPROC, &limit) != 0) return 2;
  int code = 0;
  try {
    ProcessPool pool({.workers = 2});
    std::printf("the pool started both keepers\n");
    code = 3;
  } catch (const std::system_error&) {
  }
  ::setrlimit(RLIMIT_NPROC, &loose);
  if (code != 0) return code;
  const std::vector<pid_t> servers = fork_server_pids();
  const bool no_worker_left = eventually([&] {
    return std::all_of(servers.begin(), servers.end(),
                       [](pid_t server) { return children_of(server).empty(); });
  });
  if (!no_worker_left) {
    std::printf("a worker outlived the pool that failed to start\n");
    return 4;
  }
  ProcessPool pool({.workers = 2});
  if (pool.submit(square, 9).get() != 81) return 5;
  std::printf("ok\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2) {
    const std::string_view mode = argv[1];
    if (mode == "--helper-pool-without-init") return helper_pool_without_init();
    if (mode == "--helper-killed-parent") return helper_killed_parent();
    if (mode == "--helper-threaded-without-init") return helper_threaded_without_init();
    if (mode == "--helper-servers-lost") return helper_servers_lost();
    if (mode == "--helper-blocked-submitters") return helper_blocked_submitters_servers_lost();
    if (mode == "--helper-server-stopped") return helper_server_stopped();
    if (mode == "--helper-destroy-while-replacing") return helper_destroy_while_replacing();
    if (mode == "--helper-keeper-thread-fails") return helper_keeper_thread_fails();
  }
  offload::process_init();  // first thing: the fork server starts while we are single-threaded
  return offload_test::run_catch_session(argc, argv);
}

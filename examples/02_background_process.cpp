// The worker-farm model: CPU-heavy items run in worker processes, where a crash or a hang
// costs one item, never the program.
//
// 400 items of the "heavy array" run on a ProcessPool. Item 123 dereferences a null pointer
// (SIGSEGV) and item 321 never returns; the pool reports both, kills the hung worker at
// max_call_time, replaces both workers, and every other result still arrives. Finally, the
// resident memory of an idle worker process is shown beside that of an idle worker thread.
//
// Build: cmake --build <dir> --target 02_background_process

#include <offload/process_pool.hpp>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int item_count = 400;
constexpr int crashing_item = 123;
constexpr int hanging_item = 321;

double heavy_item(int i) {
  double s = 0;
  for (int k = 0; k < 200000; ++k) s += std::sqrt(double(k) * double(i % 7 + 1) + 1.0);
  return s;
}

/// What the worker runs: the heavy item, except for the two that misbehave.
double risky_item(int i) {
  if (i == crashing_item) std::raise(SIGSEGV);  // what a stray null pointer would do
  if (i == hanging_item) {
    for (;;) ::pause();  // a deadlock, an endless loop, a read that never returns...
  }
  return heavy_item(i);
}

/// A "Key:   1234 kB" line of a /proc file, in KiB; -1 when absent.
long proc_kib(const std::string& path, const std::string& key) {
  std::ifstream file(path);
  for (std::string line; std::getline(file, line);) {
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(key.size()));
  }
  return -1;
}

long resident_kib(pid_t pid) {
  return proc_kib("/proc/" + std::to_string(pid) + "/status", "VmRSS:");
}

/// Proportional set size: shared pages are split among the processes sharing them.
long proportional_kib(pid_t pid) {
  return proc_kib("/proc/" + std::to_string(pid) + "/smaps_rollup", "Pss:");
}

/// The resident memory one idle thread adds: start `count` threads that each run a little
/// and then wait, and divide the growth of this process's RSS by their number.
double idle_thread_kib(int count) {
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  int started = 0;
  const long before = resident_kib(::getpid());
  std::vector<std::thread> threads;
  for (int t = 0; t < count; ++t) {
    threads.emplace_back([&] {
      volatile double work = heavy_item(0);  // touch the stack as a real task would
      (void)work;
      std::unique_lock lock(mutex);
      ++started;
      wake.notify_all();
      wake.wait(lock, [&] { return stop; });
    });
  }
  {
    std::unique_lock lock(mutex);
    wake.wait(lock, [&] { return started == count; });
  }
  const long after = resident_kib(::getpid());
  {
    std::lock_guard lock(mutex);
    stop = true;
  }
  wake.notify_all();
  for (auto& thread : threads) thread.join();
  return double(after - before) / count;
}

double milliseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

int main() {
  // First thing in main: the fork server starts while the program is single-threaded.
  offload::process_init();

  const auto serial_start = std::chrono::steady_clock::now();
  std::vector<double> expected(item_count);
  for (int i = 0; i < item_count; ++i) expected[static_cast<std::size_t>(i)] = heavy_item(i);
  const double serial_ms = milliseconds_since(serial_start);

  const unsigned workers = std::max(2u, std::thread::hardware_concurrency());
  offload::ProcessPool pool({.workers = workers, .max_call_time = std::chrono::milliseconds(500)});

  const auto start = std::chrono::steady_clock::now();
  std::vector<offload::Future<double>> futures;
  for (int i = 0; i < item_count; ++i) futures.push_back(pool.submit(risky_item, i));

  int matching = 0;
  for (int i = 0; i < item_count; ++i) {
    try {
      if (futures[static_cast<std::size_t>(i)].get() == expected[static_cast<std::size_t>(i)])
        ++matching;
    } catch (const offload::WorkerCrashed& error) {
      std::printf("item %d: WorkerCrashed: %s\n", i, error.what());
    } catch (const offload::CallTimeout& error) {
      std::printf("item %d: CallTimeout:   %s\n", i, error.what());
    }
  }
  const double pool_ms = milliseconds_since(start);

  std::printf("\n%d of %d results arrived, each equal to the serial result\n", matching,
              item_count - 2);
  std::printf(
      "serial: %.0f ms for %d items; %u worker processes: %.0f ms, including the %d ms "
      "the hung item was given\n",
      serial_ms, item_count, workers, pool_ms, 500);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the replacements start
  const offload::ProcessStats stats = pool.stats();
  std::printf("pool: %llu completed, %llu crashed, %llu timed out, %llu worker processes started "
              "(the crashed and the killed one were replaced)\n",
              static_cast<unsigned long long>(stats.completed),
              static_cast<unsigned long long>(stats.crashes),
              static_cast<unsigned long long>(stats.timeouts),
              static_cast<unsigned long long>(stats.workers_started));

  const std::vector<pid_t> pids = pool.worker_pids();
  if (!pids.empty()) {
    std::printf("\nresident memory of one idle worker:\n");
    std::printf(
        "  worker process (pid %d): RSS %ld KiB, PSS %ld KiB (its share of pages it "
        "shares with the program)\n",
        static_cast<int>(pids.front()), resident_kib(pids.front()), proportional_kib(pids.front()));
    std::printf(
        "  worker thread:             RSS %.0f KiB (growth per idle thread, measured "
        "over 32 threads)\n",
        idle_thread_kib(32));
  }
  return matching == item_count - 2 ? 0 : 1;
}

// 03_worker_threads: Node's worker_threads model, with offload::run_service.
//
//   Node.js                                     offload
//   new Worker(file, { workerData })            run_service(pool, service, data)
//   const result = await runService('world')    co_await run_service(pool, hello, "world")
//   parentPort.postMessage(progress)            port.send(progress)
//   worker.on('message', show)                  for (Progress p : rx) show(p);
//   SharedArrayBuffer, Atomics.wait / notify    SharedBuffer<T>, wait() / notify()
//
// The work is 01_tick's: 400 items, each about a millisecond of square roots.
//   (a) hello: a service gets its own copy of its data; its return value comes back, once
//       through a Future and once awaited by a coroutine on an EventLoop (the seed's
//       `async function run()`);
//   (b) one service computes every item and streams its progress through a port, which the
//       main thread draws as a live progress bar (a few plain lines when stdout is not a
//       terminal);
//   (c) the same job split across the pool's workers, each writing its own slice of a
//       SharedBuffer<double>; a counter in a SharedBuffer<std::uint32_t>, with wait/notify,
//       tells the main thread when every slice is done.
// Each checksum must equal the serial one; (c) also shows the speedup over serial.
//
//   usage: 03_worker_threads

#include <offload/channel.hpp>
#include <offload/event_loop.hpp>
#include <offload/service.hpp>
#include <offload/shared_buffer.hpp>
#include <offload/task.hpp>
#include <offload/thread_pool.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <utility>
#include <vector>

#if defined(_WIN32)
#include <io.h>
#else
#include <unistd.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t item_count = 400;

/// The seed's heavy item: about a millisecond of square roots (as in 01_tick).
double item_cost(std::size_t i) {
  double s = 0;
  for (int k = 0; k < 200000; ++k) s += std::sqrt(double(k) * double(i % 7 + 1) + 1.0);
  return s;
}

bool stdout_is_terminal() {
#if defined(_WIN32)
  return _isatty(_fileno(stdout)) != 0;
#else
  return isatty(STDOUT_FILENO) != 0;
#endif
}

double milliseconds_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

/// The reference: every item on this thread, summed in index order.
double serial_checksum() {
  double sum = 0;
  for (std::size_t i = 0; i < item_count; ++i) sum += item_cost(i);
  return sum;
}

// --- (a) hello ------------------------------------------------------------------------------

/// The service: `name` is its own copy.
std::string hello(std::string name) { return "Hello " + name; }

void say_hello(offload::ThreadPool& pool) {
  offload::Future<std::string> greeting = offload::run_service(pool, hello, std::string("world"));
  std::printf("(a) %s\n", greeting.get().c_str());
}

// --- (a) hello again, in await style --------------------------------------------------------

/// The seed's `async function run() { const result = await runService('world');
/// console.log(result); }`. Spawned on a loop, it prints on the loop's thread, as Node would.
offload::Task<void> run(offload::ThreadPool& pool) {
  std::string result = co_await offload::run_service(pool, hello, std::string("world"));
  std::printf("(a) await style: %s\n", result.c_str());
}

void say_hello_awaiting(offload::ThreadPool& pool) {
  offload::EventLoop loop;
  offload::Future<void> done = offload::spawn(loop, run(pool));
  loop.run();  // returns once run() has finished
  done.get();  // only to surface an exception, if any
}

// --- (b) one service, progress through a port -------------------------------------------------

/// What the service posts after each item.
struct Progress {
  std::size_t done = 0;
  std::size_t total = 0;
};

/// The service: computes every item it is given, reports progress, returns the checksum.
/// `items` is its own copy; `port` is how it talks to the main thread while it runs.
double checksum_service(std::vector<std::size_t> items, offload::Sender<Progress>& port) {
  double sum = 0;
  for (std::size_t n = 0; n < items.size(); ++n) {
    sum += item_cost(items[n]);
    port.send(Progress{n + 1, items.size()});  // never fails here: the main thread reads on
  }
  return sum;
}

/// Shows progress as a bar redrawn in place (\r) on a terminal, or as a line every 25%.
class ProgressDisplay {
 public:
  ProgressDisplay() : on_terminal_(stdout_is_terminal()) {}

  void show(const Progress& progress) {
    const std::size_t percent = progress.done * 100 / progress.total;
    if (on_terminal_) {
      draw_bar(progress, percent);
    } else if (percent >= next_line_percent_) {
      std::printf("    progress %3zu%% (%zu/%zu items)\n", percent, progress.done, progress.total);
      next_line_percent_ = percent / 25 * 25 + 25;
    }
  }

  /// Ends the bar's line (on a terminal).
  void finish() const {
    if (on_terminal_) std::printf("\n");
  }

 private:
  static void draw_bar(const Progress& progress, std::size_t percent) {
    constexpr std::size_t width = 40;
    const std::size_t filled = progress.done * width / progress.total;
    const std::string bar = std::string(filled, '#') + std::string(width - filled, '.');
    std::printf("\r    [%s] %3zu%% %zu/%zu", bar.c_str(), percent, progress.done, progress.total);
    std::fflush(stdout);
  }

  bool on_terminal_;
  std::size_t next_line_percent_ = 25;
};

double run_with_progress(offload::ThreadPool& pool) {
  std::vector<std::size_t> items(item_count);
  for (std::size_t i = 0; i < item_count; ++i) items[i] = i;

  auto [tx, rx] = offload::unbounded_channel<Progress>();
  // The Sender is moved in: when the service returns, its port is released, the channel
  // closes and the loop below ends.
  offload::Future<double> checksum =
      offload::run_service(pool, checksum_service, std::move(items), std::move(tx));

  ProgressDisplay display;
  for (const Progress progress : rx) display.show(progress);
  display.finish();
  return checksum.get();
}

// --- (c) the job split across the workers, SharedBuffer + wait/notify -------------------------

/// One worker's share: items [begin, end), written into `results`; `finished` counts the
/// slices that are done. Copying a SharedBuffer copies the handle: the memory is shared.
struct Slice {
  std::size_t begin = 0;
  std::size_t end = 0;
  offload::SharedBuffer<double> results;
  offload::SharedBuffer<std::uint32_t> finished;
};

void slice_service(const Slice& slice) {
  const std::span<double> results = slice.results.span();
  for (std::size_t i = slice.begin; i < slice.end; ++i) results[i] = item_cost(i);  // disjoint
  // Release: whoever reads the new count also sees this slice's results (Atomics.add).
  slice.finished.atomic(0).fetch_add(1, std::memory_order_release);
  slice.finished.notify(0);  // Atomics.notify
}

/// Sleeps until `finished[0]` reaches `target` (Atomics.wait in a loop: wait() returns at once
/// when the value already moved on, and after every notify).
void wait_for_count(const offload::SharedBuffer<std::uint32_t>& finished, std::uint32_t target) {
  for (;;) {
    const std::uint32_t now = finished.atomic(0).load(std::memory_order_acquire);
    if (now == target) return;
    finished.wait(0, now);
  }
}

double run_split(offload::ThreadPool& pool) {
  const offload::SharedBuffer<double> results(item_count);
  const offload::SharedBuffer<std::uint32_t> finished(1);
  const std::size_t slices = std::min<std::size_t>(pool.size(), item_count);

  std::vector<offload::Future<void>> services;
  for (std::size_t s = 0; s < slices; ++s) {
    const Slice slice{s * item_count / slices, (s + 1) * item_count / slices, results, finished};
    services.push_back(offload::run_service(pool, slice_service, slice));
  }

  wait_for_count(finished, static_cast<std::uint32_t>(slices));
  for (auto& service : services) service.get();  // only to surface an exception, if any

  double sum = 0;  // in index order, exactly as the serial loop adds
  for (const double value : results.span()) sum += value;
  return sum;
}

}  // namespace

int main() {
  offload::ThreadPool pool;
  std::printf("%zu items of about 1 ms each, %u pool threads\n\n", item_count, pool.size());

  say_hello(pool);
  say_hello_awaiting(pool);

  auto start = Clock::now();
  const double serial = serial_checksum();
  const double serial_ms = milliseconds_since(start);
  std::printf("\nserial: checksum %.6f in %.0f ms\n\n", serial, serial_ms);

  std::printf("(b) one service, progress through a port:\n");
  const double streamed = run_with_progress(pool);
  std::printf("    checksum %.6f (%s serial)\n\n", streamed,
              streamed == serial ? "=" : "DIFFERS FROM");

  std::printf("(c) split across %u workers, SharedBuffer + wait/notify:\n", pool.size());
  start = Clock::now();
  const double split = run_split(pool);
  const double split_ms = milliseconds_since(start);
  std::printf("    checksum %.6f (%s serial) in %.0f ms: %.2fx the serial speed\n", split,
              split == serial ? "=" : "DIFFERS FROM", split_ms, serial_ms / split_ms);

  return streamed == serial && split == serial ? 0 : 1;
}

// Workload 6 of BENCHMARKS.md: ints through a channel, 1 producer x 1 consumer and 2 x 2,
// bounded (capacity 1024) and unbounded. Messages per second, median of several runs, against
// a mutex + deque + condition_variable channel written here and, when installed, moodycamel's
// BlockingConcurrentQueue (unbounded only: it has no blocking bounded mode).
//
//   channel_bench [--quick] [--json FILE]
#include <offload/channel.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#if __has_include(<concurrentqueue/blockingconcurrentqueue.h>)
#include <concurrentqueue/blockingconcurrentqueue.h>
#define OFFLOAD_BENCH_HAVE_MOODYCAMEL 1
#endif

namespace {

// --- the baseline: the textbook channel ----------------------------------------------------

/// One mutex, one deque, two condition variables. capacity 0 = unbounded.
class MutexChannel {
 public:
  explicit MutexChannel(std::size_t capacity) : capacity_(capacity) {}

  void send(int value) {
    std::unique_lock lock(mutex_);
    not_full_.wait(lock, [&] { return capacity_ == 0 || queue_.size() < capacity_; });
    queue_.push_back(value);
    lock.unlock();
    not_empty_.notify_one();
  }

  std::optional<int> receive() {
    std::unique_lock lock(mutex_);
    not_empty_.wait(lock, [&] { return !queue_.empty() || closed_; });
    if (queue_.empty()) return std::nullopt;
    const int value = queue_.front();
    queue_.pop_front();
    lock.unlock();
    not_full_.notify_one();
    return value;
  }

  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    not_empty_.notify_all();
  }

 private:
  const std::size_t capacity_;
  std::mutex mutex_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<int> queue_;
  bool closed_ = false;
};

// --- running one measurement -----------------------------------------------------------------

struct Shape {
  int producers;
  int consumers;
};

/// Runs `producers` threads calling produce(p) and `consumers` threads calling consume(c) (which
/// returns that consumer's sum), all released together; `finish` runs once every producer is
/// done (to close the channel). Returns seconds from release to the last consumer's end, and
/// checks the sum of everything received.
double timed_run(Shape shape, long long expected_sum, const std::function<void(int)>& produce,
                 const std::function<long long(int)>& consume,
                 const std::function<void()>& finish) {
  std::atomic<bool> go{false};
  std::atomic<long long> sum{0};
  std::vector<std::thread> producers;
  std::vector<std::thread> consumers;
  for (int c = 0; c < shape.consumers; ++c) {
    consumers.emplace_back([&, c] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      sum.fetch_add(consume(c));
    });
  }
  for (int p = 0; p < shape.producers; ++p) {
    producers.emplace_back([&, p] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      produce(p);
    });
  }
  const auto start = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  for (auto& producer : producers) producer.join();
  finish();
  for (auto& consumer : consumers) consumer.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (sum.load() != expected_sum) {
    std::fprintf(stderr, "channel_bench: wrong sum %lld, expected %lld\n", sum.load(),
                 expected_sum);
    std::exit(1);
  }
  return seconds;
}

struct Workload {
  std::string name;
  Shape shape;
  bool bounded;
};

constexpr std::size_t bounded_capacity = 1024;

/// Producer p sends the ints p, p + producers, p + 2 * producers, ... below `messages`.
template <class Send>
void produce_share(int p, int producers, long long messages, Send&& send) {
  for (long long i = p; i < messages; i += producers) send(static_cast<int>(i));
}

double run_offload(const Workload& w, long long messages, long long expected_sum) {
  auto [tx, rx] =
      w.bounded ? offload::channel<int>(bounded_capacity) : offload::unbounded_channel<int>();
  std::vector<offload::Sender<int>> senders(static_cast<std::size_t>(w.shape.producers), tx);
  tx = offload::Sender<int>();
  return timed_run(
      w.shape, expected_sum,
      [&](int p) {
        offload::Sender<int> mine = std::move(senders[static_cast<std::size_t>(p)]);
        produce_share(p, w.shape.producers, messages, [&](int v) { mine.send(v); });
      },  // `mine` goes away here; the last one closes the channel
      [rx = rx](int) {
        long long sum = 0;
        for (int v : rx) sum += v;
        return sum;
      },
      [] {});
}

double run_mutex(const Workload& w, long long messages, long long expected_sum) {
  MutexChannel channel(w.bounded ? bounded_capacity : 0);
  return timed_run(
      w.shape, expected_sum,
      [&](int p) {
        produce_share(p, w.shape.producers, messages, [&](int v) { channel.send(v); });
      },
      [&](int) {
        long long sum = 0;
        while (auto v = channel.receive()) sum += *v;
        return sum;
      },
      [&] { channel.close(); });
}

#if defined(OFFLOAD_BENCH_HAVE_MOODYCAMEL)
/// moodycamel keeps FIFO order per producer only, so an end marker could overtake values.
/// Instead each consumer counts what it took; once every value is out, end markers follow.
double run_moodycamel(const Workload& w, long long messages, long long expected_sum) {
  moodycamel::BlockingConcurrentQueue<int> queue;
  struct alignas(64) Counter {
    std::atomic<long long> taken{0};
  };
  std::vector<Counter> counters(static_cast<std::size_t>(w.shape.consumers));
  return timed_run(
      w.shape, expected_sum,
      [&](int p) {
        moodycamel::ProducerToken token(queue);
        produce_share(p, w.shape.producers, messages, [&](int v) { queue.enqueue(token, v); });
      },
      [&](int c) {
        moodycamel::ConsumerToken token(queue);
        std::atomic<long long>& taken = counters[static_cast<std::size_t>(c)].taken;
        long long sum = 0;
        for (int v = 0;;) {
          queue.wait_dequeue(token, v);
          if (v < 0) return sum;  // an end marker
          sum += v;
          taken.store(taken.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        }
      },
      [&] {
        auto all_taken = [&] {
          long long total = 0;
          for (const Counter& counter : counters)
            total += counter.taken.load(std::memory_order_relaxed);
          return total == messages;
        };
        while (!all_taken()) std::this_thread::yield();
        for (int c = 0; c < w.shape.consumers; ++c) queue.enqueue(-1);
      });
}
#endif

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

/// The 1-minute load average, or -1 if unknown: on a shared machine, a busy core time-slices
/// producer and consumer, which hides the lock contention the mutex channel pays for.
double load_average() {
  std::ifstream file("/proc/loadavg");
  double load = -1;
  file >> load;
  return load;
}

struct Row {
  std::string workload;
  std::string contender;
  double messages_per_second;
};

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::optional<std::string> json_path;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--json FILE]\n", argv[0]);
      return 2;
    }
  }
  const long long messages = quick ? 1'000'000 : 10'000'000;
  const int runs = quick ? 3 : 5;
  const long long expected_sum = messages * (messages - 1) / 2;

  const std::vector<Workload> workloads = {
      {"1x1 bounded(1024)", {1, 1}, true},
      {"1x1 unbounded", {1, 1}, false},
      {"2x2 bounded(1024)", {2, 2}, true},
      {"2x2 unbounded", {2, 2}, false},
  };
  struct Contender {
    std::string name;
    double (*run)(const Workload&, long long, long long);
    bool bounded_too;
  };
  std::vector<Contender> contenders = {
      {"offload", run_offload, true},
      {"mutex+condvar", run_mutex, true},
  };
#if defined(OFFLOAD_BENCH_HAVE_MOODYCAMEL)
  contenders.push_back({"moodycamel", run_moodycamel, false});
#endif

  const double load_before = load_average();
  std::vector<Row> rows;
  for (const Workload& workload : workloads) {
    // Interleave the contenders' runs so that machine noise hits them alike.
    std::vector<std::vector<double>> rates(contenders.size());
    for (int run = 0; run < runs; ++run) {
      for (std::size_t c = 0; c < contenders.size(); ++c) {
        if (workload.bounded && !contenders[c].bounded_too) continue;
        const double seconds = contenders[c].run(workload, messages, expected_sum);
        rates[c].push_back(static_cast<double>(messages) / seconds);
      }
    }
    for (std::size_t c = 0; c < contenders.size(); ++c) {
      if (rates[c].empty()) continue;
      rows.push_back({workload.name, contenders[c].name, median(rates[c])});
      std::fprintf(stderr, "  %-20s %-15s %8.2f M msg/s\n", workload.name.c_str(),
                   contenders[c].name.c_str(), rows.back().messages_per_second / 1e6);
    }
  }

  auto rate_of = [&](const std::string& workload, const std::string& contender) -> double {
    for (const Row& row : rows) {
      if (row.workload == workload && row.contender == contender) return row.messages_per_second;
    }
    return 0;
  };

  std::printf("## Channels: %lld ints, median of %d runs, million messages per second\n\n",
              messages, runs);
  std::printf("| workload | offload | mutex+condvar | moodycamel | offload / mutex |\n");
  std::printf("|---|---:|---:|---:|---:|\n");
  for (const Workload& workload : workloads) {
    const double ours = rate_of(workload.name, "offload");
    const double mutex = rate_of(workload.name, "mutex+condvar");
    const double moody = rate_of(workload.name, "moodycamel");
    char moody_text[32] = "n/a";
    if (moody > 0) std::snprintf(moody_text, sizeof moody_text, "%.2f", moody / 1e6);
    std::printf("| %s | %.2f | %.2f | %s | %.1fx |\n", workload.name.c_str(), ours / 1e6,
                mutex / 1e6, moody_text, ours / mutex);
  }
  const double load_after = load_average();
  std::printf(
      "\nmoodycamel: BlockingConcurrentQueue with producer/consumer tokens; it has no "
      "blocking bounded mode, hence n/a.\n");
  std::printf("%u hardware threads; 1-minute load average %.2f before, %.2f after.\n",
              std::thread::hardware_concurrency(), load_before, load_after);

  if (json_path) {
    std::ofstream out(*json_path);
    out.setf(std::ios::fixed);
    out.precision(2);
    out << "{\n  \"benchmark\": \"channels\",\n  \"messages\": " << messages
        << ",\n  \"runs\": " << runs
        << ",\n  \"hardware_threads\": " << std::thread::hardware_concurrency()
        << ",\n  \"load_average_before\": " << load_before
        << ",\n  \"load_average_after\": " << load_after
        << ",\n  \"unit\": \"messages_per_second\",\n  \"results\": [\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const double mutex = rate_of(rows[i].workload, "mutex+condvar");
      out << "    {\"workload\": \"" << rows[i].workload << "\", \"contender\": \""
          << rows[i].contender << "\", \"messages_per_second\": " << rows[i].messages_per_second
          << ", \"ratio_vs_mutex\": " << rows[i].messages_per_second / mutex << "}"
          << (i + 1 < rows.size() ? ",\n" : "\n");
    }
    out << "  ]\n}\n";
    if (!out) {
      std::fprintf(stderr, "channel_bench: could not write %s\n", json_path->c_str());
      return 1;
    }
  }
  return 0;
}

// tick_bench: BENCHMARKS.md workload 5, the seed's heavy array, on an EventLoop.
//
// 400 items (item i: 200,000 square roots) processed three ways while a 1 ms set_interval
// ticks on the loop:
//   serial     one loop callback does all items (the loop starves: the baseline);
//   chunked    offload::for_each_chunked, 10 items per tick;
//   offloaded  one ThreadPool task per item, each result brought back with .then(loop, f);
//   offloaded, background workers
//              the same on a pool whose workers run at background priority (Linux SCHED_IDLE,
//              set from PoolOptions::on_thread_start), so the loop thread always preempts them;
//   ... beside a busy program
//              both offloaded approaches again while another process spins on one core (Linux):
//              what each costs when the machine is not the program's alone.
// Reported per approach: median total ms, median speedup over serial (each run's ratio against
// the serial run of the same round), median tick count and median largest gap between ticks;
// and, for context, the speedup of two plain threads on the same items in each round, without
// a loop (the machine's ceiling at that moment: on a shared VM it swings from run to run).
//
//   usage: tick_bench [--quick] [--json FILE]     (--quick: 3 runs instead of 11)

#include <offload/event_loop.hpp>
#include <offload/thread_pool.hpp>

#include <algorithm>
#include <atomic>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#if defined(__linux__)
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "bench_common.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using Milliseconds = std::chrono::duration<double, std::milli>;
using namespace std::chrono_literals;

constexpr std::size_t item_count = 400;
constexpr std::size_t items_per_tick = 10;

double heavy_item(std::size_t i) {
  double s = 0;
  for (int k = 0; k < 200000; ++k) s += std::sqrt(double(k) * double(i % 7 + 1) + 1.0);
  return s;
}

/// Tick statistics kept as the ticks come: count and longest silence since the work began.
class TickStats {
 public:
  explicit TickStats(Clock::time_point start) : last_(start) {}
  void tick(Clock::time_point now) {
    largest_gap_ = std::max(largest_gap_, now - last_);
    last_ = now;
    ++count_;
  }
  /// Closes the span at `end` (the silence before it counts too).
  void end(Clock::time_point now) { largest_gap_ = std::max(largest_gap_, now - last_); }
  [[nodiscard]] std::size_t count() const { return count_; }
  [[nodiscard]] double largest_gap_ms() const { return Milliseconds(largest_gap_).count(); }

 private:
  Clock::time_point last_;
  Clock::duration largest_gap_{};
  std::size_t count_ = 0;
};

struct Sample {
  double total_ms = 0;
  double largest_gap_ms = 0;
  std::size_t ticks = 0;
  double checksum = 0;
  double loop_cpu_ms = 0;  // CPU time of the loop's thread (this one) while the run lasted
  long loop_sleeps = 0;    // times it slept (voluntary context switches), each a wake-up
};

enum class Approach {
  serial,
  chunked,
  offloaded,
  offloaded_background,
  offloaded_loaded,
  offloaded_background_loaded
};
constexpr std::array approaches{Approach::serial,    Approach::chunked,
                                Approach::offloaded, Approach::offloaded_background,
                                Approach::offloaded_loaded, Approach::offloaded_background_loaded};

const char* name_of(Approach approach) {
  switch (approach) {
    case Approach::serial: return "serial";
    case Approach::chunked: return "chunked";
    case Approach::offloaded: return "offloaded";
    case Approach::offloaded_background: return "offloaded, background workers";
    case Approach::offloaded_loaded: return "offloaded, beside a busy program";
    case Approach::offloaded_background_loaded: return "offloaded, background workers, beside a busy program";
  }
  return "?";
}

/// Per-run state an approach's callbacks share with the run; lives on run_once()'s stack,
/// which outlives the loop's run().
struct Run {
  offload::EventLoop loop;
  std::vector<double> results = std::vector<double>(item_count);
  std::vector<std::size_t> indices;
  std::size_t remaining = item_count;
  offload::TimerId ticker;
  Clock::time_point start;
  Clock::time_point end;
  TickStats ticks{Clock::now()};

  void finish() {
    end = Clock::now();
    ticks.end(end);
    loop.clear(ticker);
  }
};

void start_serial(Run& run) {
  run.loop.post([&run] {
    for (std::size_t i = 0; i < item_count; ++i) run.results[i] = heavy_item(i);
    run.finish();
  });
}

void start_chunked(Run& run) {
  run.indices.resize(item_count);
  std::iota(run.indices.begin(), run.indices.end(), std::size_t{0});
  offload::for_each_chunked(run.loop, run.indices, items_per_tick,
                            [&run](std::size_t i) { run.results[i] = heavy_item(i); })
      .then([&run] { run.finish(); });
}

void start_offloaded(Run& run, offload::ThreadPool& pool) {
  for (std::size_t i = 0; i < item_count; ++i) {
    pool.submit([i] { return heavy_item(i); }).then(run.loop, [&run, i](double value) {
      run.results[i] = value;
      if (--run.remaining == 0) run.finish();
    });
  }
}

/// The two pools of the offloaded approaches.
struct Pools {
  offload::ThreadPool normal;
  offload::ThreadPool background{{.on_thread_start = [](unsigned) { bench::run_in_background(); }}};
};

/// Another program busy on one core for as long as it lives: a forked child that spins.
class BusyProgram {
 public:
  BusyProgram() {
#if defined(__linux__)
    child_ = fork();
    if (child_ == 0) {
      std::atomic<unsigned long> spin{0};
      for (;;) spin.fetch_add(1, std::memory_order_relaxed);  // until killed
    }
#endif
  }
  ~BusyProgram() {
#if defined(__linux__)
    if (child_ > 0) {
      kill(child_, SIGKILL);
      waitpid(child_, nullptr, 0);
    }
#endif
  }
  BusyProgram(const BusyProgram&) = delete;
  BusyProgram& operator=(const BusyProgram&) = delete;

 private:
  pid_t child_ = -1;
};

Sample run_once(Approach approach, Pools& pools) {
  std::optional<BusyProgram> busy;
  if (approach == Approach::offloaded_loaded || approach == Approach::offloaded_background_loaded) {
    busy.emplace();
  }
  Run run;
  run.ticker = run.loop.set_interval(1ms, [&run] { run.ticks.tick(Clock::now()); });
  run.start = Clock::now();
  run.ticks = TickStats(run.start);
  switch (approach) {
    case Approach::serial: start_serial(run); break;
    case Approach::chunked: start_chunked(run); break;
    case Approach::offloaded: start_offloaded(run, pools.normal); break;
    case Approach::offloaded_background: start_offloaded(run, pools.background); break;
    case Approach::offloaded_loaded: start_offloaded(run, pools.normal); break;
    case Approach::offloaded_background_loaded: start_offloaded(run, pools.background); break;
  }
  const bench::ThreadUsage before = bench::ThreadUsage::now();
  run.loop.run();
  const bench::ThreadUsage after = bench::ThreadUsage::now();
  return Sample{Milliseconds(run.end - run.start).count(), run.ticks.largest_gap_ms(),
                run.ticks.count(), std::accumulate(run.results.begin(), run.results.end(), 0.0),
                after.cpu_ms - before.cpu_ms, after.sleeps - before.sleeps};
}

struct Summary {
  Approach approach;
  double total_ms;
  double speedup;
  double ticks;
  double largest_gap_ms;
  double loop_cpu_ms;
  double loop_sleeps;
};

/// One round: every approach once, then two plain threads on the same items (ms).
struct Round {
  std::array<Sample, approaches.size()> samples;
  double two_threads_ms = 0;
  const Sample& operator[](std::size_t approach) const { return samples[approach]; }
};

/// The median speedup of two plain threads over each round's serial run.
double ceiling_of(const std::vector<Round>& rounds) {
  std::vector<double> speedups;
  for (const Round& round : rounds) speedups.push_back(round[0].total_ms / round.two_threads_ms);
  return bench::median(speedups);
}

std::vector<Summary> summarise(const std::vector<Round>& rounds) {
  std::vector<Summary> summary;
  for (std::size_t a = 0; a < approaches.size(); ++a) {
    std::vector<double> totals, speedups, ticks, gaps, loop_cpu, loop_sleeps;
    for (const auto& round : rounds) {
      totals.push_back(round[a].total_ms);
      speedups.push_back(round[0].total_ms / round[a].total_ms);  // same round's serial run
      ticks.push_back(static_cast<double>(round[a].ticks));
      gaps.push_back(round[a].largest_gap_ms);
      loop_cpu.push_back(round[a].loop_cpu_ms);
      loop_sleeps.push_back(static_cast<double>(round[a].loop_sleeps));
    }
    summary.push_back({approaches[a], bench::median(totals), bench::median(speedups),
                       bench::median(ticks), bench::median(gaps), bench::median(loop_cpu),
                       bench::median(loop_sleeps)});
  }
  return summary;
}

struct Claim {
  std::string what;
  double measured;
  std::string target;
};

/// Issue 4's targets, as measured in this run, and the machine's ceiling beside them.
std::vector<Claim> claims_of(const std::vector<Summary>& summary, double ceiling) {
  const auto of = [&](Approach approach) {
    return *std::find_if(summary.begin(), summary.end(),
                         [&](const Summary& s) { return s.approach == approach; });
  };
  const Summary chunked = of(Approach::chunked);
  const double chunk_ms = of(Approach::serial).total_ms / (item_count / items_per_tick);
  std::vector<Claim> claims;
  for (Approach approach : {Approach::offloaded, Approach::offloaded_background}) {
    const Summary s = of(approach);
    claims.push_back({std::string(name_of(approach)) + ": speedup over serial", s.speedup, ">= 1.9"});
    claims.push_back({std::string(name_of(approach)) + ": largest tick gap (ms)", s.largest_gap_ms,
                      "<= 1.5"});
  }
  for (Approach approach : {Approach::offloaded_loaded, Approach::offloaded_background_loaded}) {
    const Summary s = of(approach);
    claims.push_back({std::string(name_of(approach)) + ": speedup over serial (undisturbed)",
                      s.speedup, "context"});
    claims.push_back({std::string(name_of(approach)) + ": largest tick gap (ms)", s.largest_gap_ms,
                      "context"});
  }
  claims.push_back({"chunked: largest tick gap minus one chunk's time (ms)",
                    chunked.largest_gap_ms - chunk_ms, "<= 1"});
  claims.push_back({"2 plain threads, no loop: speedup over serial (what the machine allowed)",
                    ceiling, "context"});
  return claims;
}

void print_markdown(const std::vector<Summary>& summary, double ceiling, int runs,
                    unsigned threads) {
  std::printf("## Workload 5: the heavy array on an event loop\n\nMachine: %s\n\n"
              "%zu items, %zu per tick when chunked, %u pool threads, median of %d runs\n\n",
              bench::machine_description().c_str(), item_count, items_per_tick, threads, runs);
  std::printf("| approach | total ms | speedup vs serial | ticks (1 ms interval) | largest tick gap ms "
              "| loop thread CPU ms | loop thread sleeps |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  for (const Summary& s : summary) {
    std::printf("| %s | %.1f | %.2fx | %.0f | %.1f | %.1f | %.0f |\n", name_of(s.approach), s.total_ms,
                s.speedup, s.ticks, s.largest_gap_ms, s.loop_cpu_ms, s.loop_sleeps);
  }
  std::printf("\n| claim | measured | target |\n|---|---:|---|\n");
  for (const Claim& c : claims_of(summary, ceiling)) {
    std::printf("| %s | %.2f | %s |\n", c.what.c_str(), c.measured, c.target.c_str());
  }
}

bool write_json(const std::string& path, const std::vector<Summary>& summary, double ceiling,
                int runs, unsigned threads) {
  std::ofstream out(path);
  out << "{\n  \"workload\": \"heavy array on an event loop\",\n  \"machine\": \""
      << bench::machine_description() << "\",\n  \"items\": " << item_count
      << ",\n  \"items_per_tick\": " << items_per_tick << ",\n  \"threads\": " << threads
      << ",\n  \"runs\": " << runs << ",\n  \"results\": [\n";
  for (std::size_t i = 0; i < summary.size(); ++i) {
    const Summary& s = summary[i];
    out << "    {\"approach\": \"" << name_of(s.approach) << "\", \"total_ms\": " << s.total_ms
        << ", \"speedup\": " << s.speedup << ", \"ticks\": " << s.ticks
        << ", \"largest_tick_gap_ms\": " << s.largest_gap_ms << ", \"loop_cpu_ms\": " << s.loop_cpu_ms
        << ", \"loop_sleeps\": " << s.loop_sleeps << "}"
        << (i + 1 < summary.size() ? ",\n" : "\n");
  }
  out << "  ],\n  \"claims\": [\n";
  const std::vector<Claim> claims = claims_of(summary, ceiling);
  for (std::size_t i = 0; i < claims.size(); ++i) {
    out << "    {\"claim\": \"" << claims[i].what << "\", \"measured\": " << claims[i].measured
        << ", \"target\": \"" << claims[i].target << "\"}" << (i + 1 < claims.size() ? ",\n" : "\n");
  }
  out << "  ]\n}\n";
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options options = bench::parse_options(argc, argv);
  const int runs = options.quick ? 3 : 11;

  Pools pools;
  run_once(Approach::chunked, pools);  // warm-up: page in code and data, start the workers
  std::vector<Round> rounds;
  for (int r = 0; r < runs; ++r) {
    Round round;
    for (std::size_t a = 0; a < approaches.size(); ++a)
      round.samples[a] = run_once(approaches[a], pools);
    round.two_threads_ms = bench::two_threads_ms(static_cast<int>(item_count), [](int i) {
      return heavy_item(static_cast<std::size_t>(i));
    });
    rounds.push_back(round);
  }

  bool checksums_agree = true;
  for (const auto& round : rounds) {
    for (const Sample& sample : round.samples)
      checksums_agree &= sample.checksum == rounds[0][0].checksum;
  }
  if (!checksums_agree) {
    std::fprintf(stderr, "tick_bench: the approaches computed different checksums\n");
    return 1;
  }

  const auto summary = summarise(rounds);
  const double ceiling = ceiling_of(rounds);
  print_markdown(summary, ceiling, runs, pools.normal.size());
  if (options.json && !write_json(*options.json, summary, ceiling, runs, pools.normal.size())) {
    std::fprintf(stderr, "tick_bench: could not write %s\n", options.json->c_str());
    return 1;
  }
  return 0;
}

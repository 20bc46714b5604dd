// Shared helpers for offload's benchmark programs: options, medians, a markdown/JSON report.
#pragma once

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace bench {

struct Options {
  bool quick = false;               ///< --quick: smaller counts, for a smoke run
  std::optional<std::string> json;  ///< --json FILE: also write the numbers as JSON
};

inline Options parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      options.quick = true;
    } else if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      options.json = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--json FILE]\n", argv[0]);
      std::exit(2);
    }
  }
  return options;
}

inline double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

/// The machine's parallel ceiling at this moment, in ms: items 0..items-1 of `item` on two
/// plain threads, every other item each, nothing else in between. A heavy array offloaded to
/// two workers cannot beat it; on a shared VM it swings from run to run (another tenant's load
/// shows up here as well as in the pool's figure), so each run reports it beside its own.
template <class Item>
double two_threads_ms(int items, Item item) {
  double sums[2] = {0, 0};
  const auto start = std::chrono::steady_clock::now();
  std::thread second([&] {
    for (int i = 1; i < items; i += 2) sums[1] += item(i);
  });
  for (int i = 0; i < items; i += 2) sums[0] += item(i);
  second.join();
  if (sums[0] + sums[1] == 0) std::abort();  // the work is used, so it is not optimised away
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

/// Puts the calling thread at background priority: on Linux SCHED_IDLE, so it runs only when
/// no normal thread wants the CPU and any waking normal thread preempts it at once (elsewhere
/// a no-op). Meant for PoolOptions::on_thread_start of a pool whose workers would otherwise
/// delay the event-loop thread that their own results wake (see README, the tick model).
inline void run_in_background() noexcept {
#if defined(__linux__)
  const sched_param unused{};
  (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &unused);
#endif
}

/// The calling thread's CPU time (ms) and how often it slept (voluntary context switches,
/// each one a wake-up later) so far. Where there is no per-thread figure, the process's.
struct ThreadUsage {
  double cpu_ms;
  long sleeps;
  static ThreadUsage now() {
    rusage usage{};
#if defined(RUSAGE_THREAD)
    getrusage(RUSAGE_THREAD, &usage);
#else
    getrusage(RUSAGE_SELF, &usage);  // the whole process: an overestimate
#endif
    const auto ms = [](timeval t) { return double(t.tv_sec) * 1e3 + double(t.tv_usec) / 1e3; };
    return {ms(usage.ru_utime) + ms(usage.ru_stime), usage.ru_nvcsw};
  }
};

/// The machine, as one line: CPU model, cores, compiler.
inline std::string machine_description() {
  std::string model = "unknown CPU";
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return model + ", " + std::to_string(std::thread::hardware_concurrency()) +
         " hardware threads, compiler " + __VERSION__;
}

/// Rows grouped by workload; the first offload row of a workload is the ratio's reference.
class Report {
 public:
  explicit Report(std::string title) : title_(std::move(title)) {}

  void add(const std::string& workload, const std::string& contender, double value,
           const std::string& unit) {
    rows_.push_back({workload, contender, value, unit, ""});
    std::fprintf(stderr, "  %-55s %-32s %12.1f %s\n", workload.c_str(), contender.c_str(), value,
                 unit.c_str());
  }
  void add_text(const std::string& workload, const std::string& contender, const std::string& text) {
    rows_.push_back({workload, contender, 0, "", text});
  }
  [[nodiscard]] double value(const std::string& workload, const std::string& contender) const {
    for (const Row& r : rows_) {
      if (r.workload == workload && r.contender == contender) return r.value;
    }
    return 0;
  }
  void claim(const std::string& what, double measured, const std::string& target) {
    claims_.push_back({what, measured, target});
  }

  void print() const {
    std::printf("## %s\n\nMachine: %s\n\n", title_.c_str(), machine_description().c_str());
    std::printf("| workload | contender | result | vs offload |\n|---|---|---:|---:|\n");
    std::map<std::string, double> reference;
    for (const Row& r : rows_) {
      if (r.text.empty() && r.contender.rfind("offload", 0) == 0 && !reference.count(r.workload)) {
        reference[r.workload] = r.value;
      }
    }
    for (const Row& r : rows_) {
      if (!r.text.empty()) {
        std::printf("| %s | %s | %s | |\n", r.workload.c_str(), r.contender.c_str(), r.text.c_str());
        continue;
      }
      const auto ref = reference.find(r.workload);
      char ratio[32] = "";
      if (ref != reference.end() && ref->second > 0) {
        std::snprintf(ratio, sizeof ratio, "%.2fx", r.value / ref->second);
      }
      std::printf("| %s | %s | %.1f %s | %s |\n", r.workload.c_str(), r.contender.c_str(), r.value,
                  r.unit.c_str(), ratio);
    }
    if (!claims_.empty()) {
      std::printf("\n| claim | measured | target |\n|---|---:|---|\n");
      for (const Claim& c : claims_) {
        std::printf("| %s | %.3f | %s |\n", c.what.c_str(), c.measured, c.target.c_str());
      }
    }
    std::printf("\n");
  }

  void write_json(const std::string& path) const {
    std::ofstream out(path);
    out << "{\n  \"title\": \"" << escape(title_) << "\",\n  \"machine\": \""
        << escape(machine_description()) << "\",\n  \"rows\": [\n";
    for (std::size_t i = 0; i < rows_.size(); ++i) {
      const Row& r = rows_[i];
      out << "    {\"workload\": \"" << escape(r.workload) << "\", \"contender\": \""
          << escape(r.contender) << "\", \"value\": " << r.value << ", \"unit\": \"" << escape(r.unit)
          << "\", \"text\": \"" << escape(r.text) << "\"}" << (i + 1 < rows_.size() ? "," : "") << "\n";
    }
    out << "  ],\n  \"claims\": [\n";
    for (std::size_t i = 0; i < claims_.size(); ++i) {
      const Claim& c = claims_[i];
      out << "    {\"claim\": \"" << escape(c.what) << "\", \"measured\": " << c.measured
          << ", \"target\": \"" << escape(c.target) << "\"}" << (i + 1 < claims_.size() ? "," : "")
          << "\n";
    }
    out << "  ]\n}\n";
  }

 private:
  struct Row {
    std::string workload, contender;
    double value;
    std::string unit, text;
  };
  struct Claim {
    std::string what;
    double measured;
    std::string target;
  };
  static std::string escape(const std::string& s) {
    std::string out;
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    return out;
  }

  std::string title_;
  std::vector<Row> rows_;
  std::vector<Claim> claims_;
};

}  // namespace bench

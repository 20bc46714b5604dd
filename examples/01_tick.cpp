// 01_tick: keeping an event loop responsive while it has heavy work to do.
//
// An EventLoop ticks a 1 ms set_interval (think: a UI redraw, a heartbeat, a socket) while it
// must also process 400 costly items. Four ways to do it:
//   naive      one callback computes everything: the loop starves until it is done;
//   chunked    for_each_chunked, 10 items per tick: the ticks keep coming, the work is no
//              faster;
//   offloaded  each item goes to a ThreadPool and comes back with .then(loop, ...): the loop
//              stays free, and the work runs on every core. Default options: a worker that
//              wakes the loop thread hands it the CPU between its next items, so the ticks
//              keep coming even with every core busy (docs/thread_pool.md, Idle workers);
//   coroutine  chunked again, written as the naive loop in an offload::Task that says
//              co_await offload::yield(loop) after every 10 items: the same ticks, and the
//              code reads top to bottom.
// For each: total time, ticks seen, the largest gap between ticks, the checksum (all four must
// agree) and the speedup over naive. `--svg FILE` draws the four timelines.
//
//   usage: 01_tick [--svg FILE]

#include <offload/event_loop.hpp>
#include <offload/task.hpp>
#include <offload/thread_pool.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::size_t item_count = 400;
constexpr std::size_t items_per_tick = 10;

/// The seed's heavy item: about a millisecond of square roots (BENCHMARKS.md, workload 5).
/// Not inlined, so every approach runs the same machine code: clang 14, inlining it into the
/// coroutine, keeps the running sum in memory and the coroutine row comes out 45% slower.
[[gnu::noinline]] double item_cost(std::size_t i) {
  double s = 0;
  for (int k = 0; k < 200000; ++k) s += std::sqrt(double(k) * double(i % 7 + 1) + 1.0);
  return s;
}

/// What one approach looked like from the loop's point of view.
struct Timeline {
  std::string name;
  Clock::time_point start;
  Clock::time_point work_end;
  std::vector<Clock::time_point> ticks;
  double checksum = 0;

  [[nodiscard]] double ms_since_start(Clock::time_point when) const {
    return std::chrono::duration<double, std::milli>(when - start).count();
  }
  [[nodiscard]] double total_ms() const { return ms_since_start(work_end); }

  [[nodiscard]] std::size_t ticks_during_work() const {
    return static_cast<std::size_t>(
        std::count_if(ticks.begin(), ticks.end(), [this](auto t) { return t <= work_end; }));
  }

  /// The longest stretch without a tick while the work ran (start and end count as edges).
  [[nodiscard]] double largest_gap_ms() const {
    Clock::time_point previous = start;
    Clock::duration largest{};
    for (const auto tick : ticks) {
      if (tick > work_end) break;
      largest = std::max(largest, tick - previous);
      previous = tick;
    }
    largest = std::max(largest, work_end - previous);
    return std::chrono::duration<double, std::milli>(largest).count();
  }
};

/// Starts an approach's work on `loop`; it fills `results` and calls `finish` on the loop
/// thread when the last item is done.
using StartWork =
    std::function<void(offload::EventLoop& loop, std::vector<double>& results, std::function<void()> finish)>;

/// Runs one approach on a fresh loop with a 1 ms ticker, recording every tick.
Timeline measure(std::string name, const StartWork& start_work) {
  offload::EventLoop loop;
  Timeline timeline{std::move(name), {}, {}, {}, 0};
  timeline.ticks.reserve(4096);
  std::vector<double> results(item_count);
  const offload::TimerId ticker =
      loop.set_interval(1ms, [&] { timeline.ticks.push_back(Clock::now()); });
  timeline.start = Clock::now();
  start_work(loop, results, [&] {
    timeline.work_end = Clock::now();
    loop.clear(ticker);  // nothing left pending: run() returns
  });
  loop.run();
  timeline.checksum = std::accumulate(results.begin(), results.end(), 0.0);
  return timeline;
}

void start_naive(offload::EventLoop& loop, std::vector<double>& results, std::function<void()> finish) {
  loop.post([&results, finish = std::move(finish)] {
    for (std::size_t i = 0; i < results.size(); ++i) results[i] = item_cost(i);
    finish();
  });
}

void start_chunked(offload::EventLoop& loop, std::vector<double>& results, std::function<void()> finish) {
  std::vector<std::size_t> indices(results.size());
  std::iota(indices.begin(), indices.end(), std::size_t{0});
  // The walk runs on the loop thread; `indices` must outlive it, so it travels with `finish`.
  auto owned = std::make_shared<std::vector<std::size_t>>(std::move(indices));
  offload::for_each_chunked(loop, *owned, items_per_tick,
                            [&results](std::size_t i) { results[i] = item_cost(i); })
      .then([owned, finish = std::move(finish)] { finish(); });  // runs on the loop thread
}

/// for_each_chunked's walk as a coroutine: the naive loop plus a yield between chunks (none
/// after the last, as in for_each_chunked). `results` outlives the task: measure() owns it.
offload::Task<void> compute_yielding(offload::EventLoop& loop, std::vector<double>& results) {
  for (std::size_t i = 0; i < results.size(); ++i) {
    results[i] = item_cost(i);
    const bool chunk_done = (i + 1) % items_per_tick == 0;
    if (chunk_done && i + 1 < results.size()) co_await offload::yield(loop);
  }
}

void start_coroutine(offload::EventLoop& loop, std::vector<double>& results,
                     std::function<void()> finish) {
  offload::spawn(loop, compute_yielding(loop, results))
      .then(std::move(finish));  // the task ends on the loop thread, so this runs there
}

StartWork offloaded_to(offload::ThreadPool& pool) {
  return [&pool](offload::EventLoop& loop, std::vector<double>& results, std::function<void()> finish) {
    auto remaining = std::make_shared<std::size_t>(results.size());
    for (std::size_t i = 0; i < results.size(); ++i) {
      // The heavy part on a worker; the bookkeeping back on the loop, where no lock is needed.
      pool.submit([i] { return item_cost(i); })
          .then(loop, [&results, i, remaining, finish](double value) {
            results[i] = value;
            if (--*remaining == 0) finish();
          });
    }
  };
}

void print_table(const std::vector<Timeline>& timelines) {
  const double naive_ms = timelines.front().total_ms();
  std::printf("%-10s %10s %7s %16s %22s %9s\n", "approach", "total ms", "ticks", "largest gap ms",
              "checksum", "speedup");
  for (const Timeline& t : timelines) {
    std::printf("%-10s %10.1f %7zu %16.1f %22.6f %8.2fx\n", t.name.c_str(), t.total_ms(),
                t.ticks_during_work(), t.largest_gap_ms(), t.checksum, naive_ms / t.total_ms());
  }
}

/// A timeline chart: one row per approach, the work span shaded, a mark per tick, an axis in
/// milliseconds and a legend.
class SvgChart {
 public:
  explicit SvgChart(const std::vector<Timeline>& timelines) : timelines_(timelines) {
    for (const Timeline& t : timelines_) span_ms_ = std::max(span_ms_, t.total_ms());
    span_ms_ = std::max(span_ms_, 1.0);
  }

  void write(std::ostream& out) const {
    const double height = top_ + row_height_ * double(timelines_.size()) + 70;
    out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width_ << "\" height=\""
        << height << "\" font-family=\"sans-serif\" font-size=\"13\">\n"
        << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        << "<text x=\"" << left_ << "\" y=\"24\" font-size=\"16\">400 heavy items while a 1 ms "
        << "interval ticks (one mark per tick)</text>\n";
    for (std::size_t row = 0; row < timelines_.size(); ++row) write_row(out, row);
    write_axis(out);
    write_legend(out, height - 22);
    out << "</svg>\n";
  }

 private:
  [[nodiscard]] double x(double ms) const { return left_ + (width_ - left_ - right_) * ms / span_ms_; }

  void write_row(std::ostream& out, std::size_t row) const {
    const Timeline& t = timelines_[row];
    const double y = top_ + row_height_ * double(row);
    out << "<text x=\"10\" y=\"" << y + 24 << "\">" << t.name << "</text>\n"
        << "<text x=\"10\" y=\"" << y + 40 << "\" font-size=\"11\" fill=\"#555\">gap "
        << std::lround(t.largest_gap_ms()) << " ms max</text>\n"
        << "<rect x=\"" << x(0) << "\" y=\"" << y + 8 << "\" width=\"" << x(t.total_ms()) - x(0)
        << "\" height=\"" << row_height_ - 16 << "\" fill=\"#f6c177\" fill-opacity=\"0.55\"/>\n";
    for (const auto tick : t.ticks) {
      if (tick > t.work_end) break;
      const double at = x(t.ms_since_start(tick));
      out << "<line x1=\"" << at << "\" x2=\"" << at << "\" y1=\"" << y + 12 << "\" y2=\""
          << y + row_height_ - 12 << "\" stroke=\"#286983\" stroke-width=\"1\"/>\n";
    }
  }

  void write_axis(std::ostream& out) const {
    const double y = top_ + row_height_ * double(timelines_.size()) + 4;
    out << "<line x1=\"" << x(0) << "\" x2=\"" << x(span_ms_) << "\" y1=\"" << y << "\" y2=\"" << y
        << "\" stroke=\"black\"/>\n";
    const double step = nice_step(span_ms_ / 10);
    for (double ms = 0; ms <= span_ms_ + 1e-9; ms += step) {
      out << "<line x1=\"" << x(ms) << "\" x2=\"" << x(ms) << "\" y1=\"" << y << "\" y2=\"" << y + 5
          << "\" stroke=\"black\"/>\n<text x=\"" << x(ms) << "\" y=\"" << y + 19
          << "\" text-anchor=\"middle\">" << ms << "</text>\n";
    }
    out << "<text x=\"" << x(span_ms_) << "\" y=\"" << y + 36 << "\" text-anchor=\"end\">ms</text>\n";
  }

  void write_legend(std::ostream& out, double y) const {
    out << "<rect x=\"" << left_ << "\" y=\"" << y - 11 << "\" width=\"22\" height=\"12\" "
        << "fill=\"#f6c177\" fill-opacity=\"0.55\"/>\n<text x=\"" << left_ + 28 << "\" y=\"" << y
        << "\">work in progress</text>\n<line x1=\"" << left_ + 180 << "\" x2=\"" << left_ + 180
        << "\" y1=\"" << y - 12 << "\" y2=\"" << y + 2 << "\" stroke=\"#286983\"/>\n<text x=\""
        << left_ + 190 << "\" y=\"" << y << "\">a tick of the 1 ms interval</text>\n";
  }

  /// 1, 2 or 5 times a power of ten, at least `rough`.
  static double nice_step(double rough) {
    const double power = std::pow(10.0, std::floor(std::log10(rough)));
    for (const double factor : {1.0, 2.0, 5.0}) {
      if (factor * power >= rough) return factor * power;
    }
    return 10 * power;
  }

  const std::vector<Timeline>& timelines_;
  double span_ms_ = 0;
  double width_ = 960;
  double left_ = 118;
  double right_ = 30;
  double top_ = 40;
  double row_height_ = 56;
};

}  // namespace

int main(int argc, char** argv) {
  std::string svg_path;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--svg" && i + 1 < argc) {
      svg_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: %s [--svg FILE]\n", argv[0]);
      return 2;
    }
  }

  offload::ThreadPool pool;
  std::vector<Timeline> timelines;
  timelines.push_back(measure("naive", start_naive));
  timelines.push_back(measure("chunked", start_chunked));
  timelines.push_back(measure("offloaded", offloaded_to(pool)));
  timelines.push_back(measure("coroutine", start_coroutine));

  std::printf("%zu items, %zu per tick when chunked, %u pool threads\n\n", item_count,
              items_per_tick, pool.size());
  print_table(timelines);

  const bool agree = std::all_of(timelines.begin(), timelines.end(), [&](const Timeline& t) {
    return t.checksum == timelines.front().checksum;
  });
  std::printf("\nchecksums %s\n", agree ? "agree" : "DIFFER");

  if (!svg_path.empty()) {
    std::ofstream file(svg_path);
    SvgChart(timelines).write(file);
    if (!file) {
      std::fprintf(stderr, "could not write %s\n", svg_path.c_str());
      return 1;
    }
    std::printf("timeline written to %s\n", svg_path.c_str());
  }
  return agree ? 0 : 1;
}

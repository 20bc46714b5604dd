// Workload 12 of BENCHMARKS.md: a server under load, and the hop that brings a result back
// onto its io_context.
//
// The server and the load are examples/05_server.cpp's (examples/server/): an Asio server on
// 127.0.0.1, 8 clients pinging every millisecond while 2 clients ask for the 400 heavy items,
// against three servers: naive (heavy inline on the io_context thread), offloaded (a
// ThreadPool, the reply written from .then(io_context, ...)) and coroutine (a Task on the
// io_context that co_awaits the pool). Each round runs the three in turn; every figure is the
// median over the rounds, and each speedup is the ratio within one round.
//
// The hop: a value made on another thread, run on a busy-waiting io_context's thread, as
//   asio::post(io, f)                                   Asio's own way,
//   promise.set_value(v) with future.then(io, f) set    offload's,
// one at a time (the sender waits until f has run: the latency of one hop) and 100,000 in a
// row (the cost of each when they queue up).
//
//   usage: server_bench [--quick] [--json FILE]

#include "../examples/server/under_load.hpp"
#include "bench_common.hpp"

#include <offload/asio.hpp>
#include <offload/future.hpp>
#include <offload/thread_pool.hpp>

#include <asio.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct ServerFigures {
  std::vector<double> p50, p99, max, rate, speedup;
};

/// Runs `rounds` rounds of the three servers; returns the figures of each, in Mode order.
std::vector<ServerFigures> measure_servers(int rounds, const server::LoadSpec& spec) {
  const server::Mode modes[] = {server::Mode::naive, server::Mode::offloaded, server::Mode::coroutine};
  offload::ThreadPool pool;
  std::vector<ServerFigures> figures(3);
  for (int round = 0; round < rounds; ++round) {
    double naive_rate = 0;
    for (std::size_t m = 0; m < 3; ++m) {
      const server::LoadResult r = server::serve_under_load(modes[m], pool, spec);
      if (r.errors != 0 || r.heavy_answered != spec.heavy_items) {
        std::fprintf(stderr, "server_bench: the %s server lost or garbled answers\n",
                     server::mode_name(modes[m]));
        std::exit(1);
      }
      if (m == 0) naive_rate = r.heavy_per_second();
      figures[m].p50.push_back(r.ping_quantile(0.5));
      figures[m].p99.push_back(r.ping_quantile(0.99));
      figures[m].max.push_back(r.ping_quantile(1.0));
      figures[m].rate.push_back(r.heavy_per_second());
      figures[m].speedup.push_back(r.heavy_per_second() / naive_rate);
    }
  }
  return figures;
}

/// An io_context running on its own thread until destroyed.
class RunningIo {
 public:
  RunningIo() : guard_(asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}
  ~RunningIo() {
    guard_.reset();
    thread_.join();
  }
  asio::io_context& io() { return io_; }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread thread_;
};

/// Median ns of one hop, one at a time: `hop(i, done)` must make done become i on the io thread.
template <class Hop>
double one_at_a_time_ns(int count, Hop hop) {
  std::atomic<int> done{-1};
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    const auto start = Clock::now();
    hop(i, done);
    while (done.load(std::memory_order_acquire) != i) {
    }
    samples.push_back(std::chrono::duration<double, std::nano>(Clock::now() - start).count());
  }
  return bench::median(samples);
}

/// ns per hop when `count` are sent in a row, until the last has run.
template <class Hop>
double in_a_row_ns(int count, Hop hop) {
  std::atomic<int> done{0};
  const auto start = Clock::now();
  for (int i = 0; i < count; ++i) hop(i, done);
  while (done.load(std::memory_order_acquire) != count) {
  }
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count() / count;
}

void report_servers(bench::Report& report, const std::vector<ServerFigures>& figures) {
  const char* names[] = {"naive (heavy inline on the io_context)", "offload: then(io_context)",
                         "offload: co_await (Task on the io_context)"};
  // The table's reference is its first offload row, so offload's rows come first.
  const std::size_t order[] = {1, 2, 0};
  const std::string w = "12. server, 8 ping clients + 2 heavy clients: ";
  for (const std::size_t m : order) report.add(w + "ping p50", names[m], bench::median(figures[m].p50), "us");
  for (const std::size_t m : order) report.add(w + "ping p99", names[m], bench::median(figures[m].p99), "us");
  for (const std::size_t m : order) report.add(w + "ping max", names[m], bench::median(figures[m].max), "us");
  for (const std::size_t m : order) {
    report.add(w + "heavy items per second", names[m], bench::median(figures[m].rate), "items/s");
  }
  for (const std::size_t m : {std::size_t{1}, std::size_t{2}}) {
    report.add(w + "heavy speedup over naive", names[m], bench::median(figures[m].speedup), "x");
  }
  report.claim("then(io_context): ping p99 while heavy items run (us)", bench::median(figures[1].p99), "<= 2000");
  report.claim("co_await: ping p99 while heavy items run (us)", bench::median(figures[2].p99), "<= 2000");
  report.claim("naive: ping p99 (us; about one heavy item or worse)", bench::median(figures[0].p99), "context");
  report.claim("then(io_context): heavy throughput over naive", bench::median(figures[1].speedup), ">= 1.8");
  report.claim("co_await: heavy throughput over naive", bench::median(figures[2].speedup), ">= 1.8");
}

void measure_hops(bench::Report& report, bool quick) {
  const int single = quick ? 2'000 : 20'000;
  const int row = quick ? 20'000 : 200'000;
  RunningIo running;
  asio::io_context& io = running.io();
  auto post = [&io](int i, std::atomic<int>& done) {
    asio::post(io, [&done, i] { done.store(i, std::memory_order_release); });
  };
  auto then = [&io](int i, std::atomic<int>& done) {
    offload::Promise<int> promise;
    promise.get_future().then(io, [&done](int v) { done.store(v, std::memory_order_release); });
    promise.set_value(i);
  };
  auto post_count = [&io](int, std::atomic<int>& done) {
    asio::post(io, [&done] { done.fetch_add(1, std::memory_order_release); });
  };
  auto then_count = [&io](int i, std::atomic<int>& done) {
    offload::Promise<int> promise;
    promise.get_future().then(io, [&done](int) { done.fetch_add(1, std::memory_order_release); });
    promise.set_value(i);
  };
  // Warm both paths (allocators, the gate) before measuring either.
  (void)one_at_a_time_ns(single / 10, post);
  (void)one_at_a_time_ns(single / 10, then);
  const std::string one = "12. hop onto an io_context, one at a time (median)";
  const std::string many = "12. hop onto an io_context, 100,000s in a row (each)";
  const double then_one = one_at_a_time_ns(single, then);
  const double post_one = one_at_a_time_ns(single, post);
  report.add(one, "offload: set_value + then(io_context)", then_one, "ns");
  report.add(one, "asio::post", post_one, "ns");
  const double then_many = in_a_row_ns(row, then_count);
  const double post_many = in_a_row_ns(row, post_count);
  report.add(many, "offload: Promise + then(io_context) + set_value", then_many, "ns");
  report.add(many, "asio::post", post_many, "ns");
  report.claim("hop, one at a time: then(io_context) minus asio::post (ns)", then_one - post_one, "<= 1000");
  report.claim("hop, in a row: then(io_context) minus asio::post (ns)", then_many - post_many, "<= 1000");
}

}  // namespace

int main(int argc, char** argv) {
  const bench::Options options = bench::parse_options(argc, argv);
  server::LoadSpec spec;  // 8 ping clients every 1 ms, 2 heavy clients, 400 items
  const int rounds = options.quick ? 1 : 7;
  if (options.quick) spec.heavy_items = 40;

  bench::Report report("A server under load, and the hop back onto its io_context — server_bench");
  std::fprintf(stderr, "server_bench: %d rounds of naive, then(io_context), co_await\n", rounds);
  report_servers(report, measure_servers(rounds, spec));
  measure_hops(report, options.quick);
  report.print();
  if (options.json) report.write_json(*options.json);
  return 0;
}

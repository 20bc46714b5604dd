// The load generator of examples/05_server.cpp (BENCHMARKS.md, workload 12): loopback clients
// on their own io_context, on the thread that calls run_load().
//   ping clients   every ping_interval each sends `ping` (unless still waiting for its last
//                  answer) and times the answer, as long as heavy requests are still being
//                  answered (at most max_pings_per_client each, so the run is bounded whatever
//                  the server does);
//   heavy clients  share the items 0..heavy_items-1 (round robin), each keeping heavy_in_flight
//                  requests outstanding, so a server that can use more than one core has work
//                  for it; every answer is checked against the item it asked for.
// It ends by itself: when every heavy item is answered, the ping clients stop at their next
// answer and close.
#pragma once

#include "protocol.hpp"

#include <asio.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace server {

struct LoadSpec {
  unsigned ping_clients = 8;
  unsigned heavy_clients = 2;
  int heavy_items = 400;  ///< workload 5's array: items 0..heavy_items-1, each asked once
  unsigned heavy_in_flight = 2;
  std::chrono::microseconds ping_interval{1000};
  unsigned max_pings_per_client = 100000;
};

struct LoadResult {
  std::vector<double> ping_us;  ///< round trip of each ping answered while heavy items ran
  int heavy_answered = 0;
  double heavy_seconds = 0;  ///< from the first heavy request to the last answer
  std::vector<double> values;  ///< the value received for each item
  double checksum = 0;         ///< the sum of values, in item order
  int errors = 0;            ///< answers that were not the expected ones, or lost connections

  [[nodiscard]] double heavy_per_second() const {
    return heavy_seconds > 0 ? heavy_answered / heavy_seconds : 0;
  }
  /// The q-quantile (0 <= q <= 1) of the ping round trips, in microseconds.
  [[nodiscard]] double ping_quantile(double q) const {
    if (ping_us.empty()) return 0;
    std::vector<double> sorted = ping_us;
    std::sort(sorted.begin(), sorted.end());
    const auto at = static_cast<std::size_t>(q * double(sorted.size() - 1) + 0.5);
    return sorted[std::min(at, sorted.size() - 1)];
  }
};

namespace detail {

using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

/// A connected client socket that sends lines in order and reads answers a line at a time.
class LineSocket {
 public:
  LineSocket(asio::io_context& io, unsigned short port) : socket_(io) {
    socket_.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
    socket_.set_option(tcp::no_delay(true));
  }

  void send(std::string line) {
    outgoing_.push_back(std::move(line));
    if (outgoing_.size() == 1) write_front();
  }

  /// Calls done(error, line) with the next line, without its newline.
  template <class Done>
  void read_line(Done done) {
    asio::async_read_until(socket_, asio::dynamic_buffer(incoming_), '\n',
                           [this, done = std::move(done)](std::error_code error, std::size_t n) mutable {
                             std::string line;
                             if (!error) {
                               line = incoming_.substr(0, n - 1);
                               incoming_.erase(0, n);
                             }
                             done(error, std::move(line));
                           });
  }

  void close() {
    std::error_code ignored;
    socket_.close(ignored);
  }

 private:
  void write_front() {
    asio::async_write(socket_, asio::buffer(outgoing_.front()), [this](std::error_code error, std::size_t) {
      outgoing_.pop_front();
      if (!error && !outgoing_.empty()) write_front();
    });
  }

  tcp::socket socket_;
  std::deque<std::string> outgoing_;
  std::string incoming_;
};

/// What the clients share: the result, and whether heavy items are still being answered.
struct Run {
  LoadSpec spec;
  LoadResult result;
  unsigned heavy_clients_left = 0;
  Clock::time_point heavy_start;

  [[nodiscard]] bool heavy_running() const { return heavy_clients_left > 0; }
};

/// One ping connection. It sends when the ticker says so and it is not still waiting for its
/// previous answer (a ping the server is slow to answer skips ticks, as a real heartbeat would).
class PingClient {
 public:
  PingClient(asio::io_context& io, unsigned short port, Run& run) : socket_(io, port), run_(run) {}

  void tick() {
    if (waiting_ || closed_) return;
    if (!run_.heavy_running() || sent_ == run_.spec.max_pings_per_client) return close();
    ++sent_;
    waiting_ = true;
    const Clock::time_point sent_at = Clock::now();
    socket_.send("ping\n");
    socket_.read_line([this, sent_at](std::error_code error, const std::string& line) {
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - sent_at).count();
      waiting_ = false;
      if (error || line != "pong") {
        ++run_.result.errors;
        return close();
      }
      if (run_.heavy_running()) {
        run_.result.ping_us.push_back(us);
      } else {
        close();  // the load is over
      }
    });
  }

  void close() {
    closed_ = true;
    socket_.close();
  }
  [[nodiscard]] bool waiting() const { return waiting_; }

 private:
  LineSocket socket_;
  Run& run_;
  unsigned sent_ = 0;
  bool waiting_ = false, closed_ = false;
};

/// Ticks every ping_interval and lets each ping client send. One timer for all the clients, as
/// a heartbeat would be: the load generator shares the machine with the server it measures, and
/// eight timers would cost it eight wake-ups per interval instead of one.
class PingTicker {
 public:
  PingTicker(asio::io_context& io, unsigned short port, Run& run) : timer_(io), run_(run) {
    for (unsigned i = 0; i < run.spec.ping_clients; ++i) {
      clients_.push_back(std::make_unique<PingClient>(io, port, run));
    }
    next_ = Clock::now();
    tick();
  }

 private:
  void tick() {
    for (const auto& client : clients_) client->tick();
    if (!run_.heavy_running()) {
      for (const auto& client : clients_) {
        if (!client->waiting()) client->close();  // a waiting one closes when answered
      }
      return;
    }
    next_ += run_.spec.ping_interval;
    timer_.expires_at(next_);
    timer_.async_wait([this](std::error_code) { tick(); });
  }

  asio::steady_timer timer_;
  Run& run_;
  std::vector<std::unique_ptr<PingClient>> clients_;
  Clock::time_point next_;
};

class HeavyClient {
 public:
  HeavyClient(asio::io_context& io, unsigned short port, Run& run, unsigned index)
      : socket_(io, port), run_(run) {
    for (int item = int(index); item < run.spec.heavy_items; item += int(run.spec.heavy_clients)) {
      items_.push_back(item);
    }
    for (unsigned i = 0; i < run.spec.heavy_in_flight; ++i) send_next();
    if (awaited_.empty()) {
      finish();
    } else {
      read_answer();
    }
  }

 private:
  void send_next() {
    if (next_ == items_.size()) return;
    const int item = items_[next_++];
    awaited_.push_back(item);
    socket_.send("heavy " + std::to_string(item) + "\n");
  }

  void read_answer() {
    socket_.read_line([this](std::error_code error, const std::string& line) {
      if (error || !matches(line, awaited_.front())) {
        ++run_.result.errors;
        return finish();
      }
      awaited_.pop_front();
      ++run_.result.heavy_answered;
      send_next();
      if (awaited_.empty()) return finish();
      read_answer();
    });
  }

  /// True when `line` is the answer to `heavy item`; keeps its value.
  bool matches(const std::string& line, int item) {
    const std::string prefix = "heavy " + std::to_string(item) + " ";
    if (line.compare(0, prefix.size(), prefix) != 0) return false;
    const char* value = line.c_str() + prefix.size();
    char* end = nullptr;
    run_.result.values[static_cast<std::size_t>(item)] = std::strtod(value, &end);
    return end != value && *end == '\0';
  }

  void finish() {
    socket_.close();
    if (--run_.heavy_clients_left == 0) {
      run_.result.heavy_seconds =
          std::chrono::duration<double>(Clock::now() - run_.heavy_start).count();
    }
  }

  LineSocket socket_;
  Run& run_;
  std::vector<int> items_;
  std::size_t next_ = 0;
  std::deque<int> awaited_;
};

}  // namespace detail

/// Runs the load against 127.0.0.1:port on the calling thread and returns when it has ended.
inline LoadResult run_load(unsigned short port, const LoadSpec& spec) {
  asio::io_context io;
  detail::Run run{spec, {}, spec.heavy_clients, detail::Clock::now()};
  run.result.values.assign(static_cast<std::size_t>(std::max(spec.heavy_items, 0)), 0.0);
  detail::PingTicker pings(io, port, run);
  std::vector<std::unique_ptr<detail::HeavyClient>> heavies;
  run.heavy_start = detail::Clock::now();
  for (unsigned i = 0; i < spec.heavy_clients; ++i) {
    heavies.push_back(std::make_unique<detail::HeavyClient>(io, port, run, i));
  }
  io.run();
  for (const double value : run.result.values) run.result.checksum += value;
  return std::move(run.result);
}

}  // namespace server

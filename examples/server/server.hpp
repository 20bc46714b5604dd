// The server of examples/05_server.cpp: Asio on one io_context thread, the line protocol of
// protocol.hpp, and three ways to answer `heavy N`:
//   naive      computes the item inline, on the io_context thread: every other client waits;
//   offloaded  submits it to a ThreadPool and writes the reply from .then(io_context, ...);
//   coroutine  the same, written as a Task spawned on the io_context that co_awaits the pool.
// A connection answers pipelined requests side by side and writes the replies in request order
// (as HTTP/1.1 pipelining does); different connections are independent.
#pragma once

#include "protocol.hpp"

#include <offload/asio.hpp>
#include <offload/task.hpp>
#include <offload/thread_pool.hpp>

#include <asio.hpp>

#include <array>
#include <cmath>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace server {

/// The seed's heavy item (BENCHMARKS.md, workload 5): about a millisecond of square roots.
[[gnu::noinline]] inline double heavy_item(int i) {
  double s = 0;
  for (int k = 0; k < 200000; ++k) s += std::sqrt(double(k) * double(i % 7 + 1) + 1.0);
  return s;
}

enum class Mode { naive, offloaded, coroutine };

inline const char* mode_name(Mode mode) {
  switch (mode) {
    case Mode::naive: return "naive";
    case Mode::offloaded: return "offloaded";
    case Mode::coroutine: return "coroutine";
  }
  return "?";
}

using asio::ip::tcp;

/// One client. Its requests are answered as soon as they are parsed, several at a time when it
/// pipelines them (heavy ones then run side by side on the pool), and the replies go out in
/// the order of the requests.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, tcp::socket socket, offload::ThreadPool& pool, Mode mode)
      : io_(io), socket_(std::move(socket)), pool_(pool), mode_(mode) {
    socket_.set_option(tcp::no_delay(true));
  }

  void start() { read_more(); }
  void close() {
    std::error_code ignored;
    socket_.close(ignored);
  }

 private:
  /// Requests whose replies are not written yet; reading pauses beyond this many (back
  /// pressure: a client that never reads its replies cannot make the server queue forever).
  static constexpr std::size_t max_outstanding = 64;

  /// Reads on unless a read is pending, the stream ended or too many replies are outstanding.
  void read_more() {
    if (reading_ || stream_ended_ || replies_.size() >= max_outstanding) return;
    reading_ = true;
    socket_.async_read_some(asio::buffer(input_),
                            [self = shared_from_this()](std::error_code error, std::size_t n) {
                              self->on_read(error, n);
                            });
  }

  void on_read(std::error_code error, std::size_t n) {
    reading_ = false;
    std::vector<Request> parsed;
    parser_.feed(std::string_view(input_.data(), n), parsed);
    if (error) {
      parser_.finish(parsed);  // end of stream, or the socket failed: a partial request is truncated
      stream_ended_ = true;
    }
    for (const Request& request : parsed) answer(request);
    read_more();
    close_if_done();
  }

  void answer(const Request& request) {
    const std::size_t slot = first_slot_ + replies_.size();
    replies_.emplace_back();
    switch (request.kind) {
      case Request::Kind::ping: return reply(slot, pong_reply());
      case Request::Kind::invalid: return reply(slot, error_reply(request.reason));
      case Request::Kind::heavy: return answer_heavy(slot, request.item);
    }
  }

  void answer_heavy(std::size_t slot, int item) {
    switch (mode_) {
      case Mode::naive:
        return reply(slot, heavy_reply(item, heavy_item(item)));
      case Mode::offloaded:
        // The item on a worker; the reply written on the io_context thread, which owns the
        // socket. The continuation keeps the io_context's run() going until it has run.
        pool_.submit([item] { return heavy_item(item); })
            .then(io_, [self = shared_from_this(), slot, item](double value) {
              self->reply(slot, heavy_reply(item, value));
            });
        return;
      case Mode::coroutine:
        offload::spawn(io_, heavy_task(shared_from_this(), pool_, slot, item));
        return;
    }
  }

  /// The coroutine form. Parameters, not lambda captures, carry the state into the frame (the
  /// safe form on g++ 12, docs/task.md); the task resumes on the io_context after co_await.
  static offload::Task<void> heavy_task(std::shared_ptr<Connection> self, offload::ThreadPool& pool,
                                        std::size_t slot, int item) {
    const double value = co_await pool.submit([item] { return heavy_item(item); });
    self->reply(slot, heavy_reply(item, value));
  }

  /// Fills the reply of request number `slot`, then writes every reply now ready in order.
  void reply(std::size_t slot, std::string line) {
    replies_[slot - first_slot_] = std::move(line);
    while (!replies_.empty() && replies_.front()) {
      output_.push_back(std::move(*replies_.front()));
      replies_.pop_front();
      ++first_slot_;
    }
    if (!writing_ && !output_.empty()) write();
    read_more();
  }

  /// Writes every line waiting in output_ with one gathered write.
  void write() {
    writing_ = true;
    in_flight_.swap(output_);
    std::vector<asio::const_buffer> buffers;
    for (const std::string& line : in_flight_) buffers.push_back(asio::buffer(line));
    asio::async_write(socket_, buffers, [self = shared_from_this()](std::error_code error, std::size_t) {
      self->on_written(error);
    });
  }

  void on_written(std::error_code error) {
    writing_ = false;
    in_flight_.clear();
    if (error) {
      output_.clear();  // the client went away: nobody left to answer
      stream_ended_ = true;
      close();
      return;
    }
    if (!output_.empty()) write();
    close_if_done();
  }

  /// After the client ended its stream and every reply is written, end ours.
  void close_if_done() {
    if (stream_ended_ && replies_.empty() && output_.empty() && !writing_) {
      std::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      close();
    }
  }

  asio::io_context& io_;
  tcp::socket socket_;
  offload::ThreadPool& pool_;
  Mode mode_;
  std::array<char, 4096> input_{};
  RequestParser parser_;
  std::deque<std::optional<std::string>> replies_;  ///< in request order; empty: not ready yet
  std::size_t first_slot_ = 0;                      ///< the request number of replies_.front()
  std::vector<std::string> output_, in_flight_;     ///< ready to write / being written
  bool reading_ = false, writing_ = false, stream_ended_ = false;
};

/// Listens on 127.0.0.1 (a port the system picks) and serves every connection on `io`.
class Server {
 public:
  Server(asio::io_context& io, offload::ThreadPool& pool, Mode mode)
      : io_(io), acceptor_(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0)), pool_(pool), mode_(mode) {
    accept();
  }

  [[nodiscard]] unsigned short port() const { return acceptor_.local_endpoint().port(); }

  /// Stops accepting and closes every connection; call on the io_context thread.
  void stop() {
    std::error_code ignored;
    acceptor_.close(ignored);
    for (const auto& weak : connections_) {
      if (const auto connection = weak.lock()) connection->close();
    }
    connections_.clear();
  }

 private:
  void accept() {
    acceptor_.async_accept([this](std::error_code error, tcp::socket socket) {
      if (error) return;  // stopped
      auto connection = std::make_shared<Connection>(io_, std::move(socket), pool_, mode_);
      std::erase_if(connections_, [](const auto& weak) { return weak.expired(); });
      connections_.push_back(connection);
      connection->start();
      accept();
    });
  }

  asio::io_context& io_;
  tcp::acceptor acceptor_;
  offload::ThreadPool& pool_;
  Mode mode_;
  std::vector<std::weak_ptr<Connection>> connections_;
};

}  // namespace server

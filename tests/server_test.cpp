// examples/05_server.cpp's server (examples/server/): the request parser on its own, then the
// server over loopback TCP in each of its three modes, sent good requests, pipelined requests
// and bad ones (malformed, oversized, truncated), and the example's own load generator.
#include "server/protocol.hpp"
#include "server/under_load.hpp"

#include "catch.hpp"

#include <asio.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using server::Request;
using Kind = server::Request::Kind;

std::vector<Request> parse(std::string_view bytes, bool end_of_stream = false) {
  server::RequestParser parser;
  std::vector<Request> out;
  parser.feed(bytes, out);
  if (end_of_stream) parser.finish(out);
  return out;
}

/// A server of one mode on its own io_context thread, for as long as the object lives.
class RunningServer {
 public:
  explicit RunningServer(server::Mode mode)
      : server_(io_, pool_, mode), thread_([this] { io_.run(); }) {}
  ~RunningServer() {
    asio::post(io_, [this] { server_.stop(); });
    thread_.join();
  }
  [[nodiscard]] unsigned short port() const { return server_.port(); }

 private:
  offload::ThreadPool pool_{offload::PoolOptions{2}};
  asio::io_context io_;
  server::Server server_;
  std::thread thread_;
};

/// A blocking client: sends bytes, reads replies a line at a time.
class Client {
 public:
  explicit Client(unsigned short port) : socket_(io_) {
    socket_.connect({asio::ip::address_v4::loopback(), port});
  }
  void send(std::string_view bytes) { asio::write(socket_, asio::buffer(bytes.data(), bytes.size())); }
  /// The next line, without its newline; "<closed>" when the server ended the stream.
  std::string line() {
    std::error_code error;
    const std::size_t n = asio::read_until(socket_, asio::dynamic_buffer(incoming_), '\n', error);
    if (error) return "<closed>";
    std::string line = incoming_.substr(0, n - 1);
    incoming_.erase(0, n);
    return line;
  }
  void end_stream() { socket_.shutdown(asio::ip::tcp::socket::shutdown_send); }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  std::string incoming_;
};

std::string heavy_answer(int item) {
  std::string reply = server::heavy_reply(item, server::heavy_item(item));
  reply.pop_back();  // the newline
  return reply;
}

const server::Mode all_modes[] = {server::Mode::naive, server::Mode::offloaded, server::Mode::coroutine};

}  // namespace

TEST_CASE("the parser reads ping and heavy N, in any pieces", "[server][parser]") {
  const std::vector<Request> whole = parse("ping\nheavy 0\nheavy 1000000\r\nheavy 0000042\n");
  REQUIRE(whole.size() == 4);
  CHECK(whole[0].kind == Kind::ping);
  CHECK((whole[1].kind == Kind::heavy && whole[1].item == 0));
  CHECK((whole[2].kind == Kind::heavy && whole[2].item == 1'000'000));
  CHECK((whole[3].kind == Kind::heavy && whole[3].item == 42));

  server::RequestParser parser;
  std::vector<Request> bytewise;
  for (const char c : std::string_view("heavy 17\nping\n")) parser.feed(std::string_view(&c, 1), bytewise);
  REQUIRE(bytewise.size() == 2);
  CHECK((bytewise[0].kind == Kind::heavy && bytewise[0].item == 17));
  CHECK(bytewise[1].kind == Kind::ping);
  CHECK(parse("ping").empty());  // no newline yet: nothing to answer
}

TEST_CASE("the parser turns a malformed request into an error and goes on", "[server][parser]") {
  const std::vector<std::string> bad_requests = {
      "", "PING", "ping ", "pingping", "heavy", "heavy ", "heavy -1", "heavy +1", "heavy 12a",
      "heavy 1 2", "heavy 12345678", "heavy 1000001", "heavy\t1", std::string("pi\0ng", 5)};
  for (const std::string& bad : bad_requests) {
    const std::vector<Request> out = parse(bad + "\nping\n");
    INFO("request: '" << bad << "'");
    REQUIRE(out.size() == 2);
    CHECK(out[0].kind == Kind::invalid);
    CHECK_FALSE(out[0].reason.empty());
    CHECK(out[1].kind == Kind::ping);
  }
}

TEST_CASE("the parser answers an oversized request once and resynchronises at its newline",
          "[server][parser]") {
  const std::string longest(server::max_request_bytes, 'x');
  const std::vector<Request> at_limit = parse(longest + "\n");
  REQUIRE(at_limit.size() == 1);
  CHECK(at_limit[0].reason.find("malformed") != std::string::npos);  // too odd, but not too long

  const std::vector<Request> over = parse(std::string(100'000, 'y') + "\nheavy 3\n");
  REQUIRE(over.size() == 2);
  CHECK(over[0].kind == Kind::invalid);
  CHECK(over[0].reason.find("longer than") != std::string::npos);
  CHECK((over[1].kind == Kind::heavy && over[1].item == 3));

  // Still oversized when the stream ends inside it: answered once, not again as truncated.
  CHECK(parse(std::string(200, 'z'), true).size() == 1);
}

TEST_CASE("the parser reports a request cut off by the end of the stream", "[server][parser]") {
  const std::vector<Request> out = parse("ping\nhea", true);
  REQUIRE(out.size() == 2);
  CHECK(out[0].kind == Kind::ping);
  CHECK(out[1].kind == Kind::invalid);
  CHECK(out[1].reason.find("truncated") != std::string::npos);
  CHECK(parse("ping\n", true).size() == 1);  // a clean end: nothing more
}

TEST_CASE("each server answers ping and heavy N, pipelined requests in order", "[server]") {
  for (const server::Mode mode : all_modes) {
    INFO("server: " << server::mode_name(mode));
    RunningServer running(mode);
    Client client(running.port());
    client.send("ping\n");
    CHECK(client.line() == "pong");
    client.send("heavy 3\n");
    CHECK(client.line() == heavy_answer(3));
    // Pipelined: the heavy items may finish in any order, the replies come in request order.
    client.send("heavy 5\nping\nheavy 1\nheavy 4\nping\n");
    CHECK(client.line() == heavy_answer(5));
    CHECK(client.line() == "pong");
    CHECK(client.line() == heavy_answer(1));
    CHECK(client.line() == heavy_answer(4));
    CHECK(client.line() == "pong");
  }
}

TEST_CASE("each server answers bad requests with an error and keeps serving", "[server]") {
  for (const server::Mode mode : all_modes) {
    INFO("server: " << server::mode_name(mode));
    RunningServer running(mode);
    Client client(running.port());
    client.send("hello\nheavy x\nheavy 99999999\n");
    CHECK(client.line().rfind("error malformed request", 0) == 0);
    CHECK(client.line().rfind("error malformed request", 0) == 0);
    CHECK(client.line().rfind("error malformed request", 0) == 0);
    client.send(std::string(1'000'000, 'a') + "\nheavy 2\n");  // oversized, then a good one
    CHECK(client.line().rfind("error request longer than", 0) == 0);
    CHECK(client.line() == heavy_answer(2));
    client.send("heavy 1000001\nping\n");
    CHECK(client.line().rfind("error heavy N", 0) == 0);
    CHECK(client.line() == "pong");

    Client truncated(running.port());
    truncated.send("ping\nheavy 1");
    truncated.end_stream();
    CHECK(truncated.line() == "pong");
    CHECK(truncated.line().rfind("error truncated request", 0) == 0);
    CHECK(truncated.line() == "<closed>");  // answered everything, then ended its stream

    client.send("ping\n");  // the first connection was not disturbed
    CHECK(client.line() == "pong");
  }
}

TEST_CASE("a client that goes away with a heavy request pending does not stop the server",
          "[server]") {
  for (const server::Mode mode : all_modes) {
    INFO("server: " << server::mode_name(mode));
    RunningServer running(mode);
    {
      Client leaving(running.port());
      leaving.send("heavy 6\nheavy 7\nping\n");
    }  // closed before any answer
    Client client(running.port());
    client.send("heavy 8\n");
    CHECK(client.line() == heavy_answer(8));
  }
}

TEST_CASE("the load generator gets every heavy item, checked, from each server", "[server][load]") {
  server::LoadSpec spec;
  spec.ping_clients = 3;
  spec.heavy_items = 12;
  double expected = 0;
  for (int i = 0; i < spec.heavy_items; ++i) expected += server::heavy_item(i);
  offload::ThreadPool pool(offload::PoolOptions{2});
  for (const server::Mode mode : all_modes) {
    INFO("server: " << server::mode_name(mode));
    const server::LoadResult result = server::serve_under_load(mode, pool, spec);
    CHECK(result.errors == 0);
    CHECK(result.heavy_answered == spec.heavy_items);
    CHECK(result.checksum == expected);
    CHECK(result.heavy_seconds > 0);
    CHECK(result.ping_us.size() <= std::size_t{spec.ping_clients} * spec.max_pings_per_client);
  }
}

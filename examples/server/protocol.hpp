// The line protocol of examples/05_server.cpp: requests and replies are lines of text.
//
//   request                      reply
//   ping\n                       pong\n
//   heavy N\n   (0 <= N <= 1e6)  heavy N VALUE\n   (VALUE: the heavy item N, printed %.17g)
//   anything else                error REASON\n    (and the connection goes on)
//
// A request is at most max_request_bytes long before its newline ("\r\n" is accepted too). A
// longer one is answered once with an error and skipped up to its newline; bytes left without
// a newline when the client ends its stream are answered with an error before the server
// closes. The parser knows nothing of sockets, so the tests can feed it byte by byte.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace server {

inline constexpr std::size_t max_request_bytes = 64;
inline constexpr int max_heavy_item = 1'000'000;

/// One parsed request: a ping, a heavy item, or a bad request with the reason to send back.
struct Request {
  enum class Kind { ping, heavy, invalid };
  Kind kind = Kind::invalid;
  int item = 0;        ///< the item's index, for Kind::heavy
  std::string reason;  ///< what was wrong, for Kind::invalid

  static Request ping() { return {Kind::ping, 0, {}}; }
  static Request heavy(int item) { return {Kind::heavy, item, {}}; }
  static Request invalid(std::string reason) { return {Kind::invalid, 0, std::move(reason)}; }
};

inline std::string pong_reply() { return "pong\n"; }

inline std::string heavy_reply(int item, double value) {
  char line[64];
  const int n = std::snprintf(line, sizeof line, "heavy %d %.17g\n", item, value);
  return {line, static_cast<std::size_t>(n)};
}

inline std::string error_reply(std::string_view reason) {
  return "error " + std::string(reason) + "\n";
}

/// Splits a byte stream into requests. feed() the bytes as they arrive, in any pieces; each
/// complete line becomes one Request. finish() at the end of the stream.
class RequestParser {
 public:
  /// Parses `bytes`, appending one Request per line (or oversized line) they complete.
  void feed(std::string_view bytes, std::vector<Request>& out) {
    for (const char c : bytes) {
      if (c == '\n') {
        end_line(out);
      } else if (skipping_) {
        continue;  // the rest of an oversized request, already answered
      } else if (line_.size() == max_request_bytes) {
        out.push_back(Request::invalid("request longer than " +
                                       std::to_string(max_request_bytes) + " bytes"));
        line_.clear();
        skipping_ = true;
      } else {
        line_ += c;
      }
    }
  }

  /// The stream ended: a partial request left over is a truncated one.
  void finish(std::vector<Request>& out) {
    if (!line_.empty() && !skipping_) {
      out.push_back(Request::invalid("truncated request (the stream ended before its newline)"));
    }
    line_.clear();
    skipping_ = false;
  }

  /// Parses one line, without its newline.
  static Request parse_line(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == "ping") return Request::ping();
    constexpr std::string_view heavy = "heavy ";
    if (line.substr(0, heavy.size()) != heavy) {
      return Request::invalid("malformed request: expected 'ping' or 'heavy N'");
    }
    const std::string_view digits = line.substr(heavy.size());
    if (digits.empty() || digits.size() > 7 ||
        digits.find_first_not_of("0123456789") != std::string_view::npos) {
      return Request::invalid("malformed request: N in 'heavy N' must be a decimal number");
    }
    int item = 0;
    for (const char d : digits) item = item * 10 + (d - '0');
    if (item > max_heavy_item) {
      return Request::invalid("heavy N: N must be at most " + std::to_string(max_heavy_item));
    }
    return Request::heavy(item);
  }

 private:
  void end_line(std::vector<Request>& out) {
    if (!skipping_) out.push_back(parse_line(line_));
    line_.clear();
    skipping_ = false;
  }

  std::string line_;
  bool skipping_ = false;  ///< inside an oversized request, up to its newline
};

}  // namespace server

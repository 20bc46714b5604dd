// Codec<T> round trips for every provided type, and the defensive decoding of values and
// frames: truncated, corrupt or oversized input raises ProtocolError, never UB.

#include <offload/codec.hpp>
#include <offload/detail/process/frame.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>

#include "catch.hpp"

namespace {

enum class Color : unsigned char { red, green, blue };
enum Fixed : long { fixed_small = -5, fixed_big = 1L << 40 };
enum class Flag : bool { off, on };
enum Unfixed { unfixed_a, unfixed_b };

struct Point {
  double x = 0;
  double y = 0;
  bool operator==(const Point&) const = default;
};

struct NoCodec {
  int value = 0;
};

}  // namespace

template <>
struct offload::Codec<Point> {
  static void encode(offload::Writer& out, const Point& p) {
    out.write(p.x);
    out.write(p.y);
  }
  static Point decode(offload::Reader& in) {
    const double x = in.read<double>();
    const double y = in.read<double>();
    return Point{x, y};
  }
};

namespace {

using offload::ProtocolError;
using Bytes = std::vector<std::byte>;

template <class T>
T round_trip(const T& value) {
  return offload::decode<T>(offload::encode(value));
}

template <class T>
void check_round_trip(const T& value) {
  CHECK(round_trip(value) == value);
}

/// Every strict prefix of a valid encoding must be rejected, never misread.
template <class T>
void check_every_truncation_rejected(const T& value) {
  const Bytes bytes = offload::encode(value);
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    const std::span<const std::byte> prefix(bytes.data(), length);
    CHECK_THROWS_AS(offload::decode<T>(prefix), ProtocolError);
  }
}

Bytes bytes_of(std::initializer_list<unsigned> values) {
  Bytes bytes;
  for (unsigned v : values) bytes.push_back(static_cast<std::byte>(v));
  return bytes;
}

template <class Int>
void append_raw(Bytes& bytes, Int value) {
  const auto* first = reinterpret_cast<const std::byte*>(&value);
  bytes.insert(bytes.end(), first, first + sizeof value);
}

}  // namespace

// --- compile-time contract -----------------------------------------------------------------

static_assert(offload::HasCodec<int>);
static_assert(offload::HasCodec<Point>);
static_assert(offload::HasCodec<std::vector<std::map<std::string, std::optional<Point>>>>);
static_assert(!offload::HasCodec<NoCodec>);
static_assert(!offload::HasCodec<std::vector<NoCodec>>);
static_assert(!offload::HasCodec<std::pair<int, NoCodec>>);
static_assert(!offload::HasCodec<int*>);
static_assert(!offload::HasCodec<Unfixed>, "out-of-range loads of such enums are UB");
static_assert(offload::HasCodec<Color> && offload::HasCodec<Fixed> && offload::HasCodec<Flag>);
// The compile error names the innermost type without a codec, not the container around it.
static_assert(std::is_same_v<offload::detail::MissingCodecCulprit<
                                 std::vector<std::map<int, std::optional<NoCodec>>>>::type,
                             NoCodec>);
static_assert(
    std::is_same_v<offload::detail::MissingCodecCulprit<std::array<NoCodec, 3>>::type, NoCodec>);

// --- round trips ----------------------------------------------------------------------------

TEST_CASE("arithmetic values and enums round-trip exactly", "[codec]") {
  check_round_trip(true);
  check_round_trip(false);
  check_round_trip('x');
  check_round_trip(static_cast<signed char>(-7));
  check_round_trip(static_cast<unsigned char>(250));
  check_round_trip(L'w');
  check_round_trip(u8'u');
  check_round_trip(u'\u20ac');
  check_round_trip(U'\U0001F600');
  check_round_trip(static_cast<short>(-12345));
  check_round_trip(std::numeric_limits<int>::min());
  check_round_trip(std::numeric_limits<unsigned>::max());
  check_round_trip(std::numeric_limits<long>::min());
  check_round_trip(std::numeric_limits<unsigned long long>::max());
  check_round_trip(-0.0f);
  check_round_trip(std::numeric_limits<double>::denorm_min());
  check_round_trip(std::numeric_limits<double>::infinity());
  check_round_trip(3.25L);
  check_round_trip(Color::blue);
  check_round_trip(fixed_big);
  check_round_trip(fixed_small);
  check_round_trip(Flag::on);
  check_round_trip(std::byte{0xAB});

  SECTION("a NaN keeps its bit pattern") {
    const double nan = std::bit_cast<double>(std::uint64_t{0x7FF8'0000'0000'1234});
    CHECK(std::bit_cast<std::uint64_t>(round_trip(nan)) == 0x7FF8'0000'0000'1234);
  }
  SECTION("sizes are what the file comment promises") {
    CHECK(offload::encode(true).size() == 1);
    CHECK(offload::encode(42).size() == sizeof(int));
    CHECK(offload::encode(std::string("abc")).size() == 8 + 3);
  }
}

TEST_CASE("strings round-trip, empty and not", "[codec]") {
  check_round_trip(std::string());
  check_round_trip(std::string("hello, worker"));
  check_round_trip(std::string("embedded\0nul", 12));
  check_round_trip(std::wstring(L"wide"));
  check_round_trip(std::u8string(u8"utf-8"));
  check_round_trip(std::u16string(u"utf-16"));
  check_round_trip(std::u32string(U"utf-32"));
}

TEST_CASE("sequences round-trip, empty and not", "[codec]") {
  check_round_trip(std::vector<int>());
  check_round_trip(std::vector<int>{1, 2, 3});
  check_round_trip(std::vector<std::string>{"", "a", "bc"});
  check_round_trip(std::vector<bool>{true, false, true});
  check_round_trip(std::vector<bool>());
  check_round_trip(std::vector<Point>{{1, 2}, {3, 4}});
  check_round_trip(std::vector<Color>{Color::red, Color::blue});
  check_round_trip(std::deque<long>{5, 6});
  check_round_trip(std::deque<std::string>());
  check_round_trip(std::list<std::string>{"x", "y"});
  check_round_trip(std::list<int>());
  check_round_trip(std::array<int, 3>{7, 8, 9});
  check_round_trip(std::array<std::string, 2>{"p", ""});
  check_round_trip(std::array<int, 0>{});
  check_round_trip(std::vector<std::vector<double>>{{}, {1.5}, {2.5, 3.5}});
}

TEST_CASE("products, sums and optionals round-trip", "[codec]") {
  check_round_trip(std::pair<int, std::string>{4, "four"});
  check_round_trip(std::tuple<>());
  check_round_trip(std::tuple<int, double, std::string, bool>{1, 2.5, "t", true});
  check_round_trip(std::optional<int>());
  check_round_trip(std::optional<std::string>("present"));
  check_round_trip(std::optional<std::optional<int>>(std::optional<int>()));
  check_round_trip(std::variant<int, std::string, Point>(std::string("v")));
  check_round_trip(std::variant<int, std::string, Point>(Point{1, 2}));
  check_round_trip(std::variant<std::monostate, int>());
  check_round_trip(std::chrono::milliseconds(1234));
  check_round_trip(std::chrono::duration<double>(0.5));
  check_round_trip(Point{-1.5, 2.25});
}

TEST_CASE("associative containers round-trip, empty and not", "[codec]") {
  check_round_trip(std::map<std::string, int>{{"a", 1}, {"b", 2}});
  check_round_trip(std::map<int, int>());
  check_round_trip(std::multimap<int, std::string>{{1, "x"}, {1, "y"}, {0, "z"}});
  check_round_trip(std::unordered_map<std::string, std::vector<int>>{{"k", {1, 2}}, {"l", {}}});
  check_round_trip(std::unordered_multimap<int, int>{{1, 1}, {1, 2}});
  check_round_trip(std::set<std::string>{"s", "t"});
  check_round_trip(std::set<int>());
  check_round_trip(std::multiset<int>{3, 3, 1});
  check_round_trip(std::unordered_set<int>{4, 5});
  check_round_trip(std::unordered_multiset<int>{6, 6});
  check_round_trip(std::map<int, std::map<int, Point>>{{1, {{2, {3, 4}}}}});
}

TEST_CASE("sequences of values that encode to nothing keep their length", "[codec]") {
  check_round_trip(std::vector<std::tuple<>>(100));
  check_round_trip(std::vector<std::monostate>(3));
}

TEST_CASE("large values (64 MiB) round-trip", "[codec][large]") {
  constexpr std::size_t size = 64u << 20;
  SECTION("a string") {
    std::string big(size, '\0');
    for (std::size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>(i / 4096);
    const std::string back = round_trip(big);
    CHECK(back.size() == size);
    CHECK(back == big);
  }
  SECTION("a vector of doubles") {
    std::vector<double> big(size / sizeof(double));
    std::iota(big.begin(), big.end(), 0.5);
    CHECK(round_trip(big) == big);
  }
}

// --- rejection of bad input -------------------------------------------------------------------

TEST_CASE("truncated values are rejected at every length", "[codec][corrupt]") {
  check_every_truncation_rejected(std::string("truncate me"));
  check_every_truncation_rejected(std::vector<int>{1, 2, 3});
  check_every_truncation_rejected(std::vector<std::string>{"a", "bb"});
  check_every_truncation_rejected(std::map<std::string, std::optional<int>>{{"k", 3}, {"j", {}}});
  check_every_truncation_rejected(
      std::tuple<int, bool, std::variant<int, std::string>>{1, true, "x"});
  check_every_truncation_rejected(Point{1, 2});
}

TEST_CASE("impossible values are rejected", "[codec][corrupt]") {
  SECTION("a bool that is neither 0 nor 1") {
    CHECK_THROWS_AS(offload::decode<bool>(bytes_of({2})), ProtocolError);
    CHECK_THROWS_AS(offload::decode<Flag>(bytes_of({0xFF})), ProtocolError);
  }
  SECTION("an optional flag that is neither 0 nor 1") {
    Bytes bytes = bytes_of({7});
    append_raw(bytes, 1);
    CHECK_THROWS_AS(offload::decode<std::optional<int>>(bytes), ProtocolError);
  }
  SECTION("a variant index out of range") {
    Bytes bytes;
    append_raw(bytes, std::uint32_t{2});
    append_raw(bytes, 0);
    CHECK_THROWS_AS((offload::decode<std::variant<int, float>>(bytes)), ProtocolError);
  }
  SECTION("trailing bytes after the value") {
    Bytes bytes = offload::encode(5);
    bytes.push_back(std::byte{0});
    CHECK_THROWS_AS(offload::decode<int>(bytes), ProtocolError);
  }
}

TEST_CASE("a count larger than the message is rejected before allocating", "[codec][corrupt]") {
  Bytes bytes;
  append_raw(bytes, std::uint64_t{1} << 60);  // would be exabytes if believed
  append_raw(bytes, 1);
  CHECK_THROWS_AS(offload::decode<std::string>(bytes), ProtocolError);
  CHECK_THROWS_AS(offload::decode<std::vector<double>>(bytes), ProtocolError);
  CHECK_THROWS_AS(offload::decode<std::vector<std::string>>(bytes), ProtocolError);
  CHECK_THROWS_AS((offload::decode<std::map<int, int>>(bytes)), ProtocolError);
  CHECK_THROWS_AS(offload::decode<std::set<std::string>>(bytes), ProtocolError);
  CHECK_THROWS_AS(offload::decode<std::vector<Point>>(bytes), ProtocolError);  // size unknown
  CHECK_THROWS_AS(offload::decode<std::vector<std::tuple<>>>(bytes), ProtocolError);
  try {
    (void)offload::decode<std::string>(bytes);
  } catch (const ProtocolError& error) {
    CHECK_THAT(error.what(), Catch::Matchers::Contains("does not fit"));
  }
}

TEST_CASE("ProtocolError is an offload::Error", "[codec]") {
  CHECK_THROWS_AS(offload::decode<int>(Bytes{}), offload::Error);
}

// --- frames -------------------------------------------------------------------------------------

namespace {

using offload::detail::FrameAssembler;
using offload::detail::FrameKind;

Bytes make_frame(FrameKind kind, const Bytes& payload) {
  Bytes frame;
  offload::detail::begin_frame(frame);
  frame.insert(frame.end(), payload.begin(), payload.end());
  offload::detail::finish_frame(frame, kind);
  return frame;
}

Bytes payload_of(std::size_t size) {
  Bytes payload(size);
  for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<std::byte>(i * 31);
  return payload;
}

}  // namespace

TEST_CASE("frames come out of the assembler whole, however the bytes are split", "[frame]") {
  const Bytes first = make_frame(FrameKind::value, payload_of(100));
  const Bytes second = make_frame(FrameKind::error, offload::encode(std::string("boom")));
  const Bytes empty = make_frame(FrameKind::call, {});
  Bytes stream = first;
  stream.insert(stream.end(), second.begin(), second.end());
  stream.insert(stream.end(), empty.begin(), empty.end());

  for (std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{16}, stream.size()}) {
    FrameAssembler assembler(1 << 20);
    std::vector<std::pair<FrameKind, Bytes>> frames;
    for (std::size_t at = 0; at < stream.size(); at += chunk) {
      const std::size_t n = std::min(chunk, stream.size() - at);
      assembler.append(std::span<const std::byte>(stream.data() + at, n));
      while (auto frame = assembler.next()) {
        frames.emplace_back(frame->kind, Bytes(frame->payload.begin(), frame->payload.end()));
      }
    }
    REQUIRE(frames.size() == 3);
    CHECK(frames[0].first == FrameKind::value);
    CHECK(frames[0].second == payload_of(100));
    CHECK(frames[1].first == FrameKind::error);
    CHECK(frames[1].second == offload::encode(std::string("boom")));
    CHECK(frames[2].first == FrameKind::call);
    CHECK(frames[2].second.empty());
    CHECK(assembler.buffered() == 0);
  }
}

TEST_CASE("a large frame is assembled through prepare/commit", "[frame][large]") {
  const Bytes frame = make_frame(FrameKind::value, payload_of(3 << 20));
  FrameAssembler assembler(64u << 20);
  std::size_t at = 0;
  while (at < frame.size()) {
    const auto room = assembler.prepare(4096);
    const std::size_t n = std::min(room.size(), frame.size() - at);
    std::memcpy(room.data(), frame.data() + at, n);
    assembler.commit(n);
    at += n;
  }
  const auto out = assembler.next();
  REQUIRE(out);
  CHECK(out->payload.size() == std::size_t{3} << 20);
  CHECK(Bytes(out->payload.begin(), out->payload.end()) == payload_of(3 << 20));
  assembler.release_memory();
  CHECK(assembler.buffered() == 0);
}

TEST_CASE("a large frame is received in place, never moved", "[frame][large]") {
  // As a socket delivers it: up to 64 KiB per receive, into whatever room prepare() offers.
  const Bytes frame = make_frame(FrameKind::value, payload_of(3 << 20));
  FrameAssembler assembler(64u << 20);
  std::size_t at = 0;
  const std::byte* expected_room = nullptr;  // where the next byte must land once sized
  bool header_in = false;
  while (at < frame.size()) {
    CHECK_FALSE(assembler.frame_ready());
    const auto room = assembler.prepare();
    if (expected_room != nullptr) REQUIRE(room.data() == expected_room);
    const std::size_t n = std::min({room.size(), std::size_t{64} << 10, frame.size() - at});
    std::memcpy(room.data(), frame.data() + at, n);
    assembler.commit(n);
    at += n;
    // The first room offered after the header is in fits the whole frame: the rest of it
    // must land right behind, never in a new buffer.
    if (header_in) expected_room = room.data() + n;
    header_in = at >= offload::detail::frame_header_size;
  }
  CHECK(assembler.frame_ready());
  const auto out = assembler.next();
  REQUIRE(out);
  CHECK(out->payload.data() + out->payload.size() == expected_room);
  CHECK(Bytes(out->payload.begin(), out->payload.end()) == payload_of(3 << 20));
  CHECK_FALSE(assembler.frame_ready());
}

TEST_CASE("corrupt frame headers are rejected", "[frame][corrupt]") {
  const Bytes good = make_frame(FrameKind::value, payload_of(8));
  auto rejects = [](const Bytes& bytes, std::uint64_t limit = 1 << 20) {
    FrameAssembler assembler(limit);
    assembler.append(bytes);
    CHECK_THROWS_AS(assembler.next(), ProtocolError);
  };
  SECTION("bad magic") {
    Bytes bad = good;
    bad[0] ^= std::byte{1};
    rejects(bad);
  }
  SECTION("unknown kinds") {
    for (unsigned kind : {0u, 6u, 255u}) {
      Bytes bad = good;
      bad[4] = static_cast<std::byte>(kind);
      rejects(bad);
    }
  }
  SECTION("control frames (nudge, via_socket) with a payload") {
    rejects(make_frame(FrameKind::nudge, payload_of(1)));
    rejects(make_frame(FrameKind::via_socket, payload_of(8)));
  }
  SECTION("non-zero reserved bytes") {
    Bytes bad = good;
    bad[6] = std::byte{1};
    rejects(bad);
  }
  SECTION("a payload over the limit, even before it arrives") {
    Bytes bad = good;
    const std::uint64_t huge = std::uint64_t{1} << 62;
    std::memcpy(bad.data() + 8, &huge, 8);
    bad.resize(offload::detail::frame_header_size);
    rejects(bad);
    rejects(good, 7);  // one byte over a limit of 7
  }
}

TEST_CASE("peek_kind names the next whole frame without taking it", "[frame]") {
  FrameAssembler assembler(1 << 20);
  CHECK_FALSE(assembler.peek_kind());
  const Bytes control = make_frame(FrameKind::nudge, {});
  const Bytes value = make_frame(FrameKind::value, payload_of(40));
  assembler.append(control);
  assembler.append(std::span<const std::byte>(value).first(20));
  CHECK(assembler.peek_kind() == FrameKind::nudge);
  CHECK(assembler.peek_kind() == FrameKind::nudge);  // still there
  CHECK(assembler.next()->kind == FrameKind::nudge);
  CHECK_FALSE(assembler.peek_kind());  // the value frame is not whole yet
  assembler.append(std::span<const std::byte>(value).subspan(20));
  CHECK(assembler.peek_kind() == FrameKind::value);
  CHECK(assembler.next()->payload.size() == 40);
  Bytes garbage(16, std::byte{0x55});
  assembler.append(garbage);
  CHECK_THROWS_AS(assembler.peek_kind(), ProtocolError);
}

TEST_CASE("a truncated frame is never returned and stays visible as buffered bytes",
          "[frame][corrupt]") {
  const Bytes frame = make_frame(FrameKind::value, payload_of(40));
  for (std::size_t length = 0; length < frame.size(); ++length) {
    FrameAssembler assembler(1 << 20);
    assembler.append(std::span<const std::byte>(frame.data(), length));
    CHECK_FALSE(assembler.next());
    CHECK(assembler.buffered() == length);
  }
}

TEST_CASE("error payloads decode strictly", "[frame][corrupt]") {
  Bytes payload;
  offload::Writer out(payload);
  out.write(std::string("std::runtime_error"));
  out.write(std::string("bad thing"));
  const auto error = offload::detail::decode_remote_exception(payload);
  CHECK(error.type_name == "std::runtime_error");
  CHECK(error.message == "bad thing");
  payload.push_back(std::byte{0});
  CHECK_THROWS_AS(offload::detail::decode_remote_exception(payload), ProtocolError);
  payload.resize(10);
  CHECK_THROWS_AS(offload::detail::decode_remote_exception(payload), ProtocolError);
}

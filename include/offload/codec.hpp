#ifndef OFFLOAD_CODEC_HPP
#define OFFLOAD_CODEC_HPP

/// @file codec.hpp
/// Codec<T>: how a value crosses a process boundary (ProcessPool arguments and results).
///
/// The encoding is a plain byte sequence in the machine's own byte order and type sizes: it
/// only ever travels between a program and a process forked from that same program, so it
/// needs no portability, but it is decoded defensively (every length is checked against the
/// bytes that are really there, every bool and optional flag against its legal values), so a
/// corrupt or truncated message raises offload::ProtocolError instead of undefined behaviour.
///
/// Provided: arithmetic types, enums with a fixed underlying type, std::basic_string, vector,
/// deque, list, array, pair, tuple, optional, variant, monostate, map, multimap, set,
/// multiset, their unordered forms, and std::chrono::duration.
///
/// Your own type needs two static functions:
/// @code
/// template <> struct offload::Codec<Point> {
///   static void encode(offload::Writer& out, const Point& p) { out.write(p.x); out.write(p.y); }
///   static Point decode(offload::Reader& in) {
///     double x = in.read<double>();        // read in the order encode() wrote
///     double y = in.read<double>();
///     return Point{x, y};
///   }
/// };
/// @endcode
/// Optionally add `static constexpr std::size_t min_encoded_size = 16;` (a lower bound on the
/// bytes one value takes): a corrupt element count is then rejected before anything is
/// allocated for it.

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iterator>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "detail/always_false.hpp"
#include "errors.hpp"

namespace offload {
inline namespace v0 {

/// A message between processes was malformed: truncated, corrupt, or of the wrong shape.
class ProtocolError : public Error {
 public:
  using Error::Error;
};

/**
 * @brief How values of type T are written to and read from bytes.
 *
 * Not defined for arbitrary types: specialise it (see the file comment) with
 * `static void encode(offload::Writer&, const T&)` and `static T decode(offload::Reader&)`.
 */
template <class T>
struct Codec;

class Writer;
class Reader;

/// True when Codec<T> provides encode(Writer&, const T&) and decode(Reader&) -> T.
template <class T>
concept HasCodec = requires(Writer& out, Reader& in, const T& value) {
  Codec<T>::encode(out, value);
  { Codec<T>::decode(in) } -> std::same_as<T>;
};

namespace detail {

/// Instantiated only to stop compilation with a message naming the type that has no codec
/// (the compiler prints the template argument in its "required from" note).
template <class T>
struct TypeHasNoCodec {
  static_assert(always_false<T>,
                "offload: type T of TypeHasNoCodec<T> has no offload::Codec<T>, so it cannot "
                "cross to a worker process. Specialise offload::Codec<T> with "
                "'static void encode(offload::Writer&, const T&)' and "
                "'static T decode(offload::Reader&)' (see offload/codec.hpp). Enums need a "
                "fixed underlying type ('enum E : int'); pointers and references cannot cross.");
};

template <class Outer, class... Inner>
struct FirstMissingCodec;

/// The innermost type that lacks a codec inside T: for std::vector<Point> that is Point.
template <class T>
struct MissingCodecCulprit {
  using type = T;
};
template <template <class...> class Outer, class... Inner>
struct MissingCodecCulprit<Outer<Inner...>> {
  using type = typename FirstMissingCodec<Outer<Inner...>, Inner...>::type;
};
template <class T, std::size_t N>
struct MissingCodecCulprit<std::array<T, N>> {
  using type =
      std::conditional_t<HasCodec<T>, std::array<T, N>, typename MissingCodecCulprit<T>::type>;
};

template <class Outer>
struct FirstMissingCodec<Outer> {
  using type = Outer;  // every argument has a codec: the outer type itself is the culprit
};
template <class Outer, class First, class... Rest>
struct FirstMissingCodec<Outer, First, Rest...> {
  using type = typename std::conditional_t<HasCodec<First>, FirstMissingCodec<Outer, Rest...>,
                                           MissingCodecCulprit<First>>::type;
};

/// Stops compilation with one readable message naming the innermost type without a codec.
/// Only ever instantiated for a T that has none.
template <class T>
[[noreturn]] void report_missing_codec() {
  (void)sizeof(TypeHasNoCodec<typename MissingCodecCulprit<T>::type>);
  std::abort();
}

/// A lower bound on the bytes one encoded T takes; 0 when unknown.
template <class T>
constexpr std::size_t min_encoded_size() {
  if constexpr (requires { Codec<T>::min_encoded_size; }) {
    return Codec<T>::min_encoded_size;
  } else {
    return 0;
  }
}

/// Enums whose every underlying value is a valid value (those with a fixed underlying type:
/// scoped enums and `enum E : int`); for the others, loading an out-of-range value is UB.
template <class E>
concept FixedEnum = std::is_enum_v<E> && requires { E{std::underlying_type_t<E>{}}; };

/// Types encoded as their raw bytes, where every bit pattern is a valid value (so bulk
/// copies are safe in both directions). Not bool: only 0 and 1 are valid bools.
template <class T>
concept Bitwise = (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) ||
                  (FixedEnum<T> && !std::is_same_v<std::underlying_type_t<T>, bool>);

}  // namespace detail

/**
 * @brief Appends encoded values to a byte buffer.
 *
 * Not thread-safe (one writer per buffer). Allocates as the buffer grows.
 */
class Writer {
 public:
  /// Appends to `buffer` (which it does not own; it must outlive the writer).
  explicit Writer(std::vector<std::byte>& buffer) noexcept : buffer_(&buffer) {}

  /// Appends `size` raw bytes.
  void write_bytes(const void* data, std::size_t size) {
    if (size == 0) return;
    const auto* first = static_cast<const std::byte*>(data);
    buffer_->insert(buffer_->end(), first, first + size);
  }

  /// Appends a count or length (always 8 bytes, so sizes are the same on every build).
  void write_size(std::size_t size) { write_raw(static_cast<std::uint64_t>(size)); }

  /// Appends `value` through Codec<T>.
  template <class T>
  void write(const T& value) {
    if constexpr (HasCodec<T>) {
      Codec<T>::encode(*this, value);
    } else {
      detail::report_missing_codec<T>();
    }
  }

  /// Bytes in the buffer so far.
  [[nodiscard]] std::size_t size() const noexcept { return buffer_->size(); }

 private:
  template <class T>
  void write_raw(const T& value) {
    write_bytes(&value, sizeof value);
  }

  std::vector<std::byte>* buffer_;
};

/**
 * @brief Reads encoded values back from a byte span, checking every read against its end.
 *
 * Not thread-safe. Never allocates by itself (decoded values may). Every member throws
 * offload::ProtocolError rather than read past the end or accept an impossible value.
 */
class Reader {
 public:
  explicit Reader(std::span<const std::byte> bytes) noexcept : bytes_(bytes) {}

  /// Copies the next `size` bytes to `out`.
  void read_bytes(void* out, std::size_t size) {
    const auto source = take(size);
    if (size != 0) std::memcpy(out, source.data(), size);
  }

  /// The next `size` bytes, without copying; valid as long as the underlying buffer.
  std::span<const std::byte> take(std::size_t size) {
    if (size > remaining()) {
      throw ProtocolError("offload: truncated message: needed " + std::to_string(size) +
                          " more bytes, " + std::to_string(remaining()) + " left");
    }
    const auto part = bytes_.subspan(position_, size);
    position_ += size;
    return part;
  }

  /// Reads a length or count written by Writer::write_size(). `min_element_size` is a lower
  /// bound on the bytes each element takes (0 when unknown): a count the remaining bytes
  /// cannot possibly hold is rejected here, before anyone allocates room for it.
  std::size_t read_size(std::size_t min_element_size = 1) {
    std::uint64_t count = 0;
    read_bytes(&count, sizeof count);
    // Elements that may encode to nothing still cost a loop iteration each, so bound them
    // too: no honest message holds a million more of them than it has bytes.
    const std::uint64_t limit = min_element_size == 0
                                    ? remaining() + empty_element_allowance
                                    : remaining() / min_element_size;
    if (count > limit) {
      throw ProtocolError("offload: corrupt message: a count of " + std::to_string(count) +
                          " elements does not fit in the " + std::to_string(remaining()) +
                          " bytes left");
    }
    return static_cast<std::size_t>(count);
  }

  /// Reads a value through Codec<T>.
  template <class T>
  T read() {
    if constexpr (HasCodec<T>) {
      return Codec<T>::decode(*this);
    } else {
      detail::report_missing_codec<T>();
    }
  }

  /// Bytes not read yet.
  [[nodiscard]] std::size_t remaining() const noexcept { return bytes_.size() - position_; }

  /// Throws ProtocolError unless every byte was read (a longer message is a corrupt one).
  void expect_end() const {
    if (remaining() != 0) {
      throw ProtocolError("offload: corrupt message: " + std::to_string(remaining()) +
                          " unexpected bytes after the last value");
    }
  }

  /// How many elements that may encode to zero bytes a count may claim beyond the bytes left.
  static constexpr std::uint64_t empty_element_allowance = std::uint64_t{1} << 20;

 private:
  std::span<const std::byte> bytes_;
  std::size_t position_ = 0;
};

// --- scalars ---------------------------------------------------------------------------------

/// Arithmetic types (except bool) and enums with a fixed underlying type: their raw bytes.
template <class T>
  requires detail::Bitwise<T>
struct Codec<T> {
  static constexpr std::size_t min_encoded_size = sizeof(T);
  static void encode(Writer& out, const T& value) { out.write_bytes(&value, sizeof value); }
  static T decode(Reader& in) {
    T value{};
    in.read_bytes(&value, sizeof value);
    return value;
  }
};

/// bool: one byte, 0 or 1; anything else is a corrupt message.
template <>
struct Codec<bool> {
  static constexpr std::size_t min_encoded_size = 1;
  static void encode(Writer& out, bool value) {
    const auto byte = static_cast<std::uint8_t>(value ? 1 : 0);
    out.write_bytes(&byte, 1);
  }
  static bool decode(Reader& in) {
    std::uint8_t byte = 0;
    in.read_bytes(&byte, 1);
    if (byte > 1) {
      throw ProtocolError("offload: corrupt message: a bool holds " + std::to_string(byte));
    }
    return byte == 1;
  }
};

/// Enums with a bool underlying type: encoded as that bool.
template <class E>
  requires detail::FixedEnum<E> && std::is_same_v<std::underlying_type_t<E>, bool>
struct Codec<E> {
  static constexpr std::size_t min_encoded_size = 1;
  static void encode(Writer& out, E value) { Codec<bool>::encode(out, static_cast<bool>(value)); }
  static E decode(Reader& in) { return static_cast<E>(Codec<bool>::decode(in)); }
};

/// std::monostate: nothing at all.
template <>
struct Codec<std::monostate> {
  static constexpr std::size_t min_encoded_size = 0;
  static void encode(Writer&, std::monostate) {}
  static std::monostate decode(Reader&) { return {}; }
};

/// std::chrono::duration: its count.
template <class Rep, class Period>
  requires HasCodec<Rep>
struct Codec<std::chrono::duration<Rep, Period>> {
  static constexpr std::size_t min_encoded_size = detail::min_encoded_size<Rep>();
  static void encode(Writer& out, const std::chrono::duration<Rep, Period>& value) {
    out.write(value.count());
  }
  static std::chrono::duration<Rep, Period> decode(Reader& in) {
    return std::chrono::duration<Rep, Period>(in.read<Rep>());
  }
};

// --- sequences ---------------------------------------------------------------------------------

namespace detail {

/// Writes a count, then each element.
template <class Range>
void encode_elements(Writer& out, const Range& range) {
  out.write_size(static_cast<std::size_t>(std::distance(std::begin(range), std::end(range))));
  for (const auto& element : range) out.write(element);
}

/// Reads a count written by encode_elements(), then calls `add(element)` for each element.
template <class T, class Add>
void decode_elements(Reader& in, Add add) {
  const std::size_t count = in.read_size(min_encoded_size<T>());
  for (std::size_t i = 0; i < count; ++i) add(in.read<T>());
}

/// How many elements a container may reserve up front: never more than the bytes left could
/// hold, so a large (but plausible) count does not allocate before its elements arrive.
template <class T>
std::size_t safe_reserve(std::size_t count, const Reader& in) {
  const std::size_t per_element = std::max<std::size_t>(min_encoded_size<T>(), 1);
  return std::min(count, in.remaining() / per_element);
}

}  // namespace detail

/// std::basic_string of a bitwise character type: length, then the characters.
template <class Char, class Traits, class Alloc>
  requires detail::Bitwise<Char>
struct Codec<std::basic_string<Char, Traits, Alloc>> {
  using String = std::basic_string<Char, Traits, Alloc>;
  static constexpr std::size_t min_encoded_size = 8;
  static void encode(Writer& out, const String& value) {
    out.write_size(value.size());
    out.write_bytes(value.data(), value.size() * sizeof(Char));
  }
  static String decode(Reader& in) {
    const std::size_t length = in.read_size(sizeof(Char));
    String value;
    value.resize(length);
    in.read_bytes(value.data(), length * sizeof(Char));
    return value;
  }
};

/// std::vector: count, then elements (one block copy for bitwise element types).
template <class T, class Alloc>
  requires HasCodec<T>
struct Codec<std::vector<T, Alloc>> {
  using Vector = std::vector<T, Alloc>;
  static constexpr std::size_t min_encoded_size = 8;
  static void encode(Writer& out, const Vector& value) {
    if constexpr (detail::Bitwise<T>) {
      out.write_size(value.size());
      out.write_bytes(value.data(), value.size() * sizeof(T));
    } else {
      detail::encode_elements(out, value);
    }
  }
  static Vector decode(Reader& in) {
    Vector value;
    if constexpr (detail::Bitwise<T>) {
      const std::size_t count = in.read_size(sizeof(T));
      value.resize(count);
      in.read_bytes(value.data(), count * sizeof(T));
    } else {
      // Peek at the count only to reserve; decode_elements reads and checks it again.
      Reader peek = in;
      value.reserve(detail::safe_reserve<T>(peek.read_size(detail::min_encoded_size<T>()), peek));
      detail::decode_elements<T>(in, [&](T&& element) { value.push_back(std::move(element)); });
    }
    return value;
  }
};

/// std::deque and std::list: count, then elements.
template <class T, class Alloc>
  requires HasCodec<T>
struct Codec<std::deque<T, Alloc>> {
  static constexpr std::size_t min_encoded_size = 8;
  static void encode(Writer& out, const std::deque<T, Alloc>& value) {
    detail::encode_elements(out, value);
  }
  static std::deque<T, Alloc> decode(Reader& in) {
    std::deque<T, Alloc> value;
    detail::decode_elements<T>(in, [&](T&& element) { value.push_back(std::move(element)); });
    return value;
  }
};
template <class T, class Alloc>
  requires HasCodec<T>
struct Codec<std::list<T, Alloc>> {
  static constexpr std::size_t min_encoded_size = 8;
  static void encode(Writer& out, const std::list<T, Alloc>& value) {
    detail::encode_elements(out, value);
  }
  static std::list<T, Alloc> decode(Reader& in) {
    std::list<T, Alloc> value;
    detail::decode_elements<T>(in, [&](T&& element) { value.push_back(std::move(element)); });
    return value;
  }
};

/// std::array: the N elements, no count.
template <class T, std::size_t N>
  requires HasCodec<T>
struct Codec<std::array<T, N>> {
  static constexpr std::size_t min_encoded_size = N * detail::min_encoded_size<T>();
  static void encode(Writer& out, const std::array<T, N>& value) {
    if constexpr (detail::Bitwise<T>) {
      out.write_bytes(value.data(), N * sizeof(T));
    } else {
      for (const auto& element : value) out.write(element);
    }
  }
  static std::array<T, N> decode(Reader& in) {
    if constexpr (detail::Bitwise<T>) {
      std::array<T, N> value{};
      in.read_bytes(value.data(), N * sizeof(T));
      return value;
    } else {
      // Braced initialisation evaluates the reads left to right.
      return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return std::array<T, N>{((void)I, in.read<T>())...};
      }(std::make_index_sequence<N>{});
    }
  }
};

// --- products and sums -------------------------------------------------------------------------

/// std::pair: first, then second.
template <class A, class B>
  requires HasCodec<A> && HasCodec<B>
struct Codec<std::pair<A, B>> {
  static constexpr std::size_t min_encoded_size =
      detail::min_encoded_size<A>() + detail::min_encoded_size<B>();
  static void encode(Writer& out, const std::pair<A, B>& value) {
    out.write(value.first);
    out.write(value.second);
  }
  static std::pair<A, B> decode(Reader& in) {
    A first = in.read<A>();
    B second = in.read<B>();
    return {std::move(first), std::move(second)};
  }
};

/// std::tuple: each member in order.
template <class... Ts>
  requires(HasCodec<Ts> && ...)
struct Codec<std::tuple<Ts...>> {
  static constexpr std::size_t min_encoded_size =
      (std::size_t{0} + ... + detail::min_encoded_size<Ts>());
  static void encode(Writer& out, const std::tuple<Ts...>& value) {
    std::apply([&](const Ts&... members) { (out.write(members), ...); }, value);
  }
  static std::tuple<Ts...> decode(Reader& in) {
    return std::tuple<Ts...>{in.read<Ts>()...};  // braced: evaluated left to right
  }
};

/// std::optional: a flag byte (0 or 1), then the value when present.
template <class T>
  requires HasCodec<T>
struct Codec<std::optional<T>> {
  static constexpr std::size_t min_encoded_size = 1;
  static void encode(Writer& out, const std::optional<T>& value) {
    out.write(value.has_value());
    if (value) out.write(*value);
  }
  static std::optional<T> decode(Reader& in) {
    if (!in.read<bool>()) return std::nullopt;
    return std::optional<T>(in.read<T>());
  }
};

/// std::variant: the alternative's index (4 bytes), then its value.
template <class... Ts>
  requires(HasCodec<Ts> && ...)
struct Codec<std::variant<Ts...>> {
  using Variant = std::variant<Ts...>;
  static constexpr std::size_t min_encoded_size = 4;
  static void encode(Writer& out, const Variant& value) {
    if (value.valueless_by_exception()) {
      throw ProtocolError("offload: cannot encode a variant that is valueless by exception");
    }
    out.write(static_cast<std::uint32_t>(value.index()));
    std::visit([&](const auto& alternative) { out.write(alternative); }, value);
  }
  static Variant decode(Reader& in) {
    const auto index = in.read<std::uint32_t>();
    if (index >= sizeof...(Ts)) {
      throw ProtocolError("offload: corrupt message: variant index " + std::to_string(index) +
                          " of " + std::to_string(sizeof...(Ts)));
    }
    using Decoder = Variant (*)(Reader&);
    static constexpr Decoder decoders[] = {&decode_alternative<Ts>...};
    return decoders[index](in);
  }

 private:
  template <class T>
  static Variant decode_alternative(Reader& in) {
    return Variant(std::in_place_type<T>, in.read<T>());
  }
};

// --- associative containers --------------------------------------------------------------------

namespace detail {

/// Shared by every map: count, then key/value pairs; decoding inserts at the end hint, which
/// is constant time for the sorted order encode() produced.
template <class Map>
struct MapCodec {
  using Key = typename Map::key_type;
  using Mapped = typename Map::mapped_type;
  static constexpr std::size_t min_encoded_size = 8;
  static void encode(Writer& out, const Map& value) {
    out.write_size(value.size());
    for (const auto& [key, mapped] : value) {
      out.write(key);
      out.write(mapped);
    }
  }
  static Map decode(Reader& in) {
    Map value;
    const std::size_t count =
        in.read_size(detail::min_encoded_size<Key>() + detail::min_encoded_size<Mapped>());
    for (std::size_t i = 0; i < count; ++i) {
      Key key = in.read<Key>();
      Mapped mapped = in.read<Mapped>();
      value.emplace_hint(value.end(), std::move(key), std::move(mapped));
    }
    return value;
  }
};

/// Shared by every set: count, then keys.
template <class Set>
struct SetCodec {
  using Key = typename Set::key_type;
  static constexpr std::size_t min_encoded_size = 8;
  static void encode(Writer& out, const Set& value) { encode_elements(out, value); }
  static Set decode(Reader& in) {
    Set value;
    decode_elements<Key>(in, [&](Key&& key) { value.emplace_hint(value.end(), std::move(key)); });
    return value;
  }
};

}  // namespace detail

template <class K, class V, class Compare, class Alloc>
  requires HasCodec<K> && HasCodec<V>
struct Codec<std::map<K, V, Compare, Alloc>> : detail::MapCodec<std::map<K, V, Compare, Alloc>> {};

template <class K, class V, class Compare, class Alloc>
  requires HasCodec<K> && HasCodec<V>
struct Codec<std::multimap<K, V, Compare, Alloc>>
    : detail::MapCodec<std::multimap<K, V, Compare, Alloc>> {};

template <class K, class V, class Hash, class Equal, class Alloc>
  requires HasCodec<K> && HasCodec<V>
struct Codec<std::unordered_map<K, V, Hash, Equal, Alloc>>
    : detail::MapCodec<std::unordered_map<K, V, Hash, Equal, Alloc>> {};

template <class K, class V, class Hash, class Equal, class Alloc>
  requires HasCodec<K> && HasCodec<V>
struct Codec<std::unordered_multimap<K, V, Hash, Equal, Alloc>>
    : detail::MapCodec<std::unordered_multimap<K, V, Hash, Equal, Alloc>> {};

template <class K, class Compare, class Alloc>
  requires HasCodec<K>
struct Codec<std::set<K, Compare, Alloc>> : detail::SetCodec<std::set<K, Compare, Alloc>> {};

template <class K, class Compare, class Alloc>
  requires HasCodec<K>
struct Codec<std::multiset<K, Compare, Alloc>>
    : detail::SetCodec<std::multiset<K, Compare, Alloc>> {};

template <class K, class Hash, class Equal, class Alloc>
  requires HasCodec<K>
struct Codec<std::unordered_set<K, Hash, Equal, Alloc>>
    : detail::SetCodec<std::unordered_set<K, Hash, Equal, Alloc>> {};

template <class K, class Hash, class Equal, class Alloc>
  requires HasCodec<K>
struct Codec<std::unordered_multiset<K, Hash, Equal, Alloc>>
    : detail::SetCodec<std::unordered_multiset<K, Hash, Equal, Alloc>> {};

// --- whole messages ----------------------------------------------------------------------------

/**
 * @brief Encodes one value into a new byte vector. Allocates; thread-safe (no shared state).
 */
template <class T>
std::vector<std::byte> encode(const T& value) {
  std::vector<std::byte> bytes;
  Writer out(bytes);
  out.write(value);
  return bytes;
}

/**
 * @brief Decodes a T that must take exactly all of `bytes`.
 * @throws offload::ProtocolError when the bytes are truncated, corrupt or too long.
 */
template <class T>
T decode(std::span<const std::byte> bytes) {
  Reader in(bytes);
  T value = in.read<T>();
  in.expect_end();
  return value;
}

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_CODEC_HPP

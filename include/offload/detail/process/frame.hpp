#ifndef OFFLOAD_DETAIL_PROCESS_FRAME_HPP
#define OFFLOAD_DETAIL_PROCESS_FRAME_HPP

/// @file detail/process/frame.hpp
/// Length-prefixed frames: how messages travel between a keeper and its worker, through their
/// shared rings (mailbox.hpp) or their byte-stream socket.
///
/// A frame is a 16-byte header followed by its payload:
///
///     offset 0   u32  magic "OFL1" (catches a stream that lost its framing)
///     offset 4   u8   kind: 1 call, 2 value, 3 error, 4 nudge, 5 via_socket
///     offset 5   u8×3 zero (reserved; anything else is corruption)
///     offset 8   u64  payload size in bytes (at most the receiver's limit)
///
/// Payloads:  call  = u64 trampoline address, u64 function address, the encoded arguments
///            value = the encoded result
///            error = string type name, string message (an exception thrown in the worker)
///            nudge, via_socket: none (control frames: "look at the ring", and "the next frame
///            of this direction comes through the socket"; see mailbox.hpp)
///
/// Integers are in the machine's byte order: both ends are the same program on one machine.
/// The assembler validates every header before trusting it, so a corrupt or truncated stream
/// raises ProtocolError, never undefined behaviour or an allocation the size of a lie.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../../codec.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

enum class FrameKind : std::uint8_t { call = 1, value = 2, error = 3, nudge = 4, via_socket = 5 };

inline constexpr std::size_t frame_header_size = 16;
inline constexpr std::uint32_t frame_magic = 0x314C464F;  // "OFL1" in little-endian memory

/// A decoded frame header.
struct FrameHeader {
  FrameKind kind;
  std::uint64_t payload_size;
};

/// A complete frame inside a FrameAssembler's buffer (valid until the assembler is touched).
struct FrameView {
  FrameKind kind;
  std::span<const std::byte> payload;
};

/// Clears `buffer` and leaves room for a header; append the payload with a Writer, then call
/// finish_frame(). Allocates only when the buffer must grow.
inline void begin_frame(std::vector<std::byte>& buffer) {
  buffer.clear();
  buffer.resize(frame_header_size);
}

/// Writes the header of the frame begun by begin_frame(), now that its payload size is known.
inline void finish_frame(std::vector<std::byte>& buffer, FrameKind kind) noexcept {
  const std::uint64_t payload_size = buffer.size() - frame_header_size;
  const auto kind_byte = static_cast<std::uint8_t>(kind);
  std::memcpy(buffer.data(), &frame_magic, 4);
  std::memcpy(buffer.data() + 4, &kind_byte, 1);
  std::memset(buffer.data() + 5, 0, 3);
  std::memcpy(buffer.data() + 8, &payload_size, 8);
}

/// Decodes and validates a header (exactly frame_header_size bytes).
/// @throws ProtocolError on a bad magic, unknown kind, non-zero reserved bytes, a payload
///         larger than `max_payload`, or a control frame with a payload.
inline FrameHeader decode_frame_header(std::span<const std::byte> header,
                                       std::uint64_t max_payload) {
  if (header.size() != frame_header_size) {
    throw ProtocolError("offload: corrupt frame: header of " + std::to_string(header.size()) +
                        " bytes");
  }
  std::uint32_t magic = 0;
  std::uint8_t kind = 0;
  std::uint8_t reserved[3] = {};
  std::uint64_t payload_size = 0;
  std::memcpy(&magic, header.data(), 4);
  std::memcpy(&kind, header.data() + 4, 1);
  std::memcpy(reserved, header.data() + 5, 3);
  std::memcpy(&payload_size, header.data() + 8, 8);
  if (magic != frame_magic) {
    throw ProtocolError("offload: corrupt frame: bad magic number (the stream lost its framing)");
  }
  if (kind < static_cast<std::uint8_t>(FrameKind::call) ||
      kind > static_cast<std::uint8_t>(FrameKind::via_socket)) {
    throw ProtocolError("offload: corrupt frame: unknown kind " + std::to_string(kind));
  }
  if ((reserved[0] | reserved[1] | reserved[2]) != 0) {
    throw ProtocolError("offload: corrupt frame: reserved header bytes are not zero");
  }
  if (payload_size > max_payload) {
    throw ProtocolError("offload: frame of " + std::to_string(payload_size) +
                        " bytes exceeds the limit of " + std::to_string(max_payload) +
                        " (ProcessOptions::max_message_size)");
  }
  if (kind >= static_cast<std::uint8_t>(FrameKind::nudge) && payload_size != 0) {
    throw ProtocolError("offload: corrupt frame: a control frame with a payload");
  }
  return FrameHeader{static_cast<FrameKind>(kind), payload_size};
}

/**
 * Cuts a byte stream into validated frames. Bytes go in through prepare()/commit() (receive
 * straight into its buffer) or append(); complete frames come out of next().
 *
 * Not thread-safe. Allocates as needed to hold the largest frame seen, and gives large
 * buffers back with release_memory().
 */
class FrameAssembler {
 public:
  explicit FrameAssembler(std::uint64_t max_payload) noexcept : max_payload_(max_payload) {}

  /// Room to receive into at the end of the buffered data: the rest of the frame being
  /// received when its size is known, else at least `minimum` bytes. Invalidates earlier
  /// FrameViews.
  std::span<std::byte> prepare(std::size_t minimum = 64 * 1024) {
    const std::size_t missing = bytes_missing_from_current_frame();
    // A big frame's buffer is sized to fit it exactly: asking for `minimum` more on top of
    // its last bytes would reallocate (and copy) the whole frame just to add room after it.
    if (capacity_ - end_ < (missing != 0 ? missing : minimum)) {
      make_room(std::max(minimum, missing));
    }
    return {buffer_.get() + end_, capacity_ - end_};
  }

  /// Declares that `count` bytes were written at the start of the last prepare()'s span.
  void commit(std::size_t count) noexcept { end_ += count; }

  /// Copies `bytes` in (for tests and the fuzzer; sockets use prepare()/commit()).
  void append(std::span<const std::byte> bytes) {
    if (bytes.empty()) return;
    if (capacity_ - end_ < bytes.size()) make_room(bytes.size());
    std::memcpy(buffer_.get() + end_, bytes.data(), bytes.size());
    commit(bytes.size());
  }

  /// The next complete frame, or nothing until more bytes arrive. The view stays valid until
  /// the next call of any member.
  /// @throws ProtocolError when the buffered bytes cannot start a valid frame.
  std::optional<FrameView> next() {
    if (buffered() < frame_header_size) return std::nullopt;
    const FrameHeader header = decode_frame_header(
        std::span<const std::byte>(buffer_.get() + begin_, frame_header_size), max_payload_);
    if (buffered() - frame_header_size < header.payload_size) return std::nullopt;
    const std::size_t payload_size = static_cast<std::size_t>(header.payload_size);
    FrameView frame{header.kind, std::span<const std::byte>(
                                     buffer_.get() + begin_ + frame_header_size, payload_size)};
    begin_ += frame_header_size + payload_size;
    return frame;
  }

  /// The kind of the frame next() would return, without taking it; nothing until it is
  /// complete.
  /// @throws ProtocolError when the buffered bytes cannot start a valid frame.
  [[nodiscard]] std::optional<FrameKind> peek_kind() const {
    if (!frame_ready()) return std::nullopt;
    return decode_frame_header(
               std::span<const std::byte>(buffer_.get() + begin_, frame_header_size), max_payload_)
        .kind;
  }
  /// True when next() has a frame to return (or an invalid header to report).
  [[nodiscard]] bool frame_ready() const noexcept {
    return buffered() >= frame_header_size && bytes_missing_from_current_frame() == 0;
  }

  /// Bytes received but not yet returned as a frame (non-zero at end of stream = truncation).
  [[nodiscard]] std::size_t buffered() const noexcept { return end_ - begin_; }

  /// Frees a buffer grown large by a big frame, once nothing is buffered.
  void release_memory() noexcept {
    if (buffered() == 0 && capacity_ > keep_capacity) {
      buffer_.reset();
      capacity_ = begin_ = end_ = 0;
    }
  }

 private:
  static constexpr std::size_t keep_capacity = 1024 * 1024;

  /// How many more bytes the frame at the front needs (0 while its header is incomplete or
  /// invalid; next() reports invalid headers).
  [[nodiscard]] std::size_t bytes_missing_from_current_frame() const noexcept {
    if (buffered() < frame_header_size) return 0;
    std::uint64_t payload_size = 0;
    std::memcpy(&payload_size, buffer_.get() + begin_ + 8, 8);
    if (payload_size > max_payload_) return 0;
    const std::uint64_t total = frame_header_size + payload_size;
    return total > buffered() ? static_cast<std::size_t>(total - buffered()) : 0;
  }

  void make_room(std::size_t wanted) {
    const std::size_t live = buffered();
    if (begin_ > 0 && capacity_ - live >= wanted) {  // compacting is enough
      std::memmove(buffer_.get(), buffer_.get() + begin_, live);
    } else {
      const std::size_t capacity = std::max(live + wanted, capacity_ * 2);
      // Default-initialised: the bytes are about to be overwritten by the receive.
      std::unique_ptr<std::byte[]> grown(new std::byte[capacity]);
      if (live != 0) std::memcpy(grown.get(), buffer_.get() + begin_, live);
      buffer_ = std::move(grown);
      capacity_ = capacity;
    }
    begin_ = 0;
    end_ = live;
  }

  std::uint64_t max_payload_;
  std::unique_ptr<std::byte[]> buffer_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

/// The fixed part of a call payload: which trampoline to run and which function it calls.
struct CallTarget {
  std::uint64_t trampoline;
  std::uint64_t function;
};

/// Reads the call target from the front of a call payload; the arguments follow in `in`.
inline CallTarget read_call_target(Reader& in) {
  CallTarget target{};
  target.trampoline = in.read<std::uint64_t>();
  target.function = in.read<std::uint64_t>();
  return target;
}

/// An exception that crossed from a worker: its type name and message.
struct RemoteException {
  std::string type_name;
  std::string message;
};

/// Decodes an error payload.
/// @throws ProtocolError when it is not exactly two strings.
inline RemoteException decode_remote_exception(std::span<const std::byte> payload) {
  Reader in(payload);
  RemoteException error;
  error.type_name = in.read<std::string>();
  error.message = in.read<std::string>();
  in.expect_end();
  return error;
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_PROCESS_FRAME_HPP

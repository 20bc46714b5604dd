#ifndef OFFLOAD_DETAIL_CHANNEL_CHANNEL_STATUS_HPP
#define OFFLOAD_DETAIL_CHANNEL_CHANNEL_STATUS_HPP

/// @file detail/channel/channel_status.hpp
/// offload::ChannelStatus, declared apart so that channel internals can use it without
/// including <offload/channel.hpp>, which includes them.

#include <cstdint>

namespace offload {
inline namespace v0 {

/// The outcome of a channel operation.
enum class ChannelStatus {
  ok,      ///< the value was sent / received
  empty,   ///< try_receive: nothing to receive right now
  full,    ///< try_send: no room right now (rendezvous: no receiver is waiting)
  closed,  ///< the channel is closed (receive: and drained); the value was not sent
  timeout  ///< send_for / receive_for: the time ran out
};

namespace detail {

/// What a buffer's push did, and whether its claim found receivers announced as sleeping
/// (then the caller must wake them).
struct PushOutcome {
  ChannelStatus status;
  bool wake_receivers;
};

/// What a buffer's pop did, and whether its claim found senders announced as sleeping.
struct PopOutcome {
  ChannelStatus status;
  bool wake_senders;
};

/// The buffers' head and tail words: a position in the low 62 bits, and two flags.
inline constexpr std::uint64_t closed_bit = std::uint64_t{1} << 63;   ///< tail: channel closed
inline constexpr std::uint64_t waiting_bit = std::uint64_t{1} << 62;  ///< the other side sleeps
inline constexpr std::uint64_t position_mask = waiting_bit - 1;

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CHANNEL_CHANNEL_STATUS_HPP

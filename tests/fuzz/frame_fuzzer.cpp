// libFuzzer target for everything that decodes bytes a worker process sent: the frame
// assembler (headers, lengths, arbitrary splits of the stream) and the payload decoders.
// Any input must end in frames or a ProtocolError: never a crash, a hang, UB (run with
// AddressSanitizer + UBSan) or an allocation the size of a corrupt length.
//
// Build with -DOFFLOAD_BUILD_FUZZERS=ON and clang; run: frame_fuzzer -max_total_time=20 CORPUS

#include <offload/codec.hpp>
#include <offload/detail/process/frame.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

namespace {

/// A value that exercises every decoder family at once.
using RichValue =
    std::tuple<bool, std::string, std::vector<int>, std::map<std::string, double>,
               std::optional<std::vector<std::string>>,
               std::variant<int, std::string, std::monostate>, std::set<short>,
               std::unordered_map<int, std::u16string>, std::array<std::pair<char, bool>, 2>,
               std::vector<std::tuple<>>, std::list<std::deque<float>>, std::vector<bool>>;

void decode_payload(const offload::detail::FrameView& frame) {
  try {
    switch (frame.kind) {
      case offload::detail::FrameKind::call: {
        offload::Reader in(frame.payload);
        (void)offload::detail::read_call_target(in);
        (void)in.read<RichValue>();
        in.expect_end();
        break;
      }
      case offload::detail::FrameKind::value:
        (void)offload::decode<RichValue>(frame.payload);
        break;
      case offload::detail::FrameKind::error:
        (void)offload::detail::decode_remote_exception(frame.payload);
        break;
      case offload::detail::FrameKind::nudge:
      case offload::detail::FrameKind::via_socket:
        if (!frame.payload.empty()) __builtin_trap();  // the header check must refuse a payload
        break;
    }
  } catch (const offload::ProtocolError&) {
    // rejected cleanly: the point of the exercise
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks how the stream is split into receives (1 to 64 bytes each).
  const std::size_t chunk = std::size_t{data[0]} % 64 + 1;
  std::span<const std::byte> stream(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  offload::detail::FrameAssembler assembler(std::size_t{1} << 20);
  try {
    while (!stream.empty()) {
      const std::size_t n = std::min(chunk, stream.size());
      assembler.append(stream.first(n));
      stream = stream.subspan(n);
      while (const std::optional<offload::detail::FrameKind> kind = assembler.peek_kind()) {
        const std::optional<offload::detail::FrameView> frame = assembler.next();
        if (!frame || frame->kind != *kind) __builtin_trap();  // peek and take must agree
        decode_payload(*frame);
      }
    }
  } catch (const offload::ProtocolError&) {
    // a corrupt header ends the stream, as it ends a worker's connection
  }
  return 0;
}

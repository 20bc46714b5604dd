#ifndef OFFLOAD_DETAIL_CLUSTER_PROGRAM_IMAGE_HPP
#define OFFLOAD_DETAIL_CLUSTER_PROGRAM_IMAGE_HPP

/// @file detail/cluster/program_image.hpp
/// How a function crosses to another rank: as its offset inside the program's executable
/// image. Each rank loads the executable at its own address (ASLR), but the same executable
/// puts every function at the same offset from the image's start. That holds only if every
/// rank runs the same executable, which the fingerprint (a hash of the file) proves at start-up.

#include <link.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>

#include "../../errors.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// Where the executable (not a shared library) is mapped in this process.
struct ImageRange {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
};

/// The loaded segments of the main program: dl_iterate_phdr reports it first.
inline ImageRange main_image_range() {
  ImageRange range{std::numeric_limits<std::uintptr_t>::max(), 0};
  const auto visit = [](dl_phdr_info* info, std::size_t, void* out) -> int {
    auto* found = static_cast<ImageRange*>(out);
    for (int i = 0; i < info->dlpi_phnum; ++i) {
      const auto& segment = info->dlpi_phdr[i];
      if (segment.p_type != PT_LOAD) continue;
      const std::uintptr_t first = info->dlpi_addr + segment.p_vaddr;
      if (first < found->begin) found->begin = first;
      if (first + segment.p_memsz > found->end) found->end = first + segment.p_memsz;
    }
    return 1;  // the first object is the program itself: stop there
  };
  ::dl_iterate_phdr(visit, &range);
  return range;
}

/// The executable's image in this process, computed once.
inline const ImageRange& program_image() {
  static const ImageRange range = main_image_range();
  return range;
}

/// A function's address as an offset in the executable image, the same on every rank.
/// @throws ClusterError when the function lies outside the executable (a shared library's
///         load address differs between processes, so its functions cannot be named this way).
inline std::uint64_t image_offset(std::uint64_t address) {
  const ImageRange& image = program_image();
  if (address < image.begin || address >= image.end) {
    throw ClusterError(
        "offload::ClusterPool::submit: the function is not part of the program's executable "
        "(it lives in a shared library, whose address differs on every rank); call it from a "
        "function defined in the program itself");
  }
  return address - image.begin;
}

/// The address in this process of an offset made by image_offset() on another rank.
/// @throws ProtocolError when the offset lies outside this executable's image.
inline std::uint64_t image_address(std::uint64_t offset) {
  const ImageRange& image = program_image();
  if (offset >= image.end - image.begin) {
    throw ProtocolError("offload: a cluster call names an offset outside the program image");
  }
  return image.begin + offset;
}

/// Identifies the executable file: its size and a 64-bit hash of its bytes. Two ranks with
/// equal fingerprints run the same program (an accidental collision is 2^-64 unlikely; this
/// guards against mistakes, not against an adversary).
struct ProgramFingerprint {
  std::uint64_t hash = 0;
  std::uint64_t size = 0;
  friend bool operator==(const ProgramFingerprint&, const ProgramFingerprint&) = default;
};

/// Hashes 8 bytes at a time (a multiply-rotate mix): tens of megabytes take milliseconds.
class FingerprintHasher {
 public:
  void add(const unsigned char* data, std::size_t size) noexcept {
    for (std::size_t i = 0; i < size; ++i) {
      word_ |= std::uint64_t{data[i]} << (8 * filled_);
      if (++filled_ == 8) flush();
    }
    size_ += size;
  }
  ProgramFingerprint finish() noexcept {
    if (filled_ != 0) flush();
    return {state_ ^ size_, size_};
  }

 private:
  void flush() noexcept {
    state_ = (state_ ^ (word_ * 0x9E3779B97F4A7C15ULL));
    state_ = ((state_ << 27) | (state_ >> 37)) * 0xBF58476D1CE4E5B9ULL;
    word_ = 0;
    filled_ = 0;
  }
  std::uint64_t state_ = 0x243F6A8885A308D3ULL;
  std::uint64_t word_ = 0;
  unsigned filled_ = 0;
  std::uint64_t size_ = 0;
};

/// The fingerprint of the file this process runs (/proc/self/exe).
/// @throws ClusterError when the file cannot be read.
inline ProgramFingerprint this_program_fingerprint() {
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen("/proc/self/exe", "rb"),
                                                              &std::fclose);
  if (!file) throw ClusterError("offload: cannot read /proc/self/exe to fingerprint the program");
  FingerprintHasher hasher;
  const std::unique_ptr<unsigned char[]> buffer(new unsigned char[1 << 16]);
  std::size_t got = 0;
  while ((got = std::fread(buffer.get(), 1, 1 << 16, file.get())) > 0) hasher.add(buffer.get(), got);
  if (std::ferror(file.get())) {
    throw ClusterError("offload: error reading /proc/self/exe to fingerprint the program");
  }
  return hasher.finish();
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CLUSTER_PROGRAM_IMAGE_HPP

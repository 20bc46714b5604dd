#ifndef OFFLOAD_VERSION_HPP
#define OFFLOAD_VERSION_HPP

/// @file version.hpp
/// The library version, the one place it is written down (CMake reads it from here).

#define OFFLOAD_VERSION_MAJOR 0
#define OFFLOAD_VERSION_MINOR 1
#define OFFLOAD_VERSION_PATCH 0

/// The version as one comparable number: major * 10000 + minor * 100 + patch.
#define OFFLOAD_VERSION (OFFLOAD_VERSION_MAJOR * 10000 + OFFLOAD_VERSION_MINOR * 100 + OFFLOAD_VERSION_PATCH)

#endif  // OFFLOAD_VERSION_HPP

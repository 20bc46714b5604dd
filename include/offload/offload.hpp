#ifndef OFFLOAD_OFFLOAD_HPP
#define OFFLOAD_OFFLOAD_HPP

/// @file offload.hpp
/// Everything offload offers. Each component also has its own header. The adapters for other
/// libraries (asio.hpp) are not included: include them where you use them.

#include "channel.hpp"
#include "errors.hpp"
#include "event_loop.hpp"
#include "executor.hpp"
#include "future.hpp"
#include "sendable.hpp"
#include "service.hpp"
#include "shared_buffer.hpp"
#include "task.hpp"
#include "thread_pool.hpp"
#include "version.hpp"

// The process pool needs fork, socketpair, pidfds and prctl: Linux only.
#if defined(__linux__)
#include "codec.hpp"
#include "process_pool.hpp"
#endif

#endif  // OFFLOAD_OFFLOAD_HPP

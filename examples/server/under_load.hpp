// One measurement of examples/05_server.cpp and benchmarks/server_bench.cpp: a server of one
// mode on its own io_context thread, the load on the calling thread.
#pragma once

#include "load.hpp"
#include "server.hpp"

#include <offload/thread_pool.hpp>

#include <asio.hpp>

#include <thread>
#include <utility>

namespace server {

/// Serves `mode` on a fresh io_context thread while the load runs on this one; returns what the
/// clients saw once the load has ended and the server has stopped.
inline LoadResult serve_under_load(Mode mode, offload::ThreadPool& pool, const LoadSpec& spec) {
  asio::io_context io;
  Server server(io, pool, mode);
  std::thread io_thread([&io] { io.run(); });
  LoadResult load = run_load(server.port(), spec);
  asio::post(io, [&server] { server.stop(); });  // then run() returns: nothing is left to do
  io_thread.join();
  return load;
}

}  // namespace server

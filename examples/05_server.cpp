// 05_server: the seed's story where it matters most, a server that must stay responsive.
//
// An Asio TCP server on 127.0.0.1 answers two requests (examples/server/protocol.hpp): `ping`,
// which costs nothing, and `heavy N`, the seed's heavy item N (about a millisecond of work).
// The same load runs against it three times (examples/server/load.hpp): 8 clients ping every
// millisecond while 2 clients ask for the 400 items of the seed's array. The server answers
// `heavy` three ways:
//   naive      inline on the io_context thread: while it computes, no ping is answered;
//   offloaded  on a ThreadPool, the reply written from .then(io_context, ...) on the io_context
//              thread: pings are answered at once, and the items run on every core;
//   coroutine  the same as a Task spawned on the io_context: co_await pool.submit(...), then
//              write the reply (the task goes on on the io_context thread).
// For each: ping round trip p50/p99/max while the items ran, heavy items per second, the
// speedup over naive, and the checksum of the items (all three must agree).
//
//   usage: 05_server [--quick]      (--quick: 40 items instead of 400)

#include "server/under_load.hpp"

#include <offload/thread_pool.hpp>

#include <cstdio>
#include <cstring>
#include <vector>

namespace {

struct Outcome {
  server::Mode mode;
  server::LoadResult load;
};

void print_table(const std::vector<Outcome>& outcomes) {
  const double naive_rate = outcomes.front().load.heavy_per_second();
  std::printf("%-10s %7s %9s %9s %9s %9s %8s %22s %7s\n", "server", "pings", "p50 us", "p99 us",
              "max us", "heavy/s", "speedup", "checksum", "errors");
  for (const Outcome& o : outcomes) {
    const server::LoadResult& r = o.load;
    std::printf("%-10s %7zu %9.0f %9.0f %9.0f %9.1f %7.2fx %22.6f %7d\n", server::mode_name(o.mode),
                r.ping_us.size(), r.ping_quantile(0.5), r.ping_quantile(0.99), r.ping_quantile(1.0),
                r.heavy_per_second(), r.heavy_per_second() / naive_rate, r.checksum, r.errors);
  }
}

}  // namespace

int main(int argc, char** argv) {
  server::LoadSpec spec;
  if (argc == 2 && std::strcmp(argv[1], "--quick") == 0) {
    spec.heavy_items = 40;
  } else if (argc != 1) {
    std::fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
    return 2;
  }

  offload::ThreadPool pool;  // default options: one worker per core
  std::vector<Outcome> outcomes;
  for (const server::Mode mode :
       {server::Mode::naive, server::Mode::offloaded, server::Mode::coroutine}) {
    outcomes.push_back({mode, server::serve_under_load(mode, pool, spec)});
  }

  std::printf("%u ping clients (one ping per %lld us each), %u heavy clients (%d items, %u in "
              "flight each), %u pool threads\n\n",
              spec.ping_clients, static_cast<long long>(spec.ping_interval.count()),
              spec.heavy_clients, spec.heavy_items, spec.heavy_in_flight, pool.size());
  print_table(outcomes);

  bool ok = true;
  for (const Outcome& o : outcomes) {
    ok = ok && o.load.errors == 0 && o.load.heavy_answered == spec.heavy_items &&
         o.load.checksum == outcomes.front().load.checksum;
  }
  std::printf("\n%s\n", ok ? "every item answered, checksums agree"
                           : "ERRORS: an item was lost or answered wrongly");
  return ok ? 0 : 1;
}

// Executors on Asio (asio.hpp): an io_context, its executor and a strand pass the cases every
// executor passes (support/executor_cases.hpp). Built twice: against standalone Asio, and
// with OFFLOAD_TEST_BOOST_ASIO against Boost.Asio.
#if defined(OFFLOAD_TEST_BOOST_ASIO)
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
namespace net = boost::asio;
#define OFFLOAD_TEST_ASIO_TAG "[executor][boost_asio]"
#else
#include <asio/io_context.hpp>
#include <asio/strand.hpp>
namespace net = asio;
#define OFFLOAD_TEST_ASIO_TAG "[executor][asio]"
#endif

#include <offload/asio.hpp>

#include "asio_fixtures.hpp"
#include "catch.hpp"
#include "executor_cases.hpp"

#include <algorithm>
#include <thread>
#include <vector>

namespace {

using IoContext = asio_fixtures::Context<net::io_context>;
using Executor = asio_fixtures::Of<net::io_context, net::io_context::executor_type>;
using Strand = asio_fixtures::Of<net::io_context, net::strand<net::io_context::executor_type>>;

static_assert(offload::Executor<net::io_context>);
static_assert(offload::Executor<net::io_context::executor_type>);
static_assert(offload::Executor<net::strand<net::io_context::executor_type>>);

}  // namespace

OFFLOAD_EXECUTOR_CASES(OFFLOAD_TEST_ASIO_TAG, IoContext, Executor, Strand)

TEST_CASE("then() takes an Asio executor made in the call (an rvalue)", OFFLOAD_TEST_ASIO_TAG) {
  net::io_context io;
  offload::ThreadPool pool({.threads = 1});
  auto result =
      pool.submit([] { return 20; }).then(io.get_executor(), [](int v) { return v + 1; });
  auto on_strand =
      pool.submit([] { return 30; }).then(net::make_strand(io), [](int v) { return v + 2; });
  io.run();
  CHECK(result.get() == 21);
  CHECK(on_strand.get() == 32);
}

TEST_CASE("continuations posted to a strand from many threads never overlap",
          OFFLOAD_TEST_ASIO_TAG) {
  net::io_context io;
  auto strand = net::make_strand(io);
  offload::ThreadPool pool({.threads = 4});
  int inside = 0;  // a data race (and a failure) if two continuations ran at once
  int most_inside = 0;
  int total = 0;
  std::vector<offload::Future<void>> done;
  for (int i = 0; i < 2000; ++i) {
    done.push_back(pool.submit([i] { return i; }).then(strand, [&](int) {
      most_inside = std::max(most_inside, ++inside);
      ++total;
      --inside;
    }));
  }
  std::thread second_runner([&] { io.run(); });
  io.run();
  second_runner.join();
  for (auto& future : done) future.get();
  CHECK(total == 2000);
  CHECK(most_inside == 1);
}

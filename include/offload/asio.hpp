#ifndef OFFLOAD_ASIO_HPP
#define OFFLOAD_ASIO_HPP

/// @file asio.hpp
/// Results back on an Asio io_context: makes `asio::io_context`, its executor
/// (`io_context::executor_type`) and strands of it (`asio::strand<io_context::executor_type>`)
/// executors (executor.hpp), for standalone Asio or Boost.Asio:
///
///   pool.submit(heavy, request).then(io, [&](Reply reply) { write(socket, reply); });
///   co_await offload::resume_on(io);   // and spawn(io, task)
///
/// A pending continuation holds a work guard, so io.run() does not return before it has run.
/// If the io_context is destroyed first, the continuation never runs and its future fails with
/// PoolClosed: offload notices through an Asio service of the io_context, and never touches
/// it afterwards. Continuations posted to a strand run one at a time, in order.
///
/// Uses the Asio the program included first: Boost.Asio if <boost/asio/io_context.hpp> was
/// included (or OFFLOAD_ASIO_BOOST is defined), standalone Asio if <asio/io_context.hpp> was;
/// with neither, standalone Asio if installed (Debian: libasio-dev), else Boost.Asio
/// (libboost-dev). The two cannot share a program file (their headers clash). Not included by
/// offload.hpp: a program that never includes this header needs no Asio.

#if !defined(OFFLOAD_ASIO_BOOST) && !defined(OFFLOAD_ASIO_STANDALONE)
#if defined(BOOST_ASIO_IO_CONTEXT_HPP)
#define OFFLOAD_ASIO_BOOST 1
#elif defined(ASIO_IO_CONTEXT_HPP) || __has_include(<asio/io_context.hpp>)
#define OFFLOAD_ASIO_STANDALONE 1
#elif __has_include(<boost/asio/io_context.hpp>)
#define OFFLOAD_ASIO_BOOST 1
#else
#error "offload/asio.hpp needs Asio: standalone (Debian: libasio-dev) or Boost.Asio (libboost-dev)"
#endif
#endif

#if defined(OFFLOAD_ASIO_BOOST)
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#else
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>
#endif

#include <utility>

#include "detail/asio/gate.hpp"
#include "executor.hpp"

/// Stamps out, for one Asio namespace, the Api that detail/asio/gate.hpp is written against
/// and the executor_traits of its io_context, executor and strand.
#define OFFLOAD_DETAIL_ASIO_ADAPTER(Api, ns)                                                    \
  namespace offload {                                                                          \
  inline namespace v0 {                                                                        \
  namespace detail {                                                                           \
  namespace asio_bridge {                                                                      \
  struct Api {                                                                                 \
    using io_context = ns::io_context;                                                         \
    using execution_context = ns::execution_context;                                           \
    using executor_type = ns::io_context::executor_type;                                       \
    using strand = ns::strand<executor_type>;                                                  \
    using work_guard = ns::executor_work_guard<executor_type>;                                 \
    template <class Executor, class F>                                                         \
    static void post(Executor& executor, F&& f) {                                              \
      ns::post(executor, std::forward<F>(f));                                                  \
    }                                                                                          \
    template <class Service>                                                                   \
    static Service& use_service(io_context& context) {                                         \
      return ns::use_service<Service>(context);                                                \
    }                                                                                          \
    static io_context& context_of(io_context& context) noexcept { return context; }            \
    static io_context& context_of(const executor_type& executor) noexcept {                    \
      return executor.context();                                                               \
    }                                                                                          \
    static io_context& context_of(const strand& executor) noexcept {                           \
      return executor.get_inner_executor().context();                                          \
    }                                                                                          \
    static executor_type target_of(io_context& context) noexcept {                             \
      return context.get_executor();                                                           \
    }                                                                                          \
    template <class Executor>                                                                  \
    static Executor target_of(const Executor& executor) noexcept {                             \
      return executor;                                                                         \
    }                                                                                          \
  };                                                                                           \
  }                                                                                            \
  }                                                                                            \
  template <>                                                                                  \
  struct executor_traits<ns::io_context> : detail::asio_bridge::Traits<detail::asio_bridge::Api, \
                                                                       ns::io_context> {};     \
  template <>                                                                                  \
  struct executor_traits<ns::io_context::executor_type>                                        \
      : detail::asio_bridge::Traits<detail::asio_bridge::Api, ns::io_context::executor_type> {}; \
  template <>                                                                                  \
  struct executor_traits<ns::strand<ns::io_context::executor_type>>                            \
      : detail::asio_bridge::Traits<detail::asio_bridge::Api,                                  \
                                    ns::strand<ns::io_context::executor_type>> {};             \
  }                                                                                            \
  }

#if defined(OFFLOAD_ASIO_BOOST)
OFFLOAD_DETAIL_ASIO_ADAPTER(BoostAsio, ::boost::asio)
#else
OFFLOAD_DETAIL_ASIO_ADAPTER(StandaloneAsio, ::asio)
#endif

#undef OFFLOAD_DETAIL_ASIO_ADAPTER

#endif  // OFFLOAD_ASIO_HPP

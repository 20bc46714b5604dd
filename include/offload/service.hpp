#ifndef OFFLOAD_SERVICE_HPP
#define OFFLOAD_SERVICE_HPP

/// @file service.hpp
/// run_service: the worker_threads model. A service is a callable that runs on a pool worker
/// with its own copy of some data (Node's `workerData`), may post messages through a port (a
/// channel Sender, Node's `parentPort.postMessage`), and delivers its return value (or its
/// exception) through a Future.
///
/// @code
///   auto hello = offload::run_service(pool, [](std::string name) { return "Hello " + name; },
///                                     std::string("world"));
///   hello.get();                                            // "Hello world"
///
///   auto [tx, rx] = offload::unbounded_channel<int>();
///   auto job = offload::run_service(pool, [](Input in, offload::Sender<int>& port) {
///     for (...) port.send(percent_done);
///     return result;
///   }, std::move(input), std::move(tx));
///   for (int percent : rx) show(percent);                  // ends when the service is done
///   Result result = job.get();
/// @endcode
///
/// What crosses is moved or copied, never shared: the data, the result and the messages must
/// be Sendable (<offload/sendable.hpp>); a rejected type is one compile error that names it.
///
/// How a service is called. It runs once, as `svc(data)` or `svc(data, port)`, where `data` is
/// the service's own copy and `port` is an lvalue `offload::Sender<Msg>&`:
///   - data: declare the parameter as `Data`, `const Data&` or `Data&&` (the copy is passed as
///     an rvalue), or as `Data&` (then it is passed as an lvalue); `Data` is the decayed type
///     of the argument given to run_service;
///   - port: declare it as `offload::Sender<Msg>&` (or `offload::Sender<Msg>` for a handle of
///     its own, which is released when svc returns too);
///   - result: any Sendable type, or void.
/// Any other signature is a compile error that says what is expected.

#include <exception>
#include <functional>
#include <future>
#include <optional>
#include <type_traits>
#include <utility>

#include "channel.hpp"
#include "detail/always_false.hpp"
#include "errors.hpp"
#include "future.hpp"
#include "sendable.hpp"
#include "thread_pool.hpp"

namespace offload {
inline namespace v0 {
namespace detail {

/// Stands for the port of a service that has none.
struct NoPort {};

template <class T>
inline constexpr bool is_thread_pool = false;
template <class Scheduler>
inline constexpr bool is_thread_pool<BasicThreadPool<Scheduler>> = true;

/// The arguments a service receives after its data: the port as an lvalue, or nothing.
template <class Port>
struct PortArguments {
  template <class Service, class DataArgument>
  static constexpr bool invocable = std::is_invocable_v<Service&, DataArgument, Port&>;
  template <class Service, class DataArgument>
  using result = std::invoke_result_t<Service&, DataArgument, Port&>;
};
template <>
struct PortArguments<NoPort> {
  template <class Service, class DataArgument>
  static constexpr bool invocable = std::is_invocable_v<Service&, DataArgument>;
  template <class Service, class DataArgument>
  using result = std::invoke_result_t<Service&, DataArgument>;
};

/// Whether the service takes its data as an rvalue (by value, const& or &&); if not, it gets
/// an lvalue (a `Data&` parameter).
template <class Service, class Data, class Port>
inline constexpr bool takes_data_as_rvalue =
    PortArguments<Port>::template invocable<Service, Data&&>;

template <class Service, class Data, class Port>
inline constexpr bool is_service_signature =
    takes_data_as_rvalue<Service, Data, Port> ||
    PortArguments<Port>::template invocable<Service, Data&>;

/// How the service is handed its data: Data&& when it accepts an rvalue, else Data&.
template <class Service, class Data, class Port>
using data_argument_t =
    std::conditional_t<takes_data_as_rvalue<Service, Data, Port>, Data&&, Data&>;

/// What the service returns (cv dropped: `const std::string f()` gives a Future<std::string>).
template <class Service, class Data, class Port>
using service_result_t = std::remove_cv_t<
    typename PortArguments<Port>::template result<Service, data_argument_t<Service, Data, Port>>>;

/// The message type of a port (void when there is no port).
template <class Port>
struct port_message {
  using type = void;
};
template <class Msg>
struct port_message<Sender<Msg>> {
  using type = Msg;
};

/// A service may return any Sendable type, or nothing.
template <class R>
struct is_sendable_result : is_sendable<R> {};
template <>
struct is_sendable_result<void> : std::true_type {};

/// The first reason, in the order a user would fix them, why run_service cannot accept these
/// arguments. Each is reported by exactly one static_assert (see report_service_problem).
enum class ServiceProblem {
  none,
  data_not_sendable,
  data_not_copyable,
  message_not_sendable,
  service_not_movable,
  signature,
  result_not_sendable,
};

/// `Service` and `Data` are the types run_service deduced (possibly references), `Port` is
/// Sender<Msg> or NoPort.
template <class Service, class Data, class Port>
constexpr ServiceProblem first_service_problem() noexcept {
  using StoredService = std::decay_t<Service>;
  using StoredData = std::decay_t<Data>;
  using Msg = typename port_message<Port>::type;
  if constexpr (!Sendable<StoredData>) {
    return ServiceProblem::data_not_sendable;
  } else if constexpr (!std::is_constructible_v<StoredData, Data>) {
    return ServiceProblem::data_not_copyable;
  } else if constexpr (!std::is_void_v<Msg> && !valid_channel_element<Msg>) {
    return ServiceProblem::message_not_sendable;
  } else if constexpr (!std::is_constructible_v<StoredService, Service> ||
                       !std::is_move_constructible_v<StoredService>) {
    return ServiceProblem::service_not_movable;
  } else if constexpr (!is_service_signature<StoredService, StoredData, Port>) {
    return ServiceProblem::signature;
  } else if constexpr (!is_sendable_result<
                           service_result_t<StoredService, StoredData, Port>>::value) {
    return ServiceProblem::result_not_sendable;
  } else {
    return ServiceProblem::none;
  }
}

template <class Service, class Data, class Port>
inline constexpr ServiceProblem service_problem = first_service_problem<Service, Data, Port>();

/// Emits the one compile error that explains `problem`.
template <ServiceProblem problem, class Service, class Data, class Port>
constexpr void report_service_problem() noexcept {
  using StoredService = std::decay_t<Service>;
  using StoredData = std::decay_t<Data>;
  using Msg = typename port_message<Port>::type;
  if constexpr (problem == ServiceProblem::data_not_sendable) {
    check_sendable<StoredData>();
  } else if constexpr (problem == ServiceProblem::data_not_copyable) {
    static_assert(always_false<Data>,
                  "offload::run_service: the service gets its own copy of data, and this data "
                  "cannot be copied: pass a move-only value as an rvalue (std::move(data)).");
  } else if constexpr (problem == ServiceProblem::message_not_sendable) {
    if constexpr (!Sendable<Msg>) {
      check_sendable<Msg>();
    } else {
      check_channel_element<Msg>();
    }
  } else if constexpr (problem == ServiceProblem::service_not_movable) {
    static_assert(always_false<Service>,
                  "offload::run_service: the service callable is copied or moved into the task: "
                  "it must be move-constructible, and a move-only callable must be passed as an "
                  "rvalue (std::move(svc)).");
  } else if constexpr (problem == ServiceProblem::signature && std::is_same_v<Port, NoPort>) {
    static_assert(always_false<Service>,
                  "offload::run_service(pool, svc, data): svc cannot be called as svc(data). It "
                  "is called once with its own copy of data: declare the parameter as Data, "
                  "const Data&, Data&& or Data&, where Data is the (decayed) type of the data "
                  "argument. A service that takes a port needs run_service(pool, svc, data, "
                  "port).");
  } else if constexpr (problem == ServiceProblem::signature) {
    static_assert(always_false<Service>,
                  "offload::run_service(pool, svc, data, port): svc cannot be called as "
                  "svc(data, port). It is called once with its own copy of data (declare Data, "
                  "const Data&, Data&& or Data&) and the port as an lvalue: declare "
                  "offload::Sender<Msg>& (or offload::Sender<Msg>), with the port's Msg.");
  } else if constexpr (problem == ServiceProblem::result_not_sendable) {
    check_sendable<service_result_t<StoredService, StoredData, Port>>();
  }
}

/// What a callable declares it returns, whatever it is called with: read from a function
/// pointer or a lambda's one operator() (std::function's deduction guide does exactly that);
/// void for generic or overloaded callables.
template <class Service>
struct declared_result {
  using type = void;
};
template <class Service>
requires requires { std::function{std::declval<Service>()}; }
struct declared_result<Service> {
  using type = typename decltype(std::function{std::declval<Service>()})::result_type;
};

/// The Future to return after a compile error, chosen so that the caller's own use of it
/// raises no second error: of the service's result type, or of what it declares to return when
/// it cannot be called with these arguments.
template <class Service, class Data, class Port>
constexpr auto future_after_error() noexcept {
  using StoredService = std::decay_t<Service>;
  using StoredData = std::decay_t<Data>;
  if constexpr (is_service_signature<StoredService, StoredData, Port>) {
    return Future<std::remove_cvref_t<service_result_t<StoredService, StoredData, Port>>>();
  } else {
    return Future<std::remove_cvref_t<typename declared_result<StoredService>::type>>();
  }
}

/**
 * @brief One service run, as queued on a pool: the callable, its copy of the data, its port
 *        and the promise of its result.
 *
 * Run once by one worker. It frees the callable, the data and the port before it completes
 * the future, so a caller that sees the future ready also sees the port released (and the
 * channel closed if that was its last Sender). Destroyed without running (the pool refused
 * it), it releases the port and breaks the promise.
 */
template <class R, class Service, class Data, class Port>
class ServiceJob {
 public:
  template <class ServiceArgument, class DataArgument>
  ServiceJob(Promise<R> promise, ServiceArgument&& service, DataArgument&& data, Port port)
      : promise_(std::move(promise)),
        service_(std::in_place, std::forward<ServiceArgument>(service)),
        data_(std::in_place, std::forward<DataArgument>(data)),
        port_(std::move(port)) {}

  /// Runs the service (unless its future was cancelled first) and completes the future.
  /// Never throws: every exception goes to the future.
  void operator()() noexcept {
    if (promise_.stop_requested()) {
      release_inputs();
      fail(detail::make_error<TaskCancelled>());
      return;
    }
    std::exception_ptr error = detail::exception_of([&] {
      if constexpr (std::is_void_v<R>) {
        call();
        release_inputs();
        promise_.set_value();
      } else {
        R result = call();
        release_inputs();
        promise_.set_value(std::move(result));
      }
    });
    if (error) {
      release_inputs();
      fail(std::move(error));
    }
  }

 private:
  decltype(auto) call() {
    using Argument = data_argument_t<Service, Data, Port>;
    if constexpr (std::is_same_v<Port, NoPort>) {
      return std::invoke(*service_, static_cast<Argument>(*data_));
    } else {
      return std::invoke(*service_, static_cast<Argument>(*data_), port_);
    }
  }

  /// Destroys the callable and the data, and drops the port (the last Sender closes the
  /// channel). Idempotent.
  void release_inputs() noexcept {
    data_.reset();
    service_.reset();
    port_ = Port();
  }

  void fail(std::exception_ptr error) noexcept {
    try {
      promise_.set_exception(std::move(error));
    } catch (const std::future_error&) {
      // Already satisfied: set_value() itself threw (R's move constructor). Nothing to add.
    }
  }

  // Declared first so it is destroyed last: the port is gone before a promise is broken.
  Promise<R> promise_;
  std::optional<Service> service_;
  std::optional<Data> data_;
  Port port_;
};

/// Checks the arguments (one readable compile error for the first problem), then queues the
/// service on `pool`.
template <class Pool, class Service, class Data, class Port>
auto start_service(Pool& pool, Service&& service, Data&& data, Port port) {
  constexpr ServiceProblem problem = service_problem<Service, Data, Port>;
  if constexpr (problem != ServiceProblem::none) {
    report_service_problem<problem, Service, Data, Port>();
    return future_after_error<Service, Data, Port>();
  } else {
    using StoredService = std::decay_t<Service>;
    using StoredData = std::decay_t<Data>;
    using R = service_result_t<StoredService, StoredData, Port>;
    Promise<R> promise;
    Future<R> future = promise.get_future();
    pool.detach(ServiceJob<R, StoredService, StoredData, Port>(
        std::move(promise), std::forward<Service>(service), std::forward<Data>(data),
        std::move(port)));
    return future;
  }
}

/**
 * @brief The pool behind run_service(svc, data): std::thread::hardware_concurrency() workers
 *        (at least one), created by the first call (thread-safe: a function-local static).
 *
 * It lives until static destruction after main() returns (or exit()); its destructor then
 * runs every service still queued and joins the workers, so the process exits only when they
 * are done. Caveats of that order: a service still running then must not use objects with
 * static storage that were created after the pool (they are destroyed before it), nor wait
 * for something that never comes (exit would hang); and run_service(svc, data) must not be
 * called from a static destructor that runs after the pool's. get() every future before main()
 * returns to stay clear of all three. Each shared library that inlines this header privately
 * (hidden visibility) gets a pool of its own.
 */
inline ThreadPool& default_service_pool() {
  static ThreadPool pool;
  return pool;
}

}  // namespace detail

/**
 * @brief Runs `svc` on a worker of `pool` with its own copy of `data`; its return value is
 *        the result (Node's `new Worker(file, {workerData})`).
 *
 * The service is called once as `svc(data)` (see the file comment for the accepted
 * parameter types). `data` is copied when it is an lvalue and moved when it is an rvalue; the
 * callable is decay-copied or moved the same way. The service's copy of the data and the
 * callable are destroyed on the worker before the future completes. On a PriorityThreadPool
 * the service runs at priority 0.
 *
 * Future::request_stop() before the service starts: it never runs, and the future fails with
 * offload::TaskCancelled. A running service is not interrupted.
 *
 * @param pool the pool to run on; must outlive the call (the pool finishes the service even
 *             if the returned future is dropped).
 * @param svc  the service: a callable, copied or moved into the task.
 * @param data the service's input; its decayed type must be Sendable.
 * @return Future<R>, R being what svc returns (void allowed; otherwise Sendable). get()
 *         rethrows whatever svc threw.
 * @throws PoolClosed when the pool is shut down; std::bad_alloc; whatever copying or moving
 *         svc and data throws. Nothing runs then.
 *
 * Thread-safe (any thread, including the pool's own workers). Blocks only while a bounded pool
 * queue is full (PoolOptions::max_queue). Allocates the future's state and the queued task.
 */
template <class Scheduler, class Service, class Data>
auto run_service(BasicThreadPool<Scheduler>& pool, Service&& svc, Data&& data) {
  return detail::start_service(pool, std::forward<Service>(svc), std::forward<Data>(data),
                               detail::NoPort{});
}

/**
 * @brief Runs `svc` on a worker of `pool` with its own copy of `data` and a port through which
 *        it posts messages (progress, partial results) while it runs.
 *
 * The service is called once as `svc(data, port)`, the port being an lvalue
 * `offload::Sender<Msg>&`. When svc returns or throws, or when it never starts because its
 * future was cancelled, the service's port handle is released before the future completes.
 * Releasing the last Sender closes the channel, so a caller that moved its Sender in sees
 * `for (Msg m : rx)` end once the service is done. Several services may share a channel by
 * each getting a copy of one Sender: it closes when the last of them is done (and the caller
 * dropped its own copy).
 *
 * A bounded port makes the service wait while it is full (back-pressure): read the port
 * before waiting on the future, or the two wait for each other. A caller that drops its last
 * Receiver makes the service's sends return ChannelStatus::closed, so the service can stop
 * early. Everything else is as for run_service(pool, svc, data).
 *
 * @param port a Sender of the channel to post to; Msg must be Sendable. Copied or moved in.
 * @return Future<R>, R being what svc returns (void allowed; otherwise Sendable).
 * @throws PoolClosed when the pool is shut down (the port is released, nothing runs);
 *         std::bad_alloc; whatever copying or moving svc and data throws.
 *
 * Thread-safe. Blocks only while a bounded pool queue is full. Allocates the future's state
 * and the queued task.
 */
template <class Scheduler, class Service, class Data, class Msg>
auto run_service(BasicThreadPool<Scheduler>& pool, Service&& svc, Data&& data, Sender<Msg> port) {
  return detail::start_service(pool, std::forward<Service>(svc), std::forward<Data>(data),
                               std::move(port));
}

/**
 * @brief run_service(pool, svc, data) on the process-wide default pool, created on first use
 *        with std::thread::hardware_concurrency() workers and kept until the program exits.
 *
 * Lifetime: the pool is a function-local static, so it is destroyed during static destruction
 * after main() returns, and its destructor finishes every service still queued or running
 * first (exit waits for them). get() every future before main() returns: a service still
 * running then must not use static objects created after the pool (they are destroyed before
 * it), and run_service(svc, data) must not be called from a static destructor that runs after
 * the pool's. Thread-safe; the first call starts the pool's threads (creation is thread-safe).
 */
template <class Service, class Data>
requires(!detail::is_thread_pool<std::remove_cvref_t<Service>>) auto run_service(Service&& svc,
                                                                                 Data&& data) {
  return run_service(detail::default_service_pool(), std::forward<Service>(svc),
                     std::forward<Data>(data));
}

/**
 * @brief run_service(pool, svc, data, port) on the process-wide default pool (see
 *        run_service(svc, data)).
 */
template <class Service, class Data, class Msg>
requires(!detail::is_thread_pool<std::remove_cvref_t<Service>>) auto run_service(Service&& svc,
                                                                                 Data&& data,
                                                                                 Sender<Msg> port) {
  return run_service(detail::default_service_pool(), std::forward<Service>(svc),
                     std::forward<Data>(data), std::move(port));
}

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_SERVICE_HPP

#ifndef OFFLOAD_CHANNEL_HPP
#define OFFLOAD_CHANNEL_HPP

/// @file channel.hpp
/// Channels: typed, multi-producer multi-consumer pipes between threads.
///
/// @code
///   auto [tx, rx] = offload::channel<Job>(64);        // bounded; 0 = rendezvous
///   auto [tx, rx] = offload::unbounded_channel<Job>();
///   tx.send(std::move(job));                           // blocks while full
///   for (Job job : rx) { ... }                         // until closed and drained
/// @endcode
///
/// Sender and Receiver are handles: copy them to add producers and consumers. The last Sender
/// to go closes the channel (receivers drain what is buffered, then see the end); the last
/// Receiver to go closes it and destroys what is buffered (sends then fail with `closed`). No
/// operation throws on a closed channel, every blocked operation wakes when it closes, and a
/// send that fails leaves the value where it was.
///
/// Bounded channels are lock-free; unbounded ones also take a short lock once per segment of
/// values (about 16 KiB); rendezvous channels hand values over under a short lock. A blocked
/// operation spins briefly, then sleeps on a futex; a sender or receiver makes a system call
/// only to wake someone who sleeps.

#include <chrono>
#include <cstddef>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "detail/channel/bounded_ring.hpp"
#include "detail/channel/channel_core.hpp"
#include "detail/channel/channel_status.hpp"
#include "detail/channel/rendezvous_channel.hpp"
#include "detail/channel/segmented_queue.hpp"
#include "detail/futex.hpp"
#include "sendable.hpp"

namespace offload {
inline namespace v0 {

template <class T>
class Sender;
template <class T>
class Receiver;
template <class T>
class Task;  // <offload/task.hpp>: needed (included) only by code that awaits a channel

namespace detail {
// <offload/task.hpp> (detail/task/channel_ops.hpp) defines these: the coroutines behind
// rx.next() and tx.send_async().
template <class T>
Task<std::optional<T>> receive_next(Receiver<T> rx);
/// ChannelStatus, spelled so that it depends on T: a member of Sender<T> may then return a
/// Task of it while Task is still incomplete (it only has to be complete where it is used).
template <class T>
struct status_of {
  using type = ChannelStatus;
};
template <class T>
Task<typename status_of<T>::type> send_next(Sender<T> tx, T value);

/// Lets those coroutines reach a handle's channel.
struct ChannelAccess {
  template <class Handle>
  static auto& core(const Handle& handle) {
    return handle.core();
  }
};
}  // namespace detail

/**
 * @brief What try_receive() and receive_for() return: a status and, on ok, the value.
 *
 * @code
 *   if (auto got = rx.try_receive()) use(*got);
 *   auto [status, value] = rx.receive_for(10ms);
 * @endcode
 */
template <class T>
struct RecvResult {
  ChannelStatus status;    ///< ok, or why there is no value: empty, closed or timeout
  std::optional<T> value;  ///< engaged exactly when status == ok

  /// True when a value was received.
  explicit operator bool() const noexcept { return status == ChannelStatus::ok; }

  /// The value. Precondition: status == ok.
  T& operator*() & noexcept { return *value; }
  const T& operator*() const& noexcept { return *value; }
  T&& operator*() && noexcept { return std::move(*value); }
  T* operator->() noexcept { return &*value; }
  const T* operator->() const noexcept { return &*value; }
};

namespace detail {

[[noreturn]] inline void throw_no_channel(const char* handle) {
  throw std::logic_error(std::string("offload::") + handle +
                         ": this handle refers to no channel (it was default-constructed or "
                         "moved from)");
}

}  // namespace detail

/**
 * @brief The sending end of a channel. Copyable: each copy is one more producer.
 *
 * Every member may be called from any thread at the same time as any other member on the same
 * handle or on copies of it, except assignment and destruction of that very handle.
 * Operations on a handle that refers to no channel (default-constructed or moved from) throw
 * std::logic_error.
 */
template <class T>
class Sender {
 public:
  /// A handle that refers to no channel. Never allocates.
  Sender() noexcept = default;

  /// Another handle to the same channel. Never blocks; never allocates.
  Sender(const Sender& other) noexcept : core_(other.core_) {
    if (core_ != nullptr) core_->add_sender();
  }

  Sender(Sender&& other) noexcept : core_(std::exchange(other.core_, nullptr)) {}

  Sender& operator=(Sender other) noexcept {
    std::swap(core_, other.core_);
    return *this;
  }

  /// Drops this handle; the last Sender of a channel closes it. Never blocks.
  ~Sender() {
    if (core_ != nullptr) core_->drop_sender();
  }

  /**
   * @brief Sends `value`, waiting while a bounded channel is full (a rendezvous channel: until
   *        a receiver takes it).
   * @return ok, or closed (then `value` was not moved from).
   * @throws std::logic_error on a handle that refers to no channel; whatever T's move
   *         constructor throws; std::bad_alloc from an unbounded channel.
   * Thread-safe; blocks; allocates only in unbounded channels (a segment per ~16 KiB).
   */
  ChannelStatus send(T&& value) { return core().send(value, std::nullopt); }

  /// Sends a copy of `value`; see send(T&&). Blocks.
  ChannelStatus send(const T& value) requires std::is_copy_constructible_v<T> {
    T copy(value);
    return send(std::move(copy));
  }

  /**
   * @brief Sends `value` if that is possible without waiting.
   * @return ok (moved from `value`), full (no room; rendezvous: no receiver waiting) or
   *         closed; on full and closed `value` is untouched.
   * Thread-safe; never sleeps and never waits for a sleeping thread (bounded: lock-free;
   * unbounded and rendezvous: at most a short internal lock); allocates as send() does.
   */
  ChannelStatus try_send(T& value) { return core().try_send(value); }

  /**
   * @brief Like send(), giving up after `timeout`.
   * @return ok (moved from `value`), closed or timeout (`value` untouched).
   * Thread-safe; blocks up to `timeout`.
   */
  template <class Rep, class Period>
  ChannelStatus send_for(T& value, std::chrono::duration<Rep, Period> timeout) {
    return core().send(value, detail::deadline_after(timeout));
  }

  /**
   * @brief `ChannelStatus s = co_await tx.send_async(std::move(value));` inside an
   *        offload::Task: waits for room like send(), suspending the coroutine instead of the
   *        thread; it resumes on its own executor.
   * @return ok, or closed (then `value`, which the task owns, is dropped with it).
   * @throws std::logic_error on a handle without a channel (at once); TaskCancelled from the
   *         co_await if the task is asked to stop while it waits (the value was not sent).
   * Thread-safe; needs <offload/task.hpp>; allocates the task's frame from the frame cache.
   */
  Task<typename detail::status_of<T>::type> send_async(T value) {
    core();
    return detail::send_next(*this, std::move(value));
  }

  /// Closes the channel: sends fail, receivers drain what is buffered and then see the end,
  /// blocked operations wake. Idempotent; a no-op on a handle without a channel. Never blocks.
  void close() noexcept {
    if (core_ != nullptr) core_->close();
  }

  /// Whether the channel is closed (true for a handle without a channel). Never blocks.
  [[nodiscard]] bool is_closed() const noexcept { return core_ == nullptr || core_->is_closed(); }

  /// Whether this handle refers to a channel. Never blocks.
  [[nodiscard]] bool valid() const noexcept { return core_ != nullptr; }

 private:
  template <class U>
  friend std::pair<Sender<U>, Receiver<U>> channel(std::size_t capacity);
  template <class U>
  friend std::pair<Sender<U>, Receiver<U>> unbounded_channel();
  friend detail::ChannelAccess;

  explicit Sender(detail::ChannelCore<T>* core) noexcept : core_(core) {}

  detail::ChannelCore<T>& core() const {
    if (core_ == nullptr) detail::throw_no_channel("Sender");
    return *core_;
  }

  detail::ChannelCore<T>* core_ = nullptr;
};

/**
 * @brief The receiving end of a channel. Copyable: each copy is one more consumer.
 *
 * Every member may be called from any thread at the same time as any other member on the same
 * handle or on copies of it, except assignment and destruction of that very handle (and an
 * iterator is used by one thread). Operations on a handle that refers to no channel throw
 * std::logic_error.
 */
template <class T>
class Receiver {
 public:
  class Iterator;

  /// A handle that refers to no channel. Never allocates.
  Receiver() noexcept = default;

  /// Another handle to the same channel. Never blocks; never allocates.
  Receiver(const Receiver& other) noexcept : core_(other.core_) {
    if (core_ != nullptr) core_->add_receiver();
  }

  Receiver(Receiver&& other) noexcept : core_(std::exchange(other.core_, nullptr)) {}

  Receiver& operator=(Receiver other) noexcept {
    std::swap(core_, other.core_);
    return *this;
  }

  /// Drops this handle; the last Receiver closes the channel and destroys the values still
  /// buffered, so later sends fail with `closed`. The last one may yield briefly while sends
  /// already in flight finish writing their values (so that it destroys those too).
  ~Receiver() {
    if (core_ != nullptr) core_->drop_receiver();
  }

  /**
   * @brief Receives the oldest value, waiting while the channel is empty.
   * @return the value, or std::nullopt once the channel is closed and drained.
   * @throws std::logic_error on a handle that refers to no channel; whatever T's move
   *         constructor throws (that value is then lost).
   * Thread-safe; blocks; never allocates.
   */
  std::optional<T> receive() const {
    std::optional<T> out;
    core().receive(out, std::nullopt);
    return out;
  }

  /**
   * @brief Receives a value if one is ready.
   * @return {ok, value}, {empty, nullopt}, or {closed, nullopt} once closed and drained.
   * Thread-safe; never sleeps and never waits for a sleeping thread (see try_send); never
   * allocates.
   */
  RecvResult<T> try_receive() const {
    RecvResult<T> result{ChannelStatus::empty, std::nullopt};
    result.status = core().try_receive(result.value);
    return result;
  }

  /**
   * @brief Like receive(), giving up after `timeout`.
   * @return {ok, value}, {closed, nullopt} once closed and drained, or {timeout, nullopt}.
   * Thread-safe; blocks up to `timeout`.
   */
  template <class Rep, class Period>
  RecvResult<T> receive_for(std::chrono::duration<Rep, Period> timeout) const {
    RecvResult<T> result{ChannelStatus::timeout, std::nullopt};
    result.status = core().receive(result.value, detail::deadline_after(timeout));
    return result;
  }

  /**
   * @brief `std::optional<T> v = co_await rx.next();` inside an offload::Task: receive() that
   *        suspends the coroutine instead of the thread; it resumes on its own executor.
   * @return the value, or std::nullopt once the channel is closed and drained.
   * @throws std::logic_error on a handle without a channel (at once); TaskCancelled from the
   *         co_await if the task is asked to stop while it waits (no value is taken).
   * Thread-safe; needs <offload/task.hpp>; the task keeps a copy of this handle.
   */
  Task<std::optional<T>> next() const {
    core();
    return detail::receive_next(*this);
  }

  /// Closes the channel (see Sender::close); buffered values stay receivable. Never blocks.
  void close() noexcept {
    if (core_ != nullptr) core_->close();
  }

  /// Whether the channel is closed (true for a handle without a channel). Never blocks.
  [[nodiscard]] bool is_closed() const noexcept { return core_ == nullptr || core_->is_closed(); }

  /// Whether this handle refers to a channel. Never blocks.
  [[nodiscard]] bool valid() const noexcept { return core_ != nullptr; }

  /// Starts receiving: the iterator holds the first value (blocks until there is one).
  Iterator begin() const { return Iterator(*this); }
  /// The end: reached once the channel is closed and drained.
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  template <class U>
  friend std::pair<Sender<U>, Receiver<U>> channel(std::size_t capacity);
  template <class U>
  friend std::pair<Sender<U>, Receiver<U>> unbounded_channel();
  friend detail::ChannelAccess;

  explicit Receiver(detail::ChannelCore<T>* core) noexcept : core_(core) {}

  detail::ChannelCore<T>& core() const {
    if (core_ == nullptr) detail::throw_no_channel("Receiver");
    return *core_;
  }

  detail::ChannelCore<T>* core_ = nullptr;
};

/// Input iterator over received values: `*it` hands out the current value (as an rvalue, so
/// move-only types work in `for (T v : rx)`); `++it` blocks for the next one.
template <class T>
class Receiver<T>::Iterator {
 public:
  using iterator_concept = std::input_iterator_tag;
  using iterator_category = std::input_iterator_tag;
  using value_type = T;
  using difference_type = std::ptrdiff_t;
  using reference = T&&;

  Iterator() = default;

  T&& operator*() const noexcept { return std::move(*current_); }

  Iterator& operator++() {
    current_.reset();  // the core emplaces: T need not be assignable
    receiver_->core().receive(current_, std::nullopt);
    return *this;
  }
  void operator++(int) { ++*this; }

  friend bool operator==(const Iterator& it, std::default_sentinel_t) noexcept {
    return !it.current_.has_value();
  }

 private:
  friend class Receiver;
  explicit Iterator(const Receiver& receiver)
      : receiver_(&receiver), current_(receiver.receive()) {}

  const Receiver* receiver_ = nullptr;
  mutable std::optional<T> current_;  ///< mutable: operator* hands the value out
};

namespace detail {

/// Refuses cv-qualified element types with a clear message (values are moved out).
template <class T>
constexpr void check_channel_element() noexcept {
  static_assert(!std::is_const_v<T> && !std::is_volatile_v<T>,
                "offload::channel<T>: T must not be const or volatile, since values are moved "
                "out of the channel: use channel<int>, not channel<const int>");
}

template <class T>
inline constexpr bool valid_channel_element =
    Sendable<T> && !std::is_const_v<T> && !std::is_volatile_v<T>;

}  // namespace detail

/**
 * @brief Creates a channel holding at most `capacity` values; capacity 0 makes a rendezvous
 *        channel, where a send completes only when a receiver takes the value.
 * @return the first Sender and Receiver: `auto [tx, rx] = offload::channel<T>(16);`
 * @throws std::length_error for an absurd capacity; std::bad_alloc.
 * T must be Sendable; a rejected T is a compile error that says why.
 */
template <class T>
std::pair<Sender<T>, Receiver<T>> channel(std::size_t capacity) {
  detail::check_sendable<T>();
  detail::check_channel_element<T>();
  if constexpr (detail::valid_channel_element<T>) {
    detail::ChannelCore<T>* core = nullptr;
    if (capacity == 0) {
      core = new detail::RendezvousChannel<T>();
    } else {
      core = new detail::QueueChannel<T, detail::BoundedRing<T>>(capacity);
    }
    return {Sender<T>(core), Receiver<T>(core)};
  } else {
    return {};
  }
}

/**
 * @brief Creates a channel without a capacity limit: sends never wait.
 * @return the first Sender and Receiver: `auto [tx, rx] = offload::unbounded_channel<T>();`
 * @throws std::bad_alloc.
 * T must be Sendable; a rejected T is a compile error that says why.
 */
template <class T>
std::pair<Sender<T>, Receiver<T>> unbounded_channel() {
  detail::check_sendable<T>();
  detail::check_channel_element<T>();
  if constexpr (detail::valid_channel_element<T>) {
    detail::ChannelCore<T>* core = new detail::QueueChannel<T, detail::SegmentedQueue<T>>();
    return {Sender<T>(core), Receiver<T>(core)};
  } else {
    return {};
  }
}

}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_CHANNEL_HPP

#ifndef OFFLOAD_DETAIL_ASIO_GATE_HPP
#define OFFLOAD_DETAIL_ASIO_GATE_HPP

/// @file detail/asio/gate.hpp
/// How continuations reach an Asio io_context safely (asio.hpp), written once for standalone
/// Asio and Boost.Asio: `Api` names one flavour's types and functions.
///
/// Each io_context gets a Gate, owned jointly by an Asio service of the io_context and by the
/// continuations on their way to it. While a continuation is pending, the gate holds a work
/// guard, so io_context::run() does not return. When the io_context is destroyed, Asio shuts
/// its services down first (the io_context still works then): the gate closes, drops its work
/// guard and destroys the executor copies the pending continuations would have posted to (a
/// strand's copy holds Asio state that must not outlive the io_context). A continuation that
/// arrives later finds the gate closed and is destroyed unrun: its future fails with
/// PoolClosed. Handlers already queued are destroyed by the io_context itself, with the same
/// outcome.

#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "../unique_function.hpp"

namespace offload {
inline namespace v0 {
namespace detail {
namespace asio_bridge {

/// Posts a function to the executor (a copy) it holds. By reference: if Asio cannot allocate
/// its operation, the function is still the caller's, to destroy outside the gate's lock.
using PostTo = UniqueFunction<void(UniqueFunction<void()>&)>;

/// One continuation on its way to the io_context: where it will be posted. Linked into its
/// gate's list while pending, so that the gate can destroy the executor copy at shutdown.
struct Pending {
  PostTo post_to;
  Pending* previous = nullptr;
  Pending* next = nullptr;
  bool linked = false;
};

template <class Api>
class Gate {
  using IoContext = typename Api::io_context;

 public:
  explicit Gate(IoContext& context) : context_(&context) {
    list_.previous = list_.next = &list_;
  }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  /// Registers a continuation that will post through `post_to`; the io_context keeps running
  /// until it has. On a closed gate the continuation is registered nowhere and will be dropped.
  std::unique_ptr<Pending> enlist(PostTo post_to) {
    auto pending = std::make_unique<Pending>();
    pending->post_to = std::move(post_to);
    std::lock_guard lock(mutex_);
    if (context_ == nullptr) return pending;
    if (!work_) work_.emplace(context_->get_executor());
    link(*pending);
    return pending;
  }

  /// Posts `f` where `pending` says, then lets the io_context go; on a closed gate `f` is
  /// destroyed instead (after the lock is released: its destructor completes a future, which
  /// may run the user's code).
  void post(std::unique_ptr<Pending> pending, UniqueFunction<void()> f) {
    std::lock_guard lock(mutex_);
    if (context_ == nullptr || !pending->linked) return;
    struct Delist {  // also when the post throws (Asio could not allocate): f is still ours
      Gate& gate;
      Pending& pending;
      ~Delist() { gate.unlink(pending); }
    } delist{*this, *pending};
    pending->post_to(f);
  }

  /// A continuation that will not post after all (destroyed unposted).
  void delist(std::unique_ptr<Pending> pending) noexcept {
    std::lock_guard lock(mutex_);
    if (pending->linked) unlink(*pending);
  }

  /// The io_context is shutting down (Asio calls its services first, while it still works):
  /// later posts are dropped, the work guard goes, and so do the executor copies.
  void close() noexcept {
    std::vector<PostTo> copies;
    {
      std::lock_guard lock(mutex_);
      context_ = nullptr;
      while (list_.next != &list_) {
        Pending& pending = *list_.next;
        copies.push_back(std::move(pending.post_to));
        unlink_only(pending);
      }
      work_.reset();
    }
  }

 private:
  /// Expects mutex_ held.
  void link(Pending& pending) noexcept {
    pending.previous = list_.previous;
    pending.next = &list_;
    list_.previous->next = &pending;
    list_.previous = &pending;
    pending.linked = true;
  }

  /// Expects mutex_ held. The last one out releases the work guard.
  void unlink(Pending& pending) noexcept {
    unlink_only(pending);
    if (list_.next == &list_) work_.reset();
  }

  static void unlink_only(Pending& pending) noexcept {
    pending.previous->next = pending.next;
    pending.next->previous = pending.previous;
    pending.previous = pending.next = nullptr;
    pending.linked = false;
  }

  std::mutex mutex_;
  IoContext* context_;                            // guarded by mutex_; null once closed
  std::optional<typename Api::work_guard> work_;  // guarded by mutex_; while one is pending
  Pending list_;                                  // guarded by mutex_; the pending ones
};

/// The io_context's service that owns its gate and closes it at shutdown.
template <class Api>
class GateService : public Api::execution_context::service {
 public:
  static inline typename Api::execution_context::id id;

  explicit GateService(typename Api::io_context& context)
      : Api::execution_context::service(context), gate_(std::make_shared<Gate<Api>>(context)) {}

  [[nodiscard]] std::shared_ptr<Gate<Api>> gate() const { return gate_; }

 private:
  void shutdown() override { gate_->close(); }

  std::shared_ptr<Gate<Api>> gate_;
};

/// keep_alive() of an io_context, executor or strand: holds the io_context's run() open until
/// the continuation is posted through it, and knows when the io_context is gone.
template <class Api>
class KeepAlive {
 public:
  KeepAlive(typename Api::io_context& context, PostTo post_to)
      : gate_(Api::template use_service<GateService<Api>>(context).gate()),
        pending_(gate_->enlist(std::move(post_to))) {}
  KeepAlive(KeepAlive&&) noexcept = default;
  KeepAlive& operator=(KeepAlive&&) = delete;
  ~KeepAlive() {
    if (pending_) gate_->delist(std::move(pending_));
  }

  /// Posts `f` to the executor, or destroys it if the io_context is gone. Once.
  void post(UniqueFunction<void()> f) && { gate_->post(std::move(pending_), std::move(f)); }

 private:
  std::shared_ptr<Gate<Api>> gate_;
  std::unique_ptr<Pending> pending_;
};

/// executor_traits for an io_context, one of its executors, or a strand of one.
template <class Api, class Executor>
struct Traits {
  static void post(Executor& executor, UniqueFunction<void()> f) {
    Api::post(executor, std::move(f));
  }
  static KeepAlive<Api> keep_alive(Executor& executor) {
    return KeepAlive<Api>(Api::context_of(executor),
                          [target = Api::target_of(executor)](UniqueFunction<void()>& f) mutable {
                            Api::post(target, std::move(f));
                          });
  }
};

}  // namespace asio_bridge
}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_ASIO_GATE_HPP

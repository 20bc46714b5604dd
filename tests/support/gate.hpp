#ifndef OFFLOAD_TESTS_GATE_HPP
#define OFFLOAD_TESTS_GATE_HPP

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace offload_test {

/// A one-shot gate: tasks block on it until the test opens it. The wait is bounded, so a bug
/// fails the test instead of hanging it.
class Gate {
 public:
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }
  /// Waits for open(); false when `limit` ran out first.
  bool wait(std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, limit, [&] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

}  // namespace offload_test

#endif  // OFFLOAD_TESTS_GATE_HPP

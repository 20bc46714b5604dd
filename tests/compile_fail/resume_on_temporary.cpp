// resume_on() refers to its executor while the coroutine runs on it: a temporary would be
// gone before the coroutine resumes there.
#include <offload/event_loop.hpp>
#include <offload/executor.hpp>
#include <offload/task.hpp>

#include <utility>

struct Loop {
  offload::EventLoop* loop;
};

template <>
struct offload::executor_traits<Loop> {
  static void post(Loop& where, offload::UniqueFunction<void()> f) {
    where.loop->post(std::move(f));
  }
  static offload::EventLoop::Hold keep_alive(Loop& where) { return where.loop->hold(); }
};

offload::Task<> hop(offload::EventLoop& loop) { co_await offload::resume_on(Loop{&loop}); }

int main() {
  offload::EventLoop loop;
  (void)offload::spawn(loop, hop(loop));
  loop.run();
}

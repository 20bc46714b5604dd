// Must not compile: the port's messages cross to the caller. channel<int*>() would already be
// refused, so this uses a Sender that refers to no channel: run_service itself must refuse it.
#include <offload/service.hpp>
int main() {
  offload::ThreadPool pool{{.threads = 1}};
  offload::Sender<int*> port;
  auto job = offload::run_service(
      pool, [](int x, offload::Sender<int*>& out) { return out.valid() ? x : 0; }, 1, port);
  return job.get();
}

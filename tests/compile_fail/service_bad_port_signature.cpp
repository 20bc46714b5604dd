// Must not compile: the port carries int, but the service expects a Sender<long>.
#include <offload/service.hpp>
int main() {
  offload::ThreadPool pool{{.threads = 1}};
  auto [tx, rx] = offload::unbounded_channel<int>();
  auto job = offload::run_service(
      pool, [](int x, offload::Sender<long>& out) { return out.send(long{x}); }, 1, std::move(tx));
  return rx.is_closed() ? 1 : 0;
}

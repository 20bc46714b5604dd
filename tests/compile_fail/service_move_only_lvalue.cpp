// Must not compile: the service gets its own copy of data, and a unique_ptr cannot be copied.
#include <memory>
#include <offload/service.hpp>
int main() {
  offload::ThreadPool pool{{.threads = 1}};
  auto data = std::make_unique<int>(1);
  auto job = offload::run_service(
      pool, [](std::unique_ptr<int> p) { return *p; }, data);
  return job.get();
}

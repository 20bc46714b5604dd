#include <offload/offload.hpp>

int run_in_a(offload::ThreadPool& pool);

int main() {
  offload::ThreadPool pool{{.threads = 2}};
  const int b = pool.submit([] { return 2; }).get();
  return run_in_a(pool) + b == 3 ? 0 : 1;
}

// Must not compile: a worker process calls the function by address, so no captured state.
#include <offload/process_pool.hpp>

int main() {
  offload::ProcessPool pool;
  int offset = 2;
  return pool.submit([offset](int x) { return x + offset; }, 1).get();
}

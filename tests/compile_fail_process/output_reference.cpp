// Must not compile: a non-const reference parameter would be changed in the worker's copy only.
#include <offload/process_pool.hpp>

void reset(int& value) { value = 0; }

int main() {
  offload::ProcessPool pool;
  int value = 5;
  pool.submit(reset, value).get();
  return value;
}

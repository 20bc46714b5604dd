// Must not compile: a function pointer has no default arguments, every one must be passed.
#include <offload/process_pool.hpp>

int add(int a, int b = 1) { return a + b; }

int main() {
  offload::ProcessPool pool;
  return pool.submit(add, 1).get();
}

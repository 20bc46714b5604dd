// Must not compile: a result type without a Codec cannot come back from a worker process.
#include <offload/process_pool.hpp>

struct NoCodec {
  int value;
};
NoCodec make(int value) { return NoCodec{value}; }

int main() {
  offload::ProcessPool pool;
  return pool.submit(make, 1).get().value;
}

// Must not compile: an argument type without a Codec cannot cross to a worker process.
#include <offload/process_pool.hpp>

struct NoCodec {
  int value;
};
int read_value(NoCodec n) { return n.value; }

int main() {
  offload::ProcessPool pool;
  return pool.submit(read_value, NoCodec{1}).get();
}

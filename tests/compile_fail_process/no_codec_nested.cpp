// Must not compile, and the message must name NoCodec (not the vector or map around it).
#include <offload/process_pool.hpp>

#include <map>
#include <vector>

struct NoCodec {
  int value;
};
std::size_t count(std::vector<std::map<int, NoCodec>> values) { return values.size(); }

int main() {
  offload::ProcessPool pool;
  return static_cast<int>(pool.submit(count, std::vector<std::map<int, NoCodec>>{}).get());
}

// Must not compile: the user specialised offload::is_sendable to false for Secret, and a
// container of it inherits the verdict.
#include <offload/channel.hpp>
#include <vector>

struct Secret {
  int key = 0;
};
template <>
struct offload::is_sendable<Secret> : std::false_type {};

int main() {
  auto [tx, rx] = offload::channel<std::vector<Secret>>(4);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

// Must not compile: the reference inside the pair.
#include <offload/channel.hpp>
#include <utility>
int main() {
  auto [tx, rx] = offload::channel<std::pair<int, const int&>>(4);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

// Must not compile: the std::span inside the tuple.
#include <offload/channel.hpp>
#include <span>
#include <tuple>
int main() {
  auto [tx, rx] = offload::channel<std::tuple<int, std::span<int>>>(4);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

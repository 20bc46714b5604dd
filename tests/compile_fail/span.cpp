// Must not compile: std::span refers to memory it does not own.
#include <offload/channel.hpp>
#include <span>
int main() {
  auto [tx, rx] = offload::unbounded_channel<std::span<int>>();
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

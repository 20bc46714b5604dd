// Must not compile: std::shared_ptr<int> shares a mutable int between threads.
#include <memory>
#include <offload/channel.hpp>
int main() {
  auto [tx, rx] = offload::channel<std::shared_ptr<int>>(4);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

// Must not compile: std::weak_ptr refers to an object shared between threads.
#include <memory>
#include <offload/channel.hpp>
int main() {
  auto [tx, rx] = offload::channel<std::weak_ptr<const int>>(0);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

// Must not compile: std::reference_wrapper refers to an object it does not own.
#include <functional>
#include <offload/channel.hpp>
int main() {
  auto [tx, rx] = offload::channel<std::reference_wrapper<int>>(4);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

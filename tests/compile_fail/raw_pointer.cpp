// Must not compile: a raw pointer shares the pointee with the receiving thread.
#include <offload/channel.hpp>

int main() {
  auto [tx, rx] = offload::channel<int*>(4);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

// Must not compile: std::mutex cannot be moved into a channel.
#include <mutex>
#include <offload/channel.hpp>
int main() {
  auto [tx, rx] = offload::channel<std::mutex>(4);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

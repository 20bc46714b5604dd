// Must not compile: a reference points into the sender's memory.
#include <offload/channel.hpp>

int main() {
  auto [tx, rx] = offload::channel<int&>(4);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

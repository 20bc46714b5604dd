// Must not compile: values are moved out of a channel, so T cannot be const.
#include <offload/channel.hpp>

int main() {
  auto [tx, rx] = offload::channel<const int>(4);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

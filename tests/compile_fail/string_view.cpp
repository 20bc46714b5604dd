// Must not compile: std::string_view refers to memory it does not own.
#include <offload/channel.hpp>
#include <string_view>
int main() {
  auto [tx, rx] = offload::channel<std::string_view>(4);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

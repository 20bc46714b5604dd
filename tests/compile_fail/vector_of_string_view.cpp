// Must not compile: the std::string_view inside the vector.
#include <offload/channel.hpp>
#include <string_view>
#include <vector>
int main() {
  auto [tx, rx] = offload::channel<std::vector<std::string_view>>(4);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

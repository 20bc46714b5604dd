// Must not compile: an alternative of the variant is a std::string_view.
#include <offload/channel.hpp>
#include <string_view>
#include <variant>
int main() {
  auto [tx, rx] = offload::channel<std::variant<int, std::string_view>>(4);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

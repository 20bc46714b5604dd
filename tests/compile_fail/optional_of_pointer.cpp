// Must not compile: the raw pointer inside the optional.
#include <offload/channel.hpp>
#include <optional>
int main() {
  auto [tx, rx] = offload::unbounded_channel<std::optional<int*>>();
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

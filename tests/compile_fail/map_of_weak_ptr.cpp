// Must not compile: the std::weak_ptr values of the map.
#include <map>
#include <memory>
#include <offload/channel.hpp>
int main() {
  auto [tx, rx] = offload::channel<std::map<int, std::weak_ptr<int>>>(4);
  return tx.is_closed() && rx.is_closed() ? 0 : 1;
}

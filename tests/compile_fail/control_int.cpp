// Must compile: the control case, proving that the other files fail for their own reason and
// not because the harness or the headers are broken.
#include <offload/channel.hpp>
#include <offload/shared_buffer.hpp>
#include <string>
#include <vector>

int main() {
  auto [tx, rx] = offload::channel<std::vector<std::string>>(4);
  offload::SharedBuffer<int> buffer(4);
  return tx.is_closed() || rx.is_closed() || buffer.size() != 4 ? 1 : 0;
}

// Must not compile: SharedBuffer elements are read and written in place by several threads, so
// they must be trivially copyable.
#include <offload/shared_buffer.hpp>
#include <string>

int main() {
  offload::SharedBuffer<std::string> buffer(4);
  return static_cast<int>(buffer.size());
}

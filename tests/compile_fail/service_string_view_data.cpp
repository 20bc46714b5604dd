// Must not compile: a service's data is its own copy, and a std::string_view would be a view
// into the caller's memory.
#include <offload/service.hpp>
#include <string_view>
int main() {
  offload::ThreadPool pool{{.threads = 1}};
  auto length = offload::run_service(
      pool, [](std::string_view text) { return text.size(); }, std::string_view("hello"));
  return length.get() == 5 ? 0 : 1;
}

// Must not compile: the service takes two numbers, but it is called with its data alone.
#include <offload/service.hpp>
#include <string>
int main() {
  offload::ThreadPool pool{{.threads = 1}};
  auto sum = offload::run_service(
      pool, [](int a, int b) { return a + b; }, std::string("1"));
  return sum.get();
}

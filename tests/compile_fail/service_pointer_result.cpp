// Must not compile: a service's result crosses back to the caller, and a raw pointer would
// share whatever it points to.
#include <offload/service.hpp>
#include <vector>
int main() {
  offload::ThreadPool pool{{.threads = 1}};
  static std::vector<int> table{1, 2, 3};
  auto found = offload::run_service(
      pool, [](int i) { return &table[static_cast<unsigned>(i)]; }, 1);
  return *found.get() == 2 ? 0 : 1;
}

// The program every consumer project builds: it must compile against the installed or
// embedded offload and print the answer computed on a pool.
#include <offload/offload.hpp>

#include <cstdio>

int main() {
  offload::ThreadPool pool{{.threads = 2}};
  const int answer = pool.submit([](int a, int b) { return a * b; }, 6, 7).get();
  std::printf("offload %d.%d.%d says %d\n", OFFLOAD_VERSION_MAJOR, OFFLOAD_VERSION_MINOR,
              OFFLOAD_VERSION_PATCH, answer);
  return answer == 42 ? 0 : 1;
}

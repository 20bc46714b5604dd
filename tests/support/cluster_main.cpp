// main() of the cluster tests: every rank joins the MPI job; ranks 1..N-1 serve calls until
// rank 0, which runs the Catch2 cases, returns. Without mpirun it is rank 0 alone, and
// ClusterPool runs its calls locally.
#include <offload/cluster.hpp>

#include <cstdio>
#include <cstdlib>

// This file compiles Catch2's implementation, and g++ 12 warns falsely
// (-Wmaybe-uninitialized) inside the <regex> that implementation uses.
#define CATCH_CONFIG_RUNNER
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "catch.hpp"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

int main(int argc, char** argv) {
  offload::process_init();
  if (offload::serve_cluster(argc, argv)) return 0;
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (size != nullptr && std::atoi(size) > 1 && offload::ClusterPool().ranks() != 2) {
    std::fprintf(stderr, "cluster_test expects mpirun -np 3 (one driver, two serving ranks), "
                         "or -np 1\n");
    return 2;
  }
  return Catch::Session().run(argc, argv);
}

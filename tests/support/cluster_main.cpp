// main() of the cluster tests: every rank joins the MPI job; ranks 1..N-1 serve calls until
// rank 0, which runs the Catch2 cases, returns. Without mpirun it is rank 0 alone, and
// ClusterPool runs its calls locally.
#include <offload/cluster.hpp>

#include <cstdio>
#include <cstdlib>

#include "catch_session.hpp"

int main(int argc, char** argv) {
  offload::process_init();
  if (offload::serve_cluster(argc, argv)) return 0;
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (size != nullptr && std::atoi(size) > 1 && offload::ClusterPool().ranks() != 2) {
    std::fprintf(stderr, "cluster_test expects mpirun -np 3 (one driver, two serving ranks), "
                         "or -np 1\n");
    return 2;
  }
  return offload_test::run_catch_session(argc, argv);
}

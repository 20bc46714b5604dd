#ifndef OFFLOAD_DETAIL_CLUSTER_LAUNCH_HPP
#define OFFLOAD_DETAIL_CLUSTER_LAUNCH_HPP

/// @file detail/cluster/launch.hpp
/// Whether this process was started by an MPI launcher. A program run without mpirun must not
/// start MPI at all: Open MPI would then start a "singleton" runtime of its own (a daemon
/// process and seconds of start-up) only to find it is alone.

#include <cstdlib>

namespace offload {
inline namespace v0 {
namespace detail {

/// True when mpirun/mpiexec (Open MPI's or a PMI-based one such as MPICH's or Slurm's srun)
/// started this process: each sets one of these in every rank's environment.
inline bool launched_by_mpi() noexcept {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

}  // namespace detail
}  // namespace v0
}  // namespace offload

#endif  // OFFLOAD_DETAIL_CLUSTER_LAUNCH_HPP

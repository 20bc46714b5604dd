// Jobs that end badly, each run under mpirun by tests/cluster/run_job.sh (tests/CMakeLists.txt):
//   kill-rank  a serving rank is killed with SIGKILL while it runs calls: the driver must get
//              ClusterError, or the MPI runtime must end the job with a non-zero status
//   throw      an exception escapes the driver's main with calls in flight: the job ends
//              (MPI_Abort), with a non-zero status, instead of leaving the ranks waiting
//   refuse     rank 0 and the serving ranks run different programs (this file is built twice,
//              with OFFLOAD_FAULTS_VARIANT 1 and 2): ClusterPool refuses with ClusterError
//   end        one call, then the pool and main end at once: the job must end with status 0
//              (run many times: the driver once ended without telling a rank to finish, in
//              2 of 60 jobs, and the job hung)
//   end-open   main returns with a pool still open (a global, destroyed after the cluster
//              ended) and 200 calls queued or running, whose answers are 64 KiB each: the job
//              must end with status 0 (the answers still coming once main returned had ended
//              it with status 70, and big answers to a finished driver could hang a rank)
#include <offload/cluster.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#ifndef OFFLOAD_FAULTS_VARIANT
#define OFFLOAD_FAULTS_VARIANT 1
#endif
#define OFFLOAD_FAULTS_STRING2(x) #x
#define OFFLOAD_FAULTS_STRING(x) OFFLOAD_FAULTS_STRING2(x)

namespace {

const char* const variant = "cluster_faults variant " OFFLOAD_FAULTS_STRING(OFFLOAD_FAULTS_VARIANT);

/// The parent of `pid`, from /proc (field 4 of /proc/PID/stat).
int parent_of(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  std::istringstream fields(line.substr(line.rfind(')') + 2));
  char state = 0;
  int parent = 0;
  fields >> state >> parent;
  return parent;
}

/// Which rank runs a call, and the pid of that rank's own process (a worker's parent is its
/// fork server, whose parent is the rank).
std::pair<int, int> rank_and_pid(int) {
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  return {rank == nullptr ? -1 : std::atoi(rank), parent_of(::getppid())};
}

int sleep_then_return(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

int kill_rank() {
  offload::ClusterPool cluster({.workers_per_rank = 1});
  int victim = 0;
  for (int i = 0; i < 50 && victim == 0; ++i) {
    std::vector<offload::Future<std::pair<int, int>>> probes;
    for (int j = 0; j < 4; ++j) probes.push_back(cluster.submit(rank_and_pid, j));
    for (auto& probe : probes) {
      const auto [rank, pid] = probe.get();
      if (rank == 2) victim = pid;
    }
  }
  if (victim == 0) {
    std::printf("no call ran on rank 2\n");
    return 0;  // without the expected line: the test fails
  }
  std::vector<offload::Future<int>> calls;
  for (int i = 0; i < 20; ++i) calls.push_back(cluster.submit(sleep_then_return, 200));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::printf("killing rank 2 (pid %d)\n", victim);
  std::fflush(stdout);
  ::kill(victim, SIGKILL);
  for (auto& call : calls) {
    try {
      call.get();
    } catch (const offload::ClusterError& error) {
      std::printf("ClusterError: %s\n", error.what());
      return 0;
    }
  }
  std::printf("every call succeeded although rank 2 was killed\n");
  return 0;
}

int throw_from_main() {
  offload::ClusterPool cluster({.workers_per_rank = 1});
  auto pending = cluster.submit(sleep_then_return, 60'000);
  std::printf("throwing out of main with a call in flight\n");
  std::fflush(stdout);
  throw std::runtime_error("the driver gives up");
}

int refuse() {
  try {
    offload::ClusterPool cluster({.workers_per_rank = 1});
    std::printf("%s: the pool was made although the programs differ\n", variant);
    return 1;
  } catch (const offload::ClusterError& error) {
    std::printf("refused: %s\n", error.what());
    return 0;
  }
}

/// Sleeps `ms`, then answers with 64 KiB: more than MPI sends eagerly.
std::vector<double> sleep_then_answer_big(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return std::vector<double>(8192, double(ms));
}

std::optional<offload::ClusterPool> global_pool;  // destroyed after the cluster ended

int end_with_pool_open() {
  global_pool.emplace(offload::ClusterOptions{.workers_per_rank = 1});
  std::vector<offload::Future<std::vector<double>>> calls;
  for (int i = 0; i < 200; ++i) {
    calls.push_back(global_pool->submit(sleep_then_answer_big, 1 + i % 2));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return 0;  // the futures go, the calls do not: the pool is still open
}

int end_at_once() {
  {
    offload::ClusterPool cluster({.workers_per_rank = 1});
    if (cluster.submit(sleep_then_return, 0).get() != 0) return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  offload::process_init();
  if (offload::serve_cluster(argc, argv)) return 0;
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "kill-rank") return kill_rank();
  if (mode == "throw") return throw_from_main();
  if (mode == "refuse") return refuse();
  if (mode == "end") return end_at_once();
  if (mode == "end-open") return end_with_pool_open();
  std::fprintf(stderr, "usage: %s kill-rank|throw|refuse|end|end-open\n", argv[0]);
  return 2;
}

// Beyond one machine: the heavy array of examples 01-03 over the ranks of an MPI job.
//
// The same calls as examples/02_background_process.cpp, made on a ClusterPool instead of a
// ProcessPool: rank 0 drives, every other rank runs the calls in worker processes of its own.
// The array is cut into parts of 10 items; each part reports which rank and which process ran
// it. Part 4 crashes with SIGSEGV (as a null dereference would) and part 7 never returns: the
// first fails with WorkerCrashed (after a retry on the other rank), the second with
// CallTimeout, and every other part still arrives. Without mpirun the same program runs the
// parts in a local ProcessPool.
//
// Build: cmake --build <dir> --target 04_cluster   (built when CMake finds MPI)
// Run:   mpirun -np 3 build/<dir>/examples/04_cluster       (in a container as root, see
//        docs/cluster.md: OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1, and
//        --oversubscribe --bind-to none --mca btl self,vader on a small machine)
//        --quick: 100 items instead of 400

#include <offload/cluster.hpp>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr int items_per_part = 10;
constexpr int crashing_part = 4;
constexpr int hanging_part = 7;

double heavy_item(int i) {
  double s = 0;
  for (int k = 0; k < 200000; ++k) s += std::sqrt(double(k) * double(i % 7 + 1) + 1.0);
  return s;
}

/// Who ran a part: the MPI rank (Open MPI tells every process of the job its rank in the
/// environment, and the workers inherit it) and the worker process.
struct PartResult {
  double sum = 0;
  int rank = -1;
  int pid = 0;
};

int rank_here() {
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  return rank == nullptr ? -1 : std::atoi(rank);
}

/// What a worker runs: items [first, first + count), except for the two parts that misbehave.
PartResult run_part(int part, int first, int count) {
  if (part == crashing_part) std::raise(SIGSEGV);  // what a stray null pointer would do
  if (part == hanging_part) {
    for (;;) ::pause();  // a deadlock, an endless loop, a read that never returns...
  }
  PartResult result;
  for (int i = first; i < first + count; ++i) result.sum += heavy_item(i);
  result.rank = rank_here();
  result.pid = static_cast<int>(::getpid());
  return result;
}

double milliseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

// A result type of the program's own crosses through its Codec, as with ProcessPool.
template <>
struct offload::Codec<PartResult> {
  static void encode(Writer& out, const PartResult& r) {
    out.write(r.sum);
    out.write(r.rank);
    out.write(r.pid);
  }
  static PartResult decode(Reader& in) {
    PartResult r;
    r.sum = in.read<double>();
    r.rank = in.read<int>();
    r.pid = in.read<int>();
    return r;
  }
};

int main(int argc, char** argv) {
  offload::process_init();                           // before MPI starts its threads
  if (offload::serve_cluster(argc, argv)) return 0;  // ranks 1..N-1 serve until rank 0 ends

  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int items = quick ? 100 : 400;
  const int parts = items / items_per_part;

  offload::ClusterPool cluster({.workers_per_rank = 1,
                                .max_call_time = std::chrono::milliseconds(1000),
                                .max_retries = 1});
  if (cluster.ranks() == 0) {
    std::printf("no mpirun: the parts run in a local ProcessPool (try mpirun -np 3 %s)\n", argv[0]);
  } else {
    std::printf("%u serving ranks, one worker process each\n", cluster.ranks());
  }

  const auto start = std::chrono::steady_clock::now();
  std::vector<offload::Future<PartResult>> futures;
  for (int part = 0; part < parts; ++part) {
    futures.push_back(cluster.submit(run_part, part, part * items_per_part, items_per_part));
  }

  double total = 0;
  std::map<std::pair<int, int>, int> parts_by_process;  // (rank, pid) -> parts
  for (int part = 0; part < parts; ++part) {
    try {
      const PartResult r = futures[static_cast<std::size_t>(part)].get();
      total += r.sum;
      ++parts_by_process[{r.rank, r.pid}];
    } catch (const offload::WorkerCrashed& error) {
      std::printf("part %2d: WorkerCrashed: %s\n", part, error.what());
    } catch (const offload::CallTimeout& error) {
      std::printf("part %2d: CallTimeout:   %s\n", part, error.what());
    }
  }
  const double cluster_ms = milliseconds_since(start);

  for (const auto& [where, count] : parts_by_process) {
    const std::string rank = where.first < 0 ? "local" : "rank " + std::to_string(where.first);
    std::printf("%s, worker pid %d: %d part%s\n", rank.c_str(), where.second, count,
                count == 1 ? "" : "s");
  }
  for (const offload::RankStats& rank : cluster.stats().per_rank) {
    std::printf("rank %d: %llu calls sent, %llu completed, %llu failed\n", rank.rank,
                static_cast<unsigned long long>(rank.sent),
                static_cast<unsigned long long>(rank.completed),
                static_cast<unsigned long long>(rank.failed));
  }

  // The check: the same sums computed here, leaving out the two parts that misbehaved.
  const auto serial_start = std::chrono::steady_clock::now();
  double expected = 0;
  for (int part = 0; part < parts; ++part) {
    if (part == crashing_part || part == hanging_part) continue;
    double sum = 0;  // added up as the worker does, so that the two totals are equal exactly
    for (int i = part * items_per_part; i < (part + 1) * items_per_part; ++i) sum += heavy_item(i);
    expected += sum;
  }
  const double serial_ms = milliseconds_since(serial_start);
  std::printf("%s: %.0f ms on the cluster (including the 1000 ms the hung part was given), "
              "%.0f ms serially here\n",
              total == expected ? "every other part arrived, its sum equal to the serial one"
                                : "MISMATCH with the serial sum",
              cluster_ms, serial_ms);
  return total == expected ? 0 : 1;
}

// Compiling candidates ahead of measurement, on the CPU cores the GPU workers leave free. Binaries land in the
// runtime's file cache under the exact names Runtime::Load looks for, so the worker loads
// them instead of compiling; ptxas's resource report decides compile pruning.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "parallax/codegen/space.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/device.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "parallax/search/thread_pool.h"

namespace parallax::search {

struct CompileTarget {
  std::string arch;           // the device's: "sm_90" (a family may add a suffix: CompileArch)
  std::string nvrtc_version;  // "13.0"
  int driver_version = 0;     // informational: binaries do not depend on it (binary_cache.h)
  std::string cache_dir;      // the worker's Runtime cache_dir
  DeviceLimits limits;        // for compile pruning
};
CompileTarget TargetFor(const DeviceInfo& dev, const std::string& cache_dir);

// The arch v is compiled for: the device's plus its family's suffix ("sm_90a" for a wgmma
// variant on an sm_90 GPU), as Runtime::Load does. A variant whose family does not run on
// the device is never compiled (NvrtcCompileFn prunes it, NotOnDeviceReason says why).
std::string CompileArch(const CompileTarget& t, const Variant& v);

// The runtime's default binary cache: $PARALLAX_CACHE_DIR, ~/.cache/parallax, /tmp/parallax-cache.
std::string DefaultCacheDir();

// The file name and path Runtime::Load gives v's binary (runtime/binary_cache.h, which both
// use): the name hashes CompileArch, the path is <cache_dir>/<CompileArch>/<name>.cubin.
std::string ArtifactName(const Variant& v, const std::string& source, const CompileTarget& t);
std::string ArtifactPath(const CompileTarget& t, const Variant& v, const std::string& artifact);

struct CompileOutcome {
  enum class Kind { kKeep, kPruned, kFailed };
  Kind kind = Kind::kFailed;
  std::string reason;                   // kPruned / kFailed
  std::vector<KernelResources> kernels;
  double compile_ms = 0;
  bool cached = false;                  // answered from an earlier compile's report
};

// Compiles one compile class (variants differing only in split count; see CompileClassKey)
// and makes its binary available for every member.
using CompileFn = std::function<CompileOutcome(const std::vector<Variant>& members)>;
CompileFn NvrtcCompileFn(const CompileTarget& t);

// Classes are compiled by a thread pool ahead of the measurements, most needed first; a
// measurement waiting for a class nobody has started compiles it itself, so whatever the
// strategy asks for next is never stuck behind the queue.
//
// Need order: each Schedule call is one unit's asking order, and a class's priority is its
// best position in any call's list. Units tuned at once on several GPUs thus get their
// first candidates compiled side by side (A's 1st, B's 1st, A's 2nd, ...) instead of B
// waiting behind all of A's space: compiles are shared between buckets, the order is not.
class CompileQueue {
 public:
  CompileQueue(CompileFn fn, int threads);
  ~CompileQueue();

  void Schedule(const std::vector<Variant>& in_order);
  CompileOutcome Wait(const Variant& v);
  void Cancel();  // drops classes not started

  struct Stats {
    int classes = 0, done = 0, cached = 0, pruned = 0, failed = 0;
    int threads = 0;      // the pool's size
    int inline_runs = 0;  // classes a waiting measurement compiled itself (the pool was behind)
    double cpu_s = 0;     // CPU time in the compile function, all threads (NVRTC + ptxas)
    double busy_s = 0;    // wall time in the compile function, summed over threads
    double wall_s = 0;    // first compile start to last compile end (0: none ran)
  };
  Stats stats();

 private:
  struct Entry;
  std::shared_ptr<Entry> EntryFor(const Variant& v);  // creates a single-member class if new
  void RunNext();                                     // a pool task: the most needed queued class
  void Compile(Entry& e, bool inline_run);            // e is marked running by the caller

  CompileFn fn_;
  std::mutex mu_;
  std::condition_variable done_cv_;
  std::map<std::string, std::shared_ptr<Entry>> classes_;  // by class key
  // Queued classes by (priority, first-scheduled sequence): what a free thread takes next.
  std::set<std::tuple<int64_t, uint64_t, Entry*>> pending_;
  uint64_t next_seq_ = 0;
  Stats stats_;
  double first_start_ = -1, last_end_ = -1;
  std::unique_ptr<ThreadPool> pool_;  // last: joined before the entries go
};

}  // namespace parallax::search

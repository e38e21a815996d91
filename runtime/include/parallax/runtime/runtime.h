// The Parallax runtime: picks a kernel variant, JIT-compiles it once with NVRTC for the
// device in hand (memory + on-disk binary cache), and launches it on the caller's stream.
// Variant choice: an explicit key, else a tuned config, else the built-in default. Tuned
// configs come from the SQLite tuning DB at RuntimeOptions::db_path, which the runtime opens
// itself, read-only (it links cache/), and/or from a lookup the caller installs
// (SetTunedLookup). Compiled binaries are kept as files under cache_dir (binary_cache.h).
//
// Plan/run split: Plan*() resolves the variant, the launch grid and the workspace size
// (host only, cheap after the first call); Run*() launches. Decode()/Prefill() do both.
// No call allocates or synchronizes when the caller provides the workspace, so launches are
// CUDA-graph safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/generator.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/device.h"
#include "parallax/runtime/kernel_call.h"

namespace parallax {

// Where a variant came from, strongest first.
enum class Choice { kExplicit, kTunedExact, kTunedNearest, kDefault };
const char* ToString(Choice c);

struct RuntimeOptions {
  int device = 0;
  std::string cache_dir;  // compiled binaries; "" = $PARALLAX_CACHE_DIR or ~/.cache/parallax
  // Tuning DB to read tuned configs from, read-only; "" = none. A missing file has no tuned
  // configs (and is looked for again later). The C API fills it with ResolveDbPath() below,
  // so its default is the shared location; C++ callers that want that do the same.
  std::string db_path;
  // Split-KV decodes run eagerly (outside stream capture) as their one-launch twin
  // (OneLaunchTwin, kernel_family.h): a launch costs the host more than the fused merge costs
  // the GPU when nothing is captured. Captured runs keep the chosen variant. $PARALLAX_EAGER_ONE_LAUNCH=0
  // turns it off for every runtime.
  bool eager_one_launch = true;
};

// The tuning DB under the one rule of cache/paths.h: `requested` when not empty, else
// $PARALLAX_DB, else $XDG_DATA_HOME/parallax/tuner.db (~/.local/share/parallax/tuner.db);
// "" when that is "none".
std::string ResolveDbPath(const std::string& requested);

struct DecodePlan {
  Variant variant;
  Choice choice = Choice::kDefault;
  int num_splits = 1;
  size_t workspace_bytes = 0;
  // What a run outside stream capture launches instead of `variant` (RuntimeOptions::
  // eager_one_launch); the same split count and workspace. Not for explicit variants.
  std::optional<Variant> eager;
};

// Whether the caller can run a stored variant key (ChooseTunedOrDefault passes its checks).
// Empty: every key is taken.
using TunedKeyFilter = std::function<bool(const std::string& variant_key)>;

// Where non-explicit plans get tuned configs (Runtime::SetTunedLookup): the key for (problem,
// bucket) and whether it is the exact bucket's or the nearest one's. Rows the filter rejects
// are passed over, so that one bad row (it comes from a file or a service) does not hide a
// usable row of a farther bucket: the answer is the nearest row the filter accepts.
using TunedLookupFn = std::function<absl::StatusOr<std::pair<std::string, Choice>>(
    const Problem&, const Algorithm&, const ShapeBucket&, const TunedKeyFilter&)>;

// The non-explicit choice, one rule for every mode: the nearest key the lookup holds (exact
// bucket first) that parses, is for (p, a) and whose family runs on sm (0: any); else the
// family default on sm. What a lookup returns comes from a file or a service: a key that
// fails any of those checks is skipped, never an error. No memo (Runtime's wraps it).
absl::StatusOr<Variant> ChooseTunedOrDefault(const TunedLookupFn& lookup, const Problem& p, const Algorithm& a,
                                             const ShapeBucket& bucket, int sm, Choice* choice);

struct LoadedKernel;  // module + functions, owned by the runtime
class TunedStore;    // the tuning DB (runtime/src/tuned_store.h), opened when db_path is set

class Runtime {
 public:
  static absl::StatusOr<std::unique_ptr<Runtime>> Create(const RuntimeOptions& options);
  ~Runtime();

  const DeviceInfo& device() const { return device_; }

  // Plan*() checks the call (CheckDecodeCall / CheckPrefillCall) and chooses the variant;
  // Run*() launches the plan with the call's kernel parameters, adding only what the plan
  // decides. The *Args forms convert with ToDecodeCall / ToPrefillCall; the C API passes the
  // DecodeCall / PrefillCall its own validation built.
  absl::StatusOr<DecodePlan> PlanDecode(const DecodeArgs& a);
  absl::StatusOr<DecodePlan> PlanDecode(const DecodeCall& c);
  // With a variant the caller already holds instead of a.variant_key (which must be empty):
  // for the tuner's worker, whose test-only variants (parsed with an explicit opt-in) no key
  // path of the runtime accepts.
  absl::StatusOr<DecodePlan> PlanDecode(const DecodeArgs& a, const Variant& v);
  absl::Status RunDecode(const DecodePlan& plan, const DecodeArgs& a, CUstream stream);
  absl::Status RunDecode(const DecodePlan& plan, const DecodeCall& c, CUstream stream);
  absl::Status Decode(const DecodeArgs& a, CUstream stream);

  absl::StatusOr<Variant> PlanPrefill(const PrefillArgs& a, Choice* choice = nullptr);
  absl::StatusOr<Variant> PlanPrefill(const PrefillCall& c, Choice* choice = nullptr);
  absl::Status RunPrefill(const Variant& v, const PrefillArgs& a, CUstream stream);
  absl::Status RunPrefill(const Variant& v, const PrefillCall& c, CUstream stream);
  absl::Status Prefill(const PrefillArgs& a, CUstream stream);

  // Loads a plan's kernel and reserves the runtime-owned buffers its launches use (the fused
  // merge's counters, persistent prefill's tile counters, and the split-KV workspace when the
  // call brings none), so that later runs of the plan neither compile nor allocate: the C
  // API's plan objects do this once at creation, which keeps their runs graph-safe.
  absl::Status PrepareDecode(const DecodePlan& plan, const DecodeCall& c);
  absl::Status PreparePrefill(const Variant& v, const PrefillCall& c);

  // Workspace bytes a decode with these sizes needs for num_splits partials.
  static size_t DecodeWorkspaceBytes(const Variant& v, int batch, int num_splits);
  // Split count filling the device: enough CTAs for the resident slots, keys per split >= 2 tiles.
  int AutoSplits(const Variant& v, int batch, int max_seqlen);

  // Binds the runtime's (primary) context to the calling thread, for callers that then use
  // the driver API themselves (tests, benchmarks).
  absl::Status MakeCurrent();

  // Compiles (or loads from cache) without launching; for tools and benchmarks.
  absl::StatusOr<const LoadedKernel*> Load(const Variant& v);

  // plx_merge_states's kernel (generator.h MergeKernel) over p.rows rows (kernel_abi.h
  // PlxMergeParams): compiled on first use and kept like a variant's kernel (binary cache
  // included). PrepareMerge loads it ahead, so RunMerge then only launches: no compile, no
  // allocation, no synchronization (graph-safe). p is taken as given: the C API checks it.
  absl::Status PrepareMerge(const MergeKernel& m);
  absl::Status RunMerge(const MergeKernel& m, const PlxMergeParams& p, CUstream stream);

  // Where non-explicit decode and prefill plans get tuned configs, by shape bucket
  // (codegen/bucket.h: decode BucketFor, prefill PrefillBucketFor). With options.db_path, Create() opens
  // that SQLite tuning DB itself, read-only (TunedStore over cache/'s Store, linked into the runtime core
  // and libparallax.so) and installs its lookup; otherwise there is none until a caller sets
  // one. Callers may replace it or chain another after it (service/runtime_lookup.h asks a
  // tuning service for what the local DB lacks).
  using TunedLookup = TunedLookupFn;
  void SetTunedLookup(TunedLookup f);
  TunedLookup tuned_lookup();  // the current one (empty: none), to chain another after it

  // The non-explicit choice (ChooseTunedOrDefault on this device), memoized per (problem,
  // bucket) for a second: plans outside this class (the backward, backward.h) take it too, so
  // a steady stream of calls asks the tuning DB at most once a second per problem and bucket.
  absl::StatusOr<Variant> TunedOrDefault(const Problem& p, const Algorithm& a, const ShapeBucket& bucket,
                                         Choice* choice);

 private:
  explicit Runtime(const RuntimeOptions& o, DeviceInfo d, CUcontext ctx);
  struct GrowBuffer {
    CUdeviceptr ptr = 0;
    size_t size = 0;
    std::vector<CUdeviceptr> retired;  // outgrown, kept until destruction (graphs may use them)
  };
  absl::StatusOr<void*> Ensure(GrowBuffer& buf, size_t bytes);
  // Decode scratch, one set per stream: split partials and fused-merge counters of decodes in
  // flight together on different streams must not share memory. Allocating cannot be
  // captured, so a capture whose stream has no large enough set of its own uses the set plans
  // prepare ahead (PrepareDecode), kept under the null stream's key (the legacy stream's own).
  struct DecodeScratch {
    GrowBuffer workspace;  // split-KV partials when the caller passes none
    GrowBuffer counters;   // fused-merge split counters (always runtime-owned)
  };
  absl::StatusOr<void*> Scratch(GrowBuffer DecodeScratch::*which, size_t bytes, CUstream stream, bool capturing);
  absl::StatusOr<const LoadedKernel*> LoadMerge(const MergeKernel& m);
  // The fused merge's split counters for a launch of v over `batch` sequences in num_splits.
  absl::StatusOr<int*> DecodeCounters(const Variant& v, int batch, int num_splits, CUstream stream, bool capturing);
  bool Capturing(CUstream stream) const;
  absl::StatusOr<int*> WorkCounters();  // all kWorkCounterPairs pairs
  absl::StatusOr<DecodePlan> PlanDecodeWith(const DecodeCall& c, const Variant* given);
  absl::Status LaunchDecode(const DecodePlan& plan, PlxDecodeParams p, int64_t num_pages, void* workspace,
                            size_t workspace_bytes, CUstream stream);
  absl::Status LaunchPrefill(const Variant& v, const PrefillCall& c, CUstream stream);

  RuntimeOptions options_;
  DeviceInfo device_;
  CUcontext ctx_ = nullptr;
  std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<LoadedKernel>> kernels_;  // by variant key
  std::unordered_map<std::string, std::shared_ptr<std::mutex>> build_mu_;  // per variant key
  TunedLookup tuned_;
  // A non-explicit plan's choice per "<problem key>|<bucket>", reused for a second:
  // decode and prefill are planned on every call, and asking the tuning DB (SQLite) or a service each
  // time would cost more than the kernel; a second bounds how late new tuned configs show.
  struct ChoiceMemo {
    std::optional<Variant> variant;
    Choice choice = Choice::kDefault;
    std::chrono::steady_clock::time_point until;
  };
  std::unordered_map<std::string, ChoiceMemo> choice_memo_;  // under mu_
  std::unique_ptr<TunedStore> db_;  // when options.db_path is set: tuned configs
  std::unordered_map<CUstream, DecodeScratch> decode_scratch_;  // under mu_; node-based, so references stay valid
  // Persistent prefill tile counters: kWorkCounterPairs pairs taken in rotation, so launches
  // in flight together (other streams, graphs) each count their own tiles.
  static constexpr int kWorkCounterPairs = 1024;
  GrowBuffer work_counters_;
  std::atomic<unsigned> next_work_counter_{0};
};

// Built-in defaults, decent on sm_80 and sm_90 (used when nothing tuned applies): the
// family's (KernelFamily::Default), made canonical. p.mode must match the name.
inline Schedule DefaultDecodeSchedule(const Problem& p, const Algorithm& a) { return DefaultSchedule(p, a); }
inline Schedule DefaultPrefillSchedule(const Problem& p, const Algorithm& a) { return DefaultSchedule(p, a); }

}  // namespace parallax

#include "parallax/runtime/runtime.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/generator.h"
#include "parallax/runtime/binary_cache.h"
#include "parallax/runtime/cuda_driver.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "loaded_kernel.h"
#include "tma_params.h"
#include "tuned_store.h"
#include "xxhash.h"

namespace parallax {


const char* ToString(Choice c) {
  switch (c) {
    case Choice::kExplicit: return "explicit";
    case Choice::kTunedExact: return "exact";
    case Choice::kTunedNearest: return "nearest";
    case Choice::kDefault: return "default";
  }
  return "?";
}

namespace {

// Whether the split merge is launched as a programmatic dependent of the main decode kernel
// (PDL). Needs sm_90+ (the cubin is built for the device's own arch, so __CUDA_ARCH__ >= 900
// there and the generated merge carries griddepcontrol.wait: without that wait, PDL would
// race), cuLaunchKernelEx in the driver, and a 12.3+ driver, from which stream capture keeps
// the dependency as a programmatic graph edge. PARALLAX_DISABLE_PDL=1 forces the plain launch
// (for A/B timing); read once.
bool UseProgrammaticLaunch(const DeviceInfo& dev, const cu::Api* d) {
  static const bool disabled = [] {
    const char* e = std::getenv("PARALLAX_DISABLE_PDL");
    return e != nullptr && *e != '\0' && std::string(e) != "0";
  }();
  return !disabled && dev.cc_major >= 9 && dev.driver_version >= 12030 && d->cuLaunchKernelEx != nullptr;
}

absl::Status LaunchMain(const LoadedKernel& k, const Grid& grid, const Grid& cluster, CUstream stream, void** args);

// An explicit variant must describe the same problem the arguments do.
absl::Status MatchesCall(const Variant& v, const Problem& p, const Algorithm& a) {
  if (v.problem() == p && v.algorithm() == a) return absl::OkStatus();
  Schedule s = v.schedule();
  absl::StatusOr<Variant> want = Variant::Create(p, a, CanonicalSchedule(p, a, s));
  return absl::InvalidArgumentError(absl::StrCat(
      "variant_key=", v.Key(), ": does not match the call's problem",
      want.ok() ? absl::StrCat(" (expected a key starting '", want->Key().substr(0, want->Key().find(".", want->Key().find(".") + 1)), "')") : std::string()));
}

// Plain parsing on purpose: no key the runtime is handed (by a caller, the tuned DB or the
// service) may name a test-only variant, which faults or hangs.
absl::StatusOr<Variant> ExplicitVariant(const std::string& key, const Problem& p, const Algorithm& a) {
  absl::StatusOr<Variant> v = Variant::Parse(key);
  if (!v.ok()) return v.status();
  if (absl::Status s = MatchesCall(*v, p, a); !s.ok()) return s;
  return v;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Create(const RuntimeOptions& options) {
  absl::StatusOr<DeviceInfo> dev = QueryDevice(options.device);
  if (!dev.ok()) return dev.status();
  const cu::Api* d = *cu::Driver();
  CUdevice cudev;
  PLX_CU_RETURN_IF_ERROR(d, cuDeviceGet(&cudev, options.device));
  CUcontext ctx = nullptr;
  PLX_CU_RETURN_IF_ERROR(d, cuDevicePrimaryCtxRetain(&ctx, cudev));
  RuntimeOptions o = options;
  if (o.cache_dir.empty()) o.cache_dir = DefaultCacheDir();
  if (const char* e = std::getenv("PARALLAX_EAGER_ONE_LAUNCH"); e != nullptr && std::string(e) == "0")
    o.eager_one_launch = false;
  std::unique_ptr<Runtime> rt(new Runtime(o, *dev, ctx));
  if (!o.db_path.empty()) {  // tuned configs, read-only; a missing file has none, a bad one is an error
    absl::StatusOr<std::unique_ptr<TunedStore>> db = TunedStore::Open(o.db_path, *dev);
    if (!db.ok()) return db.status();
    rt->db_ = std::move(*db);
    TunedStore* store = rt->db_.get();
    rt->SetTunedLookup([store](const Problem& p, const Algorithm& a, const ShapeBucket& bucket,
                               const TunedKeyFilter& usable) { return store->Lookup(p, a, bucket, usable); });
  }
  return rt;
}

Runtime::Runtime(const RuntimeOptions& o, DeviceInfo d, CUcontext ctx)
    : options_(o), device_(std::move(d)), ctx_(ctx) {}

Runtime::~Runtime() {
  absl::StatusOr<const cu::Api*> api = cu::Driver();
  if (!api.ok()) return;
  const cu::Api* d = *api;
  d->cuCtxSetCurrent(ctx_);
  for (auto& [key, k] : kernels_)
    if (k->module) d->cuModuleUnload(k->module);
  std::vector<GrowBuffer*> buffers = {&work_counters_};
  for (auto& [stream, s] : decode_scratch_) buffers.insert(buffers.end(), {&s.workspace, &s.counters});
  for (GrowBuffer* b : buffers) {
    if (b->ptr) d->cuMemFree_v2(b->ptr);
    for (CUdeviceptr r : b->retired) d->cuMemFree_v2(r);
  }
  CUdevice dev;
  if (d->cuDeviceGet(&dev, options_.device) == CUDA_SUCCESS) d->cuDevicePrimaryCtxRelease_v2(dev);
}

absl::Status Runtime::MakeCurrent() {
  const cu::Api* d = *cu::Driver();
  CUcontext cur = nullptr;
  d->cuCtxGetCurrent(&cur);
  if (cur != ctx_) PLX_CU_RETURN_IF_ERROR(d, cuCtxSetCurrent(ctx_));
  return absl::OkStatus();
}

void Runtime::SetTunedLookup(TunedLookup f) {
  std::lock_guard<std::mutex> l(mu_);
  tuned_ = std::move(f);
  choice_memo_.clear();  // chosen under the old lookup
}

Runtime::TunedLookup Runtime::tuned_lookup() {
  std::lock_guard<std::mutex> l(mu_);
  return tuned_;
}

absl::StatusOr<const LoadedKernel*> Runtime::Load(const Variant& v) {
  std::shared_ptr<std::mutex> key_mu;
  {  // try-load
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = kernels_.find(v.Key()); it != kernels_.end()) return it->second.get();
    auto& m = build_mu_[v.Key()];
    if (!m) m = std::make_shared<std::mutex>();
    key_mu = m;
  }
  std::lock_guard<std::mutex> build(*key_mu);  // lock: one build per key, different keys in parallel
  {  // re-check: another thread may have built it while we waited
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = kernels_.find(v.Key()); it != kernels_.end()) return it->second.get();
  }
  const KernelFamily& family = FamilyOf(v);
  if (!family.RunsOn(device_.cc_major * 10 + device_.cc_minor))
    return absl::FailedPreconditionError(absl::StrCat(v.Key(), ": the ", family.name(), " family does not run on ",
                                                      device_.name, " (", device_.arch(), ")"));
  if (absl::Status s = MakeCurrent(); !s.ok()) return s;
  const cu::Api* d = *cu::Driver();
  const std::string source = GenerateSource(v);
  const std::string arch = absl::StrCat(device_.arch(), family.ArchSuffix());
  // The file cache (binary_cache.h: keyed by all that changes the binary, not the driver;
  // `parallax warmup` fills the same files).
  const BinaryCacheEntry entry =
      BinaryCacheEntryFor(v.Key(), source, arch, device_.nvrtc_version, options_.cache_dir);
  std::string cubin = ReadCachedBinary(entry.path).value_or(std::string());
  if (cubin.empty()) {
    CompileOptions co;
    co.arch = arch;
    absl::StatusOr<CompileResult> r = CompileCuda(source, absl::StrCat(v.Key(), ".cu"), co);
    if (!r.ok()) return r.status();
    cubin.assign(r->cubin.begin(), r->cubin.end());
    (void)WriteCachedBinary(entry.path, cubin);  // a cache: failing to store costs a later compile
  }
  auto k = std::make_unique<LoadedKernel>();
  k->shape = GetLaunchShape(v);
  PLX_CU_RETURN_IF_ERROR(d, cuModuleLoadData(&k->module, cubin.data()));
  const std::vector<std::string> names = FamilyOf(v).KernelNames();  // main first
  PLX_CU_RETURN_IF_ERROR(d, cuModuleGetFunction(&k->main, k->module, names[0].c_str()));
  if (names.size() > 1) PLX_CU_RETURN_IF_ERROR(d, cuModuleGetFunction(&k->merge, k->module, names[1].c_str()));
  if (k->shape.smem_bytes > device_.max_smem_per_block_optin) {
    d->cuModuleUnload(k->module);
    return absl::FailedPreconditionError(absl::StrCat(
        v.Key(), ": needs ", k->shape.smem_bytes, " bytes of shared memory; ", device_.name,
        " allows ", device_.max_smem_per_block_optin, " per block"));
  }
  PLX_CU_RETURN_IF_ERROR(d, cuFuncSetAttribute(k->main, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                               k->shape.smem_bytes));
  if (FamilyOf(v).Cluster(v).ctas() > 8)  // beyond the portable cluster size of 8
    PLX_CU_RETURN_IF_ERROR(d, cuFuncSetAttribute(k->main, CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1));
  PLX_CU_RETURN_IF_ERROR(d, cuOccupancyMaxActiveBlocksPerMultiprocessor(
                                &k->ctas_per_sm, k->main, k->shape.threads, k->shape.smem_bytes));
  std::lock_guard<std::mutex> l(mu_);
  return kernels_.emplace(v.Key(), std::move(k)).first->second.get();
}

absl::StatusOr<void*> Runtime::Ensure(GrowBuffer& buf, size_t bytes) {
  std::lock_guard<std::mutex> l(mu_);
  if (bytes <= buf.size) return reinterpret_cast<void*>(buf.ptr);
  const cu::Api* d = *cu::Driver();
  // The old buffer may still be referenced by a captured CUDA graph: retire it, free later.
  if (buf.ptr) buf.retired.push_back(buf.ptr);
  buf.ptr = 0;
  buf.size = 0;
  PLX_CU_RETURN_IF_ERROR(d, cuMemAlloc_v2(&buf.ptr, bytes));
  // Zeroed once: fused-merge kernels leave their split counters at zero after each launch.
  PLX_CU_RETURN_IF_ERROR(d, cuMemsetD8_v2(buf.ptr, 0, bytes));
  buf.size = bytes;
  return reinterpret_cast<void*>(buf.ptr);
}

size_t Runtime::DecodeWorkspaceBytes(const Variant& v, int batch, int num_splits) {
  // A cluster merge combines the splits in distributed shared memory: no partials.
  if (num_splits <= 1 || FamilyOf(v).Cluster(v).ctas() > 1) return 0;
  const size_t rows = static_cast<size_t>(num_splits) * batch * v.problem().queries * v.problem().num_q_heads;
  return rows * 4 * sizeof(float) + rows * 2 * v.problem().head_dim * sizeof(float);
}

int Runtime::AutoSplits(const Variant& v, int batch, int max_seqlen) {
  const int ctas = static_cast<int>(std::max(1LL, FamilyOf(v).MainGrid(v, batch, 1, 1).ctas()));
  // Every split costs the same, so the time is (waves of CTAs) x (keys per split). One CTA
  // per SM already saturates HBM (measured on H100: B=1, L=16k: 16 splits 32.8 us vs 33
  // splits 37.7 us; B=8: 2 splits beat 4), and a partial second wave costs a whole one.
  // Each split should stream at least two tiles, or the merge costs more than it saves.
  const int max_by_len = std::max(1, max_seqlen / (2 * v.schedule().block_n));
  const int splits = std::max(1, device_.sm_count / ctas);
  return std::clamp(std::min(splits, max_by_len), 1, 128);
}

namespace {

// DefaultSchedule has no answer where no family serves the problem: multi-token decode has
// only decode_sm90 (sm_90).
absl::Status CheckSomeDecodeServes(const Problem& p, int sm) {
  if (ServingFamily(p, sm) != nullptr) return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat(
      "queries=", p.queries, ": no decode family serves ", ProblemKey(p, Algorithm{}), " on sm_", sm,
      p.queries > 1 ? " (multi-token decode runs on sm_90's decode_sm90 with contiguous K/V or pages of >= 8 keys; "
                      "elsewhere run it as extend: plx_prefill, or plx_decode, which does so)"
                    : ""));
}

// Plain parsing: a test-only key in the DB or from the service is refused here, and so is a
// key of another problem or of a family this device cannot run.
absl::StatusOr<Variant> TunedVariant(const std::string& key, const Problem& p, const Algorithm& alg, int sm) {
  absl::StatusOr<Variant> v = Variant::Parse(key);
  if (!v.ok()) return v.status();
  if (v->problem() != p || v->algorithm() != alg)
    return absl::InvalidArgumentError(absl::StrCat(key, ": not for ", ProblemKey(p, alg)));
  if (!FamilyOf(*v).RunsOn(sm))
    return absl::FailedPreconditionError(absl::StrCat(key, ": its family does not run on sm_", sm));
  return v;
}

}  // namespace

absl::StatusOr<Variant> ChooseTunedOrDefault(const TunedLookupFn& lookup, const Problem& p, const Algorithm& alg,
                                             const ShapeBucket& bucket, int sm, Choice* choice) {
  if (lookup) {
    const TunedKeyFilter usable = [&](const std::string& key) { return TunedVariant(key, p, alg, sm).ok(); };
    if (auto t = lookup(p, alg, bucket, usable); t.ok()) {
      // Checked again: a lookup that ignores the filter must not get a bad key launched.
      if (absl::StatusOr<Variant> v = TunedVariant(t->first, p, alg, sm); v.ok()) {
        *choice = t->second;
        return v;
      }
    }
  }
  absl::StatusOr<Variant> v = Variant::Create(p, alg, DefaultSchedule(p, alg, sm));
  if (v.ok()) *choice = Choice::kDefault;
  return v;
}

absl::StatusOr<Variant> Runtime::TunedOrDefault(const Problem& p, const Algorithm& alg, const ShapeBucket& bucket,
                                                 Choice* choice) {
  const std::string memo_key = absl::StrCat(ProblemKey(p, alg), "|", ToString(bucket));
  const auto now = std::chrono::steady_clock::now();
  TunedLookup lookup;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = choice_memo_.find(memo_key); it != choice_memo_.end() && now < it->second.until) {
      *choice = it->second.choice;
      return *it->second.variant;
    }
    lookup = tuned_;
  }
  absl::StatusOr<Variant> chosen =
      ChooseTunedOrDefault(lookup, p, alg, bucket, device_.cc_major * 10 + device_.cc_minor, choice);
  if (!chosen.ok()) return chosen.status();
  std::lock_guard<std::mutex> l(mu_);
  ChoiceMemo& m = choice_memo_[memo_key];
  if (!(now < m.until)) m = {*chosen, *choice, now + std::chrono::seconds(1)};
  return chosen;
}

absl::StatusOr<DecodePlan> Runtime::PlanDecode(const DecodeArgs& a) { return PlanDecodeWith(ToDecodeCall(a), nullptr); }

absl::StatusOr<DecodePlan> Runtime::PlanDecode(const DecodeCall& c) { return PlanDecodeWith(c, nullptr); }

absl::StatusOr<DecodePlan> Runtime::PlanDecode(const DecodeArgs& a, const Variant& v) {
  if (!a.variant_key.empty())
    return absl::InvalidArgumentError(absl::StrCat("variant_key=", a.variant_key, ": given with a variant as well"));
  return PlanDecodeWith(ToDecodeCall(a), &v);
}

absl::StatusOr<DecodePlan> Runtime::PlanDecodeWith(const DecodeCall& c, const Variant* given) {
  if (absl::Status s = CheckDecodeCall(c); !s.ok()) return s;
  const Problem& p = c.problem;
  const Algorithm& alg = c.algorithm;
  const int batch = c.params.batch, seqlen = c.params.seqlen;
  absl::StatusOr<Variant> chosen = absl::UnknownError("unset");
  Choice choice = Choice::kDefault;
  if (given != nullptr) {
    if (absl::Status s = MatchesCall(*given, p, alg); !s.ok()) return s;
    chosen = *given;
    choice = Choice::kExplicit;
  } else if (!c.variant_key.empty()) {
    chosen = ExplicitVariant(c.variant_key, p, alg);
    if (!chosen.ok()) return chosen.status();
    choice = Choice::kExplicit;
  } else {
    if (absl::Status s = CheckSomeDecodeServes(p, device_.cc_major * 10 + device_.cc_minor); !s.ok()) return s;
    chosen = TunedOrDefault(p, alg, BucketFor(batch, seqlen), &choice);
    if (!chosen.ok()) return chosen.status();
  }
  if (FamilyOf(*chosen).abi() == KernelFamily::Abi::kDecodeTma) {
    if (absl::Status s = CheckDecodeTmaReadable(c.params, p, c.num_pages); !s.ok()) {
      // A named key is refused; a tuned one falls back to the portable family, which has
      // none for several query tokens.
      if (choice == Choice::kExplicit || p.queries > 1)
        return absl::Status(s.code(), absl::StrCat(chosen->Key(), ": ", s.message()));
      chosen = Variant::Create(p, alg, DefaultSchedule(p, alg, 0));
      if (!chosen.ok()) return chosen.status();
      choice = Choice::kDefault;
    }
  }
  DecodePlan plan{*chosen, choice, 1, 0, std::nullopt};
  const int variant_splits = plan.variant.schedule().splits;
  plan.num_splits = c.num_splits > 0   ? c.num_splits
                    : variant_splits > 0 ? variant_splits
                                         : AutoSplits(plan.variant, batch, seqlen);
  // Splits merged inside a thread-block cluster are the cluster's CTAs along x.
  if (const int cluster_x = FamilyOf(plan.variant).Cluster(plan.variant).x; cluster_x > 1) {
    if (c.num_splits > 0 && c.num_splits != cluster_x)
      return absl::InvalidArgumentError(absl::StrCat("num_splits=", c.num_splits, ": ", plan.variant.Key(),
                                                     " merges its ", cluster_x, " splits inside a cluster; leave it 0"));
    plan.num_splits = cluster_x;
  }
  plan.workspace_bytes = DecodeWorkspaceBytes(plan.variant, batch, plan.num_splits);
  if (options_.eager_one_launch && plan.choice != Choice::kExplicit && plan.num_splits > 1)
    if (std::optional<Variant> twin = OneLaunchTwin(plan.variant);
        twin && twin->smem_bytes() <= device_.max_smem_per_block_optin &&
        (FamilyOf(*twin).Cluster(*twin).x <= 1 || FamilyOf(*twin).Cluster(*twin).x == plan.num_splits))
      plan.eager = std::move(twin);
  return plan;
}

absl::Status Runtime::RunDecode(const DecodePlan& plan, const DecodeArgs& a, CUstream stream) {
  return LaunchDecode(plan, DecodeParams(a), a.num_pages, a.workspace, a.workspace_bytes, stream);
}

absl::Status Runtime::RunDecode(const DecodePlan& plan, const DecodeCall& c, CUstream stream) {
  return LaunchDecode(plan, c.params, c.num_pages, c.workspace, c.workspace_bytes, stream);
}

// p arrives complete but for what the plan decides: the split count and where the partials
// and the fused merge's counters live.
absl::Status Runtime::LaunchDecode(const DecodePlan& plan, PlxDecodeParams p, int64_t num_pages, void* workspace,
                                   size_t workspace_bytes, CUstream stream) {
  if (p.batch == 0) return absl::OkStatus();
  const bool capturing = (plan.eager || plan.num_splits > 1) && Capturing(stream);
  // Outside capture a split plan launches its one-launch twin (same splits and workspace).
  const Variant& v = plan.eager && !capturing ? *plan.eager : plan.variant;
  absl::StatusOr<const LoadedKernel*> k = Load(v);
  if (!k.ok()) return k.status();
  if (absl::Status s = MakeCurrent(); !s.ok()) return s;
  void* ws = workspace;
  if (plan.workspace_bytes > 0) {
    if (ws == nullptr) {
      absl::StatusOr<void*> w = Scratch(&DecodeScratch::workspace, plan.workspace_bytes, stream, capturing);
      if (!w.ok()) return w.status();
      ws = *w;
    } else if (workspace_bytes < plan.workspace_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("workspace_bytes=", workspace_bytes, ": this call needs ",
                                                     plan.workspace_bytes));
    }
  }
  const int num_q_heads = v.problem().num_q_heads;
  const int merge_rows = v.problem().queries * num_q_heads;  // the merge's CTAs per sequence
  const Grid grid = FamilyOf(v).MainGrid(v, p.batch, 1, plan.num_splits);
  const size_t stat_floats = static_cast<size_t>(plan.num_splits) * p.batch * merge_rows * 4;
  p.num_splits = plan.num_splits;
  p.part_stats = static_cast<float*>(ws);
  p.part_o = ws ? static_cast<float*>(ws) + stat_floats : nullptr;
  const Grid cluster = FamilyOf(v).Cluster(v);
  if (v.schedule().fused_merge && plan.num_splits > 1 && cluster.ctas() == 1) {
    absl::StatusOr<int*> c = DecodeCounters(v, p.batch, plan.num_splits, stream, capturing);
    if (!c.ok()) return c.status();
    p.counters = *c;
  }
  const cu::Api* d = *cu::Driver();
  void* args[] = {&p};  // the merge kernel's, and the main kernel's but for a TMA family
  void* main_args[] = {&p};
  PlxDecodeTmaParams tma;
  if (FamilyOf(v).abi() == KernelFamily::Abi::kDecodeTma) {  // the maps are encoded per call
    absl::StatusOr<PlxDecodeTmaParams> t = DecodeTmaParams(d, v, p, num_pages);
    if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(v.Key(), ": ", t.status().message()));
    tma = *t;
    main_args[0] = &tma;
  }
  if (absl::Status s = LaunchMain(**k, grid, cluster, stream, main_args); !s.ok()) return s;
  if (plan.num_splits > 1 && !v.schedule().fused_merge) {
    if (UseProgrammaticLaunch(device_, d)) {
      // The merge is a programmatic dependent of the main kernel: scheduled once every main
      // CTA has run griddepcontrol.launch_dependents (or exited), it blocks in
      // griddepcontrol.wait until the main grid completes, so only its launch latency moves.
      // Under stream capture this becomes a programmatic graph edge.
      CUlaunchAttribute attr{};
      attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
      attr.value.programmaticStreamSerializationAllowed = 1;
      CUlaunchConfig cfg{};
      cfg.gridDimX = merge_rows;
      cfg.gridDimY = p.batch;
      cfg.gridDimZ = 1;
      cfg.blockDimX = (*k)->shape.merge_threads;
      cfg.blockDimY = 1;
      cfg.blockDimZ = 1;
      cfg.sharedMemBytes = 0;
      cfg.hStream = stream;
      cfg.attrs = &attr;
      cfg.numAttrs = 1;
      PLX_CU_RETURN_IF_ERROR(d, cuLaunchKernelEx(&cfg, (*k)->merge, args, nullptr));
    } else {
      PLX_CU_RETURN_IF_ERROR(d, cuLaunchKernel((*k)->merge, merge_rows, p.batch, 1,
                                               (*k)->shape.merge_threads, 1, 1, 0, stream, args, nullptr));
    }
  }
  return absl::OkStatus();
}

// The main kernel, with a thread-block cluster when the family asks for one (the cluster
// dimension is a launch attribute, so that launch goes through cuLaunchKernelEx).
namespace {
absl::Status LaunchMain(const LoadedKernel& k, const Grid& grid, const Grid& cluster, CUstream stream, void** args) {
  const cu::Api* d = *cu::Driver();
  if (cluster.ctas() == 1) {
    PLX_CU_RETURN_IF_ERROR(d, cuLaunchKernel(k.main, grid.x, grid.y, grid.z, k.shape.threads, 1, 1,
                                             k.shape.smem_bytes, stream, args, nullptr));
    return absl::OkStatus();
  }
  if (d->cuLaunchKernelEx == nullptr)
    return absl::FailedPreconditionError("a thread-block cluster launch needs cuLaunchKernelEx (driver 12.0+)");
  CUlaunchAttribute attr{};
  attr.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
  attr.value.clusterDim.x = cluster.x;
  attr.value.clusterDim.y = cluster.y;
  attr.value.clusterDim.z = cluster.z;
  CUlaunchConfig cfg{};
  cfg.gridDimX = grid.x;
  cfg.gridDimY = grid.y;
  cfg.gridDimZ = grid.z;
  cfg.blockDimX = k.shape.threads;
  cfg.blockDimY = 1;
  cfg.blockDimZ = 1;
  cfg.sharedMemBytes = k.shape.smem_bytes;
  cfg.hStream = stream;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  PLX_CU_RETURN_IF_ERROR(d, cuLaunchKernelEx(&cfg, k.main, args, nullptr));
  return absl::OkStatus();
}
}  // namespace

// Whether work launched on `stream` is being captured into a graph. Unknown counts as
// capturing: the chosen variant is then launched, which is right under capture and only
// slower (one more launch) outside it.
bool Runtime::Capturing(CUstream stream) const {
  const cu::Api* d = *cu::Driver();
  if (d->cuStreamIsCapturing == nullptr) return true;
  CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
  return d->cuStreamIsCapturing(stream, &st) != CUDA_SUCCESS || st != CU_STREAM_CAPTURE_STATUS_NONE;
}

absl::StatusOr<void*> Runtime::Scratch(GrowBuffer DecodeScratch::*which, size_t bytes, CUstream stream,
                                       bool capturing) {
  GrowBuffer* buf = nullptr;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto own = decode_scratch_.find(stream);
    if (own != decode_scratch_.end() && (own->second.*which).size >= bytes) return reinterpret_cast<void*>((own->second.*which).ptr);
    buf = &(decode_scratch_[capturing ? nullptr : stream].*which);
  }
  return Ensure(*buf, bytes);
}

absl::StatusOr<int*> Runtime::DecodeCounters(const Variant& v, int batch, int num_splits, CUstream stream,
                                             bool capturing) {
  // Counters live in a runtime-owned buffer so callers never have to zero their workspace.
  const Grid grid = FamilyOf(v).MainGrid(v, batch, 1, num_splits);
  const size_t n = static_cast<size_t>(grid.y) * grid.z;  // one per head group
  absl::StatusOr<void*> c = Scratch(&DecodeScratch::counters, n * sizeof(int), stream, capturing);
  if (!c.ok()) return c.status();
  return static_cast<int*>(*c);
}

absl::StatusOr<int*> Runtime::WorkCounters() {
  absl::StatusOr<void*> c = Ensure(work_counters_, kWorkCounterPairs * 2 * sizeof(int));
  if (!c.ok()) return c.status();
  return static_cast<int*>(*c);
}

// What LaunchDecode / LaunchPrefill would load and grow, done ahead; an empty call launches
// nothing, so it prepares nothing either.
absl::Status Runtime::PrepareDecode(const DecodePlan& plan, const DecodeCall& c) {
  if (c.params.batch == 0) return absl::OkStatus();
  if (absl::StatusOr<const LoadedKernel*> k = Load(plan.variant); !k.ok()) return k.status();
  // The shared set (the null stream's), which a capture falls back to.
  if (plan.workspace_bytes > 0 && c.workspace == nullptr)
    if (absl::StatusOr<void*> w = Scratch(&DecodeScratch::workspace, plan.workspace_bytes, nullptr, false); !w.ok())
      return w.status();
  if (plan.variant.schedule().fused_merge && plan.num_splits > 1 &&
      FamilyOf(plan.variant).Cluster(plan.variant).ctas() == 1)
    if (absl::StatusOr<int*> n = DecodeCounters(plan.variant, c.params.batch, plan.num_splits, nullptr, false); !n.ok())
      return n.status();
  if (plan.eager) {  // loaded with the plan, so neither an eager run nor a capture compiles
    DecodePlan one = plan;
    one.variant = *std::move(one.eager);
    one.eager.reset();
    return PrepareDecode(one, c);
  }
  return absl::OkStatus();
}

absl::Status Runtime::PreparePrefill(const Variant& v, const PrefillCall& c) {
  if (c.params.batch == 0 || c.params.seqlen_q == 0) return absl::OkStatus();
  if (absl::StatusOr<const LoadedKernel*> k = Load(v); !k.ok()) return k.status();
  if (FamilyOf(v).Persistent(v))
    if (absl::StatusOr<int*> n = WorkCounters(); !n.ok()) return n.status();
  return absl::OkStatus();
}

absl::Status Runtime::Decode(const DecodeArgs& a, CUstream stream) {
  absl::StatusOr<DecodePlan> plan = PlanDecode(a);
  if (!plan.ok()) return plan.status();
  if (plan->eager)  // as plx_decode: load the captured variant too
    if (absl::Status s = PrepareDecode(*plan, ToDecodeCall(a)); !s.ok()) return s;
  return RunDecode(*plan, a, stream);
}

absl::StatusOr<Variant> Runtime::PlanPrefill(const PrefillArgs& a, Choice* choice) {
  return PlanPrefill(ToPrefillCall(a), choice);
}

absl::StatusOr<Variant> Runtime::PlanPrefill(const PrefillCall& c, Choice* choice) {
  if (absl::Status s = CheckPrefillCall(c); !s.ok()) return s;
  const Problem& p = c.problem;
  const Algorithm& alg = c.algorithm;
  if (!c.variant_key.empty()) {
    if (choice) *choice = Choice::kExplicit;
    return ExplicitVariant(c.variant_key, p, alg);
  }
  // seqlen_q / seqlen_k are the uniform lengths or, with cu_seqlens, the maxima.
  Choice chose = Choice::kDefault;
  absl::StatusOr<Variant> v =
      TunedOrDefault(p, alg, PrefillBucketFor(c.params.batch, c.params.seqlen_q, c.params.seqlen_k), &chose);
  if (v.ok() && FamilyOf(*v).abi() == KernelFamily::Abi::kPrefillTma && !CheckTmaReadable(c).ok()) {
    // Tensors TMA cannot read (unaligned, packed without extents, pages without their count).
    v = Variant::Create(p, alg, DefaultSchedule(p, alg, 0));
    chose = Choice::kDefault;
  }
  if (choice) *choice = chose;
  return v;
}

absl::Status Runtime::RunPrefill(const Variant& v, const PrefillArgs& a, CUstream stream) {
  return LaunchPrefill(v, ToPrefillCall(a), stream);
}

absl::Status Runtime::RunPrefill(const Variant& v, const PrefillCall& c, CUstream stream) {
  return LaunchPrefill(v, c, stream);
}

absl::Status Runtime::LaunchPrefill(const Variant& v, const PrefillCall& c, CUstream stream) {
  PlxPrefillParams p = c.params;
  if (p.batch == 0 || p.seqlen_q == 0) return absl::OkStatus();
  absl::StatusOr<const LoadedKernel*> k = Load(v);
  if (!k.ok()) return k.status();
  if (absl::Status s = MakeCurrent(); !s.ok()) return s;
  const cu::Api* d = *cu::Driver();
  void* args[] = {&p};
  PlxPrefillTmaParams tma;
  if (FamilyOf(v).abi() == KernelFamily::Abi::kPrefillTma) {  // the maps are encoded per call
    absl::StatusOr<PlxPrefillTmaParams> t = PrefillTmaParams(d, v, c);
    if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(v.Key(), ": ", t.status().message()));
    tma = *t;
    args[0] = &tma;
  }
  Grid grid = FamilyOf(v).MainGrid(v, p.batch, p.seqlen_q, 1);
  if (FamilyOf(v).Persistent(v)) {  // one wave; the kernel fetches the grid's tiles itself
    const long long wave = static_cast<long long>(device_.sm_count) * std::max(1, (*k)->ctas_per_sm);
    grid = Grid{static_cast<int>(std::min(grid.ctas(), wave)), 1, 1};
    absl::StatusOr<int*> c = WorkCounters();
    if (!c.ok()) return c.status();
    tma.work_counters = *c + 2 * (next_work_counter_++ % kWorkCounterPairs);
  }
  PLX_CU_RETURN_IF_ERROR(d, cuLaunchKernel((*k)->main, grid.x, grid.y, grid.z, (*k)->shape.threads, 1, 1,
                                           (*k)->shape.smem_bytes, stream, args, nullptr));
  return absl::OkStatus();
}

// The merge kernel: its own source (no family), cached under its key like a variant's.
absl::StatusOr<const LoadedKernel*> Runtime::LoadMerge(const MergeKernel& m) {
  const std::string key = m.Key();
  std::shared_ptr<std::mutex> key_mu;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = kernels_.find(key); it != kernels_.end()) return it->second.get();
    auto& mu = build_mu_[key];
    if (!mu) mu = std::make_shared<std::mutex>();
    key_mu = mu;
  }
  std::lock_guard<std::mutex> build(*key_mu);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = kernels_.find(key); it != kernels_.end()) return it->second.get();
  }
  if (absl::Status s = MakeCurrent(); !s.ok()) return s;
  const cu::Api* d = *cu::Driver();
  const std::string source = GenerateMergeSource(m);
  const std::string arch = device_.arch();
  const BinaryCacheEntry entry = BinaryCacheEntryFor(key, source, arch, device_.nvrtc_version, options_.cache_dir);
  std::string cubin = ReadCachedBinary(entry.path).value_or(std::string());
  if (cubin.empty()) {
    CompileOptions co;
    co.arch = arch;
    absl::StatusOr<CompileResult> r = CompileCuda(source, absl::StrCat(key, ".cu"), co);
    if (!r.ok()) return r.status();
    cubin.assign(r->cubin.begin(), r->cubin.end());
    (void)WriteCachedBinary(entry.path, cubin);  // a cache: failing to store costs a later compile
  }
  auto k = std::make_unique<LoadedKernel>();
  k->shape = LaunchShape{m.threads(), 0, 0};
  PLX_CU_RETURN_IF_ERROR(d, cuModuleLoadData(&k->module, cubin.data()));
  PLX_CU_RETURN_IF_ERROR(d, cuModuleGetFunction(&k->main, k->module, KernelNames::kMergeStates));
  std::lock_guard<std::mutex> l(mu_);
  return kernels_.emplace(key, std::move(k)).first->second.get();
}

absl::Status Runtime::PrepareMerge(const MergeKernel& m) { return LoadMerge(m).status(); }

absl::Status Runtime::RunMerge(const MergeKernel& m, const PlxMergeParams& p, CUstream stream) {
  if (p.rows <= 0) return absl::OkStatus();
  absl::StatusOr<const LoadedKernel*> k = LoadMerge(m);
  if (!k.ok()) return k.status();
  if (absl::Status s = MakeCurrent(); !s.ok()) return s;
  const long long ctas = m.Ctas(p.rows);
  if (ctas > 0x7fffffffLL)
    return absl::InvalidArgumentError(absl::StrCat("rows=", p.rows, ": too many rows for one launch"));
  PlxMergeParams params = p;
  void* args[] = {&params};
  const cu::Api* d = *cu::Driver();
  PLX_CU_RETURN_IF_ERROR(d, cuLaunchKernel((*k)->main, static_cast<unsigned>(ctas), 1, 1, (*k)->shape.threads, 1, 1,
                                           0, stream, args, nullptr));
  return absl::OkStatus();
}

absl::Status Runtime::Prefill(const PrefillArgs& a, CUstream stream) {
  absl::StatusOr<Variant> v = PlanPrefill(a);
  if (!v.ok()) return v.status();
  return RunPrefill(*v, a, stream);
}

}  // namespace parallax

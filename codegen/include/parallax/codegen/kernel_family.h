// Kernel families: everything about one kind of kernel lives behind this interface and in
// one folder, codegen/families/<name>/ (its schedule grammar, space, CUDA sources, geometry).
//
// The shared IR (variant.h) keeps the problem and algorithm parts of every key, the shared
// schedule fields (path, block_n, warps, stages) and the canonical-key contract; a family
// adds its own schedule fields to the key, validates them, enumerates its candidates, emits
// its constexpr tile parameters and kernels, and says how the runtime launches them.
// Adding a family: a folder under codegen/families/ and one line in
// codegen/families/families.inc (docs/architecture.md walks through it).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "parallax/codegen/variant.h"

namespace parallax {

struct SpaceOptions;

// Launch geometry the runtime must use with the generated kernels.
struct LaunchShape {
  int threads = 0;        // per CTA, main kernel
  int smem_bytes = 0;     // dynamic shared memory, main kernel
  int merge_threads = 0;  // decode split merge kernel (0: the family has none)
};

// The Schedule fields that only some families read; a family reads the shared ones (path,
// block_n, warps, stages) and the ones it lists, and every other must stay at zero.
enum ScheduleField : unsigned {
  kFieldSplits = 1u << 0,
  kFieldHeadsPerCta = 1u << 1,
  kFieldBlockM = 1u << 2,
  kFieldFusedMerge = 1u << 3,
  kFieldTestFault = 1u << 4,
  kFieldPingPong = 1u << 5,
  kFieldPersistent = 1u << 6,
  kFieldDqReduce = 1u << 7,
};

// How a family's warps use the common warp cores (kernels/common/mma_core.cuh, fma_core.cuh)
// and the K/V ring (kv_pipeline.cuh): the generator emits these as kUnits, kMTiles and
// kSmemRingOffset among the shared tile parameters.
struct WarpTiling {
  int units = 0;             // query units (q rows) each warp carries
  const char* units_what = "";  // what a unit is in this family, for the kUnits comment
  int mtiles = 0;            // mma path: 16-row MMA tiles of stacked [q; r] rows per warp
  int ring_offset = 0;       // where the K/V ring starts in dynamic smem
};

// A launch grid, CTAs along x, y, z.
struct Grid {
  int x = 1, y = 1, z = 1;
  long long ctas() const { return static_cast<long long>(x) * y * z; }
};

class KernelFamily {
 public:
  virtual ~KernelFamily() = default;

  // Its folder under codegen/families/ ("decode", "prefill").
  virtual absl::string_view name() const = 0;
  // The problems it serves (the first token of every key it names) and the math paths (the
  // schedule's first token): a variant belongs to the family serving its (mode, path).
  virtual Mode mode() const = 0;
  virtual std::vector<MathPath> paths() const = 0;

  // ---- target ----
  // Whether its kernels run on a device of compute capability sm (e.g. 90); sm == 0 asks
  // for the portable choice when the device is not known (CPU-side defaults).
  virtual bool RunsOn(int sm) const { return sm == 0 || sm >= 80; }
  // Whether the family computes problems of this shape at all (Validate says why not).
  virtual bool Serves(const Problem&) const { return true; }
  // A family not yet verified on a GPU: its keys run when asked for (a key, or its path named
  // to the tuner), but the tuner's default paths leave it out, so no search depends on it.
  virtual bool OptIn() const { return false; }
  // The deepest K/V ring its kernels take (schedule field stages); shared memory bounds it too.
  virtual int MaxStages() const { return 4; }
  // Appended to the device's arch when compiling ("a" for sm_90a's wgmma, TMA, setmaxnreg).
  virtual const char* ArchSuffix() const { return ""; }
  // The kernel parameter struct (kernel_abi.h) the runtime passes.
  // kDecodeTma: the main kernel takes PlxDecodeTmaParams (maps of k and v), the merge kernel
  // PlxDecodeParams.
  enum class Abi { kPlain, kPrefillTma, kDecodeTma };
  virtual Abi abi() const { return Abi::kPlain; }
  // kPrefillTma, kDecodeTma: the rows of one TMA box for q/r and for k/v (the box is 64
  // elements wide, one head, `rows` tokens, in the 128-byte swizzle).
  struct TmaBoxes {
    int qr_rows = 0;
    int kv_rows = 0;
  };
  virtual TmaBoxes Boxes(const Variant&) const { return {}; }
  // Whether the main kernel is persistent: the runtime launches at most one wave of CTAs
  // (SMs x CTAs per SM) along x, and the kernel walks MainGrid's CTAs itself.
  virtual bool Persistent(const Variant&) const { return false; }
  // The main kernel's thread-block cluster (sm_90+): {1, 1, 1} is a plain launch; otherwise
  // the runtime launches with this cluster dimension and MainGrid is a multiple of it.
  virtual Grid Cluster(const Variant&) const { return Grid{}; }

  // ---- schedule: fields, key grammar, validation, defaults ----
  virtual unsigned fields() const = 0;  // ScheduleField bits it reads
  // After the shared checks (variant.cc); messages name the field and the rule,
  // e.g. "heads_per_cta=3: must divide the GQA group size 4 and be at most 16".
  virtual absl::Status Validate(const Problem& p, const Algorithm& a, const Schedule& s) const = 0;
  // The schedule part of the key after the path: "-n64-w4-s2-splitauto-g2".
  virtual std::string PrintSchedule(const Schedule& s) const = 0;
  // The inverse, from the '-'-separated tokens after the path; the message says what was
  // expected ("expected nN (keys per tile)"). Create and the round trip check the rest.
  virtual absl::Status ParseSchedule(std::vector<absl::string_view> tokens, Schedule* s) const = 0;
  // s with the family's fields completed (defaults for the ones left at zero).
  virtual Schedule Canonical(const Problem& p, const Algorithm& a, Schedule s) const = 0;
  // The built-in schedule when neither the caller nor the tuning database names one; chosen
  // from the kernel structure, not measured.
  virtual Schedule Default(const Problem& p, const Algorithm& a) const = 0;

  // ---- search space ----
  // Calls consider(s) for every candidate schedule, in a fixed nested order (deterministic
  // spaces); invalid ones are fine, EnumerateSpace counts and drops them.
  virtual void ForEachCandidate(const Problem& p, const Algorithm& a, const SpaceOptions& o,
                                const std::function<void(const Schedule&)>& consider) const = 0;

  // ---- geometry ----
  virtual int SmemBytes(const Variant& v) const = 0;        // dynamic smem of the main kernel
  virtual int StaticSmemBytes(const Variant& v) const = 0;  // its static __shared__ arrays, as ptxas pads them
  virtual LaunchShape Launch(const Variant& v) const = 0;
  // The main kernel's grid for `batch` sequences of up to `seqlen_q` query rows with the keys
  // split `num_splits` ways (a family without splits ignores it; decode ignores seqlen_q).
  virtual Grid MainGrid(const Variant& v, int batch, int seqlen_q, int num_splits) const = 0;
  virtual std::vector<std::string> KernelNames() const = 0;  // exported entry points, main first

  // ---- source ----
  // What it computes, for the header comment: "decode (one query token per sequence, split-KV)".
  virtual std::string Summary(const Variant& v) const = 0;
  // The math its kernels run, for the header's "math:" line when the schedule's path does not
  // say it ("" = the path's: mma.sync, FMA, or wgmma with TMA).
  virtual std::string Math(const Variant&) const { return ""; }
  virtual WarpTiling Tiling(const Variant& v) const = 0;
  // The family's own constexpr tile parameters (after the shared ones).
  virtual std::string Constants(const Variant& v) const = 0;
  // Its kernels: the embedded .cuh texts, in order.
  virtual std::string Kernels(const Variant& v) const = 0;
};

// The family serving (mode, path), or nullptr when none does.
const KernelFamily* FindFamily(Mode mode, MathPath path);
// The family of a (valid) variant.
const KernelFamily& FamilyOf(const Variant& v);
// The family whose Default() a mode's problems get when nothing else names a variant: the
// first registered one serving the mode that runs on sm (0: any device; every Mode has one).
// The registry lists device-specific families first.
const KernelFamily& DefaultFamily(Mode mode, int sm = 0);
// The same among the families that serve p (paged prefill skips the TMA family). Aborts
// where none does: ask ServingFamily first when p may have no family on sm.
const KernelFamily& DefaultFamily(const Problem& p, int sm = 0);
// DefaultFamily(p, sm), or null where no family running on sm serves p (multi-token decode
// below sm_90). kAnySm: a family serving p on whichever device runs it.
inline constexpr int kAnySm = -1;
const KernelFamily* ServingFamily(const Problem& p, int sm);
// The built-in schedule of DefaultFamily(p.mode, sm), made canonical: what runs when neither
// the caller nor the tuning database names a variant.
Schedule DefaultSchedule(const Problem& p, const Algorithm& a, int sm = 0);
// The one-launch twin of a split-KV variant whose merge is a second kernel: the same schedule
// with the merge fused into the main kernel (kFieldFusedMerge). A launch costs the host about
// 4 us, so an eager caller at small sizes is faster with one launch even where the fused merge
// costs a little GPU time; under graph replay the separate merge wins. nullopt when v has no
// separate merge (fused already, one split, or a family without the field) or the twin is invalid.
std::optional<Variant> OneLaunchTwin(const Variant& v);

// Every registered family, in registry order (codegen/families/families.inc).
const std::vector<const KernelFamily*>& AllFamilies();

}  // namespace parallax

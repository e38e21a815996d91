// The IR of Parallax kernel variants: an immutable value with one canonical key.
//
// A Variant is three parts: the Problem (what is computed and on which layout), the
// Algorithm (which member of the Parallax family) and the Schedule (how it is tiled).
// Key() prints the canonical, human-readable key; Variant::Parse(Key()) == *this for every
// valid variant. The key names generated kernels, cache entries and database rows.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parallax {

// Bumped whenever generated source changes meaning or speed; part of every cache key.
inline constexpr int kGeneratorVersion = 5;

// The most query tokens per sequence a decode problem takes (Problem::queries).
inline constexpr int kMaxDecodeQueries = 16;

// kBackward: the gradients of a prefill (key token "bwd"; codegen/families/prefill_bwd/).
enum class Mode : uint8_t { kDecode, kPrefill, kBackward };
enum class DType : uint8_t { kBF16, kFP16 };
enum class KvLayout : uint8_t { kContiguous, kPaged };
enum class Probe : uint8_t { kNone, kLearned };      // "solved" (LLA) is CPU-reference only
enum class Affine : uint8_t { kPlain, kAmplified };
// kMma = mma.sync m16n8k16 (sm_80+); kFma = scalar; kWgmma = Hopper warpgroup MMA with TMA
// and mbarriers (sm_90a only).
enum class MathPath : uint8_t { kMma, kFma, kWgmma };

const char* ToString(Mode m);
const char* ToString(DType d);
const char* ToString(Probe p);
const char* ToString(Affine a);
const char* ToString(MathPath p);

struct Problem {
  Mode mode = Mode::kDecode;
  DType dtype = DType::kBF16;
  int head_dim = 128;
  int num_q_heads = 32;
  int num_kv_heads = 8;
  KvLayout kv_layout = KvLayout::kContiguous;
  int page_size = 0;  // > 0 exactly when kv_layout == kPaged
  bool window = false;  // sliding window compiled in (its size is a launch argument)
  // Decode: query tokens per sequence (Tq), 1..16. Tq > 1 is the multi-token decode of
  // speculative verification: token t of Tq sees keys j <= L - Tq + t. 1 in the other modes.
  int queries = 1;

  int group_size() const { return num_kv_heads > 0 ? num_q_heads / num_kv_heads : 0; }
  bool operator==(const Problem&) const = default;
};

struct Algorithm {
  Probe probe = Probe::kLearned;
  Affine affine = Affine::kPlain;
  bool operator==(const Algorithm&) const = default;
};

// How a variant is tiled. path, block_n, warps and stages are shared by every family; the
// other fields belong to the families that list them (KernelFamily::fields()) and stay zero
// elsewhere, so one key grammar per family prints exactly its own.
struct Schedule {
  MathPath path = MathPath::kMma;
  int block_n = 64;       // keys per pipeline tile (shared by all warps of the CTA)
  int warps = 4;
  int stages = 2;         // K/V tiles in flight (1 = load then compute)
  int splits = 0;         // decode: split-KV count; 0 = chosen at launch from occupancy
  int heads_per_cta = 0;  // decode: query heads of one GQA group packed per CTA
  int block_m = 0;        // prefill: query rows per CTA
  bool pingpong = false;     // sm_90 prefill: the consumer warpgroups take turns issuing their
                             // MMAs, so one's softmax runs under the other's MMAs
  bool persistent = false;   // sm_90 prefill: one CTA per SM walks the tiles (longest first),
                             // loading the next tile's q/r under the current one's last MMAs
  bool fused_merge = false;  // decode: the last CTA of each head group merges the splits
                             // (one launch; counters in a runtime-owned buffer)
  // backward: how each step's dQ/dR partials reach the float32 accumulators. kAtomic: one
  // red.add per element; kBulk: staged in shared memory, one bulk reduction per row
  // (cp.reduce.async.bulk on sm_90+, red.add below); kDeterministic: kBulk's path with the
  // key blocks adding to each query block in a fixed order, so dq and dr are bit-reproducible.
  // Key tokens: none, "-bulk", "-det".
  enum class DqReduce : uint8_t { kAtomic, kBulk, kDeterministic };
  DqReduce dq_reduce = DqReduce::kAtomic;
  // Test-only (decode): the kernel faults (illegal address) or never finishes, so the tuner's
  // isolation can be proven. Key suffix "-testfault" / "-testhang"; never enumerated.
  enum class TestFault : uint8_t { kNone, kIllegalAddress, kHang };
  TestFault test_fault = TestFault::kNone;
  bool operator==(const Schedule&) const = default;
};

// Test-only variants (Schedule::test_fault) fault or hang on purpose. Plain parsing refuses
// them so that no lookup, database row or client key can make a process run one; only the
// tuner's isolation checks (and their worker) opt in.
struct VariantParseOptions {
  bool allow_test_faults = false;  // accept the "-testfault" / "-testhang" suffixes
};

// Whether a key names a test-only variant (ends in "-testfault" or "-testhang"), whether or
// not the rest of it is valid: for validators that must refuse such keys up front.
bool IsTestOnlyKey(absl::string_view key);

class Variant {
 public:
  // Validates; the error names the field and the rule, e.g.
  // "block_n=48: must be a multiple of 64 (16 keys per warp x 4 warps) for the mma path".
  static absl::StatusOr<Variant> Create(const Problem& p, const Algorithm& a, const Schedule& s);
  // Parses a canonical key (see docs/ir.md); rejects anything Key() would not print, and
  // test-only keys ("test-only variant ...") unless o.allow_test_faults.
  static absl::StatusOr<Variant> Parse(std::string_view key);
  static absl::StatusOr<Variant> Parse(std::string_view key, const VariantParseOptions& o);

  const Problem& problem() const { return problem_; }
  const Algorithm& algorithm() const { return algorithm_; }
  const Schedule& schedule() const { return schedule_; }

  // Canonical key, e.g. "decode-bf16-d128-h16x8-contig-nowin.learned-plain.mma-n64-w4-s2-splitauto-g2".
  const std::string& Key() const { return key_; }
  // CUTLASS-style alias: the key is the procedural name.
  const std::string& procedural_name() const { return key_; }
  // 64-bit structural hash of the key (xxh3); stable across runs and machines.
  uint64_t Hash() const { return hash_; }
  std::string HashHex() const;

  // The shared geometry; the rest is the family's (kernel_family.h, codegen/families/).
  int threads() const { return schedule_.warps * 32; }
  int smem_bytes() const;  // dynamic shared memory the main kernel asks for

  bool operator==(const Variant& o) const { return key_ == o.key_; }
  bool operator!=(const Variant& o) const { return !(*this == o); }

 private:
  Variant(const Problem& p, const Algorithm& a, const Schedule& s);
  Problem problem_;
  Algorithm algorithm_;
  Schedule schedule_;
  std::string key_;
  uint64_t hash_ = 0;
};

// The problem and algorithm parts of every variant key of (p, a), e.g.
// "decode-bf16-d128-h32x8-contig-nowin.learned-plain": names problems in the tuning DB.
std::string ProblemKey(const Problem& p, const Algorithm& a);
// The inverse: refuses anything ProblemKey would not print for a valid problem.
absl::StatusOr<std::pair<Problem, Algorithm>> ParseProblemKey(std::string_view key);

// Zeroes the schedule fields the problem's family does not read and lets the family fill
// the defaults of its own (KernelFamily::Canonical); handy for building a variant by hand.
Schedule CanonicalSchedule(const Problem& p, const Algorithm& a, Schedule s);

}  // namespace parallax

// The schedule search space of one problem: every valid Variant, statically pruned for a
// device class before anything is compiled or timed.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "parallax/codegen/variant.h"

namespace parallax {

// What a GPU generation allows one CTA and one SM; presets follow the CUDA programming
// guide's compute-capability tables (opt-in shared memory per block).
struct DeviceLimits {
  int max_smem_per_block = 0;  // opt-in dynamic + static shared memory per CTA, bytes
  int smem_per_sm = 0;         // shared memory of one SM, bytes
  int max_threads_per_sm = 0;
  int regs_per_sm = 0;
  std::string arch;            // "sm_90"
  int reserved_smem_per_block = 1024;  // the CUDA runtime keeps 1 KiB per resident CTA (sm_80+)

  static DeviceLimits Sm80();  // A100: 163 KiB per block, 164 KiB per SM
  static DeviceLimits Sm86();  // consumer Ampere: 99 KiB per block, 100 KiB per SM
  static DeviceLimits Sm89();  // Ada: as sm_86
  static DeviceLimits Sm90();  // H100/H200: 227 KiB per block, 228 KiB per SM
};

// sm_80, sm_86, sm_89, sm_90, sm_90a; anything else is InvalidArgument naming the arch.
absl::StatusOr<DeviceLimits> DeviceLimitsForArch(std::string_view arch);

// Resident CTAs of v's main kernel per SM from shared memory and threads alone (registers
// are only known after ptxas); 0 means the kernel cannot launch on this device.
int CtasPerSm(const Variant& v, const DeviceLimits& limits);

struct SpaceOptions {
  DeviceLimits limits = DeviceLimits::Sm90();
  bool prune = true;  // false: keep every valid variant, ignoring `limits`
  std::vector<MathPath> paths = {MathPath::kMma, MathPath::kFma};
  std::vector<int> block_n = {16, 32, 64, 128, 256};
  std::vector<int> warps = {1, 2, 4, 8};
  std::vector<int> stages = {1, 2, 3, 4};
  std::vector<int> splits = {0};  // decode split-KV counts; 0 = chosen at launch
};

// Why candidates were dropped; candidates == invalid + smem_over_block + no_cta_per_sm + kept.
struct SpaceStats {
  int candidates = 0;
  int invalid = 0;          // Variant::Create rejected the schedule
  int smem_over_block = 0;  // smem_bytes() > limits.max_smem_per_block
  int no_cta_per_sm = 0;    // CtasPerSm() == 0
  int kept = 0;
  // Invalid candidates by the field Create's message names first ("block_n", "heads_per_cta").
  std::map<std::string, int> invalid_by_field;

  std::string ToString() const;  // one line, e.g. "1280 candidates: 900 invalid, ..."
};

// Candidates, in this nested order (so the result is deterministic):
//   path, warps, [prefill: block_m], block_n, stages, [decode: splits, heads_per_cta].
// Decode: heads_per_cta runs over the divisors of the GQA group up to 16.
// Prefill: block_m = warps x rows per warp, up to 256; rows per warp are multiples of the
// path's MMA row tile (8 q+r rows with a learned probe, else 16) for mma and powers of two
// for fma (its register tile has no other natural height).
// When `stats` is given it receives the reason counts.
std::vector<Variant> EnumerateSpace(const Problem& p, const Algorithm& a, const SpaceOptions& options,
                                    SpaceStats* stats = nullptr);

// The problem-level part of Variant::Create's validation (head_dim, heads, layout): OK when
// some schedule could make the problem valid. Lets tools reject a bad problem with one
// message instead of reporting every candidate invalid.
absl::Status ValidateProblemOnly(const Problem& p, const Algorithm& a);

}  // namespace parallax

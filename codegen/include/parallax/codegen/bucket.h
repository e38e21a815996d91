// Shape buckets and problem keys: how tuned results are filed and found again.
//
// A tuned config is stored per (device fingerprint, problem key, bucket). The problem key
// is the problem + algorithm part of a variant key ("decode-bf16-d128-h32x8-contig-nowin.
// learned-plain"); the bucket rounds the run-time sizes up to powers of two so that one
// tuning run serves every nearby shape. Two kinds of bucket, one per mode:
//
//   decode  "b8-l4096"   batch (>= 1) and keys per sequence (>= 1024);
//   prefill "t4096-l8192" query tokens over the whole batch, B x Lq (>= 128), and the
//                         context length Lk, keys per sequence (>= 1024).
//
// Why tokens and context for prefill: a prefill's grid is B x Hq x ceil(Lq / block_m) query
// tiles and each tile streams up to Lk keys, so (B x Lq, Lk) fixes both the parallelism and
// the work per tile; a chunk of 512 queries at the end of 8192 keys in a batch of 1 and 64
// queries in a batch of 8 land in the same bucket, as their launches look alike. The floor of
// 128 tokens is two of the largest query tiles. The leading letter keeps the two grammars
// apart ("t..." never parses as decode), and the problem key already differs by mode, so a
// bucket of the other kind is never a candidate; BucketDistance makes it infinitely far anyway.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "parallax/codegen/variant.h"

namespace parallax {

struct ShapeBucket {
  int batch = 1;      // decode: next power of two >= batch; 0 in prefill buckets
  int seqlen = 1024;  // keys per sequence (decode) or context length Lk (prefill): next power
                      // of two, at least 1024
  int tokens = 0;     // prefill: query tokens over the batch, next power of two >= 128;
                      // 0 marks a decode bucket
  bool operator==(const ShapeBucket&) const = default;
};

inline bool IsPrefillBucket(const ShapeBucket& b) { return b.tokens > 0; }
// The kind of bucket a mode is tuned and served on: decode BucketFor's; prefill and its
// backward (bwd) PrefillBucketFor's, as a backward's grid and work follow the query tokens
// and context of the forward it differentiates.
inline bool UsesPrefillBuckets(Mode m) { return m != Mode::kDecode; }

ShapeBucket BucketFor(int batch, int seqlen);  // decode
// Prefill of q_len queries per sequence against context keys per sequence (the maxima for
// varlen calls).
ShapeBucket PrefillBucketFor(int batch, int q_len, int context);
std::string ToString(const ShapeBucket& b);  // "b8-l4096" or "t4096-l8192"
// Either form; the canonical string only (what ToString prints).
absl::StatusOr<ShapeBucket> ParseBucket(const std::string& s);
// Distance in octaves, summed over both axes (0 = same bucket); infinite across kinds.
double BucketDistance(const ShapeBucket& a, const ShapeBucket& b);

// A shape that lands in the bucket, for the tuner's measurements and for asking a service:
// decode (batch, seqlen, q_len 1); prefill q_len = min(tokens, context), batch = tokens /
// q_len, so a full causal prefill (Lq = Lk) whenever the tokens reach the context.
struct BucketShape {
  int batch = 1;
  int seqlen = 1024;  // keys per sequence
  int q_len = 1;      // queries per sequence
};
BucketShape ShapeOf(const ShapeBucket& b);

// The one rule for serving a shape from configs tuned for other buckets, used by the
// runtime's TunedStore, the service's GetBestConfig and the tuner's warm start: the
// candidate with the least BucketDistance to `want`, ties to the smaller bucket string
// (ToString in byte order, as SQLite sorts the column: "b16-l1024" before "b8-l1024"), so
// the answer does not depend on the order candidates come in. An exact bucket (distance 0)
// wins; candidates of the other kind are never chosen. Returns the index into candidates;
// nullopt when there is none.
std::optional<size_t> NearestBucket(const ShapeBucket& want, std::span<const ShapeBucket> candidates);

// Numeric order of bucket strings for listings (`db show`, `remote list`): decode buckets by
// batch then keys (b1-l1024 < b1-l4096 < b1-l16384 < b8-l1024), then prefill buckets by
// tokens then context; strings that are not buckets last, in byte order. A strict weak order.
bool BucketLess(const std::string& a, const std::string& b);

}  // namespace parallax

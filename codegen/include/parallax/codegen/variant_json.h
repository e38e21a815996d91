// JSON form of a Variant, for the CLI, the database and remote clients.
//
// ToJson writes every field, so a reader needs no key parser:
//   {"key": "...", "hash": "<16 hex digits>", "generator_version": 1,
//    "problem":   {"mode", "dtype", "head_dim", "num_q_heads", "num_kv_heads",
//                  "kv_layout": "contiguous"|"paged", "page_size", "window"},
//    "algorithm": {"probe", "affine"},
//    "schedule":  {"path", "block_n", "warps", "stages", "splits", "heads_per_cta", "block_m",
//                  "fused_merge", and "test_fault": "illegal_address"|"hang" only when set}}
// Enum values use the same words as the key ("decode", "bf16", "learned", "mma", ...).
#pragma once

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "parallax/codegen/variant.h"

namespace parallax {

nlohmann::json ToJson(const Variant& v);

// Accepts {"key": "..."} or the structured form (or both, which must then agree).
// "hash", when present, must match the key's hash; "generator_version" is informational
// (it records which generator wrote the JSON; the key alone names the variant).
// Structured form: problem.{mode, dtype, head_dim, num_q_heads, num_kv_heads} are required;
// other fields default like Problem/Algorithm/Schedule, and heads_per_cta / block_m, when
// absent, take CanonicalSchedule's choice for the mode.
// Errors are InvalidArgument naming the field: unknown fields ("unknown field
// 'schedule.foo'"), wrong types ("schedule.block_n: expected an integer, got string"),
// then Variant::Create's validation message. A test-only variant (a "-testfault" /
// "-testhang" key or a schedule.test_fault other than "none") is refused like
// Variant::Parse refuses it, unless o.allow_test_faults.
absl::StatusOr<Variant> VariantFromJson(const nlohmann::json& j, const VariantParseOptions& o = {});

}  // namespace parallax

// What `parallax tune` is asked, before it becomes a TuneRequest: model presets, the shape
// grid and the default database location. Here rather than in the CLI so tests can check
// the rules without running the command.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parallax/search/tuner.h"

namespace parallax::search {

struct TuneArgs {
  std::string mode = "decode";             // decode, prefill or bwd (ParseModeFlag)
  std::string preset;                      // qwen3-0.6b, qwen3-1.7b, llama3-8b
  int q_heads = 0, kv_heads = 0, head_dim = 0;  // 0: from the preset
  std::string dtype = "bf16";
  std::vector<int> batch = {1, 8, 32, 128};
  std::vector<int> seqlen = {1024, 4096, 16384, 65536};  // keys per sequence (the context)
  // Prefill and bwd: queries per sequence, a chunk at the end of each seqlen (values above it
  // are skipped for that seqlen); empty = seqlen itself, a full causal prefill.
  std::vector<int> q_len;
  std::string probe = "learned";
  std::string affine = "plain";
  int paged = 0;                           // page size; 0 = contiguous KV
};

// $XDG_DATA_HOME/parallax/tuner.db, else ~/.local/share/parallax/tuner.db (cache/paths.h,
// whose ResolveDbPath adds --db and $PARALLAX_DB on top: the one rule every command follows).
std::string DefaultDbPath();

// Budgets and other durations, one unit everywhere: "90" (a plain number is seconds), "30s",
// "5m", "1h", "1.5h", "1h30m" (units s, m, h; also sec, min, hr); "0" = none. InvalidArgument
// naming the text otherwise.
absl::StatusOr<double> ParseDuration(absl::string_view text);
// The inverse for messages and defaults: 1800 -> "30m", 5400 -> "1h30m", 0 -> "0".
std::string FormatDuration(double seconds);

// Attention shape of a preset: {q heads, kv heads, head dim}.
absl::StatusOr<std::vector<int>> PresetShape(const std::string& name);

// `--mode`: decode, prefill or bwd, the mode's token in variant keys (codegen ToString(Mode)),
// one spelling per mode. InvalidArgument naming the text otherwise.
absl::StatusOr<Mode> ParseModeFlag(absl::string_view text);

// Problem, algorithm and buckets (each batch x seqlen rounded to its bucket, duplicates
// dropped, in order; prefill and bwd: each batch x q_len x seqlen to PrefillBucketFor's
// bucket: the backward is tuned on the shapes of the forward it differentiates).
// InvalidArgument naming the option otherwise.
absl::StatusOr<TuneRequest> MakeTuneRequest(const TuneArgs& a);

}  // namespace parallax::search

#!/usr/bin/env bash
# PTX digests of the representative variant set (64 variants x sm_80, sm_90), and their
# comparison with a recorded baseline: proves that a generator refactor leaves every kernel's
# code as it was. Needs a build with codegen_ptx_digests and libnvrtc (no GPU).
#
# Usage: scripts/ptx-digests.sh [--build DIR] [--out FILE] [--compare BASELINE]
#   --build DIR         build directory (default: build)
#   --out FILE          where to write the digests (default: standard output only)
#   --compare BASELINE  diff against BASELINE; exit 1 and print the differing lines if any
set -euo pipefail
cd "$(dirname "$0")/.."
build=build out="" baseline=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --compare) baseline=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ptx-digests.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
tool="$build/tests/codegen/codegen_ptx_digests"
[[ -x "$tool" ]] || { echo "ptx-digests.sh: $tool not found; build target codegen_ptx_digests first" >&2; exit 2; }
tmp=$(mktemp); trap 'rm -f "$tmp"' EXIT
"$tool" > "$tmp"
[[ -n "$out" ]] && cp "$tmp" "$out"
if [[ -z "$baseline" ]]; then
  [[ -n "$out" ]] || cat "$tmp"
  exit 0
fi
n=$(wc -l < "$tmp")
if diff -u "$baseline" "$tmp"; then
  echo "PTX identical: $n of $n (variant, arch) digests match $baseline"
else
  echo "PTX differs from $baseline (lines above: - baseline, + this tree)" >&2
  exit 1
fi

#!/usr/bin/env bash
# Copies the shared libraries our binaries need that the GPU host's image lacks (Debian's
# abseil, gRPC, protobuf, xxhash, ...) into .carry/lib, for `device run --carry`.
# Usage: scripts/collect-carry-libs.sh BUILD_DIR
set -euo pipefail
build=${1:-build}
dest=.carry/lib
mkdir -p "$dest"
# Present on the GPU host (Ubuntu 24.04 + CUDA 13.0) or provided by the driver.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libstdc\+\+|libgcc_s|libpthread|libdl\.|librt\.|libnvrtc|libcuda|libz\.)'
find "$build" -type f -perm -u+x \( -name 'parallax*' -o -name '*_test' -o -name 'plx_*' \) -print0 |
  xargs -0 -r ldd 2>/dev/null | awk '/=>/ {print $1, $3}' | sort -u |
  while read -r name path; do
    [[ "$name" =~ $skip ]] && continue
    [ -f "$path" ] && cp -L "$path" "$dest/$name"
  done
du -sh "$dest"

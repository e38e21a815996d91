// The on-disk cache of compiled kernels: where Runtime::Load looks before it runs NVRTC and
// where it (and `parallax warmup`) put what NVRTC made.
//
//   <cache_dir>/<arch>/<artifact>.cubin
//
// cache_dir defaults to $PARALLAX_CACHE_DIR, else ~/.cache/parallax; arch is what NVRTC
// compiled for ("sm_90a"); the artifact is a hash of everything that changes the binary: the
// variant key, its generated source, the arch, the NVRTC version and the generator version.
// Not the driver: NVRTC's cubin is the same whatever driver later loads it, so a driver
// update keeps the cache, and a machine without a GPU can fill it for one (warmup --arch).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "absl/status/status.h"

namespace parallax {

std::string DefaultCacheDir();

struct BinaryCacheEntry {
  std::string artifact;     // 16 hex digits
  std::string source_hash;  // 16 hex digits of the generated source
  std::filesystem::path path;
};

// `source` is GenerateSource(v) for the variant named `variant_key`; `nvrtc_version` as
// NvrtcVersion() prints it ("13.0").
BinaryCacheEntry BinaryCacheEntryFor(const std::string& variant_key, const std::string& source,
                                     const std::string& arch, const std::string& nvrtc_version,
                                     const std::string& cache_dir);

// The cached binary; nullopt when absent or empty.
std::optional<std::string> ReadCachedBinary(const std::filesystem::path& path);
// Write-then-rename, so readers (other processes included) never see a partial binary.
absl::Status WriteCachedBinary(const std::filesystem::path& path, const std::string& cubin);

}  // namespace parallax

#include "parallax/runtime/binary_cache.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "parallax/codegen/variant.h"
#include "xxhash.h"

namespace parallax {

std::string DefaultCacheDir() {
  if (const char* e = std::getenv("PARALLAX_CACHE_DIR"); e && *e) return e;
  if (const char* h = std::getenv("HOME"); h && *h) return absl::StrCat(h, "/.cache/parallax");
  return "/tmp/parallax-cache";
}

BinaryCacheEntry BinaryCacheEntryFor(const std::string& variant_key, const std::string& source,
                                     const std::string& arch, const std::string& nvrtc_version,
                                     const std::string& cache_dir) {
  const uint64_t source_hash = XXH3_64bits(source.data(), source.size());
  // Everything that changes the binary, hashed (FlashInfer-style JIT naming).
  const std::string id = absl::StrCat(variant_key, "|", source_hash, "|", arch, "|nvrtc", nvrtc_version, "|gen",
                                      kGeneratorVersion);
  BinaryCacheEntry e;
  e.artifact = absl::StrFormat("%016x", XXH3_64bits(id.data(), id.size()));
  e.source_hash = absl::StrFormat("%016x", source_hash);
  e.path = std::filesystem::path(cache_dir) / arch / absl::StrCat(e.artifact, ".cubin");
  return e;
}

std::optional<std::string> ReadCachedBinary(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string cubin = ss.str();
  if (cubin.empty()) return std::nullopt;
  return cubin;
}

absl::Status WriteCachedBinary(const std::filesystem::path& path, const std::string& cubin) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) return absl::UnavailableError(absl::StrCat(path.parent_path().string(), ": ", ec.message()));
  const std::filesystem::path tmp = path.string() + absl::StrCat(".tmp", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(cubin.data(), static_cast<std::streamsize>(cubin.size()));
    if (!out.good()) {
      std::filesystem::remove(tmp, ec);
      return absl::UnavailableError(absl::StrCat(tmp.string(), ": write failed"));
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return absl::UnavailableError(absl::StrCat(path.string(), ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace parallax

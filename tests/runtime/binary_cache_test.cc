// The file cache of compiled kernels (binary_cache.h): what its names depend on, and writes
// that readers never see half done. CPU only.
#include "parallax/runtime/binary_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace parallax {
namespace {

TEST(BinaryCacheTest, NameFollowsKeySourceArchNvrtcButNotTheDriver) {
  const std::string key = "decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-splitauto-g4";
  const BinaryCacheEntry a = BinaryCacheEntryFor(key, "src", "sm_90", "13.0", "/c");
  EXPECT_EQ(a.path.parent_path(), std::filesystem::path("/c/sm_90"));
  EXPECT_EQ(a.path.filename().string(), a.artifact + ".cubin");
  EXPECT_EQ(a.artifact.size(), 16u);
  // Deterministic: the runtime and `parallax warmup` (no GPU, so no driver) agree on it.
  EXPECT_EQ(BinaryCacheEntryFor(key, "src", "sm_90", "13.0", "/c").path, a.path);
  EXPECT_NE(BinaryCacheEntryFor(key, "src2", "sm_90", "13.0", "/c").artifact, a.artifact);
  EXPECT_NE(BinaryCacheEntryFor(key, "src", "sm_90a", "13.0", "/c").artifact, a.artifact);
  EXPECT_NE(BinaryCacheEntryFor(key, "src", "sm_90", "13.1", "/c").artifact, a.artifact);
  EXPECT_NE(BinaryCacheEntryFor(key + "-fused", "src", "sm_90", "13.0", "/c").artifact, a.artifact);
}

TEST(BinaryCacheTest, WriteThenReadBack) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("plx_bincache_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const BinaryCacheEntry e = BinaryCacheEntryFor("k", "s", "sm_80", "13.0", dir.string());
  EXPECT_FALSE(ReadCachedBinary(e.path).has_value());
  const std::string cubin("\x7f" "ELF\0\1\2", 7);
  ASSERT_TRUE(WriteCachedBinary(e.path, cubin).ok());  // creates <dir>/sm_80
  const std::optional<std::string> got = ReadCachedBinary(e.path);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, cubin);
  int files = 0;
  for (const auto& f : std::filesystem::directory_iterator(e.path.parent_path())) files += f.is_regular_file();
  EXPECT_EQ(files, 1) << "no temporary left behind";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace parallax

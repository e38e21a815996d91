#include "tuned_store.h"

#include <vector>

#include "parallax/codegen/bucket.h"
#include "parallax/runtime/nvrtc_compiler.h"

namespace parallax {

absl::StatusOr<std::unique_ptr<TunedStore>> TunedStore::Open(const std::string& path, const DeviceInfo& dev) {
  absl::StatusOr<std::unique_ptr<cache::Store>> s = cache::Store::Open(path);
  if (!s.ok()) return s.status();
  return std::unique_ptr<TunedStore>(new TunedStore(std::move(*s), dev));
}

cache::CurrentVersions TunedStore::Current() const {
  return cache::CurrentVersions{kGeneratorVersion, NvrtcVersionNumber(dev_.nvrtc_version)};
}

absl::StatusOr<std::pair<std::string, Choice>> TunedStore::Lookup(const Problem& p, const Algorithm& a,
                                                                  const ShapeBucket& want) {
  const std::string fp = dev_.fingerprint();
  const std::string problem = ProblemKey(p, a);
  // A test-only key (it faults or hangs) is never served, whatever put it in the DB; the
  // nearest other bucket is then the answer.
  if (auto exact = store_->GetBestConfig(fp, problem, ToString(want), Current());
      exact.ok() && !IsTestOnlyKey(exact->variant_key))
    return std::make_pair(exact->variant_key, Choice::kTunedExact);
  cache::BestConfigFilter f;
  f.device_fingerprint = fp;
  f.problem_key = problem;
  absl::StatusOr<std::vector<cache::BestConfig>> all = store_->ListBestConfigs(f);
  if (!all.ok()) return all.status();
  const cache::CurrentVersions cur = Current();
  std::vector<ShapeBucket> buckets;
  std::vector<const std::string*> keys;
  for (const cache::BestConfig& c : *all) {
    if (c.generator_version != cur.generator_version || c.nvrtc_version != cur.nvrtc_version) continue;
    if (IsTestOnlyKey(c.variant_key)) continue;
    absl::StatusOr<ShapeBucket> b = ParseBucket(c.bucket);
    if (!b.ok()) continue;
    buckets.push_back(*b);
    keys.push_back(&c.variant_key);
  }
  const std::optional<size_t> nearest = NearestBucket(want, buckets);
  if (!nearest) return absl::NotFoundError("no tuned config for " + problem);
  return std::make_pair(*keys[*nearest], Choice::kTunedNearest);
}

std::optional<std::string> TunedStore::GetBinary(const std::string& artifact) {
  absl::StatusOr<cache::BinaryEntry> e = store_->GetBinary(artifact);
  if (!e.ok() || e->cubin.empty()) return std::nullopt;
  return std::string(e->cubin.begin(), e->cubin.end());
}

void TunedStore::PutBinary(const std::string& artifact, const std::string& source_hash,
                           const std::string& cubin, const std::string& log) {
  cache::BinaryEntry e;
  e.key = artifact;
  e.arch = dev_.arch();
  e.generator_version = kGeneratorVersion;
  e.nvrtc_version = NvrtcVersionNumber(dev_.nvrtc_version);
  e.driver_version = dev_.driver_version;
  e.source_hash = source_hash;
  e.cubin.assign(cubin.begin(), cubin.end());
  e.log = log;
  (void)store_->PutBinary(e);  // a cache: failing to store only costs a later recompile
}

}  // namespace parallax

#include "tuned_store.h"

#include <filesystem>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "parallax/cache/paths.h"
#include "parallax/codegen/bucket.h"
#include "parallax/runtime/nvrtc_compiler.h"

namespace parallax {

std::string ResolveDbPath(const std::string& requested) { return cache::ResolveDbPath(requested); }

absl::StatusOr<std::unique_ptr<TunedStore>> TunedStore::Open(const std::string& path, const DeviceInfo& dev) {
  std::unique_ptr<TunedStore> t(new TunedStore(path, dev));
  std::lock_guard<std::mutex> l(t->mu_);
  if (absl::Status s = t->TryOpen(); !s.ok())
    return absl::Status(s.code(), absl::StrCat("tuning database: ", s.message(),
                                               " (set PARALLAX_DB=none to run without tuned configs)"));
  return t;
}

absl::Status TunedStore::TryOpen() {
  next_try_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) return absl::OkStatus();  // nothing tuned yet
  cache::StoreOptions o;
  o.read_only = true;
  absl::StatusOr<std::unique_ptr<cache::Store>> s = cache::Store::Open(path_, o);
  if (!s.ok()) return std::filesystem::exists(path_, ec) ? s.status() : absl::OkStatus();  // gone meanwhile
  store_ = std::move(*s);
  return absl::OkStatus();
}

cache::Store* TunedStore::store() {
  std::lock_guard<std::mutex> l(mu_);
  if (!store_ && std::chrono::steady_clock::now() >= next_try_) (void)TryOpen();
  return store_.get();
}

cache::CurrentVersions TunedStore::Current() const {
  return cache::CurrentVersions{kGeneratorVersion, NvrtcVersionNumber(dev_.nvrtc_version)};
}

absl::StatusOr<std::pair<std::string, Choice>> TunedStore::Lookup(const Problem& p, const Algorithm& a,
                                                                  const ShapeBucket& want,
                                                                  const TunedKeyFilter& usable) {
  const std::string problem = ProblemKey(p, a);
  cache::Store* db = store();
  if (db == nullptr) return absl::NotFoundError(absl::StrCat(path_, ": no tuning database yet"));
  const std::string fp = dev_.fingerprint();
  // A test-only key (it faults or hangs) is never served, whatever put it in the DB; nor is a
  // key the caller cannot run. The nearest other bucket is then the answer.
  const auto servable = [&usable](const std::string& key) { return !IsTestOnlyKey(key) && (!usable || usable(key)); };
  if (auto exact = db->GetBestConfig(fp, problem, ToString(want), Current()); exact.ok() && servable(exact->variant_key))
    return std::make_pair(exact->variant_key, Choice::kTunedExact);
  cache::BestConfigFilter f;
  f.device_fingerprint = fp;
  f.problem_key = problem;
  absl::StatusOr<std::vector<cache::BestConfig>> all = db->ListBestConfigs(f);
  if (!all.ok()) return all.status();
  const cache::CurrentVersions cur = Current();
  // One entry per bucket: a file not yet migrated to v3 may hold a bucket once per driver
  // the GPU was tuned under; the faster servable entry stands for it, as GetBestConfig chooses.
  std::map<std::string, const cache::BestConfig*> by_bucket;
  for (const cache::BestConfig& c : *all) {
    if (c.generator_version != cur.generator_version || c.nvrtc_version != cur.nvrtc_version) continue;
    if (!servable(c.variant_key)) continue;
    const cache::BestConfig*& slot = by_bucket[c.bucket];
    if (slot == nullptr || c.median_us < slot->median_us) slot = &c;
  }
  std::vector<ShapeBucket> buckets;
  std::vector<const std::string*> keys;
  for (const auto& [bucket, c] : by_bucket) {
    absl::StatusOr<ShapeBucket> b = ParseBucket(bucket);
    if (!b.ok()) continue;
    buckets.push_back(*b);
    keys.push_back(&c->variant_key);
  }
  const std::optional<size_t> nearest = NearestBucket(want, buckets);
  if (!nearest) return absl::NotFoundError("no tuned config for " + problem);
  // The exact bucket can turn up here when its fastest row was passed over for another.
  return std::make_pair(*keys[*nearest], buckets[*nearest] == want ? Choice::kTunedExact : Choice::kTunedNearest);
}

}  // namespace parallax

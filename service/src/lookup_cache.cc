#include "parallax/service/lookup_cache.h"

#include <mutex>

namespace parallax::service {

LookupCache::LookupCache(cache::Store& store, absl::Duration ttl, size_t max_entries)
    : store_(store), ttl_(ttl), max_entries_(max_entries) {}

absl::StatusOr<std::shared_ptr<const CachedConfigs>> LookupCache::Load(const std::string& fp,
                                                                      const std::string& problem_key) {
  cache::BestConfigFilter filter;
  filter.device_fingerprint = fp;
  filter.problem_key = problem_key;
  absl::StatusOr<std::vector<cache::BestConfig>> rows = store_.ListBestConfigs(filter);
  if (!rows.ok()) return rows.status();
  auto out = std::make_shared<CachedConfigs>();
  out->reserve(rows->size());
  for (cache::BestConfig& row : *rows) {
    CachedConfig c;
    absl::StatusOr<ShapeBucket> bucket = ParseBucket(row.bucket);
    absl::StatusOr<Variant> variant = Variant::Parse(row.variant_key);
    c.usable = bucket.ok() && variant.ok();
    if (c.usable) {
      c.bucket = *bucket;
      c.problem = variant->problem();
      c.algorithm = variant->algorithm();
      c.family = &FamilyOf(*variant);
    }
    c.row = std::move(row);
    out->push_back(std::move(c));
  }
  return std::shared_ptr<const CachedConfigs>(std::move(out));
}

absl::StatusOr<std::shared_ptr<const CachedConfigs>> LookupCache::Get(const std::string& fp,
                                                                     const std::string& problem_key) {
  if (ttl_ <= absl::ZeroDuration()) return Load(fp, problem_key);
  std::string key = fp;
  key.push_back('\n');
  key += problem_key;
  const uint64_t generation = generation_.load(std::memory_order_acquire);
  const absl::Time now = absl::Now();
  {
    std::shared_lock lock(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.generation == generation && now - it->second.loaded_at < ttl_)
      return it->second.configs;
  }
  // Concurrent misses of one key each load; harmless, and rare next to the hits.
  absl::StatusOr<std::shared_ptr<const CachedConfigs>> loaded = Load(fp, problem_key);
  if (!loaded.ok()) return loaded.status();
  std::unique_lock lock(mu_);
  if (entries_.size() >= max_entries_) entries_.clear();  // crude, but bounded memory
  entries_[std::move(key)] = Entry{*loaded, now, generation};
  return *loaded;
}

}  // namespace parallax::service

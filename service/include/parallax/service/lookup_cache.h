// Best-config rows of one (device, problem key), kept in memory so GetBestConfig usually
// answers without SQLite: no statement parse, no file-lock syscalls, no Store mutex shared
// by every reactor thread. Entries are dropped when this process writes configs (a job
// ends, an import merges) and reloaded after `ttl` so writers in other processes (offline
// tuning into the same file) show up within that time.
#pragma once

#include <atomic>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "parallax/cache/store.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/codegen/variant.h"

namespace parallax::service {

// One stored row with what serving it needs, parsed once when loaded.
struct CachedConfig {
  cache::BestConfig row;
  bool usable = false;  // bucket and variant key parse
  ShapeBucket bucket;
  Problem problem;      // of the variant key, to check it fits the request
  Algorithm algorithm;
  const KernelFamily* family = nullptr;  // of the variant key, to check it runs on the asking device
};
using CachedConfigs = std::vector<CachedConfig>;

class LookupCache {
 public:
  // ttl 0: no caching, every call reads the store.
  LookupCache(cache::Store& store, absl::Duration ttl, size_t max_entries = 1 << 16);

  absl::StatusOr<std::shared_ptr<const CachedConfigs>> Get(const std::string& device_fingerprint,
                                                           const std::string& problem_key);
  // Every entry is reloaded on its next use.
  void InvalidateAll() { generation_.fetch_add(1, std::memory_order_acq_rel); }

 private:
  struct Entry {
    std::shared_ptr<const CachedConfigs> configs;
    absl::Time loaded_at;
    uint64_t generation = 0;
  };
  absl::StatusOr<std::shared_ptr<const CachedConfigs>> Load(const std::string& fp, const std::string& problem_key);

  cache::Store& store_;
  const absl::Duration ttl_;
  const size_t max_entries_;
  std::atomic<uint64_t> generation_{0};
  std::shared_mutex mu_;
  std::unordered_map<std::string, Entry> entries_;  // fingerprint + '\n' + problem key
};

}  // namespace parallax::service

// Warm start: configs already tuned for the same problem seed the search of a bucket, from
// this GPU model and from others. Per unit (GPU model, bucket) the tuner takes
//   - this GPU model's nearest other tuned bucket (NearestBucket's rule, as before), and
//   - the nearest OTHER GPU model that tuned the problem (DeviceDistance: same compute
//     capability, then same major, then closest SM count, then closest memory), at its
//     nearest bucket (the same bucket when it has it),
// from the database being tuned and from read-only seed databases (`tune --seed-db FILE`).
// A source's keys are its best config, then the other variants it measured ok, fastest
// first; only keys that are candidates here are seeds (in the searched space of this GPU:
// a family that does not RunsOn it, e.g. an sm_90a wgmma key on an sm_80 GPU, never is), and
// a source none of whose keys is valid here gives way to the next one. Seeds are only measured
// first: a bad seed costs a few-sample measurement, never the pick.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "parallax/cache/rows.h"
#include "parallax/cache/store.h"

namespace parallax::search {

// How far another GPU model is from the one being tuned, compared member by member.
struct DeviceDistance {
  int arch = 0;         // 0: same compute capability; 1: same major (arch family); else 2 + |major difference|
  int sms = 0;          // |SM count difference|
  int64_t mem_gib = 0;  // |memory difference| in whole GiB (cache::MemoryGiB)
  auto operator<=>(const DeviceDistance&) const = default;
};
DeviceDistance DistanceBetween(const cache::DeviceInfo& target, const cache::DeviceInfo& other);

// One tuned (device, bucket) of the problem in one database: where seeds may come from.
struct SeedSource {
  int db_index = 0;        // 0: the database being tuned; 1, 2, ...: the seed databases in order
  std::string db;          // its path
  std::string device;      // the device's key (cache::DeviceKey of its fingerprint)
  bool same_device = false;  // the GPU model being tuned (same device key)
  DeviceDistance distance;
  std::string bucket;
  double bucket_distance = 0;  // BucketDistance to the unit's bucket
  int generator_version = 0;
  bool stale = false;          // tuned with another generator version than this build's
  std::string best_key;
};

// The ranking: nearest device, then current generator before stale, then nearest bucket, then
// the database (the tuned one first), device key and bucket string, so the order never
// depends on how rows come back.
bool SeedSourceBefore(const SeedSource& a, const SeedSource& b);

// Why a key cannot be a candidate of this unit, or nullopt when it is one.
using SeedCheck = std::function<std::optional<std::string>(const std::string& key)>;

// A source the unit's seeds came from, with what it gave.
struct SeedOrigin {
  SeedSource source;
  std::vector<std::string> keys;  // the seeds it gave, in its order
};

// What a unit's warm start used.
struct WarmStartPick {
  std::vector<std::string> seeds;   // measuring order
  std::vector<SeedOrigin> origins;  // at most two: this GPU model's, the nearest other model's
  int dropped = 0;                  // keys of the sources looked at that are not candidates here
  std::vector<std::string> dropped_why;  // the first few, "key: why"
  bool empty() const { return seeds.empty(); }
};

// {"seeds": [...], "sources": [{"device", "bucket", "db", "same_device", "keys"}...],
// "dropped": n, "dropped_why": [...]} for run records and `tune --json`.
nlohmann::json ToJson(const WarmStartPick& p);
// One line for people: "seeds from NVIDIA H100 80GB HBM3 b8-l4096 (2), this GPU b8-l1024 (2)".
std::string Describe(const WarmStartPick& p);

class WarmStart {
 public:
  // `target` is the database being tuned (rows of this unit at the current generator are its
  // resume data, not seeds); each seed database is opened read-only: never created, migrated
  // or written (cache::StoreOptions::read_only). NotFound / DataLoss / FailedPrecondition name
  // the file.
  static absl::StatusOr<std::unique_ptr<WarmStart>> Open(cache::Store& target,
                                                         const std::vector<std::string>& seed_dbs);

  // Every tuned bucket of the problem in every database, ranked (SeedSourceBefore). `device`
  // is the GPU being tuned; its fingerprint, compute capability, SMs and memory are used.
  absl::StatusOr<std::vector<SeedSource>> Sources(const cache::DeviceInfo& device, const std::string& problem_key,
                                                  const std::string& bucket, int generator_version) const;

  // At most k seeds for the unit: the first source of this GPU model and the first of another
  // model, in ranked order, that give at least one key `check` accepts; their keys
  // interleaved (the exact-bucket source first, else this model's), without repeats.
  absl::StatusOr<WarmStartPick> Pick(const cache::DeviceInfo& device, const std::string& problem_key,
                                     const std::string& bucket, int generator_version, const SeedCheck& check,
                                     int k) const;

  size_t seed_db_count() const { return seeds_.size(); }

 private:
  WarmStart(cache::Store& target, std::vector<std::unique_ptr<cache::Store>> seeds)
      : target_(target), seeds_(std::move(seeds)) {}
  cache::Store& StoreOf(int db_index) const { return db_index == 0 ? target_ : *seeds_[db_index - 1]; }
  // The source's keys: its best config, then the other variants measured ok there, fastest first.
  absl::StatusOr<std::vector<std::string>> KeysOf(const SeedSource& s, const std::string& problem_key) const;

  cache::Store& target_;
  std::vector<std::unique_ptr<cache::Store>> seeds_;
};

}  // namespace parallax::search

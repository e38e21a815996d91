#include "parallax/search/warm_start.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "parallax/cache/device_key.h"
#include "parallax/codegen/bucket.h"

namespace parallax::search {
namespace {

// Sources looked at per side (this GPU model, other models) before giving up: a source whose
// keys are all invalid here gives way to the next, but a big fleet database is not scanned.
constexpr int kMaxSourcesLooked = 8;
// Reasons kept for the record.
constexpr size_t kDroppedWhyKept = 8;

std::string NameOf(const std::string& device_key) { return device_key.substr(0, device_key.find('|')); }

}  // namespace

DeviceDistance DistanceBetween(const cache::DeviceInfo& target, const cache::DeviceInfo& other) {
  DeviceDistance d;
  if (target.cc_major == other.cc_major)
    d.arch = target.cc_minor == other.cc_minor ? 0 : 1;
  else
    d.arch = 2 + std::abs(target.cc_major - other.cc_major);
  d.sms = std::abs(target.sm_count - other.sm_count);
  d.mem_gib = std::llabs(cache::MemoryGiB(target.mem_bytes) - cache::MemoryGiB(other.mem_bytes));
  return d;
}

bool SeedSourceBefore(const SeedSource& a, const SeedSource& b) {
  return std::tie(a.distance, a.stale, a.bucket_distance, a.db_index, a.device, a.bucket, a.best_key) <
         std::tie(b.distance, b.stale, b.bucket_distance, b.db_index, b.device, b.bucket, b.best_key);
}

nlohmann::json ToJson(const WarmStartPick& p) {
  nlohmann::json sources = nlohmann::json::array();
  for (const SeedOrigin& o : p.origins)
    sources.push_back({{"device", o.source.device},
                       {"bucket", o.source.bucket},
                       {"db", o.source.db},
                       {"same_device", o.source.same_device},
                       {"generator_version", o.source.generator_version},
                       {"keys", o.keys}});
  nlohmann::json j = {{"seeds", p.seeds}, {"sources", sources}, {"dropped", p.dropped}};
  if (!p.dropped_why.empty()) j["dropped_why"] = p.dropped_why;
  return j;
}

std::string Describe(const WarmStartPick& p) {
  std::vector<std::string> parts;
  for (const SeedOrigin& o : p.origins) {
    std::string s = o.source.same_device ? std::string("this GPU model") : NameOf(o.source.device);
    absl::StrAppend(&s, " ", o.source.bucket);
    if (o.source.db_index > 0) absl::StrAppend(&s, " in ", std::filesystem::path(o.source.db).filename().string());
    if (o.source.stale) absl::StrAppend(&s, " (generator v", o.source.generator_version, ")");
    absl::StrAppend(&s, " (", o.keys.size(), ")");
    parts.push_back(std::move(s));
  }
  std::string out = absl::StrCat("seeds from ", absl::StrJoin(parts, ", "));
  if (p.dropped > 0) absl::StrAppend(&out, "; ", p.dropped, " not valid here, dropped");
  return out;
}

absl::StatusOr<std::unique_ptr<WarmStart>> WarmStart::Open(cache::Store& target,
                                                           const std::vector<std::string>& seed_dbs) {
  std::vector<std::unique_ptr<cache::Store>> seeds;
  for (const std::string& path : seed_dbs) {
    cache::StoreOptions so;
    so.read_only = true;
    absl::StatusOr<std::unique_ptr<cache::Store>> s = cache::Store::Open(path, so);
    if (!s.ok())
      return absl::Status(s.status().code(), absl::StrCat("seed database ", path, ": ", s.status().message()));
    seeds.push_back(*std::move(s));
  }
  return std::unique_ptr<WarmStart>(new WarmStart(target, std::move(seeds)));
}

absl::StatusOr<std::vector<SeedSource>> WarmStart::Sources(const cache::DeviceInfo& device,
                                                           const std::string& problem_key, const std::string& bucket,
                                                           int generator_version) const {
  absl::StatusOr<ShapeBucket> want = ParseBucket(bucket);
  if (!want.ok()) return want.status();
  const std::string own = cache::DeviceKey(device.fingerprint);
  std::vector<SeedSource> out;
  for (int i = 0; i <= static_cast<int>(seeds_.size()); ++i) {
    cache::Store& store = StoreOf(i);
    absl::StatusOr<std::vector<cache::DeviceInfo>> devices = store.ListDevices();
    if (!devices.ok()) return devices.status();
    std::map<std::string, cache::DeviceInfo> by_key;
    for (const cache::DeviceInfo& d : *devices) by_key.emplace(cache::DeviceKey(d.fingerprint), d);
    cache::BestConfigFilter f;
    f.problem_key = problem_key;
    absl::StatusOr<std::vector<cache::BestConfig>> configs = store.ListBestConfigs(f);
    if (!configs.ok()) return configs.status();
    for (const cache::BestConfig& c : *configs) {
      SeedSource s;
      s.db_index = i;
      s.db = store.path();
      s.device = cache::DeviceKey(c.device_fingerprint);
      auto dev = by_key.find(s.device);
      if (dev == by_key.end()) continue;
      absl::StatusOr<ShapeBucket> b = ParseBucket(c.bucket);
      if (!b.ok()) continue;
      s.bucket = c.bucket;
      s.bucket_distance = BucketDistance(*want, *b);
      if (!std::isfinite(s.bucket_distance)) continue;  // the other kind of bucket
      s.same_device = s.device == own;
      s.generator_version = c.generator_version;
      s.stale = c.generator_version != generator_version;
      // This unit's own current result in the database being tuned is its resume data.
      if (i == 0 && s.same_device && c.bucket == bucket && !s.stale && c.nvrtc_version == device.nvrtc_version)
        continue;
      s.distance = s.same_device ? DeviceDistance{} : DistanceBetween(device, dev->second);
      s.best_key = c.variant_key;
      out.push_back(std::move(s));
    }
  }
  std::sort(out.begin(), out.end(), SeedSourceBefore);
  // A file not migrated to v3 may hold one GPU under several fingerprints: one source each.
  std::vector<SeedSource> unique;
  for (SeedSource& s : out)
    if (std::none_of(unique.begin(), unique.end(), [&](const SeedSource& u) {
          return u.db_index == s.db_index && u.device == s.device && u.bucket == s.bucket;
        }))
      unique.push_back(std::move(s));
  return unique;
}

absl::StatusOr<std::vector<std::string>> WarmStart::KeysOf(const SeedSource& s, const std::string& problem_key) const {
  std::vector<std::string> keys = {s.best_key};
  cache::MeasurementFilter f;
  f.device_fingerprint = s.device;
  f.problem_key = problem_key;
  f.bucket = s.bucket;
  f.generator_version = s.generator_version;
  f.status = cache::MeasurementStatus::kOk;
  absl::StatusOr<std::vector<cache::Measurement>> rows = StoreOf(s.db_index).ListMeasurements(f);
  if (!rows.ok()) return rows.status();
  std::map<std::string, double> fastest;  // per key, its best ok median
  for (const cache::Measurement& m : *rows) {
    if (!m.median_us) continue;
    auto [it, fresh] = fastest.emplace(m.variant_key, *m.median_us);
    if (!fresh) it->second = std::min(it->second, *m.median_us);
  }
  std::vector<std::pair<double, std::string>> ranked;
  for (auto& [key, us] : fastest) ranked.emplace_back(us, key);
  std::sort(ranked.begin(), ranked.end());
  for (auto& [us, key] : ranked)
    if (key != s.best_key) keys.push_back(key);
  return keys;
}

absl::StatusOr<WarmStartPick> WarmStart::Pick(const cache::DeviceInfo& device, const std::string& problem_key,
                                              const std::string& bucket, int generator_version,
                                              const SeedCheck& check, int k) const {
  WarmStartPick p;
  if (k <= 0) return p;
  absl::StatusOr<std::vector<SeedSource>> sources = Sources(device, problem_key, bucket, generator_version);
  if (!sources.ok()) return sources.status();
  std::optional<SeedOrigin> own, other;
  int looked_own = 0, looked_other = 0;
  for (const SeedSource& s : *sources) {
    std::optional<SeedOrigin>& slot = s.same_device ? own : other;
    int& looked = s.same_device ? looked_own : looked_other;
    if (slot || looked >= kMaxSourcesLooked) continue;
    ++looked;
    absl::StatusOr<std::vector<std::string>> keys = KeysOf(s, problem_key);
    if (!keys.ok()) return keys.status();
    SeedOrigin o{s, {}};
    for (const std::string& key : *keys) {
      if (static_cast<int>(o.keys.size()) >= k) break;
      if (std::optional<std::string> why = check(key)) {
        ++p.dropped;
        if (p.dropped_why.size() < kDroppedWhyKept) p.dropped_why.push_back(absl::StrCat(key, ": ", *why));
        continue;
      }
      o.keys.push_back(key);
    }
    if (!o.keys.empty()) slot = std::move(o);
    if (own && other) break;
  }
  // The exact bucket of another model before a neighbour bucket of this one; else this model's first.
  std::vector<SeedOrigin*> order;
  if (own) order.push_back(&*own);
  if (other) order.push_back(&*other);
  if (order.size() == 2 && other->source.bucket_distance == 0 && own->source.bucket_distance > 0)
    std::swap(order[0], order[1]);
  std::vector<std::vector<std::string>> used(order.size());
  for (size_t i = 0; static_cast<int>(p.seeds.size()) < k; ++i) {
    bool any = false;
    for (size_t j = 0; j < order.size() && static_cast<int>(p.seeds.size()) < k; ++j) {
      if (i >= order[j]->keys.size()) continue;
      any = true;
      const std::string& key = order[j]->keys[i];
      if (std::find(p.seeds.begin(), p.seeds.end(), key) != p.seeds.end()) continue;
      p.seeds.push_back(key);
      used[j].push_back(key);
    }
    if (!any) break;
  }
  for (size_t j = 0; j < order.size(); ++j)
    if (!used[j].empty()) p.origins.push_back({order[j]->source, std::move(used[j])});
  return p;
}

}  // namespace parallax::search

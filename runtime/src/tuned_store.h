// The runtime's view of the tuning database: tuned best configs, matched exactly or to the
// nearest shape bucket. A reader only: the file is opened read-only and never created,
// written or migrated (cache::StoreOptions::read_only). Compiled binaries live in the file
// cache (binary_cache.h), not here.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "parallax/cache/store.h"
#include "parallax/codegen/bucket.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/device.h"
#include "parallax/runtime/runtime.h"

namespace parallax {

class TunedStore {
 public:
  // A missing file is no error: nothing is tuned yet. It is looked for again on later
  // lookups (at most once a second), so a database `parallax tune` writes while the process
  // runs is found. A file that exists but cannot be read (damaged, not a tuning database, a
  // schema newer than this build's) is an error here; if it only turns up later, lookups
  // skip it.
  static absl::StatusOr<std::unique_ptr<TunedStore>> Open(const std::string& path, const DeviceInfo& dev);

  // The best config for (problem, bucket) on this device: the exact bucket, else the nearest
  // bucket of the same problem (NearestBucket, bucket.h), counting only rows `usable` accepts
  // (empty: all), so a bad row is passed over for the next nearest. Decode and prefill alike:
  // the problem key carries the mode, the bucket its kind. Devices match by DeviceKey (no
  // driver version), so a driver update keeps the answers.
  absl::StatusOr<std::pair<std::string, Choice>> Lookup(const Problem& p, const Algorithm& a,
                                                        const ShapeBucket& want,
                                                        const TunedKeyFilter& usable = nullptr);

 private:
  TunedStore(std::string path, const DeviceInfo& d) : path_(std::move(path)), dev_(d) {}
  cache::CurrentVersions Current() const;
  absl::Status TryOpen();   // under mu_
  cache::Store* store();    // opened, or nullptr (no file yet)

  const std::string path_;
  const DeviceInfo dev_;
  std::mutex mu_;
  std::unique_ptr<cache::Store> store_;  // under mu_ until set; a Store is thread-safe
  std::chrono::steady_clock::time_point next_try_;
};

}  // namespace parallax

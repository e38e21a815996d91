// The runtime's view of the tuning database: compiled binaries (persistent JIT cache) and
// tuned best configs, matched exactly or to the nearest shape bucket.
#pragma once

#include <memory>
#include <optional>
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
  static absl::StatusOr<std::unique_ptr<TunedStore>> Open(const std::string& path, const DeviceInfo& dev);

  // The best config for (problem, bucket) on this device: the exact bucket, else the nearest
  // bucket of the same problem (NearestBucket, bucket.h). Decode and prefill alike: the
  // problem key carries the mode, the bucket its kind.
  absl::StatusOr<std::pair<std::string, Choice>> Lookup(const Problem& p, const Algorithm& a,
                                                        const ShapeBucket& want);
  std::optional<std::string> GetBinary(const std::string& artifact);
  void PutBinary(const std::string& artifact, const std::string& source_hash, const std::string& cubin,
                 const std::string& log);

 private:
  TunedStore(std::unique_ptr<cache::Store> s, const DeviceInfo& d) : store_(std::move(s)), dev_(d) {}
  cache::CurrentVersions Current() const;
  std::unique_ptr<cache::Store> store_;
  DeviceInfo dev_;
};

}  // namespace parallax

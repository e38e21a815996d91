// The tuner's use of the SQLite Store (cache/): ids for devices, problems and variants, one
// row per measurement as it arrives, earlier results for resuming, and the best config the
// runtime's TunedStore serves. (Warm-start seeds: warm_start.h.)
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallax/cache/store.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/device.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "parallax/search/outcome.h"
#include "parallax/search/strategy.h"

namespace parallax::search {

cache::DeviceInfo ToCacheDevice(const DeviceInfo& d);

// Where a measurement belongs.
struct UnitKey {
  int64_t device_id = 0;
  std::string fingerprint;
  int64_t problem_id = 0;
  std::string problem_key;
  std::string bucket;  // "b8-l4096"
  int nvrtc_version = 0;  // NvrtcVersionNumber() of the device's NVRTC
  std::optional<int64_t> run_id;
};

class TuningDb {
 public:
  // Creates the file (and its directory) if missing.
  static absl::StatusOr<std::unique_ptr<TuningDb>> Open(const std::string& path);
  cache::Store& store() { return *store_; }
  const std::string& path() const { return store_->path(); }

  absl::StatusOr<int64_t> DeviceId(const DeviceInfo& d);
  absl::StatusOr<int64_t> ProblemId(const Problem& p, const Algorithm& a);

  absl::Status Record(const UnitKey& u, const std::string& variant_key, const Outcome& o);

  // Every stored measurement of the unit at this generator version, oldest first (resume:
  // these are not measured again; PickBest over them names the unit's best).
  absl::StatusOr<std::vector<Trial>> Earlier(const UnitKey& u);

  // PickBest over everything stored for the unit; writes it to best_configs when there is one.
  absl::StatusOr<std::optional<Trial>> StoreBest(const UnitKey& u);

 private:
  explicit TuningDb(std::unique_ptr<cache::Store> s) : store_(std::move(s)) {}
  absl::StatusOr<int64_t> VariantId(const std::string& key);

  std::unique_ptr<cache::Store> store_;
  std::mutex mu_;
  std::map<std::string, int64_t> variant_ids_;
};

}  // namespace parallax::search

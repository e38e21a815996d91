// What a finished tune leaves in a tuning database, written directly (warm-start tests: the
// databases other GPU models, machines or generator versions would have left).
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "parallax/cache/store.h"
#include "parallax/codegen/variant.h"
#include "parallax/runtime/device.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "parallax/search/tuning_db.h"

namespace parallax::search::testing {

// `keys` measured ok on `dev` in `bucket` at 10, 11, 12, ... us (the first the fastest), the
// first stored as the bucket's best config.
inline void WriteTuned(cache::Store& s, const DeviceInfo& dev, const std::string& problem_key,
                       const std::string& bucket, const std::vector<std::string>& keys,
                       int generator_version = kGeneratorVersion) {
  const cache::DeviceInfo cd = ToCacheDevice(dev);
  absl::StatusOr<int64_t> device = s.UpsertDevice(cd);
  ASSERT_TRUE(device.ok()) << device.status();
  absl::StatusOr<int64_t> problem = s.UpsertProblem(problem_key, nlohmann::json::object());
  ASSERT_TRUE(problem.ok()) << problem.status();
  for (size_t i = 0; i < keys.size(); ++i) {
    absl::StatusOr<int64_t> variant = s.UpsertVariant(keys[i], generator_version);
    ASSERT_TRUE(variant.ok()) << variant.status();
    cache::Measurement m;
    m.device_id = *device;
    m.problem_id = *problem;
    m.variant_id = *variant;
    m.bucket = bucket;
    m.status = cache::MeasurementStatus::kOk;
    m.median_us = m.min_us = m.max_us = 10.0 + double(i);
    m.reps = 20;
    m.generator_version = generator_version;
    m.nvrtc_version = cd.nvrtc_version;
    absl::StatusOr<int64_t> id = s.RecordMeasurement(m);
    ASSERT_TRUE(id.ok()) << id.status();
  }
  cache::BestConfig b;
  b.device_fingerprint = cd.fingerprint;
  b.problem_key = problem_key;
  b.bucket = bucket;
  b.variant_key = keys.front();
  b.median_us = 10;
  b.generator_version = generator_version;
  b.nvrtc_version = cd.nvrtc_version;
  absl::Status st = s.SetBestConfig(b);
  ASSERT_TRUE(st.ok()) << st;
}

}  // namespace parallax::search::testing

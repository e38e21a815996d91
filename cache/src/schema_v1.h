#pragma once

#include "absl/status/status.h"

namespace parallax::cache {
class Db;
}

namespace parallax::cache::internal {

// Version 1: every table and index of the original cache layout.
absl::Status CreateSchemaV1(Db& db);
// Version 2 (schema_v2.cc): the import de-duplication index covers the bucket; the binary
// cache is emptied once.
absl::Status MigrateToV2(Db& db);
// Version 3 (schema_v3.cc): device fingerprints become DeviceKey's form (no driver, memory in
// GiB); devices that then coincide are merged into one row. Data only: readers of older
// files match either form (parallax_device_key), so reads_unchanged.
absl::Status MigrateToV3(Db& db);

}  // namespace parallax::cache::internal

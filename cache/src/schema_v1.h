#pragma once

#include "absl/status/status.h"

namespace parallax::cache {
class Db;
}

namespace parallax::cache::internal {

// Version 1: every table and index of the original cache layout.
absl::Status CreateSchemaV1(Db& db);

}  // namespace parallax::cache::internal

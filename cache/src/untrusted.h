#pragma once
// Connection settings for a database file that came from somebody else.

#include "absl/status/status.h"
#include "parallax/cache/db.h"

namespace parallax::cache::internal {

// The largest string or blob an untrusted file may hold (a cubin is a few MiB).
inline constexpr int kUntrustedMaxValueBytes = 64 << 20;

// Defensive mode, triggers and views disabled, untrusted schema, cell size checks, tight
// SQL limits. Must run before the first statement: the schema is parsed lazily then.
absl::Status HardenForUntrustedFile(Db& db);

}  // namespace parallax::cache::internal

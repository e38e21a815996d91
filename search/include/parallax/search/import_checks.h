#pragma once
// The key checks an import of an untrusted cache file runs: the cache stands alone and
// cannot parse variant or problem keys, so the CLI and the service pass these.

#include "parallax/cache/store_options.h"

namespace parallax::search {

// ImportOptions whose key validators refuse anything codegen does not parse: problem keys,
// and variant keys, where a served one (a best config) must also not be test-only.
// Cancellation and time limit are unset.
cache::ImportOptions ImportChecks();

}  // namespace parallax::search

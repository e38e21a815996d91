#pragma once
// Import's first pass: every row of the source is checked before anything is merged, so a
// bad file is refused whole, naming its first bad row.

#include "absl/status/status.h"
#include "import_control.h"
#include "parallax/cache/db.h"
#include "parallax/cache/store_options.h"

namespace parallax::cache::internal {

// InvalidArgument "<table> row <id>: <what>" for the first row that is not what this build
// writes: wrong SQL types, non-finite or non-positive timings, keys the options' checkers
// refuse, JSON that is not an object of the expected shape, references to missing rows.
absl::Status ValidateSource(Db& source, const ImportOptions& options, const ImportControl& control);

}  // namespace parallax::cache::internal

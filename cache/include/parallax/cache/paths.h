#pragma once
// Where the tuning database lives when nobody says: one rule for every reader and writer
// (`parallax tune`, `serve`, `db ...`, `bench`, `warmup`, the C API and so Python).
//
//   1. an explicit path (a --db flag, plx_context_options.db_path), else
//   2. $PARALLAX_DB when set and not empty, else
//   3. DefaultDbPath(): $XDG_DATA_HOME/parallax/tuner.db, else
//      $HOME/.local/share/parallax/tuner.db.
//
// The value "none" (in 1 or 2) means no database: readers serve built-in defaults only.

#include <string>

#include "absl/strings/string_view.h"

namespace parallax::cache {

inline constexpr char kDbEnvVar[] = "PARALLAX_DB";
inline constexpr char kNoDb[] = "none";

// The XDG data location (XDG_DATA_HOME counts only when absolute, as the XDG spec says);
// "tuner.db" in the working directory when neither it nor HOME is set.
std::string DefaultDbPath();

// The database to use under the rule above; "" when the chosen value is "none".
std::string ResolveDbPath(absl::string_view requested);

// Where ResolveDbPath's answer came from, for messages: "given", "$PARALLAX_DB" or "default".
const char* DbPathSource(absl::string_view requested);

}  // namespace parallax::cache

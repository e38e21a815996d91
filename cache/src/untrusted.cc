#include "untrusted.h"

#include <sqlite3.h>

namespace parallax::cache::internal {

absl::Status HardenForUntrustedFile(Db& db) {
  sqlite3* h = db.handle();
  // What the SQLite docs list for "untrusted database files": its schema may name views,
  // triggers and functions that would run inside our queries.
  const struct {
    int op;
    int value;
    const char* what;
  } configs[] = {
      {SQLITE_DBCONFIG_DEFENSIVE, 1, "defensive"},
      {SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, "trusted_schema"},
      {SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, "enable_trigger"},
      {SQLITE_DBCONFIG_ENABLE_VIEW, 0, "enable_view"},
      {SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, "load_extension"},
  };
  for (const auto& c : configs) {
    if (int rc = sqlite3_db_config(h, c.op, c.value, nullptr); rc != SQLITE_OK) {
      return db.Error(rc, absl::string_view(c.what));
    }
  }
  sqlite3_limit(h, SQLITE_LIMIT_LENGTH, kUntrustedMaxValueBytes);
  sqlite3_limit(h, SQLITE_LIMIT_SQL_LENGTH, 100000);
  sqlite3_limit(h, SQLITE_LIMIT_COLUMN, 100);
  sqlite3_limit(h, SQLITE_LIMIT_EXPR_DEPTH, 50);
  sqlite3_limit(h, SQLITE_LIMIT_COMPOUND_SELECT, 3);
  sqlite3_limit(h, SQLITE_LIMIT_VDBE_OP, 25000);
  sqlite3_limit(h, SQLITE_LIMIT_FUNCTION_ARG, 8);
  sqlite3_limit(h, SQLITE_LIMIT_ATTACHED, 1);  // VACUUM INTO attaches its target
  sqlite3_limit(h, SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 50);
  sqlite3_limit(h, SQLITE_LIMIT_VARIABLE_NUMBER, 32);
  sqlite3_limit(h, SQLITE_LIMIT_TRIGGER_DEPTH, 1);
  return db.Exec("PRAGMA cell_size_check=ON; PRAGMA mmap_size=0;");
}

}  // namespace parallax::cache::internal

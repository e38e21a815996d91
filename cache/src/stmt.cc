#include "parallax/cache/stmt.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "sqlite_error.h"

namespace parallax::cache {

Stmt::Stmt(Stmt&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)) {}

Stmt& Stmt::operator=(Stmt&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    stmt_ = std::exchange(other.stmt_, nullptr);
  }
  return *this;
}

Stmt::~Stmt() { sqlite3_finalize(stmt_); }

// The connection and path come from the statement itself so a Stmt never depends on the
// address of the Db object that prepared it.
absl::Status Stmt::Error(int rc, absl::string_view context) const {
  sqlite3* db = sqlite3_db_handle(stmt_);
  const char* path = sqlite3_db_filename(db, "main");
  const char* sql = sqlite3_sql(stmt_);
  absl::string_view sql_text = sql != nullptr ? absl::string_view(sql) : absl::string_view();
  return internal::SqliteStatus(rc, sqlite3_errmsg(db), path != nullptr ? path : "",
                                absl::StrCat(context, " \"", sql_text.substr(0, 80), "\""));
}

absl::Status Stmt::BindNull(int index) {
  int rc = sqlite3_bind_null(stmt_, index);
  return rc == SQLITE_OK ? absl::OkStatus() : Error(rc, "bind");
}

absl::Status Stmt::BindInt64(int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt_, index, value);
  return rc == SQLITE_OK ? absl::OkStatus() : Error(rc, "bind");
}

absl::Status Stmt::BindDouble(int index, double value) {
  int rc = sqlite3_bind_double(stmt_, index, value);
  return rc == SQLITE_OK ? absl::OkStatus() : Error(rc, "bind");
}

absl::Status Stmt::BindText(int index, absl::string_view value) {
  // A null data pointer would bind NULL; an empty string must stay ''.
  int rc = sqlite3_bind_text64(stmt_, index, value.empty() ? "" : value.data(), value.size(),
                               SQLITE_TRANSIENT, SQLITE_UTF8);
  return rc == SQLITE_OK ? absl::OkStatus() : Error(rc, "bind");
}

absl::Status Stmt::BindBlob(int index, const std::vector<uint8_t>& value) {
  // sqlite3_bind_blob with a null pointer binds NULL, so an empty blob needs zeroblob.
  int rc = value.empty()
               ? sqlite3_bind_zeroblob(stmt_, index, 0)
               : sqlite3_bind_blob64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT);
  return rc == SQLITE_OK ? absl::OkStatus() : Error(rc, "bind");
}

absl::StatusOr<bool> Stmt::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return Error(rc, "step");
}

absl::Status Stmt::Run() {
  while (true) {
    absl::StatusOr<bool> row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
  }
}

absl::Status Stmt::Reset() {
  sqlite3_reset(stmt_);
  int rc = sqlite3_clear_bindings(stmt_);
  return rc == SQLITE_OK ? absl::OkStatus() : Error(rc, "reset");
}

bool Stmt::IsNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

int64_t Stmt::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

double Stmt::Double(int column) const { return sqlite3_column_double(stmt_, column); }

std::string Stmt::Text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (text == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(text),
                     static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

std::vector<uint8_t> Stmt::Blob(int column) const {
  const auto* data = static_cast<const uint8_t*>(sqlite3_column_blob(stmt_, column));
  if (data == nullptr) return {};
  return std::vector<uint8_t>(data, data + sqlite3_column_bytes(stmt_, column));
}

std::optional<int64_t> Stmt::OptInt(int column) const {
  if (IsNull(column)) return std::nullopt;
  return Int(column);
}

std::optional<double> Stmt::OptDouble(int column) const {
  if (IsNull(column)) return std::nullopt;
  return Double(column);
}

}  // namespace parallax::cache

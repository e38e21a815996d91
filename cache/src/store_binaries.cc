// Store: compiled cubins keyed by artifact hash.
#include "absl/strings/str_cat.h"
#include "parallax/cache/clock.h"
#include "parallax/cache/store.h"
#include "row_readers.h"
#include "store_internal.h"

namespace parallax::cache {

absl::Status Store::PutBinary(const BinaryEntry& e) {
  if (e.key.empty()) return absl::InvalidArgumentError("binary key is empty");
  std::lock_guard lock(mu_);
  return internal::Execute(
             db_,
             "INSERT INTO binaries (key, arch, generator_version, nvrtc_version, driver_version, "
             "  source_hash, cubin, log, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
             "ON CONFLICT(key) DO UPDATE SET arch = excluded.arch, "
             "  generator_version = excluded.generator_version, "
             "  nvrtc_version = excluded.nvrtc_version, driver_version = excluded.driver_version, "
             "  source_hash = excluded.source_hash, cubin = excluded.cubin, log = excluded.log, "
             "  created_at = excluded.created_at",
             e.key, e.arch, e.generator_version, e.nvrtc_version, e.driver_version, e.source_hash,
             e.cubin, e.log, e.created_at != 0 ? e.created_at : NowUnixMs())
      .status();
}

absl::StatusOr<BinaryEntry> Store::GetBinary(absl::string_view key) {
  std::lock_guard lock(mu_);
  absl::StatusOr<Stmt> stmt = db_.Prepare(
      absl::StrCat("SELECT ", internal::kBinaryColumns, " FROM binaries WHERE key = ?"));
  if (!stmt.ok()) return stmt.status();
  if (absl::Status s = stmt->BindAll(key); !s.ok()) return s;
  absl::StatusOr<bool> row = stmt->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(absl::StrCat("no binary with key '", key, "'"));
  return internal::ReadBinary(*stmt);
}

}  // namespace parallax::cache

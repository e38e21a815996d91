#pragma once
// Small helpers for Import's row-by-row merge: reusable per-row queries, row iteration and
// source-id -> destination-id maps.

#include <cstdint>
#include <optional>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "parallax/cache/db.h"
#include "parallax/cache/stmt.h"

// Declares lhs as a reference to the value of a StatusOr expression, or returns its error.
#define CACHE_ASSIGN_OR_RETURN(lhs, expr)       \
  auto lhs##_or = (expr);                       \
  if (!lhs##_or.ok()) return lhs##_or.status(); \
  auto& lhs = *lhs##_or

namespace parallax::cache::internal {

using IdMap = std::unordered_map<int64_t, int64_t>;  // source id -> destination id

// Calls fn for every row of stmt; stops at the first error from sqlite or from fn.
template <typename Fn>
absl::Status ForEachRow(Stmt& stmt, Fn&& fn) {
  while (true) {
    absl::StatusOr<bool> row = stmt.Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
    if (absl::Status s = fn(stmt); !s.ok()) return s;
  }
}

// A prepared statement reused per row: bind, step once, read the first column if any.
class Query {
 public:
  static absl::StatusOr<Query> Prepare(Db& db, absl::string_view sql) {
    absl::StatusOr<Stmt> stmt = db.Prepare(sql);
    if (!stmt.ok()) return stmt.status();
    return Query(std::move(*stmt));
  }
  // The first column of the first row, or nullopt when there is none.
  template <typename... Args>
  absl::StatusOr<std::optional<int64_t>> Int(const Args&... args) {
    if (absl::Status s = Start(args...); !s.ok()) return s;
    absl::StatusOr<bool> row = stmt_.Step();
    if (!row.ok()) return row.status();
    if (!*row) return std::optional<int64_t>();
    const int64_t value = stmt_.Int(0);
    // Finish a RETURNING write. Only after a row: stepping a statement that already
    // reported DONE would re-execute it.
    if (absl::Status s = stmt_.Run(); !s.ok()) return s;
    return std::optional<int64_t>(value);
  }
  // Steps once and leaves the row (if any) readable through stmt().
  template <typename... Args>
  absl::StatusOr<bool> Row(const Args&... args) {
    if (absl::Status s = Start(args...); !s.ok()) return s;
    return stmt_.Step();
  }
  const Stmt& stmt() const { return stmt_; }
  // Ends a Row() read, so the statement holds no snapshot of the destination.
  absl::Status Reset() { return stmt_.Reset(); }

 private:
  explicit Query(Stmt stmt) : stmt_(std::move(stmt)) {}
  template <typename... Args>
  absl::Status Start(const Args&... args) {
    if (absl::Status s = stmt_.Reset(); !s.ok()) return s;
    return stmt_.BindAll(args...);
  }
  Stmt stmt_;
};

// Source rows always map (foreign keys hold in a checked source); a miss is reported, not
// thrown.
inline absl::StatusOr<int64_t> MapId(const IdMap& ids, int64_t source_id, absl::string_view what) {
  auto it = ids.find(source_id);
  if (it == ids.end()) {
    return absl::DataLossError(
        absl::StrCat("source row refers to missing ", what, " id ", source_id));
  }
  return it->second;
}

inline absl::StatusOr<Stmt> Select(Db& src, absl::string_view sql) { return src.Prepare(sql); }

}  // namespace parallax::cache::internal

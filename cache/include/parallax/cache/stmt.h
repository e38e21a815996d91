#pragma once
// Stmt: RAII prepared statement with typed bind and column helpers.

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct sqlite3_stmt;

namespace parallax::cache {

class Stmt {
 public:
  // Takes ownership of stmt (finalized on destruction). Db::Prepare is the usual source.
  explicit Stmt(sqlite3_stmt* stmt) : stmt_(stmt) {}
  Stmt(Stmt&& other) noexcept;
  Stmt& operator=(Stmt&& other) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  // Parameters are 1-based, as in sqlite. Text and blobs are copied (SQLITE_TRANSIENT) so
  // callers may pass temporaries.
  absl::Status BindNull(int index);
  absl::Status BindInt64(int index, int64_t value);
  absl::Status BindDouble(int index, double value);
  absl::Status BindText(int index, absl::string_view value);
  absl::Status BindBlob(int index, const std::vector<uint8_t>& value);

  // Dispatches on the C++ type; std::optional binds NULL when empty.
  template <typename T>
  absl::Status Bind(int index, const T& value);
  // Binds args to parameters 1..N.
  template <typename... Args>
  absl::Status BindAll(const Args&... args) {
    int index = 0;
    absl::Status status;
    auto bind_one = [&](const auto& arg) {
      if (status.ok()) status = Bind(++index, arg);
    };
    (bind_one(args), ...);
    return status;
  }

  // true: a row is available; false: the statement is done. Stepping again after false
  // re-executes the statement (sqlite resets it automatically), so callers stop there.
  absl::StatusOr<bool> Step();
  // Steps until done, ignoring rows (INSERT/UPDATE/DELETE).
  absl::Status Run();
  absl::Status Reset();

  bool IsNull(int column) const;
  int64_t Int(int column) const;
  double Double(int column) const;
  std::string Text(int column) const;
  std::vector<uint8_t> Blob(int column) const;
  std::optional<int64_t> OptInt(int column) const;
  std::optional<double> OptDouble(int column) const;

  sqlite3_stmt* handle() const { return stmt_; }

 private:
  template <typename T>
  struct IsOptional : std::false_type {};
  template <typename T>
  struct IsOptional<std::optional<T>> : std::true_type {};

  absl::Status Error(int rc, absl::string_view context) const;

  sqlite3_stmt* stmt_ = nullptr;
};

template <typename T>
absl::Status Stmt::Bind(int index, const T& value) {
  if constexpr (std::is_same_v<T, std::nullopt_t>) {
    return BindNull(index);
  } else if constexpr (IsOptional<T>::value) {
    return value.has_value() ? Bind(index, *value) : BindNull(index);
  } else if constexpr (std::is_same_v<T, bool>) {
    return BindInt64(index, value ? 1 : 0);
  } else if constexpr (std::is_integral_v<T>) {
    return BindInt64(index, static_cast<int64_t>(value));
  } else if constexpr (std::is_floating_point_v<T>) {
    return BindDouble(index, static_cast<double>(value));
  } else if constexpr (std::is_same_v<T, std::vector<uint8_t>>) {
    return BindBlob(index, value);
  } else {
    static_assert(std::is_convertible_v<const T&, absl::string_view>,
                  "Stmt::Bind: unsupported parameter type");
    return BindText(index, absl::string_view(value));
  }
}

}  // namespace parallax::cache

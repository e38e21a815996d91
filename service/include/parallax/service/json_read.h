// Typed reads of JSON that came from storage. Rows may have been written by another build, another
// tool or by hand, and nlohmann's value()/get() throw on a type mismatch: one bad row must never
// take a server or a command down, so everything that reads stored JSON goes through these.
// Header-only (nlohmann only) so the CLI's `db` commands use them without the gRPC library.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace parallax::service {

enum class JsonField { kOk, kMissing, kWrongType };

namespace json_internal {

template <typename T>
bool Convert(const nlohmann::json& v, T* out) {
  if constexpr (std::is_same_v<T, nlohmann::json>) {
    *out = v;
    return true;
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) return false;
    *out = v.get_ref<const std::string&>();
    return true;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) return false;
    *out = v.get<bool>();
    return true;
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) return false;
    *out = v.get<T>();
    return true;
  } else {
    static_assert(std::is_integral_v<T>, "ReadJson: string, bool, floating point, integer or json");
    // Integers only, and only when the value fits: a double or a huge number is a damaged row,
    // not something to round or wrap.
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return false;
      *out = static_cast<T>(u);
      return true;
    }
    if (!v.is_number_integer()) return false;
    const int64_t i = v.get<int64_t>();
    if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
        (i > 0 && static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max())))
      return false;
    *out = static_cast<T>(i);
    return true;
  }
}

}  // namespace json_internal

// `j[key]` into *out when `j` is an object whose `key` holds a T. kMissing (out untouched) when
// `j` is not an object, lacks `key` or holds null there; kWrongType (out untouched) otherwise.
template <typename T>
JsonField ReadJson(const nlohmann::json& j, absl::string_view key, T* out) {
  if (!j.is_object()) return JsonField::kMissing;
  const auto it = j.find(std::string(key));
  if (it == j.end() || it->is_null()) return JsonField::kMissing;
  return json_internal::Convert(*it, out) ? JsonField::kOk : JsonField::kWrongType;
}

// For display: the value, or `fallback` when it is missing or of another type.
template <typename T>
T JsonOr(const nlohmann::json& j, absl::string_view key, T fallback) {
  T v = fallback;
  return ReadJson(j, key, &v) == JsonField::kOk ? v : fallback;
}

// "" when `j[key]` is missing or a T; otherwise "key: expected <what>, found <type>".
template <typename T>
std::string JsonTypeProblem(const nlohmann::json& j, absl::string_view key, absl::string_view what) {
  T ignored{};
  if (ReadJson(j, key, &ignored) != JsonField::kWrongType) return "";
  return absl::StrCat(key, ": expected ", what, ", found ", j.find(std::string(key))->type_name());
}

// dump() that replaces invalid UTF-8 (text that never parsed as JSON is kept as a string)
// instead of throwing.
inline std::string SafeDump(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

}  // namespace parallax::service

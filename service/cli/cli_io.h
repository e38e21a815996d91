// What every subcommand needs for input and output: the one-line error convention, files
// ("-" meaning stdin/stdout) and turning a key or a JSON file into a Variant.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parallax/codegen/variant.h"

namespace parallax::cli {

// Prints "parallax: <message>" to stderr as one line (newlines become "; ") and returns
// `exit_code`, so a caller can `return Fail(kExitUsage, status.message());`.
int Fail(int exit_code, absl::string_view message);

// "-" reads stdin.
absl::StatusOr<std::string> ReadFile(const std::string& path);
// "-" or "" writes stdout.
absl::Status WriteFile(const std::string& path, std::string_view data);

// From a variant key, or (when json_path is not empty) from a JSON file in either form
// variant_json.h accepts. Errors are InvalidArgument and already name the key or file.
absl::StatusOr<Variant> LoadVariant(const std::string& key, const std::string& json_path);

// This executable's path: tuners start it again as their `worker` subprocess.
std::string SelfPath();

}  // namespace parallax::cli

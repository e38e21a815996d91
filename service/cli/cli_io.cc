#include "cli_io.h"

#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "parallax/codegen/variant_json.h"

namespace parallax::cli {

int Fail(int exit_code, absl::string_view message) {
  std::cerr << "parallax: " << absl::StrReplaceAll(message, {{"\n", "; "}}) << std::endl;
  return exit_code;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open for reading"));
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

absl::Status WriteFile(const std::string& path, std::string_view data) {
  if (path.empty() || path == "-") {
    std::cout.write(data.data(), static_cast<std::streamsize>(data.size()));
    std::cout.flush();
    return std::cout ? absl::OkStatus() : absl::DataLossError("writing to stdout failed");
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  return absl::OkStatus();
}

absl::StatusOr<Variant> LoadVariant(const std::string& key, const std::string& json_path) {
  if (json_path.empty()) return Variant::Parse(key);
  const std::string name = json_path == "-" ? "<stdin>" : json_path;
  absl::StatusOr<std::string> text = ReadFile(json_path);
  if (!text.ok()) return absl::InvalidArgumentError(text.status().message());
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(name, ": not valid JSON"));
  absl::StatusOr<Variant> v = VariantFromJson(j);
  if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", v.status().message()));
  return v;
}

std::string SelfPath() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("/proc/self/exe");
}

}  // namespace parallax::cli

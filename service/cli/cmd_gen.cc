// `parallax gen`: print the generated CUDA source (or the variant's JSON) of one variant.
#include <memory>
#include <string>

#include "cli_io.h"
#include "parallax/codegen/generator.h"
#include "parallax/codegen/variant_json.h"
#include "registry.h"

namespace parallax::cli {
namespace {

struct GenOptions {
  std::string key;
  std::string json_path;
  std::string output;
  bool print_json = false;
};

int RunGen(const GenOptions& o) {
  if (o.key.empty() == o.json_path.empty())
    return Fail(kExitUsage, "gen needs exactly one of a variant key or --json FILE");
  absl::StatusOr<Variant> v = LoadVariant(o.key, o.json_path);
  if (!v.ok()) return Fail(kExitUsage, v.status().message());
  const std::string text = o.print_json ? ToJson(*v).dump(2) + "\n" : GenerateSource(*v);
  if (absl::Status st = WriteFile(o.output, text); !st.ok()) return Fail(kExitFailure, st.message());
  return kExitOk;
}

Action SetupGen(CLI::App& cmd) {
  auto o = std::make_shared<GenOptions>();
  CLI::Option* key = cmd.add_option(
      "key", o->key,
      "Variant key, e.g. decode-bf16-d128-h32x8-contig-nowin.learned-plain.mma-n64-w4-s2-splitauto-g4 "
      "(test-only -testfault / -testhang keys are refused, here and in --json)");
  cmd.add_option("--json", o->json_path, "Read the variant from a JSON file ('-' = stdin) instead of a key")
      ->excludes(key);
  cmd.add_option("-o,--output", o->output, "Write to FILE instead of stdout");
  cmd.add_flag("--print-json", o->print_json, "Print the variant's JSON instead of its CUDA source");
  return [o] { return RunGen(*o); };
}

}  // namespace

PLX_REGISTER_COMMAND(gen, 10, "Print the CUDA source of a variant", SetupGen);

}  // namespace parallax::cli

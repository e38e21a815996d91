// `parallax warmup`: compile ahead of time what the runtime will load on a GPU (the tuned
// configs the tuning database holds for it, the defaults of named problems, given keys) into
// the binary cache (runtime/binary_cache.h), so the first call of a deployment never waits on
// NVRTC. On a machine with the GPU it targets that GPU; without one, --arch (or a known
// --device-name) says what to compile for, and the files go where that GPU's runtime looks.
// The database is only read. Progress on stderr, the summary (or --json) on stdout.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli_io.h"
#include "cli_options.h"
#include "parallax/cache/paths.h"
#include "parallax/cache/store.h"
#include "parallax/codegen/generator.h"
#include "parallax/codegen/kernel_family.h"
#include "parallax/runtime/binary_cache.h"
#include "parallax/runtime/device.h"
#include "parallax/runtime/known_devices.h"
#include "parallax/runtime/nvrtc_compiler.h"
#include "parallax/search/logging.h"
#include "parallax/search/pruning.h"
#include "parallax/search/tune_args.h"
#include "registry.h"

namespace parallax::cli {
namespace {

struct WarmupOptions {
  search::TuneArgs args;  // the problem flags of `tune` (mode may also be "all")
  bool window = false;
  std::vector<std::string> keys;
  std::string db;
  std::string cache_dir;
  std::string arch;
  std::string device_name;
  int device = 0;
  int jobs = 0;
  bool dry_run = false;
  bool json = false;
};

// What to compile for: a device's arch, and when known its identity in the tuning database.
struct Target {
  std::string arch;                        // "sm_90" (the device's; families add their suffix)
  std::optional<std::string> fingerprint;  // unknown with --arch alone: every device of the arch
  std::string describe;
};

struct Item {
  Variant variant;
  std::vector<std::string> why;  // "tuned b1-l4096", "default decode", "--key"
  std::string arch;              // NVRTC's target (CompileArchFor)
  std::filesystem::path path;
  std::string status;            // cached, compiled, failed, missing (dry run), skipped
  std::string error;
  double seconds = 0;
};

absl::StatusOr<Target> ResolveTarget(const WarmupOptions& o) {
  Target t;
  const KnownDevice* known = nullptr;
  if (!o.device_name.empty()) {
    known = FindKnownDevice(o.device_name);
    if (known == nullptr)
      return absl::InvalidArgumentError(absl::StrCat("--device-name '", o.device_name,
                                                     "' is not a known GPU (see parallax remote get --list-devices); "
                                                     "give --arch instead"));
  }
  if (!o.arch.empty()) {
    if (absl::Status s = ValidateArch(o.arch); !s.ok()) return absl::InvalidArgumentError(s.message());
    const int sm = search::SmOfArch(o.arch);
    if (sm < 80) return absl::InvalidArgumentError(absl::StrCat("--arch ", o.arch, ": Parallax kernels need sm_80 or newer"));
    t.arch = absl::StrCat("sm_", sm);  // sm_90a -> sm_90: each family adds its own suffix
    if (known != nullptr) {
      if (known->cc_major * 10 + known->cc_minor != sm)
        return absl::InvalidArgumentError(absl::StrCat("--arch ", o.arch, " is not ", known->name, "'s (sm_",
                                                       known->cc_major, known->cc_minor, ")"));
      t.fingerprint = DeviceInfoOf(*known).fingerprint();
    }
    t.describe = known != nullptr ? absl::StrCat(known->name, " (", t.arch, ", no GPU needed)")
                                  : absl::StrCat(t.arch, " (no GPU needed)");
    return t;
  }
  if (known != nullptr) {
    const DeviceInfo d = DeviceInfoOf(*known);
    t.arch = d.arch();
    t.fingerprint = d.fingerprint();
    t.describe = absl::StrCat(known->name, " (", t.arch, ", no GPU needed)");
    return t;
  }
  absl::StatusOr<DeviceInfo> d = QueryDevice(o.device);
  if (!d.ok())
    return absl::FailedPreconditionError(absl::StrCat(
        "no GPU here (", d.status().message(), "): give --arch sm_90 (or --device-name H200) to compile for one"));
  t.arch = d->arch();
  t.fingerprint = d->fingerprint();
  t.describe = absl::StrCat("GPU ", o.device, ": ", d->name, " (", t.arch, ")");
  return t;
}

// The problems named on the command line, one per mode asked for. "all" is the inference
// modes: a deployment that only serves never loads the backward, so it is asked for by name.
absl::StatusOr<std::vector<std::pair<std::string, search::TuneRequest>>> NamedProblems(const WarmupOptions& o,
                                                                                   std::vector<std::string>* notes) {
  std::vector<std::pair<std::string, search::TuneRequest>> out;
  const search::TuneArgs& a = o.args;
  if (a.preset.empty() && a.q_heads == 0 && a.kv_heads == 0 && a.head_dim == 0) return out;
  const std::vector<std::string> modes =
      a.mode == "all" ? std::vector<std::string>{"decode", "prefill"} : std::vector<std::string>{a.mode};
  for (const std::string& mode : modes) {
    search::TuneArgs m = a;
    m.mode = mode;
    if (mode == "prefill" && a.paged > 0 && a.mode == "all") {
      notes->push_back("prefill: left out (--paged names a decode cache)");
      continue;
    }
    absl::StatusOr<search::TuneRequest> r = search::MakeTuneRequest(m);
    if (!r.ok()) return r.status();
    r->problem.window = o.window;
    if (absl::Status s = ValidateProblemOnly(r->problem, r->algorithm); !s.ok())
      return absl::InvalidArgumentError(absl::StrCat("bad problem: ", s.message()));
    out.emplace_back(mode, *std::move(r));
  }
  return out;
}

class Plan {
 public:
  void Add(const Variant& v, const std::string& why) {
    auto [it, added] = index_.emplace(v.Key(), items_.size());
    if (added) items_.push_back(Item{v, {why}, "", {}, "", "", 0});
    else if (std::find(items_[it->second].why.begin(), items_[it->second].why.end(), why) ==
             items_[it->second].why.end())
      items_[it->second].why.push_back(why);
  }
  std::vector<Item>& items() { return items_; }

 private:
  std::map<std::string, size_t> index_;
  std::vector<Item> items_;
};

// Tuned configs the runtime on the target would be served (current generator and NVRTC).
absl::Status AddTuned(const std::string& db_path, const Target& t, Plan& plan, int* found) {
  std::error_code ec;
  if (db_path.empty() || !std::filesystem::exists(db_path, ec)) return absl::OkStatus();
  cache::StoreOptions so;
  so.read_only = true;
  absl::StatusOr<std::unique_ptr<cache::Store>> store = cache::Store::Open(db_path, so);
  if (!store.ok()) return store.status();
  cache::BestConfigFilter f;
  if (t.fingerprint) f.device_fingerprint = *t.fingerprint;
  absl::StatusOr<std::vector<cache::BestConfig>> best = (*store)->ListBestConfigs(f);
  if (!best.ok()) return best.status();
  absl::StatusOr<std::vector<cache::DeviceInfo>> devices = (*store)->ListDevices();
  if (!devices.ok()) return devices.status();
  std::map<std::string, int> sm_of;
  for (const cache::DeviceInfo& d : *devices) sm_of[d.fingerprint] = d.cc_major * 10 + d.cc_minor;
  const int sm = search::SmOfArch(t.arch);
  const int nvrtc = NvrtcVersionNumber(NvrtcVersion());
  for (const cache::BestConfig& b : *best) {
    if (b.generator_version != kGeneratorVersion || b.nvrtc_version != nvrtc) continue;  // never served
    if (!t.fingerprint && sm_of[b.device_fingerprint] != sm) continue;
    absl::StatusOr<Variant> v = Variant::Parse(b.variant_key);  // test-only keys do not parse
    if (!v.ok()) continue;
    plan.Add(*v, absl::StrCat("tuned ", b.bucket));
    ++*found;
  }
  return absl::OkStatus();
}

void Compile(Item& it, const std::string& cache_dir, const std::string& nvrtc, bool dry_run) {
  const std::string source = GenerateSource(it.variant);
  it.path = BinaryCacheEntryFor(it.variant.Key(), source, it.arch, nvrtc, cache_dir).path;
  if (ReadCachedBinary(it.path)) {
    it.status = "cached";
    return;
  }
  if (dry_run) {
    it.status = "missing";
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  CompileOptions co;
  co.arch = it.arch;
  absl::StatusOr<CompileResult> r = CompileCuda(source, absl::StrCat(it.variant.Key(), ".cu"), co);
  it.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!r.ok()) {
    it.status = "failed";
    it.error = std::string(r.status().message());
    return;
  }
  if (absl::Status s = WriteCachedBinary(it.path, std::string(r->cubin.begin(), r->cubin.end())); !s.ok()) {
    it.status = "failed";
    it.error = std::string(s.message());
    return;
  }
  it.status = "compiled";
}

int RunWarmup(const WarmupOptions& o) {
  search::LogToStderr();
  absl::StatusOr<Target> target = ResolveTarget(o);
  if (!target.ok())
    return Fail(target.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFailure,
                target.status().message());
  std::vector<std::string> notes;
  absl::StatusOr<std::vector<std::pair<std::string, search::TuneRequest>>> problems = NamedProblems(o, &notes);
  if (!problems.ok()) return Fail(kExitUsage, problems.status().message());
  const std::string db = cache::ResolveDbPath(o.db);
  const std::string cache_dir = o.cache_dir.empty() ? DefaultCacheDir() : o.cache_dir;
  const std::string nvrtc = NvrtcVersion();
  const int sm = search::SmOfArch(target->arch);

  Plan plan;
  int tuned = 0;
  if (absl::Status s = AddTuned(db, *target, plan, &tuned); !s.ok())
    return Fail(kExitUsage, absl::StrCat("tuning database: ", s.message()));
  // The defaults, as Runtime::TunedOrDefault makes them on this arch; a prefill on a TMA
  // family also falls back to the portable family for tensors TMA cannot read.
  for (const auto& [mode, req] : *problems) {
    absl::StatusOr<Variant> v = Variant::Create(req.problem, req.algorithm, DefaultSchedule(req.problem, req.algorithm, sm));
    if (!v.ok()) return Fail(kExitUsage, absl::StrCat("default ", mode, ": ", v.status().message()));
    plan.Add(*v, absl::StrCat("default ", mode));
    if (FamilyOf(*v).abi() == KernelFamily::Abi::kPrefillTma) {
      absl::StatusOr<Variant> portable =
          Variant::Create(req.problem, req.algorithm, DefaultSchedule(req.problem, req.algorithm, 0));
      if (portable.ok()) plan.Add(*portable, "prefill fallback (no TMA)");
    }
  }
  for (const std::string& key : o.keys) {
    absl::StatusOr<Variant> v = Variant::Parse(key);
    if (!v.ok()) return Fail(kExitUsage, absl::StrCat("--key: ", v.status().message()));
    plan.Add(*v, "--key");
  }
  // A split decode runs eagerly as its one-launch twin (RuntimeOptions::eager_one_launch).
  for (size_t i = 0, n = plan.items().size(); i < n; ++i)
    if (std::optional<Variant> twin = OneLaunchTwin(plan.items()[i].variant))
      plan.Add(*twin, "eager one-launch twin");
  std::vector<Item>& items = plan.items();
  if (items.empty())
    return Fail(kExitUsage,
                absl::StrCat("nothing to warm up: no tuned configs for ", target->describe, " in ",
                             db.empty() ? std::string("(no database)") : db,
                             "; name a problem (--preset, or --q-heads/--kv-heads/--head-dim) or give --key"));

  for (Item& it : items) {
    const KernelFamily& family = FamilyOf(it.variant);
    if (std::optional<std::string> why = search::NotOnDeviceReason(family, target->arch)) {
      it.status = "skipped";
      it.error = *why;
    } else {
      it.arch = search::CompileArchFor(family, target->arch);
    }
  }
  const int todo = static_cast<int>(std::count_if(items.begin(), items.end(), [](const Item& i) { return i.status.empty(); }));
  const int threads = std::max(1, std::min(todo, o.jobs > 0 ? o.jobs : static_cast<int>(std::thread::hardware_concurrency())));
  std::cerr << absl::StrFormat("parallax: warmup for %s: %d variant(s), %d thread(s), cache %s\n", target->describe,
                               items.size(), threads, cache_dir);
  for (const std::string& n : notes) std::cerr << "parallax: " << n << "\n";
  const auto t0 = std::chrono::steady_clock::now();
  std::atomic<size_t> next{0};
  std::atomic<int> done{0};
  std::mutex print_mu;
  auto worker = [&] {
    for (size_t i = next++; i < items.size(); i = next++) {
      Item& it = items[i];
      if (it.status.empty()) Compile(it, cache_dir, nvrtc, o.dry_run);
      const int n = ++done;
      std::lock_guard<std::mutex> l(print_mu);
      std::cerr << absl::StrFormat("[%d/%d] %-8s %s%s%s\n", n, items.size(), it.status, it.variant.Key(),
                                   it.status == "compiled" ? absl::StrFormat(" (%s, %.1f s)", it.arch, it.seconds) : "",
                                   it.error.empty() ? "" : absl::StrCat(": ", it.error.substr(0, 300)));
    }
  };
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back(worker);
  for (std::thread& t : pool) t.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::map<std::string, int> counts = {{"compiled", 0}, {"cached", 0}, {"failed", 0}, {"skipped", 0}, {"missing", 0}};
  for (const Item& it : items) ++counts[it.status];
  if (o.json) {
    nlohmann::json vs = nlohmann::json::array();
    for (const Item& it : items) {
      nlohmann::json j = {{"key", it.variant.Key()}, {"why", it.why}, {"status", it.status}};
      if (!it.arch.empty()) j["arch"] = it.arch;
      if (!it.path.empty()) j["path"] = it.path.string();
      if (it.seconds > 0) j["seconds"] = it.seconds;
      if (!it.error.empty()) j["error"] = it.error;
      vs.push_back(std::move(j));
    }
    nlohmann::json j = {{"target", target->describe}, {"arch", target->arch}, {"cache_dir", cache_dir},
                        {"db", db},                   {"nvrtc", nvrtc},       {"tuned_configs", tuned},
                        {"wall_s", wall},             {"variants", vs}};
    if (target->fingerprint) j["device"] = *target->fingerprint;
    for (const auto& [k, n] : counts) j[k] = n;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << absl::StrFormat("# warmup for %s: cache %s, database %s\n", target->describe, cache_dir,
                                 db.empty() ? "none" : db);
    std::cout << absl::StrFormat("  %-8s %7s  %-7s %-40s  %s\n", "status", "seconds", "arch", "why", "variant");
    for (const Item& it : items)
      std::cout << absl::StrFormat("  %-8s %7s  %-7s %-40s  %s\n", it.status,
                                   it.seconds > 0 ? absl::StrFormat("%.1f", it.seconds) : "-",
                                   it.arch.empty() ? "-" : it.arch, absl::StrJoin(it.why, ", ").substr(0, 40),
                                   it.variant.Key());
    std::cout << absl::StrFormat("# %d compiled, %d cached, %d failed, %d skipped%s in %.1f s\n", counts["compiled"],
                                 counts["cached"], counts["failed"], counts["skipped"],
                                 o.dry_run ? absl::StrFormat(", %d missing (dry run)", counts["missing"]) : "",
                                 wall);
  }
  if (counts["failed"] > 0) return Fail(kExitFailure, absl::StrCat(counts["failed"], " variant(s) failed to compile"));
  return kExitOk;
}

Action SetupWarmup(CLI::App& cmd) {
  auto o = std::make_shared<WarmupOptions>();
  search::TuneArgs& a = o->args;
  a.mode = "all";
  cmd.add_option("--arch", o->arch,
                 "Compile for this architecture (sm_80, sm_86, sm_89, sm_90) instead of this machine's GPU: "
                 "no GPU needed; tuned configs of every device of that arch in the database");
  cmd.add_option("--device-name", o->device_name,
                 "Compile for a known GPU (H200, H100, A100 80GB, ...: parallax remote get --list-devices) "
                 "instead of this machine's: its arch and its tuned configs");
  cmd.add_option("--device", o->device, "This machine's GPU to warm up for")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  AddDbOption(cmd, o->db, "Tuning database whose configs to compile, read-only");
  cmd.add_option("--cache-dir", o->cache_dir, "Binary cache to fill (default: $PARALLAX_CACHE_DIR, else ~/.cache/parallax, "
                                             "as the runtime)");
  cmd.add_option("--mode", a.mode,
                 "Problems named below: their decode, prefill or bwd (the training backward of prefill) "
                 "defaults; all = decode and prefill (what inference loads; name bwd for training)")
      ->capture_default_str()->check(CLI::IsMember({"decode", "prefill", "bwd", "all"}));
  cmd.add_option("--preset", a.preset, "A model's attention shape whose defaults to compile: qwen3-0.6b, qwen3-1.7b "
                                      "or llama3-8b")
      ->check(CLI::IsMember({"qwen3-0.6b", "qwen3-1.7b", "llama3-8b"}));
  cmd.add_option("--q-heads", a.q_heads, "Query heads (overrides the preset)")->check(CLI::PositiveNumber);
  cmd.add_option("--kv-heads", a.kv_heads, "KV heads (overrides the preset)")->check(CLI::PositiveNumber);
  cmd.add_option("--head-dim", a.head_dim, "Head dimension: 64, 128 or 256 (overrides the preset)")
      ->check(CLI::IsMember({64, 128, 256}));
  cmd.add_option("--dtype", a.dtype, "bf16 or fp16")->capture_default_str()->check(CLI::IsMember({"bf16", "fp16"}));
  cmd.add_option("--probe", a.probe, "learned (Parallax) or none (softmax)")
      ->capture_default_str()->check(CLI::IsMember({"learned", "none"}));
  cmd.add_option("--affine", a.affine, "plain or amplified")
      ->capture_default_str()->check(CLI::IsMember({"plain", "amplified"}));
  cmd.add_option("--paged", a.paged, "Paged KV cache with N keys per page (decode; bwd refuses it)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_flag("--window", o->window, "Sliding-window variants");
  cmd.add_option("--key", o->keys, "Also compile this variant key (repeatable)");
  cmd.add_option("--jobs", o->jobs, "Compile threads (0: every core)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd.add_flag("--dry-run", o->dry_run, "List what would be compiled and what is cached; compile nothing");
  cmd.add_flag("--json", o->json, "Print the summary as JSON");
  return [o] { return RunWarmup(*o); };
}

}  // namespace

PLX_REGISTER_COMMAND(warmup, 55,
                     "Precompile the tuned (or default) kernels for a GPU into the binary cache, so no call "
                     "waits on NVRTC",
                     SetupWarmup);

}  // namespace parallax::cli

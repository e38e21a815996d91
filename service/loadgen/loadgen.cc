// plx_service_loadgen: N concurrent clients calling GetBestConfig on a server for a while;
// prints QPS, latency percentiles and errors as JSON. Each client keeps exactly one call in
// flight (callback API, no thread per client), spread over a few connections.
//
//   plx_service_loadgen --seed-db /tmp/t.db            # fill a cache with lookup targets
//   parallax serve --db /tmp/t.db --listen 127.0.0.1:0 --port-file /tmp/port &
//   plx_service_loadgen --server 127.0.0.1:$(cat /tmp/port) --duration 60 --out r.json
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <unistd.h>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <sys/resource.h>
#include <sys/utsname.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "parallax/cache/store.h"
#include "parallax/service/buckets.h"
#include "parallax/service/client.h"
#include "parallax/service/validate.h"

namespace parallax::service {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string server = "127.0.0.1:50051";
  std::string token_file;
  int clients = 32;
  int channels = 4;
  double duration_s = 60;
  double warmup_s = 2;
  double deadline_ms = 1000;
  std::string seed_db;
  std::string out;
  std::string machine;
  double target_qps = 5000;
  double target_p99_ms = 5;
  double rate = 0;  // > 0: the clients together send this many calls per second (paced)
};

v1::DeviceFingerprint LoadDevice() {
  v1::DeviceFingerprint d;
  d.set_name("NVIDIA H100 80GB HBM3");
  d.set_cc_major(9);
  d.set_cc_minor(0);
  d.set_sm_count(132);
  d.set_memory_bytes(int64_t{81559} << 20);
  d.set_driver_version(13000);
  d.set_nvrtc_version("13.0");
  return d;
}

std::vector<v1::Problem> LoadProblems() {
  std::vector<v1::Problem> out;
  auto base = [] {
    v1::Problem p;
    p.set_mode(v1::MODE_DECODE);
    p.set_dtype(v1::DTYPE_BF16);
    p.set_head_dim(128);
    p.set_num_q_heads(32);
    p.set_num_kv_heads(8);
    p.set_kv_layout(v1::KV_LAYOUT_CONTIGUOUS);
    p.set_probe(v1::PROBE_LEARNED);
    p.set_affine(v1::AFFINE_PLAIN);
    return p;
  };
  v1::Problem paged = base();
  paged.set_kv_layout(v1::KV_LAYOUT_PAGED);
  paged.set_page_size(16);
  v1::Problem prefill = base();
  prefill.set_mode(v1::MODE_PREFILL);
  prefill.set_dtype(v1::DTYPE_FP16);
  prefill.set_probe(v1::PROBE_NONE);
  v1::Problem untuned = base();  // never seeded: answered with the default
  untuned.set_head_dim(64);
  for (const v1::Problem& shape : {base(), paged, prefill, untuned})
    for (int batch : {1, 3, 8, 24, 64})
      for (int seqlen : {700, 4000, 9000, 32768}) {
        v1::Problem p = shape;
        p.set_batch(batch);
        p.set_seqlen(seqlen);
        out.push_back(p);
      }
  return out;
}

// Best configs for the first three shapes at half of the buckets: the rest of the requests
// hit the nearest bucket or (fourth shape) the default.
int Seed(const std::string& path) {
  absl::StatusOr<std::unique_ptr<cache::Store>> store = cache::Store::Open(path);
  if (!store.ok()) return std::cerr << store.status() << "\n", 1;
  ServiceLimits limits;
  const v1::DeviceFingerprint dev = LoadDevice();
  cache::DeviceInfo info;
  info.fingerprint = *ValidateDevice(dev, "device", limits);
  info.name = dev.name();
  info.cc_major = dev.cc_major();
  info.sm_count = dev.sm_count();
  info.mem_bytes = dev.memory_bytes();
  info.driver_version = dev.driver_version();
  info.nvrtc_version = 13000;
  if (absl::StatusOr<int64_t> id = (*store)->UpsertDevice(info); !id.ok()) return std::cerr << id.status() << "\n", 1;
  int n = 0;
  std::mt19937 rng(7);
  for (const v1::Problem& p : LoadProblems()) {
    if (p.head_dim() == 64 || p.batch() % 3 == 0) continue;
    absl::StatusOr<ProblemSpec> spec = ValidateProblem(p, "problem");
    if (!spec.ok()) return std::cerr << spec.status() << "\n", 1;
    cache::BestConfig c;
    c.device_fingerprint = info.fingerprint;
    c.problem_key = spec->problem_key;
    c.bucket = spec->bucket;
    c.variant_key = spec->default_variant_key;
    c.median_us = 5 + std::uniform_real_distribution<double>(0, 50)(rng);
    c.generator_version = kGeneratorVersion;
    c.nvrtc_version = 13000;
    if (absl::Status s = (*store)->SetBestConfig(c); !s.ok()) return std::cerr << s << "\n", 1;
    ++n;
  }
  std::cerr << "seeded " << n << " best configs into " << path << "\n";
  return 0;
}

struct Stats {
  std::vector<uint32_t> latency_us;
  std::map<std::string, int64_t> errors;
  std::map<std::string, int64_t> matches;
};

// Paced mode: one thread that starts each client's next call at its scheduled time.
class Pacer {
 public:
  Pacer() : thread_([this] { Loop(); }) {}
  ~Pacer() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void At(Clock::time_point when, std::function<void()> f) {
    {
      std::lock_guard lock(mu_);
      due_.push({when, seq_++, std::move(f)});
    }
    cv_.notify_one();
  }

 private:
  struct Item {
    Clock::time_point when;
    uint64_t seq;
    std::function<void()> f;
    bool operator>(const Item& o) const { return std::tie(when, seq) > std::tie(o.when, o.seq); }
  };
  void Loop() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      if (due_.empty()) {
        cv_.wait(lock);
        continue;
      }
      if (Clock::now() < due_.top().when) {
        cv_.wait_until(lock, due_.top().when);
        continue;
      }
      std::function<void()> f = due_.top().f;
      due_.pop();
      lock.unlock();
      f();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Item, std::vector<Item>, std::greater<>> due_;
  uint64_t seq_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

// One simulated client: issues the next call from the previous call's completion (or, when
// paced, at its next scheduled time).
class Caller {
 public:
  Caller(v1::Tuner::Stub* stub, const std::vector<v1::GetBestConfigRequest>* requests, size_t first,
         const Options& o, const std::string& token, std::atomic<int>* running)
      : stub_(stub), requests_(requests), next_(first), o_(o), token_(token), running_(running) {}

  void Start(const std::atomic<bool>* measuring, const std::atomic<bool>* stop, Pacer* pacer) {
    pacer_ = pacer;
    measuring_ = measuring;
    stop_ = stop;
    if (o_.rate > 0) {
      // Paced: each client sends every clients/rate seconds, phases spread over one period.
      interval_ = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.clients / o_.rate));
      next_send_ = Clock::now() + interval_ * static_cast<int64_t>(next_ % 997) / 997;
      return Wait();
    }
    Issue();
  }
  Stats& stats() { return stats_; }

 private:
  void Issue() {
    ctx_ = std::make_unique<grpc::ClientContext>();
    ctx_->set_deadline(std::chrono::system_clock::now() +
                       std::chrono::microseconds(static_cast<int64_t>(o_.deadline_ms * 1000)));
    if (!token_.empty()) ctx_->AddMetadata("authorization", "Bearer " + token_);
    const v1::GetBestConfigRequest& req = (*requests_)[next_++ % requests_->size()];
    recording_ = measuring_->load();
    start_ = Clock::now();
    stub_->async()->GetBestConfig(ctx_.get(), &req, &resp_, [this](grpc::Status s) { Done(s); });
  }

  void Done(const grpc::Status& s) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start_).count();
    if (recording_ && measuring_->load()) {
      if (s.ok()) {
        stats_.latency_us.push_back(static_cast<uint32_t>(us));
        ++stats_.matches[v1::Match_Name(resp_.match())];
      } else {
        ++stats_.errors[absl::StrCat(s.error_code(), ": ", s.error_message())];
      }
    }
    if (stop_->load()) {
      running_->fetch_sub(1);
      return;
    }
    if (o_.rate > 0) {
      next_send_ += interval_;
      if (next_send_ > Clock::now()) return Wait();
    }
    Issue();
  }

  void Wait() { pacer_->At(next_send_, [this] { Issue(); }); }

  v1::Tuner::Stub* stub_;
  const std::vector<v1::GetBestConfigRequest>* requests_;
  size_t next_;
  const Options& o_;
  const std::string& token_;
  std::atomic<int>* running_;
  const std::atomic<bool>* measuring_ = nullptr;
  const std::atomic<bool>* stop_ = nullptr;
  std::unique_ptr<grpc::ClientContext> ctx_;
  v1::GetBestConfigResponse resp_;
  bool recording_ = false;
  Clock::time_point start_;
  Clock::duration interval_{};
  Clock::time_point next_send_;
  Pacer* pacer_ = nullptr;
  Stats stats_;
};

nlohmann::json MachineJson(const Options& o) {
  std::string cpu;
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);)
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  utsname u{};
  uname(&u);
  return {{"description", o.machine},
          {"cpu_model", cpu},
          {"cpus", std::thread::hardware_concurrency()},
          {"kernel", absl::StrCat(u.sysname, " ", u.release)}};
}

// CPU seconds: the whole machine busy (all processes, from /proc/stat) and this process.
struct CpuSample {
  double machine_busy_s = 0;
  double self_s = 0;
};
CpuSample SampleCpu() {
  CpuSample c;
  std::ifstream stat("/proc/stat");
  std::string cpu;
  double v[8] = {};
  stat >> cpu >> v[0] >> v[1] >> v[2] >> v[3] >> v[4] >> v[5] >> v[6] >> v[7];
  const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
  c.machine_busy_s = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / hz;  // all but idle and iowait
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  c.self_s = static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
             static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  return c;
}

uint32_t Percentile(const std::vector<uint32_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  const size_t i = std::min(sorted.size() - 1, static_cast<size_t>(q * static_cast<double>(sorted.size())));
  return sorted[i];
}

int Run(const Options& o) {
  if (!o.seed_db.empty()) return Seed(o.seed_db);
  absl::StatusOr<ClientOptions> co = ClientOptionsFromFiles(o.server, o.token_file, "", "");
  if (!co.ok()) return std::cerr << co.status() << "\n", 2;

  std::vector<v1::GetBestConfigRequest> requests;
  for (const v1::Problem& p : LoadProblems()) {
    v1::GetBestConfigRequest r;
    *r.mutable_device() = LoadDevice();
    *r.mutable_problem() = p;
    requests.push_back(r);
  }
  // Distinct channel args keep gRPC from sharing one connection between the channels.
  std::vector<std::unique_ptr<v1::Tuner::Stub>> stubs;
  for (int i = 0; i < o.channels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("parallax.loadgen_channel", i);
    stubs.push_back(v1::Tuner::NewStub(grpc::CreateCustomChannel(o.server, grpc::InsecureChannelCredentials(), args)));
  }
  std::atomic<bool> measuring{false}, stop{false};
  std::atomic<int> running{o.clients};
  std::vector<std::unique_ptr<Caller>> callers;
  for (int i = 0; i < o.clients; ++i)
    callers.push_back(std::make_unique<Caller>(stubs[i % o.channels].get(), &requests, static_cast<size_t>(i) * 7, o,
                                               co->token, &running));
  std::unique_ptr<Pacer> pacer = o.rate > 0 ? std::make_unique<Pacer>() : nullptr;
  for (auto& c : callers) c->Start(&measuring, &stop, pacer.get());
  absl::SleepFor(absl::Seconds(o.warmup_s));
  measuring = true;
  const auto t0 = Clock::now();
  const CpuSample cpu0 = SampleCpu();
  absl::SleepFor(absl::Seconds(o.duration_s));
  measuring = false;
  const CpuSample cpu1 = SampleCpu();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  stop = true;
  while (running.load() > 0) absl::SleepFor(absl::Milliseconds(5));

  Stats all;
  for (auto& c : callers) {
    Stats& s = c->stats();
    all.latency_us.insert(all.latency_us.end(), s.latency_us.begin(), s.latency_us.end());
    for (auto& [k, v] : s.errors) all.errors[k] += v;
    for (auto& [k, v] : s.matches) all.matches[k] += v;
  }
  std::sort(all.latency_us.begin(), all.latency_us.end());
  int64_t errors = 0;
  for (auto& [k, v] : all.errors) errors += v;
  const double ok = static_cast<double>(all.latency_us.size());
  double sum = 0;
  for (uint32_t v : all.latency_us) sum += v;
  const double qps = ok / elapsed;
  const double p99_ms = Percentile(all.latency_us, 0.99) / 1000.0;
  nlohmann::json j = {
      {"benchmark", "GetBestConfig load (plx_service_loadgen)"},
      {"date", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone())},
      {"machine", MachineJson(o)},
      {"server", o.server},
      {"clients", o.clients},
      {"mode", o.rate > 0 ? absl::StrCat("paced at ", o.rate, " calls/s") : "closed loop (one call in flight per client)"},
      {"channels", o.channels},
      {"duration_s", elapsed},
      {"warmup_s", o.warmup_s},
      {"requests_ok", all.latency_us.size()},
      {"errors", errors},
      {"error_kinds", all.errors},
      {"matches", all.matches},
      {"qps", qps},
      {"latency_us",
       {{"mean", ok > 0 ? sum / ok : 0},
        {"p50", Percentile(all.latency_us, 0.50)},
        {"p90", Percentile(all.latency_us, 0.90)},
        {"p99", Percentile(all.latency_us, 0.99)},
        {"p999", Percentile(all.latency_us, 0.999)},
        {"max", all.latency_us.empty() ? 0u : all.latency_us.back()}}},
      // Cores busy on average while measuring: everything vs this load generator. The server
      // and anything else running on the machine make up the difference.
      {"cpu_cores_busy",
       {{"machine", (cpu1.machine_busy_s - cpu0.machine_busy_s) / elapsed},
        {"loadgen", (cpu1.self_s - cpu0.self_s) / elapsed}}},
      {"target", {{"qps", o.target_qps}, {"p99_ms", o.target_p99_ms}, {"met", qps >= 0.995 * o.target_qps && p99_ms <= o.target_p99_ms && errors == 0}}}};
  const std::string text = j.dump(2) + "\n";
  if (o.out.empty()) {
    std::cout << text;
  } else {
    std::ofstream(o.out) << text;
    std::cerr << text;
  }
  return 0;
}

}  // namespace
}  // namespace parallax::service

int main(int argc, char** argv) {
  parallax::service::Options o;
  CLI::App app{"Load generator for the Parallax tuning service (GetBestConfig)", "plx_service_loadgen"};
  app.add_option("--server", o.server, "host:port")->capture_default_str();
  app.add_option("--token-file", o.token_file, "Bearer token file");
  app.add_option("--clients", o.clients, "Concurrent clients")->capture_default_str()->check(CLI::Range(1, 10000));
  app.add_option("--channels", o.channels, "Connections shared by the clients")->capture_default_str()->check(CLI::Range(1, 256));
  app.add_option("--duration", o.duration_s, "Seconds measured")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup_s, "Seconds before measuring")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--deadline-ms", o.deadline_ms, "Per-call deadline")->capture_default_str();
  app.add_option("--seed-db", o.seed_db, "Write lookup targets into this cache file and exit");
  app.add_option("--out", o.out, "Write the JSON report here (also echoed to stderr)");
  app.add_option("--machine", o.machine, "Machine description for the report");
  app.add_option("--rate", o.rate, "Pace the clients to this many calls/s in total (0: as fast as they can)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--target-qps", o.target_qps, "QPS goal")->capture_default_str();
  app.add_option("--target-p99-ms", o.target_p99_ms, "p99 latency goal")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // As in `parallax serve`: no lock-order checking on gRPC's mutexes in a benchmark.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return parallax::service::Run(o);
}

// Output of `parallax remote`: one line per item for people, JSON (--json) for scripts.
#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "parallax/codegen/bucket.h"
#include "remote_args.h"

namespace parallax::cli {

std::string ToJson(const google::protobuf::Message& m, bool pretty) {
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  o.add_whitespace = pretty;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);  // cannot fail for our messages
  return out;
}

std::string DescribeProgress(const v1::JobProgress& p) {
  std::string line = absl::StrFormat("job %d %s %d/%d variants", p.job_id(),
                                     v1::JobState_Name(p.state()).substr(10), p.variants_tried(), p.variants_total());
  if (p.eta_seconds() >= 0) absl::StrAppendFormat(&line, ", eta %.0f s", p.eta_seconds());
  for (const v1::ProblemBest& b : p.best_so_far())
    if (!b.variant_key().empty())
      absl::StrAppendFormat(&line, "\n  [%d] %s %s: %s %.2f us", b.problem_index(), b.problem_key(), b.bucket(),
                            b.variant_key(), b.median_us());
  if (!p.message().empty()) absl::StrAppend(&line, line.find('\n') == std::string::npos ? ": " : "\n  ", p.message());
  return line;
}

void PrintBestConfig(const v1::GetBestConfigResponse& r) {
  std::cout << r.variant_key() << "\n"
            << absl::StrFormat("# %s", v1::Match_Name(r.match()).substr(6));
  if (r.match() != v1::MATCH_DEFAULT) std::cout << absl::StrFormat(", bucket %s, median %.2f us", r.bucket(), r.median_us());
  std::cout << absl::StrFormat(" (asked %s of %s)\n", r.requested_bucket(), r.problem_key());
}

// A table per (device, problem), buckets in numeric order (the server pages them in that
// order too).
void PrintConfigs(const v1::ListConfigsResponse& r) {
  std::vector<const v1::ConfigEntry*> rows;
  for (const v1::ConfigEntry& e : r.configs()) rows.push_back(&e);
  std::stable_sort(rows.begin(), rows.end(), [](const v1::ConfigEntry* a, const v1::ConfigEntry* b) {
    if (a->device_fingerprint() != b->device_fingerprint()) return a->device_fingerprint() < b->device_fingerprint();
    if (a->problem_key() != b->problem_key()) return a->problem_key() < b->problem_key();
    return BucketLess(a->bucket(), b->bucket());
  });
  std::string last;
  for (const v1::ConfigEntry* e : rows) {
    const std::string group = absl::StrCat(e->problem_key(), " on ", e->device_fingerprint());
    if (group != last) {
      std::cout << group << "\n" << absl::StrFormat("  %-13s %10s  %s\n", "bucket", "median_us", "variant");
      last = group;
    }
    const std::string& key = e->variant_key();
    const std::string schedule = key.substr(std::min(key.size(), e->problem_key().size() + 1));
    std::cout << absl::StrFormat("  %-13s %10.2f  %s%s\n", e->bucket(), e->median_us(), schedule,
                                 e->stale() ? "  (stale: another generator)" : "");
  }
  if (rows.empty()) std::cout << "no tuned configs\n";
  if (!r.next_page_token().empty()) std::cout << "# more: --page-token " << r.next_page_token() << "\n";
}

void PrintImport(const v1::ImportResultsResponse& r, const std::string& file) {
  std::cout << absl::StrFormat("merged %s into the server's database (%d bytes; inserted / updated / skipped):\n",
                               file, r.bytes_received());
  const std::pair<const char*, const v1::MergeCounts*> rows[] = {
      {"devices", &r.devices()},           {"problems", &r.problems()}, {"variants", &r.variants()},
      {"runs", &r.runs()},                 {"measurements", &r.measurements()},
      {"best_configs", &r.best_configs()}, {"binaries", &r.binaries()}};
  for (const auto& [name, c] : rows)
    std::cout << absl::StrFormat("  %-13s %6d %6d %6d\n", name, c->inserted(), c->updated(), c->skipped());
  std::cout << "  (binaries are never imported: they are compiled again on demand)\n";
}

void PrintJobs(const v1::ListJobsResponse& r) {
  for (const v1::JobProgress& p : r.jobs()) std::cout << DescribeProgress(p) << "\n";
}

}  // namespace parallax::cli

// Output of `parallax remote`: one line per item for people, JSON (--json) for scripts.
#include <iostream>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_format.h"
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

void PrintConfigs(const v1::ListConfigsResponse& r) {
  for (const v1::ConfigEntry& e : r.configs())
    std::cout << absl::StrFormat("%s  %s  %s  %.2f us%s\n    %s\n", e.device_fingerprint(), e.problem_key(),
                                 e.bucket(), e.median_us(), e.stale() ? "  (stale)" : "", e.variant_key());
  if (!r.next_page_token().empty()) std::cout << "# more: --page-token " << r.next_page_token() << "\n";
}

void PrintJobs(const v1::ListJobsResponse& r) {
  for (const v1::JobProgress& p : r.jobs()) std::cout << DescribeProgress(p) << "\n";
}

}  // namespace parallax::cli

#include "client_errors.h"

#include <algorithm>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace parallax::service {
namespace {

// Longer words are cut: long enough for an Echo() with its field name (escaping may take
// 4 bytes per byte), short enough that a 2 MiB key from an upload never goes out whole.
constexpr size_t kMaxWordBytes = 4 * kMaxEchoBytes + 64;

constexpr char kHidden[] = "<server-path>";  // no space: one word, so the rest of a path goes too

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

// The longest prefix of `s` of at most `max` bytes that does not end inside a UTF-8 sequence.
absl::string_view Utf8Prefix(absl::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

std::string Cut(absl::string_view word) {
  return absl::StrCat(Utf8Prefix(word, kMaxEchoBytes), "...(", word.size(), " bytes)");
}

// One whitespace-free word: an absolute path in it (a known one already replaced by kHidden,
// or one found by its leading '/'), up to closing punctuation, is hidden; an overlong word is
// cut.
std::string ScrubWord(absl::string_view word, bool* hid_path) {
  size_t start = word.find(kHidden);
  if (start == absl::string_view::npos) {
    // '/' that starts the word or follows a quote, bracket, '=' or ':' ("path='/srv/x.db'").
    for (size_t k = 0; k + 1 < word.size(); ++k) {
      if (word[k] == '/' && (k == 0 || absl::string_view("'\"`([{<=:").find(word[k - 1]) != absl::string_view::npos)) {
        start = k;
        break;
      }
    }
  }
  if (start != absl::string_view::npos) {
    const absl::string_view hidden(kHidden);
    const size_t min_end = start + (word.substr(start, hidden.size()) == hidden ? hidden.size() : 1);
    size_t end = word.size();
    while (end > min_end && absl::string_view("'\"`)]}>,;:.").find(word[end - 1]) != absl::string_view::npos) --end;
    *hid_path = true;
    return absl::StrCat(word.substr(0, start), kHidden, word.substr(end));
  }
  if (word.size() > kMaxWordBytes) return Cut(word);
  return std::string(word);
}

}  // namespace

std::string Echo(absl::string_view value) {
  const absl::string_view shown = Utf8Prefix(value, kMaxEchoBytes);
  std::string out = absl::StrCat("'", absl::CHexEscape(shown), "'");
  if (shown.size() < value.size()) absl::StrAppend(&out, "...(", value.size(), " bytes)");
  return out;
}

ClientErrors::ClientErrors(const std::vector<std::string>& server_paths) {
  for (const std::string& p : server_paths) {
    if (p.empty()) continue;
    std::error_code ec;
    const std::filesystem::path abs = std::filesystem::absolute(p, ec);
    for (std::string v : {p, ec ? std::string() : abs.lexically_normal().string()}) {
      while (v.size() > 1 && v.back() == '/') v.pop_back();
      // "." or "/" would hide every dot or slash, not a path.
      if (v.size() >= 2 && v != ".." && std::find(paths_.begin(), paths_.end(), v) == paths_.end())
        paths_.push_back(v);
    }
  }
  std::sort(paths_.begin(), paths_.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
}

std::string ClientErrors::ScrubMessage(absl::string_view message, bool* hid_path) const {
  bool hid = false;
  std::string text(message);
  for (const std::string& p : paths_) {
    if (text.find(p) == std::string::npos) continue;
    hid = true;
    text = absl::StrReplaceAll(text, {{p, kHidden}});
  }
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (IsSpace(text[i])) {
      out.push_back(' ');
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && !IsSpace(text[j])) ++j;
    absl::StrAppend(&out, ScrubWord(absl::string_view(text).substr(i, j - i), &hid));
    i = j;
  }
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  if (out.size() > kMaxClientMessageBytes)
    out = absl::StrCat(Utf8Prefix(out, kMaxClientMessageBytes), "...(message cut)");
  if (hid_path) *hid_path = hid;
  return out;
}

grpc::Status ClientErrors::Scrub(const grpc::Status& status) const {
  if (status.ok() || status.error_message().empty()) return status;
  bool hid = false;
  std::string message = ScrubMessage(status.error_message(), &hid);
  if (hid)
    spdlog::info("answering {} with server paths hidden; original: {}", static_cast<int>(status.error_code()),
                 std::string(Utf8Prefix(status.error_message(), 4096)));
  return {status.error_code(), std::move(message)};
}

}  // namespace parallax::service

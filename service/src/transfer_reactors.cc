// ExportResults / ImportResults: the cache as a SQLite file, streamed in chunks. File and
// database work runs on the transfer pool (one thread), reactors only start the next read or
// write, so a large merge never holds a gRPC thread.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "status_util.h"
#include "tuner_service.h"

namespace parallax::service {
namespace {

constexpr char kSqliteHeader[] = "SQLite format 3";  // 16 bytes with the NUL

std::string TempPath(const std::string& dir, absl::string_view what) {
  static std::atomic<uint64_t> counter{0};
  return (std::filesystem::path(dir) / absl::StrCat(".parallax-", what, "-", getpid(), "-", counter++, ".db")).string();
}

void RemoveQuietly(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

const grpc::Status kBusy(grpc::StatusCode::RESOURCE_EXHAUSTED, "another export or import is in progress; retry later");
const grpc::Status kStopping(grpc::StatusCode::UNAVAILABLE, "server is shutting down");
const grpc::Status kCancelled(grpc::StatusCode::CANCELLED, "cancelled by the client");

// Base for both: exactly one Finish, whichever thread gets there first.
template <typename Base>
class OnceFinisher : public Base {
 protected:
  void FinishOnce(const grpc::Status& status) {
    if (finished_.exchange(true)) return;
    this->Finish(status);  // last touch of `this`: OnDone may run right after
  }
  std::atomic<bool> cancelled_{false};

 private:
  std::atomic<bool> finished_{false};
};

class ExportReactor final : public OnceFinisher<grpc::ServerWriteReactor<v1::ExportChunk>> {
 public:
  explicit ExportReactor(const ServiceDeps& d) : d_(d) {
    if (!d_.transfers->TrySubmit([this] { Prepare(); })) FinishOnce(kBusy);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return FinishOnce(kCancelled);
    if (offset_ >= total_) return FinishOnce(grpc::Status::OK);
    if (!d_.transfers->SubmitContinuation([this] { SendNext(); })) FinishOnce(kStopping);
  }
  void OnCancel() override { cancelled_ = true; }  // the pending write or task finishes
  void OnDone() override { delete this; }

 private:
  void Prepare() {
    if (cancelled_) return FinishOnce(kCancelled);
    const std::string path = TempPath(d_.temp_dir, "export");
    if (absl::Status s = d_.transfer_store->Export(path); !s.ok()) {
      RemoveQuietly(path);
      return FinishOnce(ToGrpc(s));
    }
    in_.open(path, std::ios::binary);
    std::error_code ec;
    total_ = static_cast<int64_t>(std::filesystem::file_size(path, ec));
    RemoveQuietly(path);  // the open stream keeps the data until it closes
    if (!in_ || ec) return FinishOnce({grpc::StatusCode::INTERNAL, "cannot read the exported file"});
    if (total_ == 0) return FinishOnce(grpc::Status::OK);
    SendNext();
  }

  void SendNext() {
    if (cancelled_) return FinishOnce(kCancelled);
    const int64_t size = std::min<int64_t>(d_.limits.export_chunk_bytes, total_ - offset_);
    chunk_.Clear();
    std::string* data = chunk_.mutable_data();
    data->resize(static_cast<size_t>(size));
    if (!in_.read(data->data(), size)) return FinishOnce({grpc::StatusCode::INTERNAL, "reading the export failed"});
    chunk_.set_offset(offset_);
    chunk_.set_total_bytes(total_);
    offset_ += size;
    StartWrite(&chunk_);
  }

  const ServiceDeps& d_;
  std::ifstream in_;
  int64_t total_ = 0;
  int64_t offset_ = 0;
  v1::ExportChunk chunk_;
};

class ImportReactor final : public OnceFinisher<grpc::ServerReadReactor<v1::ImportChunk>> {
 public:
  ImportReactor(const ServiceDeps& d, v1::ImportResultsResponse* resp)
      : d_(d), resp_(resp), path_(TempPath(d.temp_dir, "import")) {
    StartRead(&chunk_);
  }
  void OnReadDone(bool ok) override {
    if (cancelled_) return FinishOnce(kCancelled);
    if (!ok) {  // the client closed its side: merge what came
      if (!d_.transfers->TrySubmit([this] { Merge(); })) FinishOnce(kBusy);
      return;
    }
    if (!d_.transfers->SubmitContinuation([this] { Append(); })) FinishOnce(kStopping);
  }
  void OnCancel() override { cancelled_ = true; }
  void OnDone() override {
    RemoveQuietly(path_);
    delete this;
  }

 private:
  static grpc::Status Bad(const std::string& message) { return {grpc::StatusCode::INVALID_ARGUMENT, message}; }

  void Append() {
    if (cancelled_) return FinishOnce(kCancelled);
    const std::string& data = chunk_.data();
    if (received_ == 0) {
      total_ = chunk_.total_bytes();
      if (total_ <= 0) return FinishOnce(Bad("total_bytes: required on the first chunk"));
      if (total_ > d_.limits.max_import_bytes)
        return FinishOnce(Bad(absl::StrCat("total_bytes=", total_, ": larger than the server's limit of ",
                                           d_.limits.max_import_bytes)));
      if (data.size() < sizeof(kSqliteHeader) || data.compare(0, sizeof(kSqliteHeader), kSqliteHeader,
                                                              sizeof(kSqliteHeader)) != 0)
        return FinishOnce(Bad("data: not an SQLite database (header missing in the first chunk)"));
      out_.open(path_, std::ios::binary | std::ios::trunc);
      if (!out_) return FinishOnce({grpc::StatusCode::INTERNAL, "cannot create the import file"});
    } else if (chunk_.total_bytes() != 0 && chunk_.total_bytes() != total_) {
      return FinishOnce(Bad(absl::StrCat("total_bytes=", chunk_.total_bytes(), ": differs from the first chunk's ", total_)));
    }
    if (received_ + static_cast<int64_t>(data.size()) > total_)
      return FinishOnce(Bad(absl::StrCat("data: more than total_bytes=", total_, " bytes")));
    out_.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out_) return FinishOnce({grpc::StatusCode::INTERNAL, "writing the import file failed"});
    received_ += static_cast<int64_t>(data.size());
    StartRead(&chunk_);
  }

  void Merge() {
    if (cancelled_) return FinishOnce(kCancelled);
    if (received_ == 0) return FinishOnce(Bad("data: empty import"));
    if (received_ != total_)
      return FinishOnce(Bad(absl::StrCat("data: got ", received_, " of total_bytes=", total_, " bytes")));
    out_.close();
    absl::StatusOr<cache::ImportStats> stats = d_.transfer_store->Import(path_);
    RemoveQuietly(path_);
    d_.lookup_cache->InvalidateAll();  // merged configs are served at once (harmless after a rollback)
    if (!stats.ok()) {
      // A damaged or foreign file is the client's input, not our data loss.
      if (absl::IsDataLoss(stats.status()) || absl::IsInvalidArgument(stats.status()))
        return FinishOnce(Bad(absl::StrCat("data: ", stats.status().message())));
      return FinishOnce(ToGrpc(stats.status()));
    }
    auto set = [](v1::MergeCounts* m, const cache::RowCounts& c) {
      m->set_inserted(c.inserted);
      m->set_updated(c.updated);
      m->set_skipped(c.skipped);
    };
    set(resp_->mutable_devices(), stats->devices);
    set(resp_->mutable_problems(), stats->problems);
    set(resp_->mutable_variants(), stats->variants);
    set(resp_->mutable_runs(), stats->runs);
    set(resp_->mutable_measurements(), stats->measurements);
    set(resp_->mutable_best_configs(), stats->best_configs);
    set(resp_->mutable_binaries(), stats->binaries);
    resp_->set_bytes_received(received_);
    FinishOnce(grpc::Status::OK);
  }

  const ServiceDeps& d_;
  v1::ImportResultsResponse* resp_;
  const std::string path_;
  std::ofstream out_;
  int64_t total_ = 0;
  int64_t received_ = 0;
  v1::ImportChunk chunk_;
};

}  // namespace

grpc::ServerWriteReactor<v1::ExportChunk>* NewExportReactor(const ServiceDeps& d) { return new ExportReactor(d); }

grpc::ServerReadReactor<v1::ImportChunk>* NewImportReactor(const ServiceDeps& d, grpc::CallbackServerContext*,
                                                           v1::ImportResultsResponse* resp) {
  return new ImportReactor(d, resp);
}

}  // namespace parallax::service

// ExportResults / ImportResults: the cache as a SQLite file, streamed in chunks. File and
// database work runs on the transfer pool (one thread), reactors only start the next read or
// write, so a large merge never holds a gRPC thread. Streams that wait on their client past
// the idle limit are ended by the watchdog; uploads are admitted by the ImportGate.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "import_status.h"
#include "parallax/search/import_checks.h"
#include "raw_messages.h"
#include "status_util.h"
#include "temp_files.h"
#include "tuner_service.h"

namespace parallax::service {
namespace {

constexpr char kSqliteHeader[] = "SQLite format 3";  // 16 bytes with the NUL

void RemoveQuietly(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

const grpc::Status kBusy(grpc::StatusCode::RESOURCE_EXHAUSTED, "another export or import is in progress; retry later");
const grpc::Status kStopping(grpc::StatusCode::UNAVAILABLE, "server is shutting down");
const grpc::Status kCancelled(grpc::StatusCode::CANCELLED, "cancelled by the client");
const grpc::Status kInternal(grpc::StatusCode::INTERNAL, "internal error (see the server log)");

absl::Duration Limit(int64_t ms) { return ms > 0 ? absl::Milliseconds(ms) : absl::InfiniteDuration(); }

// Base for both: exactly one Finish, whichever thread gets there first, with the message
// scrubbed for the client.
template <typename Base>
class OnceFinisher : public Base {
 protected:
  explicit OnceFinisher(const ServiceDeps& d) : d_(d) {}
  void FinishOnce(const grpc::Status& status) {
    if (finished_.exchange(true)) return;
    BeforeFinish();
    this->Finish(d_.errors->Scrub(status));  // last touch of `this`: OnDone may run right after
  }
  // What must be undone before the client can see the status (it may retry at once).
  virtual void BeforeFinish() {}
  bool finished() const { return finished_.load(); }

  const ServiceDeps& d_;
  std::atomic<bool> cancelled_{false};

 private:
  std::atomic<bool> finished_{false};
};

// A client that stops reading leaves a write stuck behind HTTP/2 flow control, and the
// status would queue behind it: the watchdog cancels the call instead (RST_STREAM), the write
// fails and the stream ends CANCELLED, closing the export file (unlinked, but still on disk
// while open).
class ExportReactor final : public OnceFinisher<grpc::ServerWriteReactor<grpc::ByteBuffer>> {
 public:
  ExportReactor(const ServiceDeps& d, grpc::CallbackServerContext* ctx)
      : OnceFinisher(d),
        watch_(d.watchdog->Add(Limit(d.limits.import_idle_limit_ms), absl::InfiniteFuture(),
                               [ctx](const grpc::Status& s) {
                                 spdlog::info("export: {}", s.error_message());
                                 ctx->TryCancel();  // not finished yet, so ctx is alive
                               })) {
    if (!d_.transfers->TrySubmit([this] { Prepare(); }, [this] { FinishOnce(kInternal); })) FinishOnce(kBusy);
  }
  void OnWriteDone(bool ok) override {
    watch_->StopWaiting();
    if (finished()) return;  // the watchdog ended the stream
    if (!ok) return FinishOnce(kCancelled);
    if (offset_ >= total_) return FinishOnce(grpc::Status::OK);
    if (!d_.transfers->SubmitContinuation([this] { SendNext(); }, [this] { FinishOnce(kInternal); }))
      FinishOnce(kStopping);
  }
  void OnCancel() override { cancelled_ = true; }  // the pending write or task finishes
  void OnDone() override {
    watch_->Detach();
    delete this;
  }

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
    v1::ExportChunk chunk;
    std::string* data = chunk.mutable_data();
    data->resize(static_cast<size_t>(size));
    if (!in_.read(data->data(), size)) return FinishOnce({grpc::StatusCode::INTERNAL, "reading the export failed"});
    chunk.set_offset(offset_);
    chunk.set_total_bytes(total_);
    offset_ += size;
    out_.Clear();
    if (grpc::Status s = SerializeRaw(chunk, &out_); !s.ok()) return FinishOnce(s);
    watch_->StartWaiting([this] { StartWrite(&out_); });
  }

  std::shared_ptr<StreamWatchdog::Watch> watch_;
  std::ifstream in_;
  int64_t total_ = 0;
  int64_t offset_ = 0;
  grpc::ByteBuffer out_;  // must stay put until OnWriteDone
};

// Upload -> temporary file (admitted at the first chunk) -> merge on the transfer pool. A read
// that fails is a half-close only if the call was not cancelled: otherwise a client that lost
// its connection right after its last chunk (and so saw UNAVAILABLE) got its file merged.
class ImportReactor final : public OnceFinisher<grpc::ServerReadReactor<grpc::ByteBuffer>> {
 public:
  ImportReactor(const ServiceDeps& d, grpc::CallbackServerContext* ctx, grpc::ByteBuffer* resp)
      : OnceFinisher(d),
        ctx_(ctx),
        resp_(resp),
        path_(TempPath(d.temp_dir, "import")),
        deadline_(absl::Now() + Limit(d.limits.import_time_limit_ms)),
        watch_(d.watchdog->Add(Limit(d.limits.import_idle_limit_ms), deadline_,
                               [this](const grpc::Status& s) { FinishOnce(s); })) {
    watch_->StartWaiting([this] { StartRead(&raw_); });
  }

  void OnReadDone(bool ok) override {
    watch_->StopWaiting();
    if (finished()) return;  // the watchdog ended the stream
    if (Cancelled()) return FinishOnce(kCancelled);
    if (!ok) {  // the client closed its side: merge what came (the merge rechecks for a cancel)
      if (!d_.transfers->SubmitContinuation([this] { Merge(); }, [this] { FinishOnce(kInternal); }))
        FinishOnce(kStopping);
      return;
    }
    chunk_.Clear();
    grpc::Status parsed = ParseRaw(raw_, &chunk_);
    raw_.Clear();
    if (!parsed.ok()) return FinishOnce(parsed);
    if (!admitted_) {
      if (grpc::Status s = Admit(); !s.ok()) return FinishOnce(s);
      admitted_ = true;
    }
    if (!d_.transfers->SubmitContinuation([this] { Append(); }, [this] { FinishOnce(kInternal); }))
      FinishOnce(kStopping);
  }
  void OnCancel() override { cancelled_ = true; }
  void OnDone() override {
    watch_->Detach();
    out_.close();
    RemoveQuietly(path_);
    delete this;
  }
  // The import's place under max_concurrent_imports goes back before the status does: a
  // client that starts its next import on seeing it must not find this one still counted
  // (the temporary file, at most this import's bytes, goes in OnDone).
  void BeforeFinish() override {
    std::lock_guard lock(ticket_mu_);
    ticket_.Release();
  }

 private:
  static grpc::Status Bad(const std::string& message) { return {grpc::StatusCode::INVALID_ARGUMENT, message}; }

  bool Cancelled() const { return cancelled_.load() || ctx_->IsCancelled(); }

  // The first chunk: its declared size, then a place under the server's import limits.
  grpc::Status Admit() {
    total_ = chunk_.total_bytes();
    if (total_ <= 0) return Bad("total_bytes: required on the first chunk");
    if (total_ > d_.limits.max_import_bytes)
      return Bad(absl::StrCat("total_bytes=", total_, ": larger than the server's limit of ", d_.limits.max_import_bytes));
    absl::StatusOr<ImportGate::Ticket> t = d_.import_gate->Admit(total_);
    if (!t.ok()) return ToGrpc(t.status());
    std::lock_guard lock(ticket_mu_);  // the watchdog may finish the call from its thread
    if (finished()) return grpc::Status::OK;  // finished meanwhile: the ticket goes back now
    ticket_ = *std::move(t);
    return grpc::Status::OK;
  }

  void Append() {
    if (cancelled_) return FinishOnce(kCancelled);
    if (absl::Now() > deadline_)
      return FinishOnce({grpc::StatusCode::DEADLINE_EXCEEDED,
                         "the upload ran past the server's time limit (import_time_limit_ms); nothing was merged"});
    const std::string& data = chunk_.data();
    if (received_ == 0) {
      if (data.size() < sizeof(kSqliteHeader) || data.compare(0, sizeof(kSqliteHeader), kSqliteHeader,
                                                              sizeof(kSqliteHeader)) != 0)
        return FinishOnce(Bad("data: not an SQLite database (header missing in the first chunk)"));
      out_.open(path_, std::ios::binary | std::ios::trunc);
      if (!out_) return FinishOnce({grpc::StatusCode::INTERNAL, absl::StrCat("cannot create ", path_)});
    } else if (chunk_.total_bytes() != 0 && chunk_.total_bytes() != total_) {
      return FinishOnce(Bad(absl::StrCat("total_bytes=", chunk_.total_bytes(), ": differs from the first chunk's ", total_)));
    }
    if (received_ + static_cast<int64_t>(data.size()) > total_)
      return FinishOnce(Bad(absl::StrCat("data: more than total_bytes=", total_, " bytes")));
    out_.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out_) return FinishOnce({grpc::StatusCode::INTERNAL, absl::StrCat("writing ", path_, " failed")});
    received_ += static_cast<int64_t>(data.size());
    chunk_.Clear();
    watch_->StartWaiting([this] { StartRead(&raw_); });
  }

  void Merge() {
    if (Cancelled()) return FinishOnce(kCancelled);
    if (received_ == 0) return FinishOnce(Bad("data: empty import"));
    if (received_ != total_)
      return FinishOnce(Bad(absl::StrCat("data: got ", received_, " of total_bytes=", total_, " bytes")));
    out_.close();
    if (!out_) return FinishOnce({grpc::StatusCode::INTERNAL, absl::StrCat("writing ", path_, " failed")});
    cache::ImportOptions options = search::ImportChecks();
    options.cancelled = [this] { return Cancelled(); };
    if (deadline_ != absl::InfiniteFuture())
      options.time_limit_ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(deadline_ - absl::Now()));
    absl::StatusOr<cache::ImportStats> stats = d_.transfer_store->Import(path_, options);
    RemoveQuietly(path_);
    d_.lookup_cache->InvalidateAll();  // merged configs are served at once (harmless after a failure)
    if (!stats.ok()) {
      spdlog::info("import of {} bytes failed: {}", received_, stats.status().ToString());
      return FinishOnce(ImportFailureForClient(stats.status()));
    }
    v1::ImportResultsResponse r;
    auto set = [](v1::MergeCounts* m, const cache::RowCounts& c) {
      m->set_inserted(c.inserted);
      m->set_updated(c.updated);
      m->set_skipped(c.skipped);
    };
    set(r.mutable_devices(), stats->devices);
    set(r.mutable_problems(), stats->problems);
    set(r.mutable_variants(), stats->variants);
    set(r.mutable_runs(), stats->runs);
    set(r.mutable_measurements(), stats->measurements);
    set(r.mutable_best_configs(), stats->best_configs);
    set(r.mutable_binaries(), stats->binaries);
    r.set_bytes_received(received_);
    FinishOnce(SerializeRaw(r, resp_));
  }

  grpc::CallbackServerContext* const ctx_;
  grpc::ByteBuffer* const resp_;
  const std::string path_;
  const absl::Time deadline_;
  std::shared_ptr<StreamWatchdog::Watch> watch_;
  bool admitted_ = false;  // the read path's own: ticket_ may already be given back
  std::mutex ticket_mu_;
  ImportGate::Ticket ticket_;
  grpc::ByteBuffer raw_;  // the read in flight
  v1::ImportChunk chunk_;
  std::ofstream out_;
  int64_t total_ = 0;
  int64_t received_ = 0;
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* NewExportReactor(const ServiceDeps& d, grpc::CallbackServerContext* ctx) {
  return new ExportReactor(d, ctx);
}

grpc::ServerReadReactor<grpc::ByteBuffer>* NewImportReactor(const ServiceDeps& d, grpc::CallbackServerContext* ctx,
                                                            grpc::ByteBuffer* resp) {
  return new ImportReactor(d, ctx, resp);
}

}  // namespace parallax::service

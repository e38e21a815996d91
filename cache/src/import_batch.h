#pragma once
// Short write transactions for Import's merge: the destination's lock (the Store mutex and
// SQLite's write lock) is held for at most rows_per_transaction rows at a time, so serving,
// tuning and other imports go on during a large merge.

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/status/status.h"
#include "import_control.h"
#include "parallax/cache/db.h"
#include "parallax/cache/txn.h"

namespace parallax::cache::internal {

class Batch {
 public:
  Batch(Db& dst, std::mutex& mu, const ImportControl& control, int rows_per_transaction)
      : dst_(dst), mu_(mu), control_(control), rows_per_txn_(rows_per_transaction > 0 ? rows_per_transaction : 1) {}
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  ~Batch() {
    txn_.reset();  // rolls back what is not committed, while the lock is still held
  }

  // Takes the lock (kept until the Batch ends, except between transactions) and opens a
  // transaction. Statements on dst are prepared, stepped and finalized only while the lock
  // is held: the connection is not thread-safe and the Store shares it. Returns with the
  // lock held, whatever happened.
  absl::Status Begin() {
    // Cancel and the time limit are checked before the lock, so a slow callback never
    // holds up the store's other users.
    absl::Status stop = control_.Check();
    if (!lock_) lock_.emplace(mu_);
    if (!stop.ok()) return stop;
    absl::StatusOr<Txn> txn = Txn::Begin(dst_);
    if (!txn.ok()) return txn.status();
    txn_.emplace(std::move(*txn));
    return absl::OkStatus();
  }
  // After each merged row: every rows_per_transaction rows, commit, let others in, check
  // for cancel and the time limit, and start the next transaction. Callers reset their
  // statements first (a pending read would pin the old snapshot). Returns with the lock
  // held, whatever happened.
  absl::Status RowDone() {
    if (++rows_ < rows_per_txn_) return absl::OkStatus();
    if (absl::Status s = Commit(); !s.ok()) return s;
    lock_.reset();
    // A gap, not just an unlock: a thread blocked on the mutex, or another process polling
    // SQLite's lock from its busy handler, would otherwise lose every race to our next
    // BEGIN and wait out the whole import.
    std::this_thread::sleep_for(kGap);
    return Begin();
  }
  // Commits the open transaction; the lock stays.
  absl::Status Commit() {
    rows_ = 0;
    if (!txn_) return absl::OkStatus();
    absl::Status s = txn_->Commit();
    txn_.reset();
    if (s.ok()) ++commits_;
    return s;
  }
  Db& dst() { return dst_; }
  // Whether any batch reached the file: a failure after that leaves a merged prefix.
  int commits() const { return commits_; }

 private:
  static constexpr std::chrono::milliseconds kGap{1};

  Db& dst_;
  std::mutex& mu_;
  const ImportControl& control_;
  const int rows_per_txn_;
  int rows_ = 0;
  int commits_ = 0;
  std::optional<std::unique_lock<std::mutex>> lock_;
  std::optional<Txn> txn_;
};

}  // namespace parallax::cache::internal

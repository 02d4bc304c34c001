// SnapshotCell and BackpressureChecker: lock-free publication of snapshots
// and the hot-path check an orchestrator calls on every request.
//
// One writer (a cache actor) publishes immutable snapshots. Besides keeping
// the full snapshot for detail readers, publish() packs the decision into a
// single 64-bit word and stamps it with the coarse monotonic time, both
// guarded by a sequence counter (seqlock). try_check() reads those two words
// and the coarse clock: no lock, no reference count, no allocation, no I/O;
// concurrent readers share nothing they write.
#pragma once

#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/types.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>

namespace tasker::health {

/// The decision of a snapshot, packed into one word.
struct PackedDecision {
  bool present = false;      ///< a snapshot has been published
  bool active = false;       ///< backpressure active
  bool forced_stale = false; ///< the writer declared the snapshot stale
  HealthStatus status = HealthStatus::stale;
  BackpressureSource source = BackpressureSource::none;
  ReasonCode code = ReasonCode::none;
  /// Retry-After in milliseconds as decided when the snapshot was made.
  uint32_t retry_after_ms = 0;

  static PackedDecision from(const HealthSnapshot& s) noexcept;
  static PackedDecision decode(uint64_t w) noexcept;
  uint64_t encode() const noexcept;
};

/// Holds the latest snapshot of one cache. Single writer, many readers.
class SnapshotCell {
 public:
  /// `clock` stamps publications; the checker reads the same clock.
  explicit SnapshotCell(const Clock& clock = coarse_clock());

  SnapshotCell(const SnapshotCell&) = delete;
  SnapshotCell& operator=(const SnapshotCell&) = delete;

  /// Publishes a new snapshot (writer only). A null pointer is ignored.
  void publish(std::shared_ptr<const HealthSnapshot> s);

  /// Declares the current snapshot stale right away (writer only), e.g. when
  /// the aggregator is known to be gone. The next publish clears it.
  void mark_stale() noexcept;

  /// The latest snapshot (null before the first publish). Takes a mutex;
  /// meant for detail readers, not for the hot path.
  std::shared_ptr<const HealthSnapshot> load() const;

  /// A consistent pair of packed decision and publication time.
  struct Reading {
    uint64_t word = 0;
    Clock::time_point published_at{};
  };

  /// Wait-free for the writer, lock-free for readers (retries only while a
  /// publish is in progress).
  Reading read() const noexcept;

  /// Number of snapshots published so far.
  uint64_t publications() const noexcept;

  const Clock& clock() const noexcept { return *clock_; }

 private:
  void store(uint64_t word, int64_t ns) noexcept;

  const Clock* clock_;
  // Seqlock: odd while a write is in progress.
  alignas(64) std::atomic<uint64_t> seq_{0};
  std::atomic<uint64_t> word_{0};
  std::atomic<int64_t> published_ns_{0};
  alignas(64) mutable std::mutex mtx_;
  std::shared_ptr<const HealthSnapshot> snapshot_;
  std::atomic<uint64_t> publications_{0};
};

/// Why try_check() refused work. Trivially copyable; `reason` points to
/// static text.
struct Rejection {
  BackpressureSource source = BackpressureSource::none;
  ReasonCode code = ReasonCode::none;
  std::string_view reason;
  seconds retry_after{1};
};

/// How the checker treats staleness.
struct CheckerOptions {
  milliseconds stale_threshold{30000};
  UnknownPolicy policy = UnknownPolicy::fail_open;
  /// Retry-After when a stale snapshot rejects (fail-closed).
  seconds stale_retry_after{5};
  /// Lower bound of a breaker Retry-After.
  seconds breaker_minimum{1};

  static CheckerOptions from(const HealthConfig& cfg) noexcept;
};

/// The reader side. Cheap to copy; any number of threads may use copies or
/// one shared instance concurrently.
class BackpressureChecker {
 public:
  BackpressureChecker(std::shared_ptr<const SnapshotCell> cell,
                      CheckerOptions opts);

  /// Accept (nullopt) or reject with reason and Retry-After. No lock, no
  /// allocation, no I/O. A stale or missing snapshot rejects only under
  /// fail-closed. A breaker Retry-After counts down with the snapshot's age.
  std::optional<Rejection> try_check() const noexcept;

  /// Fresh, and every dimension measured with nothing at warning or worse.
  bool is_healthy() const noexcept;

  /// No snapshot yet, marked stale, or older than the stale threshold.
  bool is_stale() const noexcept;

  /// healthy / degraded / unhealthy, or stale when not fresh.
  HealthStatus status() const noexcept;

  /// Age of the latest snapshot (nullopt before the first one).
  std::optional<milliseconds> age() const noexcept;

  /// The full latest snapshot for detail (null before the first one).
  std::shared_ptr<const HealthSnapshot> snapshot() const;

  const CheckerOptions& options() const noexcept { return opts_; }

 private:
  struct View {
    PackedDecision d;
    bool stale;
    int64_t age_ns;
  };

  View view() const noexcept;

  std::shared_ptr<const SnapshotCell> cell_;
  CheckerOptions opts_;
  /// The cell runs on the coarse clock: read it inline.
  bool coarse_;
  int64_t stale_ns_;
};

} // namespace tasker::health

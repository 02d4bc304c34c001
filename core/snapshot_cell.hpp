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
#include "core/shedding.hpp"
#include "core/types.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

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

  // Graded shedding (zero in binary mode, so that a binary word is the same
  // as before graded shedding existed):
  bool graded = false;     ///< the fractions words hold the classes
  bool saturated = false;  ///< graded, and the pressure is 1
  uint8_t class_count = 0; ///< classes in the fractions words (0..8)
  /// The source of the pressure (why classes are shed).
  BackpressureSource pressure_source = BackpressureSource::none;

  // Layout (LSB first): bit 0 present, bit 1 active, bit 2 forced stale,
  // bits 3..4 status, bit 5 graded, bit 6 saturated, bits 8..15 source,
  // bits 16..23 reason code, bits 24..27 class count, bits 28..31 pressure
  // source, bits 32..63 Retry-After in ms.
  static constexpr uint64_t present_bit = 0x1;
  static constexpr uint64_t active_bit = 0x2;
  static constexpr uint64_t forced_stale_bit = 0x4;
  static constexpr uint64_t graded_bit = 0x20;
  static constexpr uint64_t saturated_bit = 0x40;

  static PackedDecision from(const HealthSnapshot& s) noexcept;

  static constexpr PackedDecision decode(uint64_t w) noexcept {
    PackedDecision d;
    d.present = (w & present_bit) != 0;
    d.active = (w & active_bit) != 0;
    d.forced_stale = (w & forced_stale_bit) != 0;
    d.status = static_cast<HealthStatus>((w >> 3) & 0x3);
    d.source = static_cast<BackpressureSource>((w >> 8) & 0xff);
    d.code = static_cast<ReasonCode>((w >> 16) & 0xff);
    d.retry_after_ms = static_cast<uint32_t>(w >> 32);
    d.graded = (w & graded_bit) != 0;
    d.saturated = (w & saturated_bit) != 0;
    d.class_count = static_cast<uint8_t>((w >> 24) & 0xf);
    d.pressure_source = static_cast<BackpressureSource>((w >> 28) & 0xf);
    return d;
  }

  constexpr uint64_t encode() const noexcept {
    return uint64_t{present} | (uint64_t{active} << 1)
           | (uint64_t{forced_stale} << 2)
           | (uint64_t{static_cast<uint8_t>(status) & 0x3u} << 3)
           | (uint64_t{static_cast<uint8_t>(source)} << 8)
           | (uint64_t{static_cast<uint8_t>(code)} << 16)
           | (uint64_t{retry_after_ms} << 32) | (uint64_t{graded} << 5)
           | (uint64_t{saturated} << 6) | (uint64_t{class_count & 0xfu} << 24)
           | (uint64_t{static_cast<uint8_t>(pressure_source) & 0xfu} << 28);
  }
};

/// The admitted fractions of a graded snapshot, packed for the checker: 16
/// bits per class (fraction_to_fixed(), 0..32768), four classes a word.
struct PackedFractions {
  uint64_t words[2] = {0, 0};

  static PackedFractions from(const SheddingState& s) noexcept;

  /// The fixed fraction of class `i` (< max_work_classes).
  constexpr uint32_t get(size_t i) const noexcept {
    return static_cast<uint32_t>((words[i / 4] >> (16 * (i % 4))) & 0xffff);
  }
  constexpr void set(size_t i, uint32_t fixed) noexcept {
    auto shift = 16 * (i % 4);
    words[i / 4] = (words[i / 4] & ~(uint64_t{0xffff} << shift))
                   | (uint64_t{fixed & 0xffff} << shift);
  }
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
  /// publish is in progress). Inline: it is the hot path.
  Reading read() const noexcept {
    for (;;) {
      auto s1 = seq_.load(std::memory_order_acquire);
      auto w = word_.load(std::memory_order_acquire);
      auto ns = published_ns_.load(std::memory_order_acquire);
      auto s2 = seq_.load(std::memory_order_relaxed);
      if (s1 == s2 && (s1 & 1) == 0) [[likely]]
        return {w,
                Clock::time_point{std::chrono::duration_cast<Clock::duration>(
                    std::chrono::nanoseconds{ns})}};
    }
  }

  /// The pair above plus the fractions and the cycle's seed (graded
  /// shedding), all from one publication.
  struct GradedReading {
    uint64_t word = 0;
    int64_t published_ns = 0;
    PackedFractions fractions;
    uint64_t seed = 0;
  };

  /// As read(), for try_check(work_class, key).
  GradedReading read_graded() const noexcept {
    for (;;) {
      GradedReading r;
      auto s1 = seq_.load(std::memory_order_acquire);
      r.word = word_.load(std::memory_order_acquire);
      r.published_ns = published_ns_.load(std::memory_order_acquire);
      r.fractions.words[0] = fractions_[0].load(std::memory_order_acquire);
      r.fractions.words[1] = fractions_[1].load(std::memory_order_acquire);
      r.seed = seed_.load(std::memory_order_acquire);
      auto s2 = seq_.load(std::memory_order_relaxed);
      if ((s1 & 1) == 0 && s1 == s2) [[likely]]
        return r;
    }
  }

  /// Number of snapshots published so far.
  uint64_t publications() const noexcept;

  const Clock& clock() const noexcept { return *clock_; }

 private:
  void store(uint64_t word, int64_t ns, const PackedFractions& fractions,
             uint64_t seed) noexcept;

  const Clock* clock_;
  // Seqlock: odd while a write is in progress.
  alignas(64) std::atomic<uint64_t> seq_{0};
  std::atomic<uint64_t> word_{0};
  std::atomic<int64_t> published_ns_{0};
  // Graded shedding: the fractions and the cycle's hash seed (same line).
  std::atomic<uint64_t> fractions_[2] = {0, 0};
  std::atomic<uint64_t> seed_{0};
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
  /// The snapshot behind it is stale (or missing): a rejection its last
  /// decision made (kept, whatever the policy), or the policy's rejection
  /// of a stale or missing snapshot (fail-closed). Ask again after
  /// `retry_after`, when a fresh snapshot may be there.
  bool stale = false;
};

/// How the checker treats staleness.
struct CheckerOptions {
  milliseconds stale_threshold{30000};
  UnknownPolicy policy = UnknownPolicy::fail_open;
  /// Retry-After when a stale snapshot rejects (fail-closed).
  seconds stale_retry_after{5};
  /// Lower bound of a breaker Retry-After.
  seconds breaker_minimum{1};
  /// Graded shedding: Retry-After of a class refused by its curve below
  /// pressure 1 (at 1 the decision's Retry-After applies), and the jitter of
  /// keyed refusals (a share of the Retry-After added at most, per key).
  seconds shed_retry_after{5};
  double retry_jitter = 0.5;
  /// The class names in order (for class_index()).
  std::vector<std::string> classes{"critical", "normal", "sheddable"};

  static CheckerOptions from(const HealthConfig& cfg) noexcept;
};

/// The reader side. Cheap to copy; any number of threads may use copies or
/// one shared instance concurrently.
class BackpressureChecker {
 public:
  BackpressureChecker(std::shared_ptr<const SnapshotCell> cell,
                      CheckerOptions opts);

  /// Accept (nullopt) or reject with reason and Retry-After. No lock, no
  /// allocation, no I/O. A stale snapshot whose decision rejected still
  /// rejects (its source and reason, the stale Retry-After, `stale` set):
  /// a known rejection never turns into an acceptance because time passed.
  /// Any other stale or missing snapshot rejects only under fail-closed. A
  /// breaker Retry-After counts down with the snapshot's age.
  /// Inline (with the cell's read()) so that the caller's compiler builds
  /// the result in place: one seqlock read, one coarse clock read.
  std::optional<Rejection> try_check() const noexcept {
    auto v = view();
    if (v.stale) [[unlikely]]
      return on_stale(v.word);
    if ((v.word & PackedDecision::active_bit) == 0) [[likely]]
      return std::nullopt;
    return reject(v.word, v.age_ns);
  }

  /// Graded, priority-aware admission of one request of class `work_class`
  /// (an index into shedding.classes; see work_class::) with `key` (a task
  /// or client id; key_of() turns a text into one). Binary mode: as
  /// try_check(). Graded mode: admits when the key's hash, seeded by the
  /// snapshot's cycle, falls under the class's admitted fraction, so one key
  /// gets one answer for a whole cycle; the binary decision does not refuse
  /// by itself (at pressure 1 every default curve is 0). A class index
  /// beyond the configured ones counts as the last (least important) class.
  /// Every refusal's Retry-After is jittered per key, upwards only. No lock,
  /// no allocation.
  std::optional<Rejection> try_check(size_t work_class,
                                     uint64_t key) const noexcept {
    auto r = cell_->read_graded();
    auto w = r.word;
    auto mixed = mix_key(key, r.seed);
    auto age = age_of(r.published_ns);
    if ((w & PackedDecision::present_bit) == 0
        || (w & PackedDecision::forced_stale_bit) != 0 || age > stale_ns_)
        [[unlikely]] {
      // Graded: the last cycle's answer for this key stands while the
      // snapshot is stale. A refused key stays refused (a known refusal
      // never turns into an acceptance because time passed); an admitted
      // one follows the policy, as try_check() does for an accepting
      // snapshot.
      if ((w & PackedDecision::present_bit) != 0
          && (w & PackedDecision::graded_bit) != 0) {
        size_t count = (w >> 24) & 0xf;
        size_t cls = work_class < count ? work_class : count - 1;
        if (count > 0 && !admits(mixed, r.fractions.get(cls)))
          return Rejection{
              static_cast<BackpressureSource>((w >> 28) & 0xf),
              ReasonCode::work_shed, reason_text(ReasonCode::work_shed),
              jittered(stale_retry_after_, mixed, jitter_permille_), true};
        if (opts_.policy == UnknownPolicy::fail_open)
          return std::nullopt;
        return Rejection{BackpressureSource::stale, ReasonCode::snapshot_stale,
                         reason_text(ReasonCode::snapshot_stale),
                         jittered(stale_retry_after_, mixed, jitter_permille_),
                         true};
      }
      return keyed_stale(w, mixed);
    }
    if ((w & PackedDecision::graded_bit) == 0) {
      if ((w & PackedDecision::active_bit) == 0) [[likely]]
        return std::nullopt;
      auto rej = reject(w, age);
      rej.retry_after = jittered(rej.retry_after, mixed, jitter_permille_);
      return rej;
    }
    size_t count = (w >> 24) & 0xf;
    size_t cls = work_class < count ? work_class : count - 1;
    if (admits(mixed, r.fractions.get(cls))) [[likely]]
      return std::nullopt;
    // Shed below pressure 1: come back after shedding.retry-after (the
    // fractions move every cycle). At pressure 1 (breaker open, Overflow,
    // Unknown under fail-closed) the decision's Retry-After, as try_check().
    auto retry = (w & PackedDecision::saturated_bit) != 0
                         && (w & PackedDecision::active_bit) != 0
                     ? reject(w, age).retry_after
                     : shed_retry_after_;
    return Rejection{static_cast<BackpressureSource>((w >> 28) & 0xf),
                     ReasonCode::work_shed, reason_text(ReasonCode::work_shed),
                     jittered(retry, mixed, jitter_permille_)};
  }

  /// The index of class `name` in the configured classes (not for the hot
  /// path: look it up once).
  std::optional<size_t> class_index(std::string_view name) const noexcept;

  /// The original's meaning: fresh and no backpressure active (a degraded
  /// snapshot, e.g. with an Unknown dimension, is healthy in this sense).
  bool is_healthy() const noexcept {
    auto v = view();
    return !v.stale && (v.word & PackedDecision::active_bit) == 0;
  }

  /// Stricter: fresh, no backpressure, and status healthy (every dimension
  /// measured with nothing at warning or worse).
  bool is_fully_healthy() const noexcept {
    auto v = view();
    auto d = PackedDecision::decode(v.word);
    return !v.stale && d.status == HealthStatus::healthy && !d.active;
  }

  /// No snapshot yet, marked stale, or older than the stale threshold.
  bool is_stale() const noexcept { return view().stale; }

  /// healthy / degraded / unhealthy, or stale when not fresh.
  HealthStatus status() const noexcept {
    auto v = view();
    return v.stale ? HealthStatus::stale
                   : PackedDecision::decode(v.word).status;
  }

  /// Age of the latest snapshot (nullopt before the first one).
  std::optional<milliseconds> age() const noexcept;

  /// The full latest snapshot for detail (null before the first one).
  std::shared_ptr<const HealthSnapshot> snapshot() const;

  const CheckerOptions& options() const noexcept { return opts_; }

 private:
  struct View {
    uint64_t word;
    bool stale;
    int64_t age_ns;
  };

  int64_t age_of(int64_t published_ns) const noexcept {
    auto now = coarse_ ? coarse_now_ns()
                       : std::chrono::duration_cast<std::chrono::nanoseconds>(
                             cell_->clock().now().time_since_epoch())
                             .count();
    return now - published_ns;
  }

  /// on_stale() for a keyed check: the Retry-After spread per key.
  std::optional<Rejection> keyed_stale(uint64_t word,
                                       uint64_t mixed) const noexcept {
    auto r = on_stale(word);
    if (r)
      r->retry_after = jittered(r->retry_after, mixed, jitter_permille_);
    return r;
  }

  View view() const noexcept {
    auto r = cell_->read();
    if ((r.word & PackedDecision::present_bit) == 0) [[unlikely]]
      return {r.word, true, 0};
    auto now = coarse_ ? coarse_now_ns()
                       : std::chrono::duration_cast<std::chrono::nanoseconds>(
                             cell_->clock().now().time_since_epoch())
                             .count();
    auto age = now
               - std::chrono::duration_cast<std::chrono::nanoseconds>(
                     r.published_at.time_since_epoch())
                     .count();
    bool stale
        = (r.word & PackedDecision::forced_stale_bit) != 0 || age > stale_ns_;
    return {r.word, stale, age};
  }

  /// The rejection (or none, under fail-open) for a stale or missing
  /// snapshot. A stale rejection stays a rejection under both policies.
  std::optional<Rejection> on_stale(uint64_t word) const noexcept {
    if ((word & PackedDecision::active_bit) != 0) [[unlikely]] {
      auto d = PackedDecision::decode(word);
      return Rejection{d.source, d.code, reason_text(d.code),
                       stale_retry_after_, true};
    }
    if (opts_.policy == UnknownPolicy::fail_open)
      return std::nullopt;
    auto code = (word & PackedDecision::present_bit) != 0
                    ? ReasonCode::snapshot_stale
                    : ReasonCode::no_snapshot;
    return Rejection{BackpressureSource::stale, code, reason_text(code),
                     stale_retry_after_, true};
  }

  /// The rejection for an active decision `word` of a snapshot `age_ns` old.
  Rejection reject(uint64_t word, int64_t age_ns) const noexcept {
    auto d = PackedDecision::decode(word);
    int64_t ms = d.retry_after_ms;
    int64_t minimum = 1;
    if (d.source == BackpressureSource::circuit_breaker) {
      // The breaker's time left shrinks while the snapshot ages.
      ms -= std::max<int64_t>(age_ns, 0) / 1'000'000;
      minimum = breaker_minimum_s_;
    }
    // Whole seconds, rounded up.
    auto secs = std::max((std::max<int64_t>(ms, 0) + 999) / 1000, minimum);
    return Rejection{d.source, d.code, reason_text(d.code), seconds{secs}};
  }

  std::shared_ptr<const SnapshotCell> cell_;
  CheckerOptions opts_;
  /// The cell runs on the coarse clock: read it inline.
  bool coarse_;
  int64_t stale_ns_;
  seconds stale_retry_after_;
  int64_t breaker_minimum_s_;
  seconds shed_retry_after_;
  uint32_t jitter_permille_;
};

} // namespace tasker::health

#include "core/snapshot_cell.hpp"

#include <algorithm>
#include <limits>

namespace tasker::health {

// ---- PackedDecision ---------------------------------------------------------
// Layout (LSB first): bit 0 present, bit 1 active, bit 2 forced stale,
// bits 3..4 status, bits 8..15 source, bits 16..23 reason code,
// bits 32..63 Retry-After in ms.

PackedDecision PackedDecision::from(const HealthSnapshot& s) noexcept {
  PackedDecision d;
  d.present = true;
  d.active = s.decision.active;
  d.status = s.status;
  d.source = s.decision.source;
  d.code = s.decision.code;
  // The decided whole seconds (a breaker's is counted down by the checker
  // with the snapshot's age).
  auto ms = std::chrono::duration_cast<milliseconds>(s.decision.retry_after)
                .count();
  d.retry_after_ms = static_cast<uint32_t>(
      std::clamp<int64_t>(ms, 0, std::numeric_limits<uint32_t>::max()));
  return d;
}

PackedDecision PackedDecision::decode(uint64_t w) noexcept {
  PackedDecision d;
  d.present = (w & 0x1) != 0;
  d.active = (w & 0x2) != 0;
  d.forced_stale = (w & 0x4) != 0;
  d.status = static_cast<HealthStatus>((w >> 3) & 0x3);
  d.source = static_cast<BackpressureSource>((w >> 8) & 0xff);
  d.code = static_cast<ReasonCode>((w >> 16) & 0xff);
  d.retry_after_ms = static_cast<uint32_t>(w >> 32);
  return d;
}

uint64_t PackedDecision::encode() const noexcept {
  return uint64_t{present} | (uint64_t{active} << 1)
         | (uint64_t{forced_stale} << 2)
         | (uint64_t{static_cast<uint8_t>(status) & 0x3u} << 3)
         | (uint64_t{static_cast<uint8_t>(source)} << 8)
         | (uint64_t{static_cast<uint8_t>(code)} << 16)
         | (uint64_t{retry_after_ms} << 32);
}

// ---- SnapshotCell -----------------------------------------------------------

SnapshotCell::SnapshotCell(const Clock& clock) : clock_(&clock) {}

// The seqlock without standalone fences (which TSan does not model): the
// data stores are releases, so a reader whose acquire load sees new data also
// sees the odd sequence number stored before it, and retries; a reader whose
// acquire load of the sequence number sees the even value stored after the
// data sees that data. On x86 all of this compiles to plain moves.
void SnapshotCell::store(uint64_t word, int64_t ns) noexcept {
  auto s = seq_.load(std::memory_order_relaxed);
  seq_.store(s + 1, std::memory_order_relaxed);
  word_.store(word, std::memory_order_release);
  published_ns_.store(ns, std::memory_order_release);
  seq_.store(s + 2, std::memory_order_release);
}

void SnapshotCell::publish(std::shared_ptr<const HealthSnapshot> s) {
  if (!s)
    return;
  auto word = PackedDecision::from(*s).encode();
  {
    std::lock_guard<std::mutex> guard{mtx_};
    snapshot_ = std::move(s);
  }
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                clock_->now().time_since_epoch())
                .count();
  store(word, ns);
  publications_.fetch_add(1, std::memory_order_release);
}

void SnapshotCell::mark_stale() noexcept {
  auto d = PackedDecision::decode(word_.load(std::memory_order_relaxed));
  if (!d.present || d.forced_stale)
    return;
  d.forced_stale = true;
  store(d.encode(), published_ns_.load(std::memory_order_relaxed));
}

std::shared_ptr<const HealthSnapshot> SnapshotCell::load() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return snapshot_;
}

SnapshotCell::Reading SnapshotCell::read() const noexcept {
  for (;;) {
    auto s1 = seq_.load(std::memory_order_acquire);
    auto w = word_.load(std::memory_order_acquire);
    auto ns = published_ns_.load(std::memory_order_acquire);
    auto s2 = seq_.load(std::memory_order_relaxed);
    if (s1 == s2 && (s1 & 1) == 0)
      return {w, Clock::time_point{std::chrono::duration_cast<Clock::duration>(
                     std::chrono::nanoseconds{ns})}};
  }
}

uint64_t SnapshotCell::publications() const noexcept {
  return publications_.load(std::memory_order_acquire);
}

// ---- BackpressureChecker ----------------------------------------------------

CheckerOptions CheckerOptions::from(const HealthConfig& cfg) noexcept {
  CheckerOptions o;
  o.stale_threshold = cfg.stale_threshold;
  o.policy = cfg.unknown_policy;
  o.stale_retry_after = cfg.retry_after.stale;
  o.breaker_minimum = cfg.retry_after.breaker_minimum;
  return o;
}

BackpressureChecker::BackpressureChecker(
    std::shared_ptr<const SnapshotCell> cell, CheckerOptions opts)
    : cell_(std::move(cell)), opts_(opts),
      coarse_(&cell_->clock() == &coarse_clock()),
      stale_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(
                    opts.stale_threshold)
                    .count()) {}

BackpressureChecker::View BackpressureChecker::view() const noexcept {
  auto r = cell_->read();
  View v{PackedDecision::decode(r.word), true, 0};
  if (!v.d.present)
    return v;
  auto now = coarse_ ? coarse_now_ns()
                     : std::chrono::duration_cast<std::chrono::nanoseconds>(
                           cell_->clock().now().time_since_epoch())
                           .count();
  v.age_ns = now
             - std::chrono::duration_cast<std::chrono::nanoseconds>(
                   r.published_at.time_since_epoch())
                   .count();
  v.stale = v.d.forced_stale || v.age_ns > stale_ns_;
  return v;
}

std::optional<Rejection> BackpressureChecker::try_check() const noexcept {
  auto v = view();
  if (v.stale) {
    if (opts_.policy == UnknownPolicy::fail_open)
      return std::nullopt;
    auto code
        = v.d.present ? ReasonCode::snapshot_stale : ReasonCode::no_snapshot;
    return Rejection{BackpressureSource::stale, code, reason_text(code),
                     std::max(opts_.stale_retry_after, seconds{1})};
  }
  if (!v.d.active)
    return std::nullopt;
  int64_t ms = v.d.retry_after_ms;
  int64_t minimum = 1;
  if (v.d.source == BackpressureSource::circuit_breaker) {
    // The breaker's time left shrinks while the snapshot ages.
    ms -= std::max<int64_t>(v.age_ns, 0) / 1'000'000;
    minimum = std::max<int64_t>(opts_.breaker_minimum.count(), 1);
  }
  // Whole seconds, rounded up.
  auto secs = std::max((std::max<int64_t>(ms, 0) + 999) / 1000, minimum);
  return Rejection{v.d.source, v.d.code, reason_text(v.d.code), seconds{secs}};
}

bool BackpressureChecker::is_healthy() const noexcept {
  auto v = view();
  return !v.stale && v.d.status == HealthStatus::healthy && !v.d.active;
}

bool BackpressureChecker::is_stale() const noexcept {
  return view().stale;
}

HealthStatus BackpressureChecker::status() const noexcept {
  auto v = view();
  return v.stale ? HealthStatus::stale : v.d.status;
}

std::optional<milliseconds> BackpressureChecker::age() const noexcept {
  auto v = view();
  if (!v.d.present)
    return std::nullopt;
  return milliseconds{v.age_ns / 1'000'000};
}

std::shared_ptr<const HealthSnapshot> BackpressureChecker::snapshot() const {
  return cell_->load();
}

} // namespace tasker::health

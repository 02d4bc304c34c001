#include "core/snapshot_cell.hpp"

#include <algorithm>
#include <limits>

namespace tasker::health {

// ---- PackedDecision ---------------------------------------------------------

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
  if (s.shedding.graded && !s.shedding.classes.empty()) {
    d.graded = true;
    d.class_count = static_cast<uint8_t>(
        std::min(s.shedding.classes.size(), max_work_classes));
    d.pressure_source = s.shedding.source;
    d.saturated = s.shedding.pressure >= 1.0;
  }
  return d;
}

PackedFractions PackedFractions::from(const SheddingState& s) noexcept {
  PackedFractions f;
  if (!s.graded)
    return f;
  for (size_t i = 0; i < s.classes.size() && i < max_work_classes; ++i)
    f.set(i, fraction_to_fixed(s.classes[i].admitted));
  return f;
}

// ---- SnapshotCell -----------------------------------------------------------

SnapshotCell::SnapshotCell(const Clock& clock) : clock_(&clock) {}

// The seqlock without standalone fences (which TSan does not model): the
// data stores are releases, so a reader whose acquire load sees new data also
// sees the odd sequence number stored before it, and retries; a reader whose
// acquire load of the sequence number sees the even value stored after the
// data sees that data. On x86 all of this compiles to plain moves.
void SnapshotCell::store(uint64_t word, int64_t ns,
                         const PackedFractions& fractions,
                         uint64_t seed) noexcept {
  auto s = seq_.load(std::memory_order_relaxed);
  seq_.store(s + 1, std::memory_order_relaxed);
  word_.store(word, std::memory_order_release);
  published_ns_.store(ns, std::memory_order_release);
  fractions_[0].store(fractions.words[0], std::memory_order_release);
  fractions_[1].store(fractions.words[1], std::memory_order_release);
  seed_.store(seed, std::memory_order_release);
  seq_.store(s + 2, std::memory_order_release);
}

void SnapshotCell::publish(std::shared_ptr<const HealthSnapshot> s) {
  if (!s)
    return;
  auto word = PackedDecision::from(*s).encode();
  auto fractions = PackedFractions::from(s->shedding);
  // One seed per cycle: the same key gets the same answer for the whole
  // cycle, and another one in the next.
  auto seed = mix_key(s->sequence, s->incarnation);
  {
    std::lock_guard<std::mutex> guard{mtx_};
    snapshot_ = std::move(s);
  }
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                clock_->now().time_since_epoch())
                .count();
  store(word, ns, fractions, seed);
  publications_.fetch_add(1, std::memory_order_release);
}

void SnapshotCell::mark_stale() noexcept {
  auto d = PackedDecision::decode(word_.load(std::memory_order_relaxed));
  if (!d.present || d.forced_stale)
    return;
  d.forced_stale = true;
  PackedFractions f;
  f.words[0] = fractions_[0].load(std::memory_order_relaxed);
  f.words[1] = fractions_[1].load(std::memory_order_relaxed);
  store(d.encode(), published_ns_.load(std::memory_order_relaxed), f,
        seed_.load(std::memory_order_relaxed));
}

std::shared_ptr<const HealthSnapshot> SnapshotCell::load() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return snapshot_;
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
  o.shed_retry_after = cfg.shedding.retry_after;
  o.retry_jitter = cfg.shedding.retry_jitter;
  for (const auto& c : cfg.shedding.classes)
    o.classes.push_back(c.name);
  return o;
}

BackpressureChecker::BackpressureChecker(
    std::shared_ptr<const SnapshotCell> cell, CheckerOptions opts)
    : cell_(std::move(cell)), opts_(opts),
      coarse_(&cell_->clock() == &coarse_clock()),
      stale_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(
                    opts.stale_threshold)
                    .count()),
      stale_retry_after_(std::max(opts.stale_retry_after, seconds{1})),
      breaker_minimum_s_(std::max<int64_t>(opts.breaker_minimum.count(), 1)),
      shed_retry_after_(std::max(opts.shed_retry_after, seconds{1})),
      jitter_permille_(static_cast<uint32_t>(
          std::clamp(opts.retry_jitter, 0.0, 10.0) * 1000.0 + 0.5)) {}

std::optional<size_t>
BackpressureChecker::class_index(std::string_view name) const noexcept {
  for (size_t i = 0; i < opts_.classes.size(); ++i)
    if (opts_.classes[i] == name)
      return i;
  return std::nullopt;
}

std::optional<milliseconds> BackpressureChecker::age() const noexcept {
  auto v = view();
  if ((v.word & PackedDecision::present_bit) == 0)
    return std::nullopt;
  return milliseconds{v.age_ns / 1'000'000};
}

std::shared_ptr<const HealthSnapshot> BackpressureChecker::snapshot() const {
  return cell_->load();
}

} // namespace tasker::health

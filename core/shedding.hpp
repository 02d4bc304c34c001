// Graded, priority-aware shedding: work classes with admission curves over a
// pressure in [0, 1] that the aggregator computes every cycle from what it
// measures (docs/DESIGN.md, "Graded shedding").
//
// The binary decision (core/decision.hpp) stays as it is; in graded mode the
// snapshot additionally carries the pressure, its source and each class's
// admitted fraction, and BackpressureChecker::try_check(work_class, key)
// admits a request when a per-cycle hash of its key falls under its class's
// fraction.
#pragma once

#include "core/types.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tasker::health {

struct HealthConfig;
struct DecisionContext;

/// binary: the original's all-or-nothing decision only (the default);
/// graded: work classes are admitted by their curves.
enum class SheddingMode : uint8_t {
  binary = 0,
  graded = 1,
};

std::string_view to_string(SheddingMode x) noexcept;
std::optional<SheddingMode> parse_shedding_mode(std::string_view s);

/// One breakpoint of an admission curve.
struct CurvePoint {
  double pressure = 0.0; ///< in [0, 1]
  double admitted = 1.0; ///< admitted fraction in [0, 1]
  friend bool operator==(const CurvePoint&, const CurvePoint&) = default;
};

/// A piecewise-linear admission curve. Valid curves start at pressure 0, end
/// at pressure 1, are sorted by pressure and never rise. Two points may share
/// a pressure: a step down, the lower value applies from that pressure on.
struct AdmissionCurve {
  std::vector<CurvePoint> points;

  /// The admitted fraction at `pressure` (clamped to [0, 1]).
  double at(double pressure) const noexcept;

  /// Why the curve is invalid, or nullopt.
  std::optional<std::string> problem() const;

  friend bool operator==(const AdmissionCurve&, const AdmissionCurve&)
      = default;
};

/// Parses "p:a,p:a,..." (e.g. "0:1,0.5:1,1:0"); nullopt with `error` set
/// when the text is not of that form (the rules are checked by problem()).
std::optional<AdmissionCurve> parse_curve(std::string_view text,
                                          std::string* error = nullptr);

/// "0:1,0.5:1,1:0".
std::string to_string(const AdmissionCurve& c);

/// A named class of work and its curve.
struct WorkClassSpec {
  std::string name;
  AdmissionCurve curve;
  friend bool operator==(const WorkClassSpec&, const WorkClassSpec&) = default;
};

/// Most classes a configuration may have (the checker packs one 16-bit
/// fraction per class into two words).
inline constexpr size_t max_work_classes = 8;

/// Indices of the default classes (critical, normal, sheddable), for
/// programs that keep the default list.
namespace work_class {
inline constexpr size_t critical = 0;
inline constexpr size_t normal = 1;
inline constexpr size_t sheddable = 2;
} // namespace work_class

/// The default curve of a default class, with the Critical tier at pressure
/// `critical_pressure`: sheddable 1 -> 0 over [0, Critical]; normal 1 at
/// Critical -> 0 at 1 (Overflow); critical 1 until pressure 1 (breaker open,
/// a queue at Overflow, a channel at its emergency threshold). nullopt for
/// other names.
std::optional<AdmissionCurve> default_curve(std::string_view class_name,
                                            double critical_pressure);

/// The [shedding] options.
struct SheddingConfig {
  SheddingMode mode = SheddingMode::binary;
  /// Where a queue's Critical threshold (and a channel's critical
  /// threshold) lies on the pressure scale, in (0, 1).
  double critical_pressure = 0.5;
  /// Ordered classes, most important first.
  std::vector<WorkClassSpec> classes = default_classes(0.5);
  /// Retry-After of a request refused by its class's curve below pressure
  /// 1; at pressure 1 (breaker open, a queue at Overflow, Unknown under
  /// fail-closed) the binary decision's Retry-After applies.
  seconds retry_after{5};
  /// Keyed refusals add up to this share of the computed Retry-After
  /// (per key; 0.5: up to +50 %), never less than it.
  double retry_jitter = 0.5;

  /// critical, normal, sheddable with their default curves.
  static std::vector<WorkClassSpec> default_classes(double critical_pressure);

  /// Index of class `name`, or nullopt.
  std::optional<size_t> index_of(std::string_view name) const noexcept;

  friend bool operator==(const SheddingConfig&, const SheddingConfig&)
      = default;
};

/// Why `name` is not a valid class name (1..32 of [a-z0-9_-]: it becomes a
/// metric label), or nullopt.
std::optional<std::string> work_class_name_problem(std::string_view name);

/// Pressure in [0, 1] and where it comes from: the maximum over
///  - each queue: depth 0 up to its warning threshold, rising linearly to
///    `critical_pressure` at its critical threshold and to 1 at overflow;
///    an Unknown queue (or queue dimension) under fail-closed: 1;
///  - each channel: saturation 0 up to the warning percent, rising to
///    `critical_pressure` at the critical percent and to 1 at the
///    emergency percent; Unknown under fail-closed: 1;
///  - the breaker open: 1; the database Unknown under fail-closed: 1;
///  - a critical custom dimension unhealthy (or Unknown, fail-closed): 1.
/// On a tie the first in that order (breaker, database, channel, queue,
/// custom) is named.
struct Pressure {
  double value = 0.0;
  BackpressureSource source = BackpressureSource::none;
  /// The queue, channel or custom dimension's name (empty otherwise).
  std::string name;
};

Pressure compute_pressure(const DatabaseHealth& db, const ChannelHealth& ch,
                          const QueueHealth& q,
                          const std::vector<CustomHealth>& custom,
                          const HealthConfig& cfg, const DecisionContext& ctx);

/// The snapshot's shedding state: in graded mode the pressure, its source
/// and each class's fraction; in binary mode empty (graded = false).
SheddingState evaluate_shedding(const DatabaseHealth& db,
                                const ChannelHealth& ch, const QueueHealth& q,
                                const std::vector<CustomHealth>& custom,
                                const HealthConfig& cfg,
                                const DecisionContext& ctx);

// ---- the hot path's arithmetic ----------------------------------------------

/// A fraction as the checker stores it: 0..32768 (1 = 32768).
constexpr uint32_t fraction_to_fixed(double f) noexcept {
  if (!(f > 0.0))
    return 0;
  if (f >= 1.0)
    return 32768;
  return static_cast<uint32_t>(f * 32768.0 + 0.5);
}

/// A fast 64-bit mix of `key` under `seed` (one 64 x 64 -> 128-bit
/// multiply by an odd factor, its halves folded, as wyhash's mum): equal
/// inputs, equal outputs; a changed seed reshuffles every key.
constexpr uint64_t mix_key(uint64_t key, uint64_t seed) noexcept {
  __extension__ using u128 = unsigned __int128;
  u128 m = static_cast<u128>(key ^ 0xa0761d6478bd642fULL)
           * static_cast<u128>((seed ^ 0xe7037ed1a0b428dbULL) | 1);
  return static_cast<uint64_t>(m) ^ static_cast<uint64_t>(m >> 64);
}

/// A 64-bit key of a text (FNV-1a, then mixed): for task or client ids that
/// are strings. No allocation.
constexpr uint64_t key_of(std::string_view text) noexcept {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : text)
    h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return mix_key(h, 0);
}

/// True when `key` (already mixed) falls under fixed fraction `fixed`.
constexpr bool admits(uint64_t mixed, uint32_t fixed) noexcept {
  return (mixed >> 49) < fixed;
}

/// `retry` plus a per-key share of up to `jitter_permille`/1000 of it,
/// whole seconds, never less than `retry`.
constexpr seconds jittered(seconds retry, uint64_t mixed,
                           uint32_t jitter_permille) noexcept {
  auto base = static_cast<uint64_t>(retry.count());
  uint64_t band = base * jitter_permille / 1000; // whole seconds of spread
  if (band >= (uint64_t{1} << 31))
    band = (uint64_t{1} << 31) - 1;
  // The low 32 bits (admits() reads the top 15): uniform in [0, band] and
  // independent of the admission.
  uint64_t extra = ((mixed & 0xffffffffULL) * (band + 1)) >> 32;
  return seconds{static_cast<seconds::rep>(base + extra)};
}

} // namespace tasker::health

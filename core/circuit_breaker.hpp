// A thread-safe circuit breaker (closed / open / half-open).
//
// The whole state (state, counters, trial bookkeeping, the time it opened)
// lives in one 64-bit atomic word, and every transition is one
// compare-and-swap on it, so concurrent callers always see a consistent
// breaker and exactly one of them wins each transition. Reading the state
// never changes it.
//
// Rules (defaults of the original): closed -> open after 5 consecutive
// failures; open -> half-open once 30 s have passed (on the next call that
// asks for admission); half-open -> closed after 2 successes; any failure in
// half-open -> open. At most `half_open_max_trials` trial calls run at once
// while half-open. Consecutive failures are counted while closed only, as the
// original does: while open or half-open the count is the one that opened the
// breaker, and closing resets it to 0.
#pragma once

#include "core/clock.hpp"
#include "core/config.hpp"
#include "core/types.hpp"

#include <atomic>
#include <cstdint>

namespace tasker::health {

/// What CircuitBreaker::try_acquire granted.
struct BreakerPermit {
  enum Kind : uint8_t {
    rejected = 0, ///< do not call; the breaker is open or trials are taken
    allowed = 1,  ///< breaker closed: call normally
    trial = 2,    ///< breaker half-open: this call is a trial
  };
  Kind kind = rejected;
  /// Open-phase generation the trial belongs to (internal bookkeeping).
  uint8_t epoch = 0;

  explicit operator bool() const noexcept { return kind != rejected; }
};

class CircuitBreaker {
 public:
  using Permit = BreakerPermit;

  /// `cfg` must have passed HealthConfig::validate() (thresholds within the
  /// documented limits); out-of-range values are clamped.
  explicit CircuitBreaker(CircuitBreakerConfig cfg = {},
                          const Clock& clock = steady_clock());

  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  /// Asks whether a call may go ahead. May move open -> half-open when the
  /// open timeout has passed. A granted trial must be completed with
  /// record_success or record_failure.
  Permit try_acquire() noexcept;

  /// Reports a successful call. Without a permit (e.g. traffic of other
  /// parts of the orchestrator) it still resets the failure count, and counts
  /// toward closing a half-open breaker.
  void record_success(Permit p = {}) noexcept;

  /// Reports a failed call.
  void record_failure(Permit p = {}) noexcept;

  /// Opens the breaker now, whatever its state (the original's force_open,
  /// "for emergency situations"): a fresh open timeout starts, trials in
  /// flight no longer count, the failure count is kept. Counted in
  /// opened_count when it was not open already.
  void force_open() noexcept;

  /// Closes the breaker now, whatever its state (the original's
  /// force_closed, "for emergency recovery"): failures and half-open
  /// counters reset to 0.
  void force_closed() noexcept;

  /// The stored state; does not move open -> half-open (that needs a call).
  CircuitState state() const noexcept;

  /// A consistent reading of state and counters.
  CircuitBreakerMetrics metrics() const noexcept;

  const CircuitBreakerConfig& config() const noexcept { return cfg_; }

 private:
  struct Word;

  int64_t now_ms() const noexcept;

  bool transition(uint64_t& expected, const Word& desired) noexcept;

  CircuitBreakerConfig cfg_;
  const Clock* clock_;
  Clock::time_point epoch_;
  std::atomic<uint64_t> word_;
  std::atomic<uint64_t> opened_count_{0};
  std::atomic<uint64_t> successes_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<uint64_t> rejections_{0};
};

} // namespace tasker::health

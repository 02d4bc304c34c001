#include "core/circuit_breaker.hpp"

#include <algorithm>

namespace tasker::health {

// Layout of the state word (LSB first):
//   bits  0..1   state (CircuitState)
//   bits  2..7   trials in flight (half-open)       max 63
//   bits  8..13  successes in the half-open phase   max 63
//   bits 14..23  consecutive failures (saturating)  max 1023
//   bits 24..29  epoch: incremented on every transition to open (mod 64)
//   bits 30..63  time it opened, ms since the breaker's epoch (mod 2^34,
//                about 198 days; compared by modular difference)
struct CircuitBreaker::Word {
  CircuitState state = CircuitState::closed;
  uint32_t in_flight = 0;
  uint32_t successes = 0;
  uint32_t failures = 0;
  uint32_t epoch = 0;
  uint64_t opened_ms = 0;

  static constexpr uint64_t time_mask = (uint64_t{1} << 34) - 1;

  static Word decode(uint64_t w) noexcept {
    Word x;
    x.state = static_cast<CircuitState>(w & 0x3);
    x.in_flight = static_cast<uint32_t>((w >> 2) & 0x3f);
    x.successes = static_cast<uint32_t>((w >> 8) & 0x3f);
    x.failures = static_cast<uint32_t>((w >> 14) & 0x3ff);
    x.epoch = static_cast<uint32_t>((w >> 24) & 0x3f);
    x.opened_ms = (w >> 30) & time_mask;
    return x;
  }

  uint64_t encode() const noexcept {
    return static_cast<uint64_t>(state) | (uint64_t{in_flight & 0x3f} << 2)
           | (uint64_t{successes & 0x3f} << 8)
           | (uint64_t{failures & 0x3ff} << 14) | (uint64_t{epoch & 0x3f} << 24)
           | ((opened_ms & time_mask) << 30);
  }

  /// Milliseconds since it opened, given the current time (modular).
  int64_t elapsed(int64_t now_ms) const noexcept {
    return static_cast<int64_t>((static_cast<uint64_t>(now_ms) - opened_ms)
                                & time_mask);
  }
};

namespace {

constexpr uint32_t max_failures = 1023;

CircuitBreakerConfig clamp(CircuitBreakerConfig c) {
  c.failure_threshold = std::clamp<uint32_t>(c.failure_threshold, 1, 1023);
  c.success_threshold = std::clamp<uint32_t>(c.success_threshold, 1, 63);
  c.half_open_max_trials = std::clamp<uint32_t>(c.half_open_max_trials, 1, 63);
  if (c.open_timeout.count() < 0)
    c.open_timeout = milliseconds{0};
  return c;
}

} // namespace

CircuitBreaker::CircuitBreaker(CircuitBreakerConfig cfg, const Clock& clock)
    : cfg_(clamp(cfg)), clock_(&clock), epoch_(clock.now()), word_(0) {}

int64_t CircuitBreaker::now_ms() const noexcept {
  return std::chrono::duration_cast<milliseconds>(clock_->now() - epoch_)
      .count();
}

bool CircuitBreaker::transition(uint64_t& expected,
                                const Word& desired) noexcept {
  return word_.compare_exchange_weak(expected, desired.encode(),
                                     std::memory_order_acq_rel,
                                     std::memory_order_acquire);
}

CircuitBreaker::Permit CircuitBreaker::try_acquire() noexcept {
  auto raw = word_.load(std::memory_order_acquire);
  for (;;) {
    auto w = Word::decode(raw);
    switch (w.state) {
      case CircuitState::closed:
        return {Permit::allowed, static_cast<uint8_t>(w.epoch)};
      case CircuitState::open: {
        if (w.elapsed(now_ms()) < cfg_.open_timeout.count()) {
          rejections_.fetch_add(1, std::memory_order_relaxed);
          return {};
        }
        auto next = w;
        next.state = CircuitState::half_open;
        next.in_flight = 1;
        next.successes = 0;
        if (transition(raw, next))
          return {Permit::trial, static_cast<uint8_t>(w.epoch)};
        break; // raw was reloaded, try again
      }
      case CircuitState::half_open: {
        if (w.in_flight >= cfg_.half_open_max_trials) {
          rejections_.fetch_add(1, std::memory_order_relaxed);
          return {};
        }
        auto next = w;
        ++next.in_flight;
        if (transition(raw, next))
          return {Permit::trial, static_cast<uint8_t>(w.epoch)};
        break;
      }
    }
  }
}

void CircuitBreaker::record_success(Permit p) noexcept {
  successes_.fetch_add(1, std::memory_order_relaxed);
  auto raw = word_.load(std::memory_order_acquire);
  for (;;) {
    auto w = Word::decode(raw);
    auto next = w;
    switch (w.state) {
      case CircuitState::closed:
        if (w.failures == 0)
          return;
        next.failures = 0;
        break;
      case CircuitState::open:
        // A late result of a call made before the breaker opened.
        return;
      case CircuitState::half_open:
        if (p.kind == Permit::trial && p.epoch == w.epoch && w.in_flight > 0)
          --next.in_flight;
        // The failure count stays what opened the breaker until it closes
        // (as the original's): a half-open success is not yet a recovery.
        if (++next.successes >= cfg_.success_threshold) {
          next = Word{};
          next.state = CircuitState::closed;
          next.epoch = w.epoch;
        }
        break;
    }
    if (transition(raw, next))
      return;
  }
}

void CircuitBreaker::record_failure(Permit p) noexcept {
  failures_.fetch_add(1, std::memory_order_relaxed);
  auto raw = word_.load(std::memory_order_acquire);
  for (;;) {
    auto w = Word::decode(raw);
    auto next = w;
    bool opens = false;
    switch (w.state) {
      case CircuitState::closed:
        // Consecutive failures count only while closed (as the original's):
        // once open, the count is the one that opened the breaker.
        next.failures = std::min(w.failures + 1, max_failures);
        opens = next.failures >= cfg_.failure_threshold;
        break;
      case CircuitState::open:
        return; // stays open; counted in total_failures only
      case CircuitState::half_open:
        static_cast<void>(p); // any failure in half-open re-opens
        opens = true;
        break;
    }
    if (opens) {
      next.state = CircuitState::open;
      next.in_flight = 0;
      next.successes = 0;
      next.epoch = (w.epoch + 1) & 0x3f;
      next.opened_ms = static_cast<uint64_t>(now_ms());
    }
    if (transition(raw, next)) {
      if (opens)
        opened_count_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
}

void CircuitBreaker::force_open() noexcept {
  auto raw = word_.load(std::memory_order_acquire);
  for (;;) {
    auto w = Word::decode(raw);
    auto next = w;
    next.state = CircuitState::open;
    next.in_flight = 0;
    next.successes = 0;
    next.epoch = (next.epoch + 1) & 0x3f; // as w.epoch + 1
    next.opened_ms = static_cast<uint64_t>(now_ms());
    if (transition(raw, next)) {
      if (w.state != CircuitState::open)
        opened_count_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
}

void CircuitBreaker::force_closed() noexcept {
  auto raw = word_.load(std::memory_order_acquire);
  for (;;) {
    auto w = Word::decode(raw);
    Word next;
    next.state = CircuitState::closed;
    next.epoch = w.epoch;
    if (transition(raw, next))
      return;
  }
}

CircuitState CircuitBreaker::state() const noexcept {
  return Word::decode(word_.load(std::memory_order_acquire)).state;
}

CircuitBreakerMetrics CircuitBreaker::metrics() const noexcept {
  auto w = Word::decode(word_.load(std::memory_order_acquire));
  CircuitBreakerMetrics m;
  m.state = w.state;
  m.consecutive_failures = w.failures;
  m.half_open_successes = w.successes;
  m.opened_count = opened_count_.load(std::memory_order_relaxed);
  if (w.state == CircuitState::open) {
    auto left = cfg_.open_timeout.count() - w.elapsed(now_ms());
    m.time_until_half_open = milliseconds{std::max<int64_t>(left, 0)};
  }
  m.total_successes = successes_.load(std::memory_order_relaxed);
  m.total_failures = failures_.load(std::memory_order_relaxed);
  m.total_rejections = rejections_.load(std::memory_order_relaxed);
  return m;
}

} // namespace tasker::health

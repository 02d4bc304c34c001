// Monotonic clocks behind one small interface, so that the circuit breaker and
// the checker's staleness can be driven by a manual clock in tests.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include <time.h>

namespace tasker::health {

/// A monotonic clock. Implementations must be thread-safe.
class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  virtual ~Clock();

  /// The current monotonic time.
  virtual time_point now() const noexcept = 0;
};

/// std::chrono::steady_clock (CLOCK_MONOTONIC, about 25 ns a read).
class SteadyClock final : public Clock {
 public:
  time_point now() const noexcept override;
};

/// CLOCK_MONOTONIC_COARSE: same epoch as steady_clock, resolution of one
/// kernel tick (1 to 4 ms), about 4 ns a read. Used on the hot path.
class CoarseClock final : public Clock {
 public:
  time_point now() const noexcept override;
};

/// A clock that moves only when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(time_point start = time_point{std::chrono::hours{1}});

  time_point now() const noexcept override;

  void advance(duration d) noexcept;

  void set(time_point t) noexcept;

 private:
  std::atomic<int64_t> ns_;
};

namespace detail {

using clock_gettime_fn = int (*)(clockid_t, timespec*);

/// The kernel's own clock_gettime from the vDSO, resolved once at start
/// (null until then, or where there is none: libc's clock_gettime is used).
/// Calling it directly skips libc's wrapper, about a fifth of the read.
extern std::atomic<clock_gettime_fn> vdso_clock_gettime;

} // namespace detail

/// CoarseClock's reading in nanoseconds, inline for the hot path (no
/// virtual call).
inline int64_t coarse_now_ns() noexcept {
  timespec ts{};
  if (auto f = detail::vdso_clock_gettime.load(std::memory_order_relaxed))
    f(CLOCK_MONOTONIC_COARSE, &ts);
  else
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

/// Process-wide instances (never destroyed).
const Clock& steady_clock() noexcept;
const Clock& coarse_clock() noexcept;

} // namespace tasker::health

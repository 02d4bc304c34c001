#include "core/clock.hpp"

namespace tasker::health {

Clock::~Clock() = default;

Clock::time_point SteadyClock::now() const noexcept {
  return std::chrono::steady_clock::now();
}

Clock::time_point CoarseClock::now() const noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  auto ns
      = std::chrono::seconds{ts.tv_sec} + std::chrono::nanoseconds{ts.tv_nsec};
  return time_point{std::chrono::duration_cast<duration>(ns)};
}

ManualClock::ManualClock(time_point start)
    : ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(
              start.time_since_epoch())
              .count()) {}

Clock::time_point ManualClock::now() const noexcept {
  return time_point{std::chrono::duration_cast<duration>(
      std::chrono::nanoseconds{ns_.load(std::memory_order_acquire)})};
}

void ManualClock::advance(duration d) noexcept {
  ns_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(),
                std::memory_order_acq_rel);
}

void ManualClock::set(time_point t) noexcept {
  ns_.store(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch())
          .count(),
      std::memory_order_release);
}

const Clock& steady_clock() noexcept {
  static const SteadyClock* instance = new SteadyClock;
  return *instance;
}

const Clock& coarse_clock() noexcept {
  static const CoarseClock* instance = new CoarseClock;
  return *instance;
}

} // namespace tasker::health

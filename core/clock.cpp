#include "core/clock.hpp"

#include <dlfcn.h>

namespace tasker::health {

namespace detail {

namespace {

clock_gettime_fn resolve_vdso_clock_gettime() noexcept {
  // The vDSO is mapped into every process; RTLD_NOLOAD only looks it up.
  void* vdso = ::dlopen("linux-vdso.so.1", RTLD_LAZY | RTLD_NOLOAD);
  if (vdso == nullptr)
    return nullptr;
  auto f = reinterpret_cast<clock_gettime_fn>(
      ::dlsym(vdso, "__vdso_clock_gettime"));
  timespec ts{};
  if (f == nullptr || f(CLOCK_MONOTONIC_COARSE, &ts) != 0)
    return nullptr; // not usable: stay with libc's
  return f;
}

} // namespace

std::atomic<clock_gettime_fn> vdso_clock_gettime{resolve_vdso_clock_gettime()};

} // namespace detail

Clock::~Clock() = default;

Clock::time_point SteadyClock::now() const noexcept {
  return std::chrono::steady_clock::now();
}

Clock::time_point CoarseClock::now() const noexcept {
  return time_point{std::chrono::duration_cast<duration>(
      std::chrono::nanoseconds{coarse_now_ns()})};
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

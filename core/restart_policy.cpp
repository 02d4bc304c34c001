#include "core/restart_policy.hpp"

#include <cmath>

namespace tasker::health {

RestartConfig restart_config(const SupervisorConfig& cfg) noexcept {
  RestartConfig r;
  r.backoff.initial = cfg.initial_backoff;
  r.backoff.factor = cfg.backoff_factor;
  r.backoff.max = cfg.max_backoff;
  r.backoff.jitter = cfg.jitter;
  r.reset_after = cfg.reset_after;
  r.max_restarts = cfg.max_restarts;
  r.restart_window = cfg.restart_window;
  return r;
}

std::chrono::milliseconds backoff_delay(const BackoffConfig& cfg,
                                        uint32_t n) noexcept {
  if (cfg.initial.count() <= 0)
    return std::chrono::milliseconds{0};
  double d = static_cast<double>(cfg.initial.count())
             * std::pow(cfg.factor, static_cast<double>(n));
  auto cap = static_cast<double>(cfg.max.count());
  // Also when factor^n overflowed (infinity).
  if (!(d < cap))
    d = cap;
  return std::chrono::milliseconds{static_cast<int64_t>(d)};
}

// -- JitteredBackoff ----------------------------------------------------------

JitteredBackoff::JitteredBackoff(BackoffConfig cfg, uint64_t seed)
    : cfg_(cfg), rng_(seed) {
  // nop
}

std::chrono::milliseconds JitteredBackoff::delay(uint32_t n) {
  return jittered(backoff_delay(cfg_, n));
}

std::chrono::milliseconds JitteredBackoff::longest() {
  return jittered(cfg_.max);
}

std::chrono::milliseconds
JitteredBackoff::jittered(std::chrono::milliseconds d) {
  if (cfg_.jitter <= 0.0)
    return d;
  std::uniform_real_distribution<double> dist{1.0 - cfg_.jitter,
                                              1.0 + cfg_.jitter};
  return std::chrono::milliseconds{
      static_cast<int64_t>(static_cast<double>(d.count()) * dist(rng_))};
}

// -- RestartWindow ------------------------------------------------------------

bool RestartWindow::full(const RestartConfig& cfg, Clock::time_point now) {
  while (!times_.empty() && now - times_.front() >= cfg.restart_window)
    times_.pop_front();
  return times_.size() >= cfg.max_restarts;
}

void RestartWindow::record(Clock::time_point now) {
  times_.push_back(now);
}

// -- RestartPolicy ------------------------------------------------------------

RestartPolicy::RestartPolicy()
    : RestartPolicy(RestartConfig{}, steady_clock(), 0) {
  // nop
}

RestartPolicy::RestartPolicy(RestartConfig cfg, const Clock& clock,
                             uint64_t seed)
    : cfg_(cfg), clock_(&clock), backoff_(cfg.backoff, seed) {
  // nop
}

void RestartPolicy::started(RestartHistory& child) const noexcept {
  child.started_at = clock_->now();
}

RestartDecision RestartPolicy::failed(RestartHistory& child,
                                      RestartWindow& window,
                                      OverBudget when_over) {
  auto now = clock_->now();
  // A child that ran long enough without failing gets a fresh backoff.
  if (now - child.started_at >= cfg_.reset_after)
    child.backoff_step = 0;
  RestartDecision d;
  d.over_budget = window.full(cfg_, now);
  if (d.over_budget && when_over == OverBudget::give_up) {
    d.give_up = true;
    d.restarts_in_window = window.size();
    return d;
  }
  if (d.over_budget) {
    d.delay = backoff_.longest();
  } else {
    window.record(now);
    d.delay = backoff_.delay(child.backoff_step++);
  }
  d.restarts_in_window = window.size();
  return d;
}

} // namespace tasker::health

#include "core/drain.hpp"

#include "core/classify.hpp"

#include <algorithm>
#include <cmath>

namespace tasker::health {

namespace {

void clear_estimate(QueueReport& r) {
  r.drain_rate = 0.0;
  r.drain_samples = 0;
  r.drain_eta_seconds = -1;
}

/// Least-squares slope of depth over time, in messages per second.
template<class Samples>
double slope_of(const Samples& xs) {
  const auto t0 = xs.front().at;
  const double n = static_cast<double>(xs.size());
  double mean_t = 0;
  double mean_y = 0;
  for (const auto& s : xs) {
    mean_t += std::chrono::duration<double>(s.at - t0).count();
    mean_y += static_cast<double>(s.depth);
  }
  mean_t /= n;
  mean_y /= n;
  double num = 0;
  double den = 0;
  for (const auto& s : xs) {
    auto dt = std::chrono::duration<double>(s.at - t0).count() - mean_t;
    num += dt * (static_cast<double>(s.depth) - mean_y);
    den += dt * dt;
  }
  return den > 0 ? num / den : 0.0;
}

} // namespace

DrainTracker::DrainTracker(const HealthConfig& cfg) : cfg_(cfg) {
  // Off, the option is not validated: keep the window usable anyway.
  if (cfg_.evaluation_interval.count() > 0) {
    cfg_.drain_window
        = std::clamp(cfg_.drain_window, 2 * cfg_.evaluation_interval,
                     100 * cfg_.evaluation_interval);
  }
}

void DrainTracker::observe(QueueHealth& q, time_point now) {
  if (!q.evaluated) {
    for (auto& r : q.queues)
      clear_estimate(r);
    return;
  }
  for (auto& r : q.queues) {
    clear_estimate(r);
    if (r.missing) {
      history_.erase(r.name); // dropped; a recreated queue starts afresh
      continue;
    }
    if (!r.error.empty() || r.tier == QueueDepthTier::unknown)
      continue; // no sample this cycle; older ones expire with the window
    auto& h = history_[r.name];
    if (r.capped) {
      h.clear(); // the real depth is above the cap: no rate across it
      continue;
    }
    while (!h.empty() && h.front().at < now - cfg_.drain_window)
      h.pop_front();
    if (!h.empty() && now <= h.back().at)
      h.pop_back(); // same instant (or a clock step back): keep the newest
    if (!h.empty()) {
      auto high = std::max_element(
          h.begin(), h.end(),
          [](const sample& a, const sample& b) { return a.depth < b.depth; });
      if (r.depth > high->depth)
        h.clear(); // a new high: refilled or restarted
    }
    h.push_back({now, r.depth});
    while (h.size() > max_samples)
      h.pop_front();
    r.drain_samples = static_cast<uint32_t>(h.size());
    if (h.size() < min_samples)
      continue;
    r.drain_rate = -slope_of(h);
    if (r.drain_rate == 0.0)
      r.drain_rate = 0.0; // a flat queue is 0, never -0 (JSON "-0.0")
    if (!(r.drain_rate > 0.0))
      continue; // flat or growing: no estimate
    const auto& t = cfg_.thresholds_for(r.name);
    // Below this depth the queue causes no backpressure any more.
    auto level = t.critical - std::max<int64_t>(cfg_.hysteresis_margin, 0);
    auto excess = r.depth - (level - 1);
    if (excess <= 0) {
      r.drain_eta_seconds = 0;
      continue;
    }
    auto eta = std::ceil(static_cast<double>(excess) / r.drain_rate);
    r.drain_eta_seconds = static_cast<int64_t>(std::min(eta, 1e9));
  }
}

std::optional<seconds> drain_retry_after(const QueueHealth& q,
                                         seconds constant) noexcept {
  int64_t longest = -1;
  for (const auto& r : q.queues) {
    if (r.tier < QueueDepthTier::critical)
      continue;
    if (r.drain_eta_seconds < 0)
      return std::nullopt; // one of them is not draining: the constant
    longest = std::max(longest, r.drain_eta_seconds);
  }
  if (longest < 0)
    return std::nullopt;
  auto upper = std::max<int64_t>(constant.count(), 1);
  return seconds{std::clamp<int64_t>(longest, 1, upper)};
}

} // namespace tasker::health

// The overload simulation behind bench/overload-sim (and its reproducibility
// test): a deterministic, seeded discrete-event simulation that drives the
// real decision (decide(), evaluate_shedding(), TierTracker) and the real
// checker (SnapshotCell, BackpressureChecker on a manual clock).
//
// The system: one queue drained by one server at D messages per second
// (service time exactly 1/D); producers offering a multiple of D as a
// Poisson stream in a class mix; every request is checked on arrival
// (binary: try_check(), graded: try_check(class, key)); an admitted request
// enters the queue, a refused one comes back after its Retry-After (the
// same request, the same key) up to `max_attempts` times. Every
// `evaluation_interval` the aggregator's cycle measures the depth, decides
// and publishes a snapshot; the checker answers from the latest one.
#pragma once

#include "core/classify.hpp"
#include "core/config.hpp"
#include "core/decision.hpp"
#include "core/shedding.hpp"
#include "core/snapshot_cell.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <queue>
#include <random>
#include <vector>

namespace tasker::health::sim {

struct Params {
  uint64_t seed = 1;
  /// Drain rate D (messages per second).
  double drain_rate = 100.0;
  /// Fresh offered load as a multiple of D.
  double offered = 2.0;
  /// Class mix of fresh requests (critical, normal, sheddable).
  std::array<double, 3> mix{0.2, 0.5, 0.3};
  double duration_s = 600.0;
  /// Figures of depth and amplitude skip this start (the queue filling).
  double warmup_s = 300.0;
  /// A request is given up after this many refused attempts.
  int max_attempts = 5;
  /// The component's configuration (thresholds, interval, Retry-After,
  /// shedding mode, curves, jitter).
  HealthConfig config;
};

struct Result {
  uint64_t attempts[3] = {0, 0, 0};
  uint64_t admitted[3] = {0, 0, 0};
  uint64_t abandoned[3] = {0, 0, 0};
  uint64_t served = 0;
  int64_t max_depth = 0;
  /// Depth range after the warm-up, sampled every 100 ms: (max - min) / 2.
  double amplitude = 0.0;
  int64_t min_depth_after_warmup = 0;
  int64_t max_depth_after_warmup = 0;
  /// Cycles whose queue was at Overflow.
  uint64_t overflow_cycles = 0;
  uint64_t cycles = 0;
  /// Arrivals (fresh and retries) per 1 s bin after the warm-up.
  double peak_to_mean = 0.0;
  double duration_s = 0.0;
  double drain_rate = 0.0;
  /// The depth each cycle measured (for --trace and tests).
  std::vector<int64_t> cycle_depths;

  double admitted_share(size_t cls) const {
    return attempts[cls] == 0 ? 1.0
                              : static_cast<double>(admitted[cls])
                                    / static_cast<double>(attempts[cls]);
  }
  double goodput() const {
    return static_cast<double>(served) / (drain_rate * duration_s);
  }
  friend bool operator==(const Result& a, const Result& b) {
    return std::equal(a.attempts, a.attempts + 3, b.attempts)
           && std::equal(a.admitted, a.admitted + 3, b.admitted)
           && std::equal(a.abandoned, a.abandoned + 3, b.abandoned)
           && a.served == b.served && a.max_depth == b.max_depth
           && a.amplitude == b.amplitude
           && a.overflow_cycles == b.overflow_cycles
           && a.peak_to_mean == b.peak_to_mean;
  }
};

/// Runs one simulation. Same parameters (seed included), same result.
inline Result run(const Params& p) {
  using namespace std::chrono;
  // Randomness: our own transforms of mt19937_64 (the standard
  // distributions differ between library versions).
  std::mt19937_64 rng{p.seed};
  auto uniform = [&] {
    return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
  };
  auto exponential = [&](double rate) {
    return -std::log(1.0 - uniform()) / rate;
  };
  const auto& cfg = p.config;
  QueueHealth q;
  q.evaluated = true;
  q.queues.resize(1);
  q.queues[0].name = cfg.queues.empty() ? "tasks" : cfg.queues[0].name;
  TierTracker tiers{cfg};
  ManualClock clock{ManualClock::time_point{}};
  auto cell = std::make_shared<SnapshotCell>(clock);
  BackpressureChecker checker{cell, CheckerOptions::from(cfg)};
  DatabaseHealth db;
  db.watched = false;
  ChannelHealth ch;
  ch.watched = false;
  const bool graded = cfg.shedding.mode == SheddingMode::graded;

  // Events: time, kind, request (for arrivals and retries).
  enum Kind : uint8_t { cycle = 0, service = 1, arrival = 2, retry = 3 };
  struct Event {
    double t;
    uint64_t order; // ties in insertion order: deterministic
    Kind kind;
    uint8_t cls;
    uint8_t attempt;
    uint64_t key;
    bool operator>(const Event& o) const {
      return t != o.t ? t > o.t : order > o.order;
    }
  };
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events;
  uint64_t order = 0;
  auto push = [&](double t, Kind k, uint8_t cls = 0, uint8_t attempt = 0,
                  uint64_t key = 0) {
    events.push(Event{t, order++, k, cls, attempt, key});
  };
  const double interval = duration<double>(cfg.evaluation_interval).count();
  const double service_time = 1.0 / p.drain_rate;
  const double fresh_rate = p.offered * p.drain_rate;
  push(0.0, cycle);
  push(exponential(fresh_rate), arrival);

  Result r;
  r.duration_s = p.duration_s;
  r.drain_rate = p.drain_rate;
  int64_t depth = 0;
  bool serving = false;
  uint64_t next_key = 1;
  uint64_t sequence = 0;
  std::vector<uint64_t> bins(static_cast<size_t>(p.duration_s) + 1, 0);
  r.min_depth_after_warmup = INT64_MAX;
  double next_sample = p.warmup_s;

  auto sample_until = [&](double t) {
    while (next_sample <= t && next_sample < p.duration_s) {
      r.min_depth_after_warmup = std::min(r.min_depth_after_warmup, depth);
      r.max_depth_after_warmup = std::max(r.max_depth_after_warmup, depth);
      next_sample += 0.1;
    }
  };

  while (!events.empty()) {
    auto e = events.top();
    if (e.t >= p.duration_s)
      break;
    events.pop();
    sample_until(e.t);
    clock.set(ManualClock::time_point{
        duration_cast<steady_clock::duration>(duration<double>(e.t))});
    switch (e.kind) {
      case cycle: {
        // The aggregator: measure, classify, decide, publish.
        q.queues[0].depth = depth;
        r.cycle_depths.push_back(depth);
        q.queues[0].tier = QueueDepthTier::unknown;
        tiers.classify(q);
        if (q.queues[0].tier == QueueDepthTier::overflow)
          ++r.overflow_cycles;
        ++r.cycles;
        DecisionContext ctx;
        ctx.interval = cfg.evaluation_interval;
        ctx.next_cycle_in = cfg.evaluation_interval;
        ctx.cycle_deadline = cfg.probe_timeout;
        auto s = std::make_shared<HealthSnapshot>();
        s->sequence = ++sequence;
        s->incarnation = p.seed | 1;
        s->queues = q;
        s->database = db;
        s->channel = ch;
        s->decision = decide(db, ch, q, {}, cfg, ctx);
        s->shedding = evaluate_shedding(db, ch, q, {}, cfg, ctx);
        s->status = evaluate_status(*s);
        cell->publish(std::move(s));
        push(e.t + interval, cycle);
        break;
      }
      case service:
        --depth;
        ++r.served;
        if (depth > 0)
          push(e.t + service_time, service);
        else
          serving = false;
        break;
      case arrival:
      case retry: {
        uint8_t cls = e.cls;
        uint64_t key = e.key;
        if (e.kind == arrival) {
          auto u = uniform();
          cls = u < p.mix[0] ? 0 : u < p.mix[0] + p.mix[1] ? 1 : 2;
          key = mix_key(next_key++, p.seed);
          push(e.t + exponential(fresh_rate), arrival);
        }
        auto bin = static_cast<size_t>(e.t);
        if (e.t >= p.warmup_s && bin < bins.size())
          ++bins[bin];
        ++r.attempts[cls];
        auto refusal = graded ? checker.try_check(cls, key)
                              : (cfg.shedding.retry_jitter > 0.0
                                     ? checker.try_check(cls, key)
                                     : checker.try_check());
        if (!refusal) {
          ++r.admitted[cls];
          ++depth;
          r.max_depth = std::max(r.max_depth, depth);
          if (!serving) {
            serving = true;
            push(e.t + service_time, service);
          }
        } else if (e.attempt + 1 >= p.max_attempts) {
          ++r.abandoned[cls];
        } else {
          auto wait = static_cast<double>(refusal->retry_after.count());
          push(e.t + wait, retry, cls, static_cast<uint8_t>(e.attempt + 1),
               key);
        }
        break;
      }
    }
  }
  sample_until(p.duration_s);
  if (r.min_depth_after_warmup == INT64_MAX)
    r.min_depth_after_warmup = 0;
  r.amplitude
      = static_cast<double>(r.max_depth_after_warmup - r.min_depth_after_warmup)
        / 2.0;
  // Peak-to-mean of the arrival rate in 1 s bins after the warm-up.
  auto first = static_cast<size_t>(p.warmup_s);
  auto last = static_cast<size_t>(p.duration_s);
  uint64_t total = 0;
  uint64_t peak = 0;
  for (size_t i = first; i < last && i < bins.size(); ++i) {
    total += bins[i];
    peak = std::max(peak, bins[i]);
  }
  if (last > first && total > 0)
    r.peak_to_mean
        = static_cast<double>(peak)
          / (static_cast<double>(total) / static_cast<double>(last - first));
  return r;
}

} // namespace tasker::health::sim

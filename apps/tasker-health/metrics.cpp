#include "apps/tasker-health/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <sstream>

namespace tasker::health::app {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

struct health_metrics::families {
  Family<Counter>& evaluations;
  Family<Counter>& evaluation_errors;
  Family<Histogram>& evaluation_duration;
  Family<Histogram>& db_check_duration;
  Family<Gauge>& db_connected;
  Family<Gauge>& breaker_state;
  Family<Gauge>& breaker_failures;
  Family<Counter>& breaker_opened;
  Family<Gauge>& channel_saturation;
  Family<Gauge>& queue_depth;
  Family<Gauge>& queue_tier;
  Family<Gauge>& backpressure_active;
  Family<Counter>& backpressure_activations;
  Family<Counter>& probe_restarts;
  Family<Gauge>& probe_failed;
  Family<Gauge>& snapshot_sequence;
  Family<Gauge>& status;
  uint64_t breaker_opened_seen = 0;

  explicit families(prometheus::Registry& r)
      : evaluations(BuildCounter()
                        .Name("tasker_health_evaluations_total")
                        .Help("Evaluation cycles completed")
                        .Register(r)),
        evaluation_errors(
            BuildCounter()
                .Name("tasker_health_evaluation_errors_total")
                .Help(
                    "Cycles in which a probe gave no data (Unknown), by probe")
                .Register(r)),
        evaluation_duration(
            BuildHistogram()
                .Name("tasker_health_evaluation_duration_seconds")
                .Help("Time from asking the probes to the decision")
                .Register(r)),
        db_check_duration(
            BuildHistogram()
                .Name("tasker_health_database_check_duration_seconds")
                .Help("Duration of the DB check query")
                .Register(r)),
        db_connected(BuildGauge()
                         .Name("tasker_health_database_connected")
                         .Help("1 when the last DB check succeeded")
                         .Register(r)),
        breaker_state(
            BuildGauge()
                .Name("tasker_health_circuit_breaker_state")
                .Help("Circuit breaker state: 0 closed, 1 open, 2 half-open")
                .Register(r)),
        breaker_failures(
            BuildGauge()
                .Name("tasker_health_circuit_breaker_consecutive_failures")
                .Help("Consecutive DB check failures")
                .Register(r)),
        breaker_opened(BuildCounter()
                           .Name("tasker_health_circuit_breaker_opened_total")
                           .Help("Times the circuit breaker opened")
                           .Register(r)),
        channel_saturation(BuildGauge()
                               .Name("tasker_health_channel_saturation_percent")
                               .Help("Command channel saturation, by channel")
                               .Register(r)),
        queue_depth(BuildGauge()
                        .Name("tasker_health_queue_depth")
                        .Help("Queue depth (counted up to the overflow "
                              "threshold), by queue")
                        .Register(r)),
        queue_tier(BuildGauge()
                       .Name("tasker_health_queue_tier")
                       .Help("Queue tier: 0 unknown, 1 normal, 2 warning, 3 "
                             "critical, 4 overflow, by queue")
                       .Register(r)),
        backpressure_active(BuildGauge()
                                .Name("tasker_health_backpressure_active")
                                .Help("1 while backpressure is active")
                                .Register(r)),
        backpressure_activations(
            BuildCounter()
                .Name("tasker_health_backpressure_activations_total")
                .Help("Transitions into active backpressure, by source")
                .Register(r)),
        probe_restarts(BuildCounter()
                           .Name("tasker_health_probe_restarts_total")
                           .Help("Probe restarts by the supervisor, by probe")
                           .Register(r)),
        probe_failed(BuildGauge()
                         .Name("tasker_health_probe_failed_permanently")
                         .Help("1 when the supervisor gave the probe up")
                         .Register(r)),
        snapshot_sequence(BuildGauge()
                              .Name("tasker_health_snapshot_sequence")
                              .Help("Sequence number of the latest snapshot")
                              .Register(r)),
        status(BuildGauge()
                   .Name("tasker_health_status")
                   .Help("1 for the current status (healthy, degraded, "
                         "unhealthy)")
                   .Register(r)) {}
};

namespace {

const Histogram::BucketBoundaries& latency_buckets() {
  static const Histogram::BucketBoundaries b{0.0005, 0.001, 0.0025, 0.005, 0.01,
                                             0.025,  0.05,  0.1,    0.25,  0.5,
                                             1.0,    2.5,   5.0};
  return b;
}

double secs(std::chrono::microseconds d) {
  return static_cast<double>(d.count()) / 1e6;
}

} // namespace

health_metrics::health_metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      f_(std::make_unique<families>(*registry_)) {
  // Series that exist from the start, so that a scrape before the first
  // snapshot already shows them.
  f_->evaluations.Add({});
  f_->backpressure_active.Add({}).Set(0);
  for (auto* s : {"healthy", "degraded", "unhealthy"})
    f_->status.Add({{"status", s}}).Set(0);
}

health_metrics::~health_metrics() = default;

void health_metrics::observe(const HealthSnapshot& s) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (s.sequence <= last_sequence_)
    return; // seen already (e.g. re-delivered on resubscription)
  auto cycles = last_sequence_ == 0 ? 1 : s.sequence - last_sequence_;
  last_sequence_ = s.sequence;
  f_->evaluations.Add({}).Increment(static_cast<double>(cycles));
  f_->snapshot_sequence.Add({}).Set(static_cast<double>(s.sequence));
  f_->evaluation_duration.Add({}, latency_buckets())
      .Observe(secs(s.evaluation_duration));
  auto error = [&](const std::string& probe) {
    f_->evaluation_errors.Add({{"probe", probe}}).Increment();
  };
  // Database and breaker.
  const auto& db = s.database;
  if (db.watched) {
    if (!db.evaluated) {
      error("database");
    } else {
      f_->db_connected.Add({}).Set(db.connected ? 1 : 0);
      if (!db.check_skipped)
        f_->db_check_duration.Add({}, latency_buckets())
            .Observe(secs(db.check_duration));
      f_->breaker_state.Add({}).Set(static_cast<double>(db.breaker.state));
      f_->breaker_failures.Add({}).Set(db.breaker.consecutive_failures);
      auto& opened = f_->breaker_opened.Add({});
      if (db.breaker.opened_count > f_->breaker_opened_seen) {
        opened.Increment(static_cast<double>(db.breaker.opened_count
                                             - f_->breaker_opened_seen));
        f_->breaker_opened_seen = db.breaker.opened_count;
      }
    }
  }
  // Channels.
  if (s.channel.watched) {
    if (!s.channel.evaluated)
      error("channel");
    else
      for (const auto& c : s.channel.channels)
        f_->channel_saturation.Add({{"channel", c.name}})
            .Set(c.saturation_percent);
  }
  // Queues.
  if (s.queues.watched) {
    if (!s.queues.evaluated)
      error("queue");
    for (const auto& q : s.queues.queues) {
      f_->queue_tier.Add({{"queue", q.name}}).Set(static_cast<double>(q.tier));
      if (s.queues.evaluated && !q.missing && q.error.empty())
        f_->queue_depth.Add({{"queue", q.name}})
            .Set(static_cast<double>(q.depth));
    }
  }
  for (const auto& c : s.custom)
    if (!c.evaluated)
      error("custom:" + c.name);
  // Decision.
  f_->backpressure_active.Add({}).Set(s.decision.active ? 1 : 0);
  if (s.decision.active && !was_active_) {
    ++activations_;
    f_->backpressure_activations
        .Add({{"source", std::string{to_string(s.decision.source)}}})
        .Increment();
  }
  was_active_ = s.decision.active;
  for (auto st :
       {HealthStatus::healthy, HealthStatus::degraded, HealthStatus::unhealthy})
    f_->status.Add({{"status", std::string{to_string(st)}}})
        .Set(st == s.status ? 1 : 0);
}

void health_metrics::observe(const std::vector<ProbeStatus>& probes) {
  std::lock_guard<std::mutex> guard{mtx_};
  for (const auto& p : probes) {
    auto& seen = restarts_seen_[p.name];
    auto& counter = f_->probe_restarts.Add({{"probe", p.name}});
    if (p.restarts > seen) {
      counter.Increment(static_cast<double>(p.restarts - seen));
      seen = p.restarts;
    }
    f_->probe_failed.Add({{"probe", p.name}}).Set(p.failed_permanently ? 1 : 0);
  }
}

std::string health_metrics::render() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::ostringstream out;
  prometheus::TextSerializer{}.Serialize(out, registry_->Collect());
  return out.str();
}

uint64_t health_metrics::activations() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return activations_;
}

} // namespace tasker::health::app

#include "apps/tasker-health/metrics.hpp"

#include "actors/cluster.hpp"

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

int breaker_state_value(CircuitState s) noexcept {
  switch (s) {
    case CircuitState::closed: return 0;
    case CircuitState::half_open: return 1;
    case CircuitState::open: return 2;
  }
  return 2;
}

std::string_view activation_source(const BackpressureDecision& d) noexcept {
  if (!d.active)
    return {};
  switch (d.code) {
    case ReasonCode::breaker_open: return "circuit_breaker";
    case ReasonCode::channel_critical: return "channel_saturation";
    case ReasonCode::queue_overflow:
    case ReasonCode::queue_critical: return "queue_depth";
    case ReasonCode::database_unknown:
    case ReasonCode::channel_unknown:
    case ReasonCode::queue_unknown:
    case ReasonCode::custom_unhealthy:
    case ReasonCode::custom_unknown: return to_string(d.code);
    case ReasonCode::none:
    case ReasonCode::snapshot_stale:
    case ReasonCode::no_snapshot: break;
    case ReasonCode::work_shed: break;
  }
  return to_string(d.source);
}

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
  Family<Gauge>& queue_depth_tier;
  Family<Gauge>& backpressure_active;
  Family<Counter>& backpressure_activations;
  Family<Counter>& probe_restarts;
  Family<Gauge>& probe_failed;
  Family<Counter>& actor_restarts;
  Family<Gauge>& actor_up;
  Family<Gauge>& snapshot_sequence;
  Family<Gauge>& snapshot_epoch;
  Family<Gauge>& status;
  Family<Gauge>& cluster_connected;
  Family<Gauge>& cluster_accepting;
  Family<Gauge>& cluster_age;
  Family<Gauge>& cluster_nodes;
  // issue 20: this project's count of Unknown dimensions under a name of
  // its own (the original's evaluation_errors_total is never incremented).
  Family<Counter>& unknown_dimensions;
  // Graded shedding (issue 19).
  Family<Gauge>& shedding_pressure;
  Family<Gauge>& shedding_admitted;
  Family<Counter>& shedding_checks;

  explicit families(prometheus::Registry& r)
      : evaluations(BuildCounter()
                        .Name("tasker_health_evaluations_total")
                        .Help("Evaluation cycles completed")
                        .Register(r)),
        evaluation_errors(
            BuildCounter()
                .Name("tasker_health_evaluation_errors_total")
                .Help("Evaluation cycles that failed to complete (as the "
                      "original's: never incremented; see "
                      "tasker_health_unknown_dimensions_total)")
                .Register(r)),
        evaluation_duration(
            BuildHistogram()
                .Name("tasker_health_evaluation_duration_seconds")
                .Help("Time from asking the probes to the decision")
                .Register(r)),
        db_check_duration(
            BuildHistogram()
                .Name("tasker_health_database_check_duration_seconds")
                .Help("Duration of the DB check query, 0 when the breaker "
                      "skipped it (as the original's)")
                .Register(r)),
        db_connected(BuildGauge()
                         .Name("tasker_health_database_connected")
                         .Help("1 when the last DB check succeeded; 0 when it "
                               "failed or the database is Unknown")
                         .Register(r)),
        breaker_state(
            BuildGauge()
                .Name("tasker_health_circuit_breaker_state")
                .Help("Circuit breaker state: 0 closed, 1 half-open, 2 open "
                      "(absent while the database is Unknown)")
                .Register(r)),
        breaker_failures(BuildGauge()
                             .Name("tasker_health_circuit_breaker_failures")
                             .Help("Consecutive DB check failures (while "
                                   "open: the count that opened it)")
                             .Register(r)),
        breaker_opened(BuildCounter()
                           .Name("tasker_health_circuit_breaker_opened_total")
                           .Help("Times the circuit breaker opened")
                           .Register(r)),
        channel_saturation(BuildGauge()
                               .Name("tasker_health_channel_saturation_percent")
                               .Help("Command channel saturation, by channel "
                                     "(absent while Unknown)")
                               .Register(r)),
        queue_depth(BuildGauge()
                        .Name("tasker_health_queue_depth_current")
                        .Help("Queue depth (counted up to the overflow "
                              "threshold), by queue (absent while Unknown)")
                        .Register(r)),
        queue_tier(BuildGauge()
                       .Name("tasker_health_queue_tier")
                       .Help("Queue tier: 0 unknown, 1 normal, 2 warning, 3 "
                             "critical, 4 overflow, by queue")
                       .Register(r)),
        queue_depth_tier(
            BuildGauge()
                .Name("tasker_health_queue_depth_tier")
                .Help("Worst queue tier: 0 unknown, 1 normal, 2 warning, 3 "
                      "critical, 4 overflow")
                .Register(r)),
        backpressure_active(BuildGauge()
                                .Name("tasker_health_backpressure_active")
                                .Help("1 while backpressure is active")
                                .Register(r)),
        backpressure_activations(
            BuildCounter()
                .Name("tasker_health_backpressure_activations_total")
                .Help("Backpressure activations (into active, or a new cause "
                      "while active), by source")
                .Register(r)),
        probe_restarts(BuildCounter()
                           .Name("tasker_health_probe_restarts_total")
                           .Help("Probe restarts by the supervisor, by probe")
                           .Register(r)),
        probe_failed(BuildGauge()
                         .Name("tasker_health_probe_failed_permanently")
                         .Help("1 when the supervisor gave the probe up")
                         .Register(r)),
        actor_restarts(BuildCounter()
                           .Name("tasker_health_actor_restarts_total")
                           .Help("Restarts by the root supervisor, by actor")
                           .Register(r)),
        actor_up(BuildGauge()
                     .Name("tasker_health_actor_up")
                     .Help("1 while the actor runs, 0 when down or given up")
                     .Register(r)),
        snapshot_sequence(BuildGauge()
                              .Name("tasker_health_snapshot_sequence")
                              .Help("Sequence number of the latest snapshot")
                              .Register(r)),
        snapshot_epoch(BuildGauge()
                           .Name("tasker_health_snapshot_epoch")
                           .Help("Aggregator epoch of the latest snapshot (1 "
                                 "+ aggregator restarts)")
                           .Register(r)),
        status(BuildGauge()
                   .Name("tasker_health_status")
                   .Help("1 for the current status (healthy, degraded, "
                         "unhealthy)")
                   .Register(r)),
        cluster_connected(BuildGauge()
                              .Name("tasker_health_cluster_peer_connected")
                              .Help("1 while the link to the node is up (the "
                                    "local node: always 1)")
                              .Register(r)),
        cluster_accepting(BuildGauge()
                              .Name("tasker_health_cluster_peer_accepting")
                              .Help("1 when the node has a fresh snapshot "
                                    "without backpressure")
                              .Register(r)),
        cluster_age(BuildGauge()
                        .Name("tasker_health_cluster_peer_snapshot_age_seconds")
                        .Help("Age of the node's latest snapshot (absent "
                              "before the first one)")
                        .Register(r)),
        cluster_nodes(BuildGauge()
                          .Name("tasker_health_cluster_nodes")
                          .Help("Nodes by state: accepting, rejecting, "
                                "unreachable")
                          .Register(r)),
        unknown_dimensions(
            BuildCounter()
                .Name("tasker_health_unknown_dimensions_total")
                .Help("Cycles in which a dimension gave no data (Unknown), "
                      "by error_type: database, channel, queue, custom:<name>")
                .Register(r)),
        shedding_pressure(
            BuildGauge()
                .Name("tasker_health_shedding_pressure")
                .Help("Graded shedding: pressure in [0, 1] (absent in binary "
                      "mode)")
                .Register(r)),
        shedding_admitted(
            BuildGauge()
                .Name("tasker_health_shedding_admitted_fraction")
                .Help("Graded shedding: admitted fraction in [0, 1], by "
                      "class (the configured classes)")
                .Register(r)),
        shedding_checks(
            BuildCounter()
                .Name("tasker_health_shedding_checks_total")
                .Help("Keyed checks reported by the embedder, by class and "
                      "outcome (admitted, refused)")
                .Register(r)) {}
};

namespace {

const Histogram::BucketBoundaries& latency_buckets() {
  static const Histogram::BucketBoundaries b{0.0005, 0.001, 0.0025, 0.005, 0.01,
                                             0.025,  0.05,  0.1,    0.25,  0.5,
                                             1.0,    2.5,   5.0};
  return b;
}

/// The original's boundaries (OpenTelemetry's default histogram buckets in
/// milliseconds), in seconds.
const Histogram::BucketBoundaries& db_check_buckets() {
  static const Histogram::BucketBoundaries b{0.0,   0.005, 0.01, 0.025, 0.05,
                                             0.075, 0.1,   0.25, 0.5,   0.75,
                                             1.0,   2.5,   5.0,  7.5,   10.0};
  return b;
}

double secs(std::chrono::microseconds d) {
  return static_cast<double>(d.count()) / 1e6;
}

template<class T>
void remove(Family<T>& family, const prometheus::Labels& labels) {
  if (family.Has(labels))
    family.Remove(&family.Add(labels));
}

} // namespace

health_metrics::health_metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      f_(std::make_unique<families>(*registry_)) {
  // Series that exist from the start, so that a scrape before the first
  // snapshot already shows them.
  f_->evaluations.Add({});
  f_->evaluation_errors.Add({}); // the original's: stays 0
  f_->backpressure_active.Add({}).Set(0);
  f_->queue_depth_tier.Add({}).Set(0);
  for (auto* s : {"healthy", "degraded", "unhealthy"})
    f_->status.Add({{"status", s}}).Set(0);
}

health_metrics::~health_metrics() = default;

void health_metrics::forget_queue_depth(const std::string& queue) {
  remove(f_->queue_depth, {{"queue", queue}});
}

void health_metrics::observe(const HealthSnapshot& s) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto stamp = SnapshotStamp::of(s);
  auto admission = admit(stamp, last_ ? &*last_ : nullptr);
  if (!accepted(admission))
    return; // a replay (e.g. re-delivered on resubscription) or a leftover
  uint64_t cycles = 1;
  if (admission == Admission::accept && last_)
    cycles = s.sequence - last_->sequence;
  if (admission == Admission::accept_new_incarnation)
    breaker_opened_seen_ = 0; // a new process: a new breaker
  last_ = stamp;
  f_->evaluations.Add({}).Increment(static_cast<double>(cycles));
  f_->snapshot_sequence.Add({}).Set(static_cast<double>(s.sequence));
  f_->snapshot_epoch.Add({}).Set(static_cast<double>(s.epoch));
  f_->evaluation_duration.Add({}, latency_buckets())
      .Observe(secs(s.evaluation_duration));
  observe_database(s);
  observe_channels(s);
  observe_queues(s);
  for (const auto& c : s.custom)
    if (!c.evaluated)
      count_unknown("custom:" + c.name);
  observe_decision(s);
  observe_shedding(s);
}

void health_metrics::count_unknown(const std::string& dimension) {
  f_->unknown_dimensions.Add({{"error_type", dimension}}).Increment();
}

void health_metrics::observe_database(const HealthSnapshot& s) {
  // Database and breaker.
  const auto& db = s.database;
  if (!db.watched) {
    remove(f_->db_connected, {});
    remove(f_->breaker_state, {});
    remove(f_->breaker_failures, {});
  } else if (!db.evaluated) {
    count_unknown("database");
    // Unknown is not connected. The breaker's state is unknown too, unless
    // the decision (which reads the breaker itself) says it is open.
    f_->db_connected.Add({}).Set(0);
    if (s.decision.code == ReasonCode::breaker_open)
      f_->breaker_state.Add({}).Set(breaker_state_value(CircuitState::open));
    else
      remove(f_->breaker_state, {});
    remove(f_->breaker_failures, {});
  } else {
    f_->db_connected.Add({}).Set(db.connected ? 1 : 0);
    // Every evaluated check, a skipped one as 0 (the original records
    // its duration whenever the database was evaluated).
    f_->db_check_duration.Add({}, db_check_buckets())
        .Observe(db.check_skipped ? 0.0 : secs(db.check_duration));
    f_->breaker_state.Add({}).Set(breaker_state_value(db.breaker.state));
    f_->breaker_failures.Add({}).Set(db.breaker.consecutive_failures);
    auto& opened = f_->breaker_opened.Add({});
    if (db.breaker.opened_count > breaker_opened_seen_) {
      opened.Increment(
          static_cast<double>(db.breaker.opened_count - breaker_opened_seen_));
      breaker_opened_seen_ = db.breaker.opened_count;
    }
  }
}

void health_metrics::observe_channels(const HealthSnapshot& s) {
  std::set<std::string> channels_now;
  if (s.channel.watched) {
    if (!s.channel.evaluated) {
      count_unknown("channel");
    } else {
      for (const auto& c : s.channel.channels) {
        f_->channel_saturation.Add({{"channel", c.name}})
            .Set(c.saturation_percent);
        channels_now.insert(c.name);
      }
    }
  }
  for (const auto& name : channels_seen_)
    if (channels_now.count(name) == 0)
      remove(f_->channel_saturation, {{"channel", name}});
  channels_seen_ = std::move(channels_now);
}

void health_metrics::observe_queues(const HealthSnapshot& s) {
  if (!s.queues.watched)
    return;
  if (!s.queues.evaluated)
    count_unknown("queue");
  std::set<std::string> reported;
  for (const auto& q : s.queues.queues) {
    reported.insert(q.name);
    queues_seen_.insert(q.name);
    f_->queue_tier.Add({{"queue", q.name}}).Set(static_cast<double>(q.tier));
    if (s.queues.evaluated && !q.missing && q.error.empty()
        && q.tier != QueueDepthTier::unknown)
      f_->queue_depth.Add({{"queue", q.name}})
          .Set(static_cast<double>(q.depth));
    else
      forget_queue_depth(q.name);
  }
  // Queues seen before but not in this report: Unknown now.
  for (const auto& name : queues_seen_)
    if (reported.count(name) == 0) {
      f_->queue_tier.Add({{"queue", name}}).Set(0);
      forget_queue_depth(name);
    }
  f_->queue_depth_tier.Add({}).Set(static_cast<double>(
      s.queues.evaluated ? s.queues.worst_tier : QueueDepthTier::unknown));
}

void health_metrics::observe_decision(const HealthSnapshot& s) {
  f_->backpressure_active.Add({}).Set(s.decision.active ? 1 : 0);
  auto source = std::string{activation_source(s.decision)};
  if (!source.empty() && source != active_source_) {
    ++activations_;
    f_->backpressure_activations.Add({{"source", source}}).Increment();
  }
  active_source_ = std::move(source);
  for (auto st :
       {HealthStatus::healthy, HealthStatus::degraded, HealthStatus::unhealthy})
    f_->status.Add({{"status", std::string{to_string(st)}}})
        .Set(st == s.status ? 1 : 0);
}

void health_metrics::observe_shedding(const HealthSnapshot& s) {
  // Graded shedding: the labels are the configured classes (at most 8).
  if (s.shedding.graded) {
    f_->shedding_pressure.Add({}).Set(s.shedding.pressure);
    std::set<std::string> now;
    for (const auto& c : s.shedding.classes) {
      f_->shedding_admitted.Add({{"class", c.name}}).Set(c.admitted);
      now.insert(c.name);
    }
    for (const auto& name : classes_seen_)
      if (now.count(name) == 0)
        remove(f_->shedding_admitted, {{"class", name}});
    classes_seen_ = std::move(now);
  } else {
    remove(f_->shedding_pressure, {});
    for (const auto& name : classes_seen_)
      remove(f_->shedding_admitted, {{"class", name}});
    classes_seen_.clear();
  }
}

bool health_metrics::count_checks(const std::string& work_class,
                                  uint64_t admitted, uint64_t refused) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (classes_seen_.count(work_class) == 0)
    return false; // bounded labels: only the configured classes
  if (admitted > 0)
    f_->shedding_checks.Add({{"class", work_class}, {"outcome", "admitted"}})
        .Increment(static_cast<double>(admitted));
  if (refused > 0)
    f_->shedding_checks.Add({{"class", work_class}, {"outcome", "refused"}})
        .Increment(static_cast<double>(refused));
  return true;
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

void health_metrics::observe(const std::vector<ActorStatus>& actors) {
  std::lock_guard<std::mutex> guard{mtx_};
  for (const auto& a : actors) {
    auto& seen = actor_restarts_seen_[a.name];
    auto& counter = f_->actor_restarts.Add({{"actor", a.name}});
    if (a.restarts > seen) {
      counter.Increment(static_cast<double>(a.restarts - seen));
      seen = a.restarts;
    }
    f_->actor_up.Add({{"actor", a.name}})
        .Set(a.running && !a.failed_permanently ? 1 : 0);
  }
}

void health_metrics::observe(const cluster_summary& cluster) {
  std::lock_guard<std::mutex> guard{mtx_};
  for (const auto& n : cluster.nodes) {
    prometheus::Labels peer{{"peer", n.name}};
    f_->cluster_connected.Add(peer).Set(n.connected ? 1 : 0);
    f_->cluster_accepting.Add(peer).Set(n.accepting ? 1 : 0);
    if (n.age && n.connected)
      f_->cluster_age.Add(peer).Set(static_cast<double>(n.age->count())
                                    / 1000.0);
    else
      f_->cluster_age.Remove(&f_->cluster_age.Add(peer));
  }
  f_->cluster_nodes.Add({{"state", "accepting"}})
      .Set(static_cast<double>(cluster.accepting));
  f_->cluster_nodes.Add({{"state", "rejecting"}})
      .Set(static_cast<double>(cluster.rejecting));
  f_->cluster_nodes.Add({{"state", "unreachable"}})
      .Set(static_cast<double>(cluster.unreachable));
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

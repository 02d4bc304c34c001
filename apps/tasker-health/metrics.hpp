// Prometheus metrics of the daemon, compatible with the original's
// tasker.health.* metrics (names, label values, encodings) where a dashboard
// or an alert may depend on them; docs/DESIGN.md ("Metrics") lists every
// series with its original and every intentional difference. Updated from
// snapshots (the cache's callback), from the supervisor's probe status and
// from the root supervisor's actor status; rendered by GET /metrics. Labels
// have bounded cardinality: dimension, queue, channel and actor names from
// the configuration, enum values; never free text.
//
// A dimension that is Unknown never keeps a value that reads healthy:
// database_connected is 0; the breaker gauges, a queue's depth and a
// channel's saturation are removed (their last value would be a lie) while
// the per-queue tier reads 0 (unknown).
#pragma once

#include "core/types.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template<class T>
class Family;
} // namespace prometheus

namespace tasker::health {
struct cluster_summary;
} // namespace tasker::health

namespace tasker::health::app {

/// Value of tasker_health_circuit_breaker_state, the original's encoding:
/// 0 closed, 1 half-open, 2 open.
int breaker_state_value(CircuitState s) noexcept;

/// Label `source` of tasker_health_backpressure_activations_total: the
/// original's `circuit_breaker`, `channel_saturation`, `queue_depth`; for
/// the causes the original does not have, the reason code
/// (`database_unknown`, `channel_unknown`, `queue_unknown`,
/// `custom_unhealthy`, `custom_unknown`). Empty when not active.
std::string_view activation_source(const BackpressureDecision& d) noexcept;

class health_metrics {
 public:
  health_metrics();
  ~health_metrics();

  health_metrics(const health_metrics&) = delete;
  health_metrics& operator=(const health_metrics&) = delete;

  /// Folds one snapshot into the metrics when admit() accepts it after the
  /// last one folded in: a higher sequence of the same incarnation (also
  /// across restarts of the aggregator), or a newer incarnation (a
  /// restarted process, whose sequence starts at 1 again). A replay or an
  /// older incarnation changes nothing. Thread-safe.
  void observe(const HealthSnapshot& s);

  /// Updates the probe restart metrics from the probe supervisor's view.
  /// Thread-safe.
  void observe(const std::vector<ProbeStatus>& probes);

  /// Updates tasker_health_actor_restarts_total{actor} and
  /// tasker_health_actor_up{actor} from the root supervisor's view of its
  /// children. Thread-safe.
  void observe(const std::vector<ActorStatus>& actors);

  /// Updates the cluster gauges (label `peer`: the configured peers and the
  /// local node, so its cardinality is bounded by the configuration).
  /// Thread-safe.
  void observe(const cluster_summary& cluster);

  /// Adds keyed checks (BackpressureChecker::try_check(work_class, key))
  /// of class `work_class` to tasker_health_shedding_checks_total{class,
  /// outcome}. An embedder counts on its own (e.g. per thread) and reports
  /// now and then, so that the hot path stays free of shared writes. Only
  /// the classes of the latest graded snapshot are accepted (bounded
  /// labels); false otherwise. Thread-safe.
  bool count_checks(const std::string& work_class, uint64_t admitted,
                    uint64_t refused);

  /// Prometheus text exposition (format 0.0.4).
  std::string render() const;

  /// Backpressure activations counted so far (see activation_source()).
  uint64_t activations() const;

 private:
  struct families;

  void forget_queue_depth(const std::string& queue);
  // The parts of observe(HealthSnapshot), each for one dimension; called
  // with mtx_ held.
  void count_unknown(const std::string& dimension);
  void observe_database(const HealthSnapshot& s);
  void observe_channels(const HealthSnapshot& s);
  void observe_queues(const HealthSnapshot& s);
  void observe_decision(const HealthSnapshot& s);
  void observe_shedding(const HealthSnapshot& s);

  mutable std::mutex mtx_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<families> f_;
  std::optional<SnapshotStamp> last_;
  /// The activation label while active (empty: not active).
  std::string active_source_;
  uint64_t activations_ = 0;
  uint64_t breaker_opened_seen_ = 0;
  std::set<std::string> queues_seen_;
  std::set<std::string> channels_seen_;
  std::set<std::string> classes_seen_;
  std::map<std::string, uint64_t> restarts_seen_;
  std::map<std::string, uint64_t> actor_restarts_seen_;
};

} // namespace tasker::health::app

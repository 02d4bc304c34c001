// Prometheus metrics of the daemon, named after the original's
// tasker.health.* metrics. Updated from snapshots (in the cache actor) and
// from the supervisor's probe status; rendered by GET /metrics. Labels have
// bounded cardinality: dimension, queue and channel names from the
// configuration, enum values; never free text.
#pragma once

#include "core/types.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template<class T>
class Family;
} // namespace prometheus

namespace tasker::health::app {

class health_metrics {
 public:
  health_metrics();
  ~health_metrics();

  health_metrics(const health_metrics&) = delete;
  health_metrics& operator=(const health_metrics&) = delete;

  /// Folds one snapshot into the metrics. Thread-safe.
  void observe(const HealthSnapshot& s);

  /// Updates the restart counters from the supervisor's view. Thread-safe.
  void observe(const std::vector<ProbeStatus>& probes);

  /// Prometheus text exposition (format 0.0.4).
  std::string render() const;

  /// Backpressure activations counted so far (transitions into active).
  uint64_t activations() const;

 private:
  struct families;
  mutable std::mutex mtx_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<families> f_;
  uint64_t last_sequence_ = 0;
  bool was_active_ = false;
  uint64_t activations_ = 0;
  std::map<std::string, uint64_t> restarts_seen_;
};

} // namespace tasker::health::app

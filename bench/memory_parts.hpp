// Measuring code answered from memory, for benchmarks of the actors: a
// database check that always succeeds and queue depths that follow a fixed
// pattern, so that a bench measures delivery, not PostgreSQL.
#pragma once

#include "core/measure.hpp"

#include <cstdint>
#include <vector>

namespace tasker::health::bench {

class instant_db final : public DatabaseCheck {
 public:
  DbCheckResult check() override {
    DbCheckResult r;
    r.ok = true;
    return r;
  }
};

/// Queue i has depth (i * step) % modulo, all of it visible.
class memory_queues final : public QueueDepthSource {
 public:
  memory_queues(int64_t step, int64_t modulo) : step_(step), modulo_(modulo) {}

  QueueHealth measure(const std::vector<QueueDepthRequest>& qs) override {
    QueueHealth h;
    h.evaluated = true;
    int64_t i = 0;
    for (auto& q : qs) {
      QueueReport r;
      r.name = q.name;
      r.count_cap = q.cap;
      r.depth = (i++ * step_) % modulo_;
      r.visible_length = r.depth;
      h.queues.push_back(std::move(r));
    }
    return h;
  }

 private:
  int64_t step_;
  int64_t modulo_;
};

} // namespace tasker::health::bench

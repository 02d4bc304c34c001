#include "actors/queue_probe.hpp"

#include "messages/inspect.hpp"

#include "caf/stateful_actor.hpp"
#include "caf/typed_event_based_actor.hpp"

namespace tasker::health {

std::vector<QueueDepthRequest> queue_requests(const HealthConfig& cfg) {
  std::vector<QueueDepthRequest> result;
  result.reserve(cfg.queues.size());
  for (const auto& q : cfg.queues)
    result.push_back({q.name, cfg.thresholds_for(q.name).overflow});
  return result;
}

queue_probe_actor::behavior_type
queue_probe(queue_probe_actor::stateful_pointer<queue_probe_state> self,
            std::shared_ptr<QueueDepthSource> source,
            std::vector<QueueDepthRequest> requests) {
  self->state.source = std::move(source);
  self->state.requests = std::move(requests);
  return {
      [=](atom::report) -> QueueHealth {
        auto& st = self->state;
        QueueHealth h;
        try {
          h = st.source->measure(st.requests);
        } catch (const std::exception& e) {
          h = QueueHealth{};
          h.error = std::string{"measure threw: "} + e.what();
        }
        h.watched = true;
        for (auto& q : h.queues)
          q.tier = QueueDepthTier::unknown; // classified by the aggregator
        return h;
      },
  };
}

} // namespace tasker::health

#include "actors/channel_probe.hpp"

#include "messages/inspect.hpp"

#include "caf/stateful_actor.hpp"
#include "caf/typed_event_based_actor.hpp"

namespace tasker::health {

channel_probe_actor::behavior_type
channel_probe(channel_probe_actor::stateful_pointer<channel_probe_state> self,
              std::vector<std::shared_ptr<ChannelMonitor>> monitors,
              ChannelThresholds thresholds) {
  self->state.monitors = std::move(monitors);
  self->state.thresholds = thresholds;
  return {
      [=](atom::report) -> ChannelHealth {
        std::vector<ChannelSample> samples;
        samples.reserve(self->state.monitors.size());
        for (const auto& m : self->state.monitors)
          samples.push_back(m->sample());
        return evaluate_channels(samples, self->state.thresholds);
      },
  };
}

} // namespace tasker::health

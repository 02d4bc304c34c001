// The channel probe: samples the orchestrator's ChannelMonitors when asked.
// Sampling is a handful of atomic loads, so it runs on the cooperative
// scheduler.
#pragma once

#include "core/channel_monitor.hpp"
#include "core/config.hpp"
#include "messages/interfaces.hpp"

#include <memory>
#include <vector>

namespace tasker::health {

struct channel_probe_state {
  static inline const char* name = "channel_probe";
  // A user-declared constructor keeps the state from being an aggregate:
  // C++20 would otherwise let CAF "construct" it from the actor pointer.
  channel_probe_state() = default;
  /// The channels of the orchestrator (shared with it).
  std::vector<std::shared_ptr<ChannelMonitor>> monitors;
  ChannelThresholds thresholds;
};

/// Answers `report` with the saturation of every monitor in `monitors`.
channel_probe_actor::behavior_type
channel_probe(channel_probe_actor::stateful_pointer<channel_probe_state> self,
              std::vector<std::shared_ptr<ChannelMonitor>> monitors,
              ChannelThresholds thresholds);

} // namespace tasker::health

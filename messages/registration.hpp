// Registration of every message type and of the error category with an actor
// system config. Call it on every node (same names everywhere).
#pragma once

namespace caf {
class actor_system_config;
} // namespace caf

namespace tasker::health {

/// Adds every tasker-health message type and the "health" error category to
/// `cfg`. Call before constructing the actor system.
void register_types(caf::actor_system_config& cfg);

} // namespace tasker::health

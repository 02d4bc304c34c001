// Every typed actor interface of tasker-health, in one place: read this file
// to know the whole message flow.
//
//   supervisor --spawns/monitors--> probes (database, channel, queue, custom)
//   supervisor --replace/failed----> aggregator
//   aggregator --report------------> probes          (one request per probe
//   probes     --<Dimension>Health-> aggregator       per cycle, deadline)
//   cache      --subscribe---------> aggregator
//   aggregator --snapshot----------> caches          (every cycle)
//
// Payload types are the plain structs of core/types.hpp; their `inspect`
// overloads are in messages/inspect.hpp and every type is registered by
// register_types() (messages/registration.hpp), so all of this can cross the
// network unchanged.
#pragma once

#include "core/types.hpp"
#include "messages/atoms.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include "caf/replies_to.hpp"
#include "caf/typed_actor.hpp"

namespace tasker::health {

// ---- probes -----------------------------------------------------------------
// A probe measures one dimension when asked and answers with one report. It
// bounds its own work by a deadline. Probes doing blocking I/O run detached.

/// The database probe: runs the DB check through the circuit breaker.
using db_probe_actor = caf::typed_actor<
    // Measure now (or skip while the breaker is open) and report.
    caf::replies_to<atom::report>::with<DatabaseHealth>>;

/// The channel probe: samples the registered ChannelMonitors.
using channel_probe_actor = caf::typed_actor<
    // Sample every channel now and report.
    caf::replies_to<atom::report>::with<ChannelHealth>>;

/// The queue probe: measures all configured PGMQ queues in one round trip.
using queue_probe_actor = caf::typed_actor<
    // Measure every queue now and report (tiers are set by the aggregator).
    caf::replies_to<atom::report>::with<QueueHealth>>;

/// A user-defined probe: a fourth (fifth, ...) dimension under its own name.
/// Implement this interface and register it with the health system.
using custom_probe_actor = caf::typed_actor<
    // Measure now and report; `name` and `kind` are filled in by the
    // aggregator from the registration.
    caf::replies_to<atom::report>::with<CustomHealth>>;

// ---- cache ------------------------------------------------------------------

/// Holds the latest snapshot of one aggregator in a SnapshotCell.
using cache_actor = caf::typed_actor<
    // A new snapshot from the aggregator: publish it to the cell.
    caf::reacts_to<atom::snapshot, HealthSnapshot>,
    // The latest snapshot (error no_snapshot before the first one).
    caf::replies_to<atom::snapshot>::with<HealthSnapshot>,
    // Internal: no snapshot since generation N within the stale threshold.
    caf::reacts_to<atom::stale, uint64_t>>;

// ---- aggregator -------------------------------------------------------------

/// Owns the evaluation cycle: asks all probes, decides, broadcasts.
using aggregator_actor = caf::typed_actor<
    // Add a cache; it receives the current snapshot at once (if any) and every
    // new one. The cache is monitored and dropped when it dies.
    caf::reacts_to<atom::subscribe, cache_actor>,
    // Remove a cache.
    caf::reacts_to<atom::unsubscribe, cache_actor>,
    // The current snapshot (error no_snapshot before the first cycle ended).
    caf::replies_to<atom::snapshot>::with<HealthSnapshot>,
    // A new (restarted) probe handle for a dimension (from the supervisor).
    caf::reacts_to<atom::replace, db_probe_actor>,
    caf::reacts_to<atom::replace, channel_probe_actor>,
    caf::reacts_to<atom::replace, queue_probe_actor>,
    // A new handle for the custom dimension `name`.
    caf::reacts_to<atom::replace, std::string, custom_probe_actor>,
    // The probe of (kind, name) failed permanently with `reason`: its
    // dimension stays Unknown.
    caf::reacts_to<atom::failed, ProbeKind, std::string, std::string>,
    // Internal: start a cycle (every evaluation interval).
    caf::reacts_to<atom::tick>,
    // Internal: the deadline of cycle N has passed.
    caf::reacts_to<atom::deadline, uint64_t>>;

// ---- supervisor -------------------------------------------------------------

/// Spawns the probes, restarts failed ones with backoff, gives up after too
/// many restarts within a window.
using supervisor_actor = caf::typed_actor<
    // What the supervisor knows about every probe.
    caf::replies_to<atom::status>::with<std::vector<ProbeStatus>>,
    // Internal: restart child N if it is still at generation G.
    caf::reacts_to<atom::restart, uint32_t, uint64_t>>;

} // namespace tasker::health

// Every typed actor interface of tasker-health, in one place: read this file
// to know the whole message flow.
//
//   root supervisor --spawns/monitors/restarts--> aggregator, probe
//                                                 supervisor, caches
//   root       --attach(aggregator)-------------> probe supervisor
//   root       --source(aggregator)-------------> caches (after a restart)
//   probe supervisor --spawns/monitors----------> probes (db, channel,
//                                                 queue, custom)
//   probe supervisor --replace/failed-----------> aggregator
//   aggregator --report (finite timeout)--------> probes    one request per
//   probes     --<Dimension>Health--------------> aggregator probe and cycle
//   aggregator --hung---------------------------> probe supervisor (watchdog)
//   cache      --subscribe----------------------> aggregator
//   aggregator --snapshot(shared_snapshot)------> caches    (every cycle, one
//                                                 shared message for all)
//
// Payload types are the plain structs of core/types.hpp; their `inspect`
// overloads are in messages/inspect.hpp and every type is registered by
// register_types() (messages/registration.hpp), so all of this can cross the
// network unchanged, except `child_spec` (local only, marked below).
#pragma once

#include "core/types.hpp"
#include "messages/atoms.hpp"
#include "messages/shared_snapshot.hpp"
#include "messages/signed_snapshot.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "caf/allowed_unsafe_message_type.hpp"
#include "caf/fwd.hpp"
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

// ---- snapshot flow ----------------------------------------------------------

/// What a snapshot source pushes to: the narrow handle every source keeps
/// for its subscribers (local caches, remote links).
using subscriber_actor = caf::typed_actor<
    // A new snapshot; consumers accept it only when admit() says so (no
    // replay, no out-of-order snapshot of the incarnation they hold).
    caf::reacts_to<atom::snapshot, shared_snapshot>,
    // The source can no longer vouch for what it sent (its own source went
    // away): the snapshot held is stale now, for `reason`.
    caf::reacts_to<atom::stale, std::string>>;

/// What a publisher pushes to a remote link: every snapshot as one
/// authenticated envelope (messages/signed_snapshot.hpp), verified before it
/// is parsed.
using signed_subscriber_actor = caf::typed_actor<
    // A new snapshot, serialized and signed by the publishing node.
    caf::reacts_to<atom::snapshot, signed_snapshot>,
    // As for subscriber_actor.
    caf::reacts_to<atom::stale, std::string>>;

/// Anything caches subscribe to: the local aggregator, or a publisher (the
/// only actor remote nodes may reach).
using snapshot_source_actor = caf::typed_actor<
    // Add a subscriber; it receives the current snapshot at once (if any)
    // and every new one. The subscriber is monitored and dropped when it
    // dies.
    caf::reacts_to<atom::subscribe, subscriber_actor>,
    // Remove a subscriber.
    caf::reacts_to<atom::unsubscribe, subscriber_actor>,
    // The current snapshot (error no_snapshot before the first one).
    caf::replies_to<atom::snapshot>::with<HealthSnapshot>>;

/// What the root supervisor tells a subscribing child (a cache, the
/// publisher) after it restarted the aggregator.
using resubscribable_actor = caf::typed_actor<
    // Subscribe to this source from now on; keep what you hold until a
    // newer snapshot comes.
    caf::reacts_to<atom::source, snapshot_source_actor>>;

// ---- cache ------------------------------------------------------------------

/// Holds the latest snapshot of one source in a SnapshotCell.
using cache_actor = subscriber_actor::extend<
    // The latest snapshot (error no_snapshot before the first one).
    caf::replies_to<atom::snapshot>::with<HealthSnapshot>,
    // Subscribe to this source from now on (the root, after it restarted
    // the aggregator); the cell keeps its snapshot until a newer one comes.
    caf::reacts_to<atom::source, snapshot_source_actor>,
    // Internal: check whether snapshots stopped arriving (timer N).
    caf::reacts_to<atom::stale, uint64_t>>;

// ---- distribution -----------------------------------------------------------
//
//   node A: aggregator --snapshot--> publisher  (published on cluster.port;
//                                                the only actor peers reach)
//   node B: link --connect (TCP pre-check, then the middleman)--> A
//           link --subscribe(link)-------------> A's publisher
//           A's publisher --snapshot-----------> link --> its cell, and
//                                                local subscribers (one
//                                                remote subscription per
//                                                node, local fan-out)
//           cluster view: one link per configured peer + the local cell

/// The only actor a remote peer can reach: a snapshot source for remote
/// subscribers. Snapshot pushes are accepted from its own (local)
/// aggregator only; anything else is dropped and logged once per peer.
using publisher_actor = snapshot_source_actor::extend<
    // Add (remove) a remote link: it receives signed envelopes (the
    // current snapshot at once, if any).
    caf::reacts_to<atom::subscribe, signed_subscriber_actor>,
    caf::reacts_to<atom::unsubscribe, signed_subscriber_actor>,
    // A new snapshot from the local aggregator (from anyone else: dropped).
    caf::reacts_to<atom::snapshot, shared_snapshot>,
    // The local aggregator's snapshot went stale (ignored: the publisher
    // watches its aggregator itself).
    caf::reacts_to<atom::stale, std::string>,
    // Internal: look for the current aggregator again.
    caf::reacts_to<atom::resolve>>;

/// One remote node: connects to its publisher (and reconnects, with backoff),
/// holds its latest snapshot in a cell that outlives the connection, and is
/// itself a snapshot source for local subscribers.
using link_actor = snapshot_source_actor::extend<
    // A new snapshot from the connected publisher, verified before it is
    // parsed (from anyone else, or not authentic: dropped).
    caf::reacts_to<atom::snapshot, signed_snapshot>,
    // The publisher's own aggregator went away.
    caf::reacts_to<atom::stale, std::string>,
    // The connection as the link sees it.
    caf::replies_to<atom::status>::with<PeerStatus>,
    // Internal: start the next connect attempt.
    caf::reacts_to<atom::connect>,
    // Internal: result of attempt N's reachability pre-check (empty error:
    // reachable).
    caf::reacts_to<atom::connect, uint64_t, std::string>>;

/// The cluster: one link per configured peer plus the local node.
using cluster_view_actor = caf::typed_actor<
    // Every peer's connection as its link sees it.
    caf::replies_to<atom::status>::with<std::vector<PeerStatus>>,
    // Internal: start the link of peer N again (after it died).
    caf::reacts_to<atom::restart, uint32_t, uint64_t>>;

// ---- aggregator -------------------------------------------------------------

/// Owns the evaluation cycle: asks all probes, decides, broadcasts.
using aggregator_actor = snapshot_source_actor::extend<
    // A new (restarted) probe handle for a dimension (from the probe
    // supervisor, which is remembered as the one to tell about a hung
    // probe).
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

// ---- probe supervisor -------------------------------------------------------

/// Spawns the probes, restarts failed ones with backoff, gives up after too
/// many restarts within a window.
using supervisor_actor = caf::typed_actor<
    // What the supervisor knows about every probe.
    caf::replies_to<atom::status>::with<std::vector<ProbeStatus>>,
    // Register every live probe (and every given-up one as failed) with
    // this aggregator from now on (the root, after restarting it).
    caf::reacts_to<atom::attach, aggregator_actor>,
    // The probe of (kind, name) lost its replies for several cycles in a
    // row: replace it with a fresh one (counts as a restart).
    caf::reacts_to<atom::hung, ProbeKind, std::string>,
    // Internal: restart child N if it is still at generation G.
    caf::reacts_to<atom::restart, uint32_t, uint64_t>>;

// ---- root supervisor --------------------------------------------------------

/// How the root supervisor (re)starts one of its children. Local only: it
/// holds a function and never crosses the network.
struct child_spec {
  enum role_t : uint8_t {
    /// The aggregator: restarted with the next epoch; then the probe
    /// supervisor is attached to it and every subscriber re-pointed.
    aggregator_role = 0,
    /// The probe supervisor: restarted alone, registers fresh probes with
    /// the current aggregator.
    probe_supervisor_role = 1,
    /// A cache: restarted alone, subscribed to the current aggregator;
    /// told `source` when the aggregator changes.
    subscriber_role = 2,
    /// The publisher: restarted alone; finds the current aggregator by
    /// itself (it is reachable from other nodes, so it takes no `source`
    /// message from anyone).
    independent_role = 3,
  };
  /// "aggregator", "probe-supervisor", "cache", "cache-2", "publisher", ...
  std::string name;
  role_t role = subscriber_role;
  /// Reachable from other nodes (the publisher), so its failures may be a
  /// peer's doing: it has a restart budget of its own (max_restarts within
  /// the window, then restarts at the longest backoff) and never makes the
  /// root give up; a stop it did not get from the root counts as a failure.
  bool peer_facing = false;
  /// Spawns the child. `current` is the aggregator in charge (invalid when
  /// the aggregator itself is spawned), `epoch` the epoch to spawn it with.
  std::function<caf::actor(caf::actor_system&, const aggregator_actor& current,
                           uint32_t epoch)>
      spawn;
};

/// The top of the tree: restarts the aggregator, the probe supervisor and
/// the caches with backoff and jitter; gives up (and the health system
/// reports failed()) when they restart too often.
using root_supervisor_actor = caf::typed_actor<
    // What the root knows about each child.
    caf::replies_to<atom::status>::with<std::vector<ActorStatus>>,
    // Supervise `child`, already running, restarting it from `spec`.
    caf::reacts_to<atom::adopt, child_spec, caf::actor>,
    // Internal: restart child N if it is still at generation G.
    caf::reacts_to<atom::restart, uint32_t, uint64_t>>;

} // namespace tasker::health

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(tasker::health::child_spec)

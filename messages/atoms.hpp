// Atoms of the tasker-health protocol (CAF 0.17 style: at most 10
// characters each). See messages/interfaces.hpp for who sends what.
#pragma once

#include "caf/atom.hpp"

namespace tasker::health::atom {

/// "Measure now and answer with your report" (aggregator -> probe).
using report = caf::atom_constant<caf::atom("report")>;
constexpr auto report_v = report::value;

/// A new snapshot (aggregator -> cache), or "give me the current one".
using snapshot = caf::atom_constant<caf::atom("snapshot")>;
constexpr auto snapshot_v = snapshot::value;

/// Register a cache for snapshots (cache -> aggregator).
using subscribe = caf::atom_constant<caf::atom("subscribe")>;
constexpr auto subscribe_v = subscribe::value;

/// Remove a cache from the subscribers (cache -> aggregator).
using unsubscribe = caf::atom_constant<caf::atom("unsubscr")>;
constexpr auto unsubscribe_v = unsubscribe::value;

/// A probe handle replaces the previous one of its dimension
/// (supervisor -> aggregator).
using replace = caf::atom_constant<caf::atom("replace")>;
constexpr auto replace_v = replace::value;

/// A probe failed permanently (supervisor -> aggregator).
using failed = caf::atom_constant<caf::atom("failed")>;
constexpr auto failed_v = failed::value;

/// Start one evaluation cycle (aggregator -> itself, every interval).
using tick = caf::atom_constant<caf::atom("tick")>;
constexpr auto tick_v = tick::value;

/// The deadline of a cycle has passed (aggregator -> itself).
using deadline = caf::atom_constant<caf::atom("deadline")>;
constexpr auto deadline_v = deadline::value;

/// Check whether snapshots stopped arriving (cache -> itself).
using stale = caf::atom_constant<caf::atom("stale")>;
constexpr auto stale_v = stale::value;

/// Restart a failed probe after its backoff (supervisor -> itself).
using restart = caf::atom_constant<caf::atom("restart")>;
constexpr auto restart_v = restart::value;

/// Ask for the status of all supervised probes.
using status = caf::atom_constant<caf::atom("status")>;
constexpr auto status_v = status::value;

/// Subscribe to this snapshot source from now on (root -> cache or
/// publisher, after the aggregator was restarted).
using source = caf::atom_constant<caf::atom("source")>;
constexpr auto source_v = source::value;

/// Register your live probes with this (new) aggregator (root -> probe
/// supervisor, after the aggregator was restarted).
using attach = caf::atom_constant<caf::atom("attach")>;
constexpr auto attach_v = attach::value;

/// A probe lost its replies several cycles in a row: replace it
/// (aggregator -> probe supervisor; the watchdog).
using hung = caf::atom_constant<caf::atom("hung")>;
constexpr auto hung_v = hung::value;

/// Supervise this running child from now on (facade -> root supervisor).
using adopt = caf::atom_constant<caf::atom("adopt")>;
constexpr auto adopt_v = adopt::value;

/// Connect (again) to a remote publisher (link -> itself), or the result
/// of a reachability pre-check (pre-check -> link).
using connect = caf::atom_constant<caf::atom("connect")>;
constexpr auto connect_v = connect::value;

/// Look for the current aggregator again (publisher -> itself).
using resolve = caf::atom_constant<caf::atom("resolve")>;
constexpr auto resolve_v = resolve::value;

} // namespace tasker::health::atom

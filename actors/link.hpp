// The link: one per remote node. It connects to the node's publisher
// asynchronously (never the blocking remote_actor on an actor thread): a
// bounded TCP pre-check on a thread of its own first, so that a black-holed
// host cannot stall the middleman's connects for everyone, then a connect
// request to the middleman (plain or TLS) with a timeout, and an interface
// check of what it found. Connected, it subscribes to the publisher and
// monitors it.
//
// It is the one remote subscription of this node to that peer: it keeps the
// peer's latest snapshot in a SnapshotCell that lives across reconnections
// and is itself a snapshot source for any number of local subscribers (local
// fan-out behind one remote subscription). Snapshots arrive as signed
// envelopes (messages/signed_snapshot.hpp) and are accepted from the
// connected publisher only, only when the envelope is authentic (checked
// before its bytes are parsed; with certificates, the snapshot's node must
// be a name of the signer's certificate), only from the node this link
// expects (configured as name@host:port, or the first authentic one), and
// only when the bounded admit() says so: a restarted node (new incarnation,
// sequence from 1) is accepted; a replayed or out-of-order snapshot, one
// from beyond the clock-skew bound, or a sequence jump beyond the bound is
// refused and never remembered.
//
// Phases, one behavior each (`become`):
//   connecting  -- pre-check, then the middleman's connect (one attempt)
//   connected   -- subscribed to the publisher, which is monitored
//   waiting     -- between attempts (backoff timer)
// Local subscribers are served the same way in every phase.
//
// On node loss (down message: the connection closed, or the heartbeat's
// connection timeout for a frozen peer) the cell turns stale at once, local
// subscribers are told, and the link reconnects with exponential backoff and
// jitter; `connection_timeout` during a connect is retried the same way.
#pragma once

#include "actors/subscriber_set.hpp"
#include "core/restart_policy.hpp"
#include "core/snapshot_auth.hpp"
#include "core/snapshot_cell.hpp"
#include "messages/interfaces.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "caf/actor_clock.hpp"

namespace tasker::health {

/// A link's connection state, readable from any thread (the cluster facade
/// reads it without asking the actor).
class peer_board {
 public:
  PeerStatus get() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return status_;
  }

  template<class F>
  void update(F f) {
    std::lock_guard<std::mutex> guard{mtx_};
    f(status_);
  }

 private:
  mutable std::mutex mtx_;
  PeerStatus status_;
};

/// How a link connects and reconnects; the cluster facade takes the same
/// settings once for all its links.
struct link_connect_options {
  /// Connect through caf::openssl (mutual TLS) instead of plain caf::io.
  bool tls = false;
  /// Bound of the TCP pre-check (0: no pre-check, e.g. on the simulated
  /// network of the deterministic tests).
  std::chrono::milliseconds precheck_timeout{1000};
  /// Bound of the middleman's connect (TCP connect and BASP handshake).
  std::chrono::milliseconds connect_timeout{5000};
  /// Reconnect backoff: initial * 2^n up to max, times [1-jitter, 1+jitter].
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{2000};
  double jitter = 0.2;
  /// How the peers' snapshots are authenticated (null: not at all, today's
  /// behaviour; the daemon says so at start).
  std::shared_ptr<const SnapshotAuth> auth;
  /// What a peer's snapshot may claim (clock skew, sequence jump).
  AdmissionBounds admission;
};

struct link_options : link_connect_options {
  std::string host;
  uint16_t port = 0;
  /// Where the peer's snapshots go (kept across reconnections).
  std::shared_ptr<SnapshotCell> cell;
  /// Shared with the cluster facade.
  std::shared_ptr<peer_board> board;
  /// A snapshot produced longer ago than this (by the peer's wall clock) is
  /// stale on arrival: a publisher whose aggregator hangs without dying
  /// still hands out its last snapshot. 0: no check.
  std::chrono::milliseconds stale_after{0};
  /// The node name the peer's snapshots must carry (empty: with
  /// authentication, the name of the first authentic snapshot, kept for the
  /// link's life; without, any).
  std::string expected_node;
  uint64_t seed = 0;
};

struct link_state {
  static inline const char* name = "link";
  link_state() = default;
  link_state(const link_state&) = delete;
  link_state& operator=(const link_state&) = delete;
  /// The cell is stale once nobody writes it anymore.
  ~link_state();

  link_options options;
  std::string peer; ///< "host:port"
  snapshot_source_actor publisher;
  /// How snapshots are verified (options.auth, or none).
  SnapshotAuth auth;
  /// The node whose snapshots this link accepts (see expected_node).
  std::string node_name;
  std::optional<SnapshotStamp> last;
  shared_snapshot current;
  subscriber_set subscribers;
  /// Identifies the attempt a pre-check result belongs to.
  uint64_t attempt = 0;
  /// Just (re)connected: the publisher's first snapshot may be the one held,
  /// and its sequence may be any distance from the last one held.
  bool reconnected = false;
  /// The refusal last logged at warn level (repeats go to debug).
  std::string last_refusal;
  /// Failed attempts since the last connect: the next retry waits
  /// backoff.delay(backoff_step).
  uint32_t backoff_step = 0;
  JitteredBackoff backoff;
  uint64_t refused = 0;
  /// The failure last logged at warn level.
  std::string last_logged;
  /// An old snapshot was reported (logged once until a fresh one comes).
  bool warned_old = false;
};

/// Spawn with `sys.spawn(peer_link, options)`.
link_actor::behavior_type
peer_link(link_actor::stateful_pointer<link_state> self, link_options options);

} // namespace tasker::health

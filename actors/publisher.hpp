// The publisher: the only actor of a node that remote peers can reach (it is
// what `cluster.port` publishes), never the aggregator itself. A peer holding
// any handle to the aggregator could send it `failed`, `replace` or `tick`:
// a narrower handle type is only checked on the client side.
//
// It subscribes to the local aggregator like a cache (finding the current
// one through the tree view, also after the root restarted it), and offers
// remote peers only subscribe / unsubscribe / current snapshot. Snapshot
// pushes are accepted from its own aggregator only; anything else a peer
// sends is dropped and logged once per peer node. When the aggregator goes
// away it tells its subscribers at once (`stale`), so that remote caches do
// not wait for their stale threshold.
//
// Remote links subscribe for signed envelopes (messages/signed_snapshot.hpp):
// each snapshot is serialized and signed once (only while a link listens)
// and the same envelope goes to every link; local-style subscribers (a
// remote cache, status --connect) still get the plain snapshot.
//
// No peer can stop it: asynchronous errors are ignored (logged once per peer
// node), exit messages from outside its node as well; `exit` with reason
// kill cannot be trapped in CAF 0.17 (the scheduler quits before any
// handler runs), so the root restarts it on a restart budget of its own
// that never makes the root give up (child_spec::peer_facing).
//
// Bounds: at most `max_subscribers` subscribers (plain and signed); a frozen
// subscriber is dropped by the heartbeat's connection timeout (its queued
// snapshots with the connection), so it cannot grow this node's memory without
// bound.
#pragma once

#include "actors/root_supervisor.hpp"
#include "actors/subscriber_set.hpp"
#include "core/snapshot_auth.hpp"
#include "messages/interfaces.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "caf/message.hpp"
#include "caf/node_id.hpp"

namespace tasker::health {

struct publisher_options {
  /// Where to find the current aggregator (the root keeps it up to date).
  std::shared_ptr<tree_view> view;
  /// Or a fixed source (tests); used when `view` is null.
  aggregator_actor aggregator;
  /// Publish itself on this port at start (0: the caller publishes it, as
  /// the facade does for the first instance to report a busy port).
  uint16_t port = 0;
  std::string bind = "127.0.0.1";
  bool tls = false;
  /// Refuse subscriptions beyond this many.
  size_t max_subscribers = 1000;
  /// Signs the envelopes for remote links (null: unsigned, scheme none).
  std::shared_ptr<const SnapshotAuth> auth;
  /// How often to look for a new aggregator while there is none.
  std::chrono::milliseconds resolve_interval{100};
};

struct publisher_state {
  static inline const char* name = "publisher";
  publisher_state() = default;
  publisher_state(const publisher_state&) = delete;
  publisher_state& operator=(const publisher_state&) = delete;
  /// Unpublishes the port it published itself on (a restarted publisher
  /// binds it again).
  ~publisher_state();

  publisher_options options;
  caf::actor_system* sys = nullptr;
  caf::actor_addr self_addr;
  aggregator_actor aggregator;
  /// The aggregator that went away last (never attached to again).
  caf::actor_addr lost;
  shared_snapshot current;
  /// `current` sealed for remote links (made when first needed).
  caf::message current_signed;
  SnapshotAuth auth;
  /// One set per kind: plain snapshots (caches, status --connect) and
  /// signed envelopes (remote links).
  subscriber_set subscribers;
  subscriber_set signed_subscribers;
  /// Peers already logged for sending what they may not.
  std::set<caf::node_id> warned;
  bool warned_full = false;
  bool resolving = false;
  uint64_t dropped = 0;
};

/// Spawn with `sys.spawn(publisher, options)`; publish it with
/// caf::io::publish (or caf::openssl::publish) or set `options.port`.
publisher_actor::behavior_type
publisher(publisher_actor::stateful_pointer<publisher_state> self,
          publisher_options options);

} // namespace tasker::health

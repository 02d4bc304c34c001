#include "actors/link.hpp"

#include "actors/openssl_guard.hpp"
#include "actors/tcp_precheck.hpp"
#include "core/log.hpp"
#include "messages/errors.hpp"
#include "messages/inspect.hpp"
#include "messages/signed_snapshot.hpp"

#include "caf/actor_cast.hpp"
#include "caf/actor_system.hpp"
#include "caf/event_based_actor.hpp"
#include "caf/io/middleman.hpp"
#include "caf/make_message.hpp"
#include "caf/message_id.hpp"
#include "caf/openssl/manager.hpp"
#include "caf/sec.hpp"
#include "caf/spawn_options.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/system_messages.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

namespace tasker::health {

link_state::~link_state() {
  if (options.cell)
    options.cell->mark_stale();
}

namespace {

using self_ptr = link_actor::stateful_pointer<link_state>;

/// One reachability check on a thread of its own; reports to the link and
/// ends.
caf::behavior precheck(caf::event_based_actor* self, std::string host,
                       uint16_t port, std::chrono::milliseconds timeout,
                       uint64_t attempt, link_actor link) {
  auto error = tcp_precheck(host, port, timeout);
  self->send(link, atom::connect_v, attempt, std::move(error));
  self->quit();
  return {};
}

/// Marks everything stale and tells the local subscribers.
void lost(self_ptr self, const std::string& why) {
  auto& st = self->state;
  st.options.cell->mark_stale();
  st.subscribers.send_all(self, caf::make_message(atom::stale_v, why));
}

/// A snapshot that was already old when it arrived is stale at once.
void check_age(self_ptr self, const HealthSnapshot& snap) {
  auto& st = self->state;
  if (st.options.stale_after.count() <= 0)
    return;
  auto age = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now() - snap.produced_at);
  if (age <= st.options.stale_after) {
    st.warned_old = false;
    return;
  }
  auto why = "snapshot produced " + std::to_string(age.count())
             + "ms ago by the peer's clock (stale after "
             + std::to_string(st.options.stale_after.count())
             + "ms): its aggregator is stuck, or the clocks differ";
  if (!st.warned_old) {
    st.warned_old = true;
    logger()->warn("event=peer_snapshot_old peer={} sequence={} reason={}",
                   st.peer, snap.sequence, health::quoted(why));
  }
  lost(self, why);
}

// -- phases -------------------------------------------------------------------

link_actor::behavior_type connecting(self_ptr self);
link_actor::behavior_type connected(self_ptr self);
link_actor::behavior_type waiting(self_ptr self);

/// Serves local subscribers the same way in every phase; `phase` holds the
/// four handlers that differ: (snapshot, signed_snapshot), (stale, string),
/// (connect), (connect, attempt, error).
template<class... Phase>
link_actor::behavior_type with_local(self_ptr self, Phase... phase) {
  return {
      std::move(phase)...,
      [=](atom::subscribe, subscriber_actor sub) {
        auto& st = self->state;
        if (!st.subscribers.add(self, sub))
          return;
        if (st.publisher)
          subscriber_set::send_current(self, sub, st.current);
      },
      [=](atom::unsubscribe, subscriber_actor sub) {
        self->state.subscribers.remove(self, sub);
      },
      [=](atom::snapshot) { return current_reply(self->state.current); },
      [=](atom::status) { return self->state.options.board->get(); },
  };
}

/// Whatever the publisher sends outside the connected phase is late (an
/// earlier connection's) or forged: dropped.
auto drop_snapshot(self_ptr self) {
  return [=](atom::snapshot, const signed_snapshot&) {
    ++self->state.refused;
  };
}

auto drop_stale(self_ptr) {
  return [=](atom::stale, const std::string&) {
  };
}

/// A retry timer that fires outside the waiting phase has nothing to do.
auto ignore_timer(self_ptr) {
  return [=](atom::connect) {
  };
}

/// A pre-check result outside the connecting phase belongs to an attempt
/// given up already.
auto ignore_precheck(self_ptr) {
  return [=](atom::connect, uint64_t, const std::string&) {
  };
}

/// The reconnect backoff: initial * 2^n up to max, jittered.
BackoffConfig link_backoff(const link_connect_options& o) {
  BackoffConfig b;
  b.initial = o.backoff_initial;
  b.factor = 2.0;
  b.max = o.backoff_max;
  b.jitter = o.jitter;
  return b;
}

void schedule_retry(self_ptr self, std::string why) {
  auto& st = self->state;
  st.options.board->update([&](PeerStatus& p) {
    p.connected = false;
    ++p.failed_attempts;
    p.last_error = why;
  });
  auto delay = st.backoff.delay(st.backoff_step++);
  // Warn when the reason changes (the first failure, a new kind of failure);
  // the same failure again is only debug: a dead peer is retried forever.
  if (why != st.last_logged) {
    st.last_logged = why;
    logger()->warn("event=link_retry peer={} delay_ms={} error={} "
                   "note=\"repeats of this error are logged at debug\"",
                   st.peer, delay.count(), health::quoted(why));
  } else {
    logger()->debug("event=link_retry peer={} delay_ms={} error={}", st.peer,
                    delay.count(), health::quoted(why));
  }
  self->delayed_send(self, delay, atom::connect_v);
  self->become(waiting(self));
}

void on_connected(self_ptr self, const caf::node_id& node,
                  caf::strong_actor_ptr ptr, const std::set<std::string>& ifs) {
  auto& st = self->state;
  auto& sys = self->system();
  if (!ptr) {
    schedule_retry(self, "no actor published at " + st.peer);
    return;
  }
  // A publisher of this wire version takes a signed subscription.
  auto expected = sys.message_types(
      caf::detail::type_list<caf::typed_actor<
          caf::reacts_to<atom::subscribe, signed_subscriber_actor>,
          caf::reacts_to<atom::unsubscribe, signed_subscriber_actor>>>{});
  if (!sys.assignable(ifs, expected)) {
    schedule_retry(self, "the actor at " + st.peer
                             + " is not a tasker-health publisher of wire "
                               "version "
                             + std::to_string(snapshot_wire_version)
                             + " (interface mismatch)");
    return;
  }
  st.backoff_step = 0;
  st.reconnected = true;
  st.last_refusal.clear();
  st.publisher = caf::actor_cast<snapshot_source_actor>(std::move(ptr));
  self->monitor(st.publisher);
  self->send(caf::actor_cast<publisher_actor>(st.publisher), atom::subscribe_v,
             caf::actor_cast<signed_subscriber_actor>(self));
  auto node_text = to_string(node);
  st.options.board->update([&](PeerStatus& p) {
    p.connected = true;
    p.node = node_text;
    ++p.connects;
    p.failed_attempts = 0;
    p.last_error.clear();
  });
  st.last_logged.clear();
  logger()->info("event=link_connected peer={} node={} tls={} auth={}", st.peer,
                 node_text, st.options.tls, to_string(st.auth.scheme()));
  self->become(connected(self));
}

void connect_via_middleman(self_ptr self) {
  auto& st = self->state;
  auto& sys = self->system();
  auto mm = st.options.tls ? sys.openssl_manager().actor_handle()
                           : sys.middleman().actor_handle();
  auto attempt = st.attempt;
  self->request(mm, st.options.connect_timeout, caf::connect_atom_v,
                st.options.host, st.options.port)
      .then(
          [=](const caf::node_id& node, caf::strong_actor_ptr& ptr,
              const std::set<std::string>& ifs) {
            if (attempt != self->state.attempt)
              return;
            on_connected(self, node, std::move(ptr), ifs);
          },
          [=](caf::error& err) {
            if (attempt != self->state.attempt)
              return;
            schedule_retry(self, self->system().render(err));
          });
}

/// Starts the next attempt; the caller enters the connecting phase.
void begin_attempt(self_ptr self) {
  auto& st = self->state;
  auto attempt = ++st.attempt;
  logger()->debug("event=link_connecting peer={} attempt={} precheck_ms={}",
                  st.peer, attempt, st.options.precheck_timeout.count());
  if (st.options.precheck_timeout.count() <= 0) {
    connect_via_middleman(self);
    return;
  }
  self->spawn<caf::detached>(precheck, st.options.host, st.options.port,
                             st.options.precheck_timeout, attempt,
                             caf::actor_cast<link_actor>(self));
}

void start_attempt(self_ptr self) {
  self->become(connecting(self));
  begin_attempt(self);
}

/// A refused snapshot: counted, logged at warn when the reason changes
/// (debug for repeats), and never remembered. Authentication failures also
/// become the peer's last_error.
void refuse(self_ptr self, const std::string& kind, const std::string& why,
            bool to_board) {
  auto& st = self->state;
  ++st.refused;
  if (kind != st.last_refusal) {
    st.last_refusal = kind;
    logger()->warn("event=snapshot_refused peer={} kind={} reason={} "
                   "note=\"repeats are logged at debug\"",
                   st.peer, kind, health::quoted(why));
  } else {
    logger()->debug("event=snapshot_refused peer={} kind={} reason={}", st.peer,
                    kind, health::quoted(why));
  }
  if (to_board)
    st.options.board->update(
        [&](PeerStatus& p) { p.last_error = "snapshot refused: " + why; });
}

/// Only the connected publisher speaks for the peer (checked here, once).
bool from_publisher(self_ptr self) {
  return self->current_sender()
         == caf::actor_cast<caf::strong_actor_ptr>(self->state.publisher);
}

void on_snapshot(self_ptr self, const signed_snapshot& env) {
  auto& st = self->state;
  auto now = std::chrono::system_clock::now();
  HealthSnapshot value;
  // Verified before parsed.
  auto why = open_snapshot(self->system(), env, st.auth, now, value);
  if (!why.empty()) {
    auto kind = env.version != snapshot_wire_version ? "wire_version"
                                                     : "not_authentic";
    refuse(self, kind, why, true);
    return;
  }
  if (!st.node_name.empty() && value.node_id != st.node_name) {
    refuse(self, "other_node",
           "claims node '" + value.node_id + "', this link's peer is '"
               + st.node_name + "'",
           true);
    return;
  }
  auto stamp = SnapshotStamp::of(value);
  if (st.reconnected && st.last && stamp == *st.last
      && value.produced_at == st.current->produced_at) {
    // The publisher's current snapshot right after a reconnect: the one
    // held, vouched for again by a live publisher (it forgets its snapshot
    // when its aggregator goes away).
    st.reconnected = false;
    st.options.cell->publish(st.current.ptr());
    st.subscribers.send_all(self, st.current);
    check_age(self, *st.current);
    return;
  }
  auto verdict = admit(stamp, value.produced_at, st.last ? &*st.last : nullptr,
                       st.options.admission, now, !st.reconnected);
  if (!accepted(verdict)) {
    if (verdict == Admission::reject_future
        || verdict == Admission::reject_sequence_jump)
      refuse(self, std::string{to_string(verdict)},
             "node " + value.node_id + " incarnation "
                 + std::to_string(stamp.incarnation) + " sequence "
                 + std::to_string(stamp.sequence) + ": "
                 + std::string{to_string(verdict)},
             false);
    else {
      ++st.refused;
      logger()->debug("event=snapshot_refused peer={} verdict={} "
                      "sequence={}",
                      st.peer, to_string(verdict), stamp.sequence);
    }
    return;
  }
  st.reconnected = false;
  if (st.node_name.empty() && st.auth.scheme() != AuthScheme::none) {
    st.node_name = value.node_id;
    logger()->info("event=link_peer_named peer={} node={} auth={} "
                   "note=\"only this node's snapshots are accepted from now "
                   "on\"",
                   st.peer, st.node_name, to_string(st.auth.scheme()));
  }
  if (verdict == Admission::accept_new_incarnation && st.last)
    logger()->info("event=peer_restarted peer={} node={} sequence={}", st.peer,
                   value.node_id, stamp.sequence);
  st.last = stamp;
  st.current = shared_snapshot{std::move(value)};
  st.options.cell->publish(st.current.ptr());
  st.subscribers.send_all(self, st.current);
  check_age(self, *st.current);
}

link_actor::behavior_type connecting(self_ptr self) {
  return with_local(
      self, drop_snapshot(self), drop_stale(self), ignore_timer(self),
      [=](atom::connect, uint64_t attempt, const std::string& error) {
        if (attempt != self->state.attempt)
          return;
        if (!error.empty()) {
          schedule_retry(self, "TCP pre-check: " + error);
          return;
        }
        connect_via_middleman(self);
      });
}

link_actor::behavior_type connected(self_ptr self) {
  return with_local(
      self,
      [=](atom::snapshot, const signed_snapshot& env) {
        if (!from_publisher(self)) {
          ++self->state.refused;
          return;
        }
        on_snapshot(self, env);
      },
      [=](atom::stale, const std::string& why) {
        if (!from_publisher(self))
          return;
        auto& st = self->state;
        logger()->warn("event=peer_stale peer={} reason={}", st.peer,
                       health::quoted(why));
        lost(self, st.peer + ": " + why);
      },
      ignore_timer(self), ignore_precheck(self));
}

link_actor::behavior_type waiting(self_ptr self) {
  return with_local(
      self, drop_snapshot(self), drop_stale(self),
      [=](atom::connect) { start_attempt(self); }, ignore_precheck(self));
}

} // namespace

link_actor::behavior_type
peer_link(link_actor::stateful_pointer<link_state> self, link_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  st.peer = st.options.host + ":" + std::to_string(st.options.port);
  if (!st.options.cell)
    st.options.cell = std::make_shared<SnapshotCell>();
  if (!st.options.board)
    st.options.board = std::make_shared<peer_board>();
  if (st.options.auth)
    st.auth = *st.options.auth;
  st.node_name = st.options.expected_node;
  st.options.board->update([&](PeerStatus& p) { p.peer = st.peer; });
  st.backoff = JitteredBackoff{link_backoff(st.options), st.options.seed};
  // TLS: one failed handshake must not close the healthy connections.
  if (st.options.tls)
    openssl_error_queue_guard_active();
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.publisher && dm.source == st.publisher.address()) {
      st.publisher = nullptr;
      auto why = "connection lost: " + self->system().render(dm.reason);
      logger()->warn("event=link_lost peer={} reason={} cell=stale", st.peer,
                     health::quoted(why));
      lost(self, why);
      schedule_retry(self, why);
      return;
    }
    st.subscribers.on_down(dm.source);
  });
  begin_attempt(self);
  return connecting(self);
}

} // namespace tasker::health

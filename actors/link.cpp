#include "actors/link.hpp"

#include "actors/openssl_guard.hpp"
#include "actors/tcp_precheck.hpp"
#include "core/log.hpp"
#include "messages/errors.hpp"
#include "messages/inspect.hpp"

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

#include <algorithm>
#include <cmath>

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

/// One shared message to every local subscriber, spread over the
/// scheduler's workers (no execution unit: see the aggregator's fan-out).
void send_to_all(self_ptr self, const caf::message& msg) {
  for (auto& sub : self->state.subscribers)
    sub->enqueue(self->ctrl(), caf::make_message_id(), msg, nullptr);
}

/// Marks everything stale and tells the local subscribers.
void lost(self_ptr self, const std::string& why) {
  auto& st = self->state;
  st.options.cell->mark_stale();
  send_to_all(self, caf::make_message(atom::stale_v, why));
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

void schedule_retry(self_ptr self, std::string why) {
  auto& st = self->state;
  st.connecting = false;
  st.options.board->update([&](PeerStatus& p) {
    p.connected = false;
    ++p.failed_attempts;
    p.last_error = why;
  });
  auto& o = st.options;
  double base
      = static_cast<double>(o.backoff_initial.count())
        * std::pow(2.0, static_cast<double>(std::min(st.backoff_step, 30u)));
  base = std::min(base, static_cast<double>(o.backoff_max.count()));
  ++st.backoff_step;
  if (o.jitter > 0.0) {
    std::uniform_real_distribution<double> dist{1.0 - o.jitter, 1.0 + o.jitter};
    base *= dist(st.rng);
  }
  auto delay = std::chrono::milliseconds{static_cast<int64_t>(base)};
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
}

void connected(self_ptr self, const caf::node_id& node,
               caf::strong_actor_ptr ptr, const std::set<std::string>& ifs) {
  auto& st = self->state;
  auto& sys = self->system();
  if (!ptr) {
    schedule_retry(self, "no actor published at " + st.peer);
    return;
  }
  auto expected
      = sys.message_types(caf::detail::type_list<snapshot_source_actor>{});
  if (!sys.assignable(ifs, expected)) {
    schedule_retry(self, "the actor at " + st.peer
                             + " is not a tasker-health publisher "
                               "(interface mismatch)");
    return;
  }
  st.connecting = false;
  st.backoff_step = 0;
  st.reconnected = true;
  st.publisher = caf::actor_cast<snapshot_source_actor>(std::move(ptr));
  self->monitor(st.publisher);
  self->send(st.publisher, atom::subscribe_v,
             caf::actor_cast<subscriber_actor>(self));
  auto node_text = to_string(node);
  st.options.board->update([&](PeerStatus& p) {
    p.connected = true;
    p.node = node_text;
    ++p.connects;
    p.failed_attempts = 0;
    p.last_error.clear();
  });
  st.last_logged.clear();
  logger()->info("event=link_connected peer={} node={} tls={}", st.peer,
                 node_text, st.options.tls);
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
            connected(self, node, std::move(ptr), ifs);
          },
          [=](caf::error& err) {
            if (attempt != self->state.attempt)
              return;
            schedule_retry(self, self->system().render(err));
          });
}

void start_attempt(self_ptr self) {
  auto& st = self->state;
  if (st.publisher || st.connecting)
    return;
  st.connecting = true;
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
  st.options.board->update([&](PeerStatus& p) { p.peer = st.peer; });
  st.rng.seed(st.options.seed);
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
    st.subscribers.remove(dm.source);
  });
  start_attempt(self);
  return {
      // -- from the remote publisher --
      [=](atom::snapshot, const shared_snapshot& snap) {
        auto& st = self->state;
        if (!st.publisher || !snap
            || self->current_sender()
                   != caf::actor_cast<caf::strong_actor_ptr>(st.publisher)) {
          ++st.refused;
          return;
        }
        auto stamp = SnapshotStamp::of(*snap);
        auto verdict = admit(stamp, st.last ? &*st.last : nullptr);
        if (st.reconnected && st.last && stamp == *st.last) {
          // The publisher's current snapshot right after a reconnect: the
          // one held, vouched for again by a live publisher (it forgets its
          // snapshot when its aggregator goes away).
          st.reconnected = false;
          st.options.cell->publish(snap.ptr());
          send_to_all(self, caf::make_message(atom::snapshot_v, snap));
          check_age(self, *snap);
          return;
        }
        st.reconnected = false;
        if (!accepted(verdict)) {
          ++st.refused;
          logger()->debug("event=snapshot_refused peer={} verdict={} "
                          "sequence={}",
                          st.peer, to_string(verdict), stamp.sequence);
          return;
        }
        if (verdict == Admission::accept_new_incarnation && st.last)
          logger()->info("event=peer_restarted peer={} node={} sequence={}",
                         st.peer, snap->node_id, stamp.sequence);
        st.last = stamp;
        st.current = snap;
        st.options.cell->publish(snap.ptr());
        send_to_all(self, caf::make_message(atom::snapshot_v, snap));
        check_age(self, *snap);
      },
      [=](atom::stale, const std::string& why) {
        auto& st = self->state;
        if (!st.publisher
            || self->current_sender()
                   != caf::actor_cast<caf::strong_actor_ptr>(st.publisher))
          return;
        logger()->warn("event=peer_stale peer={} reason={}", st.peer,
                       health::quoted(why));
        lost(self, st.peer + ": " + why);
      },
      // -- local subscribers --
      [=](atom::subscribe, subscriber_actor sub) {
        auto& st = self->state;
        if (!sub || !st.subscribers.add(sub))
          return;
        self->monitor(sub);
        if (st.current && st.publisher)
          self->send(sub, atom::snapshot_v, st.current);
      },
      [=](atom::unsubscribe, subscriber_actor sub) {
        if (self->state.subscribers.remove(sub.address()))
          self->demonitor(sub.address());
      },
      [=](atom::snapshot) -> caf::result<HealthSnapshot> {
        auto& st = self->state;
        if (!st.current)
          return caf::make_error(health_errc::no_snapshot);
        return *st.current;
      },
      [=](atom::status) { return self->state.options.board->get(); },
      // -- connecting --
      [=](atom::connect) { start_attempt(self); },
      [=](atom::connect, uint64_t attempt, const std::string& error) {
        auto& st = self->state;
        if (attempt != st.attempt || !st.connecting)
          return;
        if (!error.empty()) {
          schedule_retry(self, "TCP pre-check: " + error);
          return;
        }
        connect_via_middleman(self);
      },
  };
}

} // namespace tasker::health

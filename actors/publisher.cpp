#include "actors/publisher.hpp"

#include "actors/openssl_guard.hpp"
#include "core/log.hpp"
#include "messages/inspect.hpp"
#include "messages/signed_snapshot.hpp"

#include "caf/actor_cast.hpp"
#include "caf/actor_system.hpp"
#include "caf/io/middleman.hpp"
#include "caf/make_message.hpp"
#include "caf/openssl/manager.hpp"
#include "caf/sec.hpp"
#include "caf/send.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/system_messages.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

namespace tasker::health {

namespace {

using self_ptr = publisher_actor::stateful_pointer<publisher_state>;

caf::io::middleman_actor middleman_of(caf::actor_system& sys, bool tls) {
  return tls ? sys.openssl_manager().actor_handle()
             : sys.middleman().actor_handle();
}

/// Names a peer in logs: its node, or "local".
std::string peer_of(self_ptr self, const caf::strong_actor_ptr& sender) {
  if (!sender)
    return "anonymous";
  if (sender->node() == self->node())
    return "local";
  return to_string(sender->node());
}

/// Logs a refused message once per peer node.
void refuse(self_ptr self, std::string_view what) {
  auto& st = self->state;
  ++st.dropped;
  auto sender = self->current_sender();
  auto node = sender ? sender->node() : caf::node_id{};
  if (!st.warned.insert(node).second)
    return;
  logger()->warn("event=publisher_refused peer={} message={} action=dropped "
                 "note=\"logged once per peer\"",
                 peer_of(self, sender), health::quoted(what));
}

/// The current snapshot as one signed envelope for every remote link,
/// serialized and signed once.
const caf::message& current_signed(self_ptr self) {
  auto& st = self->state;
  if (st.current_signed.empty() && st.current)
    st.current_signed = caf::make_message(
        atom::snapshot_v, seal_snapshot(self->system(), *st.current, st.auth));
  return st.current_signed;
}

void send_to_all(self_ptr self, const caf::message& msg) {
  self->state.subscribers.send_all(self, msg);
  self->state.signed_subscribers.send_all(self, msg);
}

size_t subscriber_count(self_ptr self) {
  return self->state.subscribers.size() + self->state.signed_subscribers.size();
}

/// Room for one more subscriber (logs the refusal once).
bool has_room(self_ptr self, const caf::actor_addr& addr) {
  auto& st = self->state;
  if (subscriber_count(self) < st.options.max_subscribers
      || st.subscribers.contains(addr) || st.signed_subscribers.contains(addr))
    return true;
  if (!st.warned_full) {
    st.warned_full = true;
    logger()->error("event=publisher_full max_subscribers={} "
                    "action=\"refused; logged once\"",
                    st.options.max_subscribers);
  }
  return false;
}

void resolve(self_ptr self);

void attach(self_ptr self, aggregator_actor agg) {
  auto& st = self->state;
  st.aggregator = std::move(agg);
  self->monitor(st.aggregator);
  self->send(st.aggregator, atom::subscribe_v,
             caf::actor_cast<subscriber_actor>(self));
  logger()->info("event=publisher_attached subscribers={}",
                 st.subscribers.size());
}

/// Finds the current aggregator (through the tree view), or tries again
/// after the resolve interval.
void resolve(self_ptr self) {
  auto& st = self->state;
  auto agg
      = st.options.view ? st.options.view->aggregator() : st.options.aggregator;
  // Never the one that just went away (the view may not know yet).
  if (agg && agg != st.aggregator && agg.address() != st.lost) {
    st.resolving = false;
    attach(self, std::move(agg));
    return;
  }
  if (!st.resolving) {
    st.resolving = true;
    logger()->debug("event=publisher_waiting_for_aggregator");
  }
  self->delayed_send(self, st.options.resolve_interval, atom::resolve_v);
}

void publish_self(self_ptr self) {
  auto& st = self->state;
  auto ifs
      = self->system().message_types(caf::detail::type_list<publisher_actor>{});
  auto mm = middleman_of(self->system(), st.options.tls);
  self->request(mm, std::chrono::seconds(10), caf::publish_atom_v,
                st.options.port, caf::actor_cast<caf::strong_actor_ptr>(self),
                std::move(ifs), st.options.bind, true)
      .then(
          [=](uint16_t port) {
            logger()->info("event=publisher_published port={} bind={} tls={}",
                           port, self->state.options.bind,
                           self->state.options.tls);
          },
          [=](caf::error& err) {
            logger()->error("event=publisher_publish_failed port={} error={}",
                            self->state.options.port,
                            health::quoted(self->system().render(err)));
            self->quit(std::move(err));
          });
}

} // namespace

publisher_state::~publisher_state() {
  // Free every port it was published on (port 0: all of them), so that a
  // restarted publisher can bind the same port again.
  if (sys == nullptr || !sys->has_middleman()
      || (options.tls && !sys->has_openssl_manager()))
    return;
  auto mm = middleman_of(*sys, options.tls);
  caf::anon_send(mm, caf::unpublish_atom_v, self_addr, uint16_t{0});
}

// Long because the handlers a peer can reach (and the ones that refuse
// what a peer may not send) are listed in one place, each beside its check.
publisher_actor::behavior_type
publisher(publisher_actor::stateful_pointer<publisher_state> self,
          publisher_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  st.sys = &self->system();
  st.self_addr = self->address();
  if (st.options.auth)
    st.auth = *st.options.auth;
  // TLS: one failed handshake must not close the healthy connections.
  if (st.options.tls)
    openssl_error_queue_guard_active();
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.aggregator && dm.source == st.aggregator.address()) {
      st.lost = st.aggregator.address();
      st.aggregator = nullptr;
      // Nobody vouches for it anymore: new subscribers get nothing until
      // the next aggregator's first snapshot.
      st.current = shared_snapshot{};
      st.current_signed = caf::message{};
      auto why = "aggregator down: " + self->system().render(dm.reason);
      logger()->warn("event=publisher_source_lost reason={} subscribers={}",
                     health::quoted(why), st.subscribers.size());
      send_to_all(self, caf::make_message(atom::stale_v, why));
      resolve(self);
      return;
    }
    if (st.subscribers.on_down(dm.source)
        || st.signed_subscribers.on_down(dm.source))
      logger()->info("event=subscriber_dropped reason={} subscribers={}",
                     health::quoted(self->system().render(dm.reason)),
                     subscriber_count(self));
  });
  // A peer may send anything to a published actor: what the interface does
  // not hold is dropped (and logged once per peer), never answered with the
  // default "unexpected message" print.
  self->set_default_handler(
      [=](caf::scheduled_actor*,
          caf::message_view&) -> caf::result<caf::message> {
        refuse(self, "a message outside the publisher's interface");
        return caf::sec::unexpected_message;
      });
  // Exit messages from other nodes are ignored: judged by the sender the
  // transport names, not by the message's own (forgeable) source. Kill
  // cannot be: CAF 0.17 quits on it before any handler runs; the root
  // restarts the publisher on a budget of its own (child_spec::peer_facing).
  self->set_exit_handler([=](caf::exit_msg& em) {
    auto sender = self->current_sender();
    if (!sender || sender->node() != self->node()) {
      refuse(self,
             "an exit message (" + self->system().render(em.reason) + ")");
      return;
    }
    self->quit(em.reason);
  });
  // No peer has a reason to send it an error: every asynchronous one is
  // ignored (CAF's default handler would quit with it).
  self->set_error_handler([=](caf::error& err) {
    refuse(self, "an error message (" + self->system().render(err) + ")");
  });
  if (st.options.port != 0)
    publish_self(self);
  resolve(self);
  return {
      [=](atom::subscribe, subscriber_actor sub) {
        auto& st = self->state;
        if (!sub || !has_room(self, sub.address())
            || !st.subscribers.add(self, sub))
          return;
        logger()->info(
            "event=subscriber_added peer={} subscribers={}",
            peer_of(self, caf::actor_cast<caf::strong_actor_ptr>(sub)),
            subscriber_count(self));
        subscriber_set::send_current(self, sub, st.current);
      },
      [=](atom::unsubscribe, subscriber_actor sub) {
        self->state.subscribers.remove(self, sub);
      },
      [=](atom::subscribe, signed_subscriber_actor sub) {
        auto& st = self->state;
        if (!sub || !has_room(self, sub.address())
            || !st.signed_subscribers.add(self, sub))
          return;
        logger()->info(
            "event=subscriber_added peer={} subscribers={} signed=true "
            "auth={}",
            peer_of(self, caf::actor_cast<caf::strong_actor_ptr>(sub)),
            subscriber_count(self), to_string(st.auth.scheme()));
        if (st.current)
          subscriber_set::send(self, sub, current_signed(self));
      },
      [=](atom::unsubscribe, signed_subscriber_actor sub) {
        self->state.signed_subscribers.remove(self, sub);
      },
      [=](atom::snapshot) { return current_reply(self->state.current); },
      [=](atom::snapshot, const shared_snapshot& snap) {
        auto& st = self->state;
        if (!st.aggregator || !snap
            || self->current_sender()
                   != caf::actor_cast<caf::strong_actor_ptr>(st.aggregator)) {
          refuse(self, "a snapshot not from this node's aggregator");
          return;
        }
        st.current = snap;
        st.current_signed = caf::message{};
        st.subscribers.send_all(self, snap);
        if (!st.signed_subscribers.empty())
          st.signed_subscribers.send_all(self, current_signed(self));
      },
      [=](atom::stale, const std::string&) {
        // Only sources send this; the publisher watches its aggregator.
        refuse(self, "a stale notice");
      },
      [=](atom::resolve) {
        auto& st = self->state;
        if (!st.aggregator)
          resolve(self);
      },
  };
}

} // namespace tasker::health

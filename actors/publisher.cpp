#include "actors/publisher.hpp"

#include "core/log.hpp"
#include "messages/errors.hpp"
#include "messages/inspect.hpp"

#include "caf/actor_cast.hpp"
#include "caf/actor_system.hpp"
#include "caf/io/middleman.hpp"
#include "caf/make_message.hpp"
#include "caf/message_id.hpp"
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

void send_to_all(self_ptr self, const caf::message& msg) {
  for (auto& sub : self->state.subscribers)
    sub->enqueue(self->ctrl(), caf::make_message_id(), msg, self->context());
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

publisher_actor::behavior_type
publisher(publisher_actor::stateful_pointer<publisher_state> self,
          publisher_options options) {
  auto& st = self->state;
  st.options = std::move(options);
  st.sys = &self->system();
  st.self_addr = self->address();
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.aggregator && dm.source == st.aggregator.address()) {
      st.lost = st.aggregator.address();
      st.aggregator = nullptr;
      // Nobody vouches for it anymore: new subscribers get nothing until
      // the next aggregator's first snapshot.
      st.current = shared_snapshot{};
      auto why = "aggregator down: " + self->system().render(dm.reason);
      logger()->warn("event=publisher_source_lost reason={} subscribers={}",
                     health::quoted(why), st.subscribers.size());
      send_to_all(self, caf::make_message(atom::stale_v, why));
      resolve(self);
      return;
    }
    if (st.subscribers.remove(dm.source))
      logger()->info("event=subscriber_dropped reason={} subscribers={}",
                     health::quoted(self->system().render(dm.reason)),
                     st.subscribers.size());
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
  // Exit messages from other nodes are ignored (kill cannot be: the trust
  // model in the README explains why a published port needs loopback or
  // mutual TLS).
  self->set_exit_handler([=](caf::exit_msg& em) {
    if (em.source && em.source.node() != self->node()) {
      refuse(self, "an exit message");
      return;
    }
    self->quit(em.reason);
  });
  if (st.options.port != 0)
    publish_self(self);
  resolve(self);
  return {
      [=](atom::subscribe, subscriber_actor sub) {
        auto& st = self->state;
        if (!sub)
          return;
        if (st.subscribers.size() >= st.options.max_subscribers
            && !st.subscribers.contains(sub.address())) {
          if (!st.warned_full) {
            st.warned_full = true;
            logger()->error("event=publisher_full max_subscribers={} "
                            "action=\"refused; logged once\"",
                            st.options.max_subscribers);
          }
          return;
        }
        if (!st.subscribers.add(sub))
          return;
        self->monitor(sub);
        logger()->info(
            "event=subscriber_added peer={} subscribers={}",
            peer_of(self, caf::actor_cast<caf::strong_actor_ptr>(sub)),
            st.subscribers.size());
        if (st.current)
          self->send(sub, atom::snapshot_v, st.current);
      },
      [=](atom::unsubscribe, subscriber_actor sub) {
        if (self->state.subscribers.remove(sub.address()))
          self->demonitor(sub.address());
      },
      [=](atom::snapshot) -> caf::result<HealthSnapshot> {
        if (!self->state.current)
          return caf::make_error(health_errc::no_snapshot);
        return *self->state.current;
      },
      [=](atom::snapshot, const shared_snapshot& snap) {
        auto& st = self->state;
        if (!st.aggregator || !snap
            || self->current_sender()
                   != caf::actor_cast<caf::strong_actor_ptr>(st.aggregator)) {
          refuse(self, "a snapshot not from this node's aggregator");
          return;
        }
        st.current = snap;
        send_to_all(self, caf::make_message(atom::snapshot_v, snap));
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

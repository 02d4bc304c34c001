#include "actors/root_supervisor.hpp"

#include "actors/supervisor.hpp"
#include "core/log.hpp"
#include "messages/inspect.hpp"

#include "caf/actor_cast.hpp"
#include "caf/actor_system.hpp"
#include "caf/exit_reason.hpp"
#include "caf/send.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/system_messages.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

namespace tasker::health {

// -- tree_view ----------------------------------------------------------------

std::string tree_view::failure() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return failure_;
}

caf::actor tree_view::child(const std::string& name) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = children_.find(name);
  return i == children_.end() ? caf::actor{} : i->second;
}

aggregator_actor tree_view::aggregator() const {
  return caf::actor_cast<aggregator_actor>(child("aggregator"));
}

supervisor_actor tree_view::probe_supervisor() const {
  return caf::actor_cast<supervisor_actor>(child("probe-supervisor"));
}

void tree_view::set_child(const std::string& name, caf::actor handle) {
  std::lock_guard<std::mutex> guard{mtx_};
  children_[name] = std::move(handle);
}

void tree_view::set_failed(std::string why) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (failed_.load())
      return;
    failure_ = std::move(why);
  }
  failed_ = true;
}

std::vector<ActorStatus> tree_view::statuses() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return statuses_;
}

void tree_view::set_statuses(std::vector<ActorStatus> xs) {
  std::lock_guard<std::mutex> guard{mtx_};
  statuses_ = std::move(xs);
}

// -- the root supervisor ------------------------------------------------------

namespace {

using self_ptr = root_supervisor_actor::stateful_pointer<root_supervisor_state>;
using child = root_supervisor_state::child;

void adopt(self_ptr self, child_spec spec, caf::actor handle) {
  auto& st = self->state;
  child c;
  c.status.name = spec.name;
  c.status.running = static_cast<bool>(handle);
  c.spec = std::move(spec);
  c.handle = std::move(handle);
  st.policy.started(c.history);
  if (c.spec.role == child_spec::aggregator_role)
    st.aggregator = caf::actor_cast<aggregator_actor>(c.handle);
  st.view->set_child(c.spec.name, c.handle);
  if (c.handle)
    self->monitor(c.handle);
  st.children.push_back(std::move(c));
}

/// Points the other children at the (new) aggregator.
void announce_aggregator(self_ptr self) {
  auto& st = self->state;
  for (auto& c : st.children) {
    if (!c.handle)
      continue;
    switch (c.spec.role) {
      case child_spec::aggregator_role: break;
      case child_spec::probe_supervisor_role:
        self->send(caf::actor_cast<supervisor_actor>(c.handle), atom::attach_v,
                   st.aggregator);
        break;
      case child_spec::subscriber_role:
        self->send(caf::actor_cast<resubscribable_actor>(c.handle),
                   atom::source_v,
                   caf::actor_cast<snapshot_source_actor>(st.aggregator));
        break;
      case child_spec::independent_role: break;
    }
  }
}

/// Writes every child's status to the view (after each change).
void publish_statuses(self_ptr self) {
  self->state.view->set_statuses(self->state.children.statuses());
}

/// Stops every child with the root as the sender (a peer-facing child obeys
/// no exit message from anyone else), then quits.
void stop_children(self_ptr self) {
  auto& st = self->state;
  for (auto& c : st.children) {
    if (c.handle) {
      self->demonitor(c.handle);
      self->send_exit(c.handle, caf::exit_reason::user_shutdown);
      c.handle = nullptr;
    }
    c.status.running = false;
    ++c.generation;
  }
  publish_statuses(self);
}

void give_up(self_ptr self, const std::string& why) {
  auto& st = self->state;
  st.gave_up = true;
  logger()->critical("event=root_given_up restarts_in_window={} window_ms={} "
                     "reason={} action=\"stop the tree; liveness fails\"",
                     st.restarts.size(), st.config.restart_window.count(),
                     quoted(why));
  st.view->set_failed(why);
  stop_children(self);
  self->quit(caf::exit_reason::user_shutdown);
}

/// Child `i` failed: schedules its restart after its backoff, or gives up
/// the tree (restart intensity over all children; a peer-facing child has a
/// budget of its own and is restarted at the longest backoff beyond it).
void on_failure(self_ptr self, size_t i, std::string reason) {
  auto& st = self->state;
  auto& c = st.children[i];
  st.children.mark_failed(i, std::move(reason));
  st.view->set_child(c.spec.name, nullptr);
  auto& window = c.spec.peer_facing ? c.restarts : st.restarts;
  auto d = st.policy.failed(c.history, window,
                            c.spec.peer_facing ? OverBudget::restart_at_longest
                                               : OverBudget::give_up);
  if (d.give_up) {
    give_up(self, c.spec.name + " failed too often; last failure: "
                      + c.status.last_failure);
    return;
  }
  // restarts_done: the count the metrics show (restarts completed so far).
  logger()->error("event=actor_restart_scheduled actor={} delay_ms={} "
                  "restarts_done={} restarts_in_window={}{} reason={}",
                  c.spec.name, d.delay.count(), c.status.restarts,
                  d.restarts_in_window, c.spec.peer_facing ? " budget=own" : "",
                  quoted(c.status.last_failure));
  if (d.over_budget)
    logger()->error("event=actor_restart_budget_exhausted actor={} "
                    "action=\"restart at the longest backoff; the root "
                    "goes on\"",
                    c.spec.name);
  publish_statuses(self);
  self->delayed_send(self, d.delay, atom::restart_v, static_cast<uint32_t>(i),
                     c.generation);
}

void restart(self_ptr self, size_t i) {
  auto& st = self->state;
  auto& c = st.children[i];
  auto is_aggregator = c.spec.role == child_spec::aggregator_role;
  auto epoch = is_aggregator ? st.epoch + 1 : st.epoch;
  std::string error;
  auto h = spawn_with(
      [&] { return c.spec.spawn(self->system(), st.aggregator, epoch); },
      "spawn failed", error);
  if (!h) {
    on_failure(self, i, std::move(error));
    return;
  }
  ++c.status.restarts;
  st.children.running(self, i, h, st.policy);
  st.view->set_child(c.spec.name, h);
  logger()->warn("event=actor_restarted actor={} restarts={}{}", c.spec.name,
                 c.status.restarts,
                 is_aggregator ? " epoch=" + std::to_string(epoch) : "");
  publish_statuses(self);
  if (is_aggregator) {
    st.epoch = epoch;
    st.aggregator = caf::actor_cast<aggregator_actor>(h);
    announce_aggregator(self);
  }
}

/// A child went down: stopped on purpose (not restarted) or failed. A
/// peer-facing child stops on purpose only when the root stops it (then it
/// is no longer monitored): any other stop is a failure.
void on_down(self_ptr self, const caf::down_msg& dm) {
  auto& st = self->state;
  on_child_down(
      st.children, self->system(), dm,
      [](const child& c) { return !c.spec.peer_facing; },
      [&](size_t i, const std::string& reason) {
        auto& c = st.children[i];
        logger()->info("event=actor_stopped actor={} reason={}", c.spec.name,
                       quoted(reason));
        st.view->set_child(c.spec.name, nullptr);
        publish_statuses(self);
      },
      [&](size_t i, std::string reason) {
        logger()->error("event=actor_down actor={} reason={}",
                        st.children[i].spec.name, quoted(reason));
        on_failure(self, i, std::move(reason));
      });
}

} // namespace

root_supervisor_actor::behavior_type root_supervisor(
    root_supervisor_actor::stateful_pointer<root_supervisor_state> self,
    root_options options) {
  auto& st = self->state;
  st.config = options.config;
  st.epoch = options.epoch;
  st.view
      = options.view ? std::move(options.view) : std::make_shared<tree_view>();
  st.clock = actor_clock_adapter{self->clock()};
  st.policy = RestartPolicy{restart_config(st.config), st.clock, options.seed};
  for (auto& c : options.children)
    adopt(self, std::move(c.spec), std::move(c.handle));
  publish_statuses(self);
  // Asked to stop: the children are stopped by the root itself (in the
  // state's destructor only as a fallback, anonymously).
  self->set_exit_handler([=](caf::exit_msg& em) {
    if (!em.reason)
      return; // as CAF's default: a normal exit of a linked actor
    stop_children(self);
    self->quit(em.reason);
  });
  self->set_down_handler([=](caf::down_msg& dm) { on_down(self, dm); });
  return {
      [=](atom::status) { return self->state.children.statuses(); },
      [=](atom::adopt, child_spec& spec, caf::actor& handle) {
        logger()->info("event=actor_adopted actor={}", spec.name);
        // It was spawned with the aggregator of that moment, which may have
        // been restarted since: point it at the current one.
        if (handle && spec.role == child_spec::subscriber_role)
          self->send(
              caf::actor_cast<resubscribable_actor>(handle), atom::source_v,
              caf::actor_cast<snapshot_source_actor>(self->state.aggregator));
        adopt(self, std::move(spec), std::move(handle));
        publish_statuses(self);
      },
      [=](atom::restart, uint32_t i, uint64_t generation) {
        auto& st = self->state;
        if (st.gave_up || !st.children.current(i, generation))
          return;
        restart(self, i);
      },
  };
}

} // namespace tasker::health

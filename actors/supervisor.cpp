#include "actors/supervisor.hpp"

#include "core/log.hpp"
#include "messages/inspect.hpp"

#include "caf/actor.hpp"
#include "caf/actor_cast.hpp"
#include "caf/actor_clock.hpp"
#include "caf/actor_system.hpp"
#include "caf/exit_reason.hpp"
#include "caf/send.hpp"
#include "caf/stateful_actor.hpp"
#include "caf/system_messages.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

namespace tasker::health {

std::chrono::milliseconds backoff_delay(const SupervisorConfig& cfg,
                                        uint32_t n) {
  return backoff_delay(restart_config(cfg).backoff, n);
}

namespace {

using self_ptr = supervisor_actor::stateful_pointer<supervisor_state>;

/// Hands a (new) probe handle to the aggregator.
void register_probe(self_ptr self, const supervisor_state::child& c) {
  auto& agg = self->state.aggregator;
  using caf::actor_cast;
  switch (c.spec.kind) {
    case ProbeKind::database:
      self->send(agg, atom::replace_v, actor_cast<db_probe_actor>(c.handle));
      break;
    case ProbeKind::channel:
      self->send(agg, atom::replace_v,
                 actor_cast<channel_probe_actor>(c.handle));
      break;
    case ProbeKind::queue:
      self->send(agg, atom::replace_v, actor_cast<queue_probe_actor>(c.handle));
      break;
    case ProbeKind::custom:
      self->send(agg, atom::replace_v, c.spec.name,
                 actor_cast<custom_probe_actor>(c.handle));
      break;
  }
}

void give_up(self_ptr self, supervisor_state::child& c, std::string reason) {
  c.status.failed_permanently = true;
  c.status.running = false;
  c.handle = nullptr;
  logger()->error("event=probe_given_up probe={} restarts_in_window={} "
                  "window_ms={} reason={}",
                  c.spec.name, c.restarts.size(),
                  self->state.config.restart_window.count(), quoted(reason));
  self->send(self->state.aggregator, atom::failed_v, c.spec.kind, c.spec.name,
             std::move(reason));
}

/// Spawns child `i`; false if the factory failed.
bool spawn_child(self_ptr self, size_t i) {
  auto& st = self->state;
  auto& c = st.children[i];
  auto h = spawn_with([&] { return c.spec.make(self->system()); },
                      "factory failed", c.status.last_failure);
  if (!h) {
    logger()->error("event=probe_spawn_failed probe={} error={}", c.spec.name,
                    quoted(c.status.last_failure));
    return false;
  }
  st.children.running(self, i, std::move(h), st.policy);
  register_probe(self, c);
  return true;
}

/// Child `i` failed: schedules its restart after its backoff, or gives up
/// (restart intensity: more than max_restarts within the window).
void on_failure(self_ptr self, size_t i, std::string reason) {
  auto& st = self->state;
  auto& c = st.children[i];
  st.children.mark_failed(i, std::move(reason));
  auto d = st.policy.failed(c.history, c.restarts, OverBudget::give_up);
  if (d.give_up) {
    give_up(self, c, c.status.last_failure);
    return;
  }
  logger()->warn("event=probe_restart_scheduled probe={} delay_ms={} "
                 "restarts_in_window={} reason={}",
                 c.spec.name, d.delay.count(), d.restarts_in_window,
                 quoted(c.status.last_failure));
  self->delayed_send(self, d.delay, atom::restart_v, static_cast<uint32_t>(i),
                     c.generation);
}

/// A probe went down: stopped on purpose (not restarted) or failed.
void on_down(self_ptr self, const caf::down_msg& dm) {
  auto& st = self->state;
  on_child_down(
      st.children, self->system(), dm, [](const auto&) { return true; },
      [&](size_t i, const std::string& reason) {
        logger()->info("event=probe_stopped probe={} reason={}",
                       st.children[i].spec.name, quoted(reason));
      },
      [&](size_t i, std::string reason) {
        auto& c = st.children[i];
        if (c.hung) {
          c.hung = false;
          reason = "hung: " + std::to_string(st.config.lost_replies)
                   + " requests in a row without a reply (killed)";
        }
        logger()->warn("event=probe_down probe={} reason={}", c.spec.name,
                       quoted(reason));
        on_failure(self, i, std::move(reason));
      });
}

} // namespace

supervisor_actor::behavior_type
supervisor(supervisor_actor::stateful_pointer<supervisor_state> self,
           aggregator_actor aggregator, supervisor_options options) {
  auto& st = self->state;
  st.aggregator = std::move(aggregator);
  st.config = options.config;
  st.clock = actor_clock_adapter{self->clock()};
  st.policy = RestartPolicy{restart_config(st.config), st.clock, options.seed};
  for (auto& p : options.probes) {
    supervisor_state::child c;
    c.status.kind = p.kind;
    c.status.name = p.name;
    c.spec = std::move(p);
    st.children.push_back(std::move(c));
  }
  for (size_t i = 0; i < st.children.size(); ++i)
    if (!spawn_child(self, i))
      on_failure(self, i, st.children[i].status.last_failure);
  self->set_down_handler([=](caf::down_msg& dm) { on_down(self, dm); });
  return {
      [=](atom::attach, aggregator_actor agg) {
        auto& st = self->state;
        st.aggregator = std::move(agg);
        logger()->info("event=probes_attached probes={}", st.children.size());
        for (auto& c : st.children) {
          if (c.handle)
            register_probe(self, c);
          else if (c.status.failed_permanently)
            self->send(st.aggregator, atom::failed_v, c.spec.kind, c.spec.name,
                       c.status.last_failure);
        }
      },
      [=](atom::hung, ProbeKind kind, const std::string& name) {
        auto& children = self->state.children;
        for (size_t i = 0; i < children.size(); ++i) {
          auto& c = children[i];
          if (c.spec.kind != kind || c.spec.name != name || !c.handle)
            continue;
          // Killed, and restarted (after the backoff) once it is down. A
          // detached probe blocked in a call sees the kill only when the
          // call returns (its measurer bounds every call): replacing it
          // before would let two threads share one measurer (one database
          // connection), so the replacement waits for the down message.
          c.hung = true;
          logger()->warn("event=probe_hung probe={} action=kill_then_restart",
                         c.spec.name);
          self->send_exit(c.handle, caf::exit_reason::kill);
          return;
        }
      },
      [=](atom::status) { return self->state.children.statuses(); },
      [=](atom::restart, uint32_t i, uint64_t generation) {
        auto& children = self->state.children;
        if (!children.current(i, generation)
            || children[i].status.failed_permanently)
          return;
        auto& c = children[i];
        ++c.status.restarts;
        if (spawn_child(self, i))
          logger()->info("event=probe_restarted probe={} restarts={}",
                         c.spec.name, c.status.restarts);
        else
          on_failure(self, i, c.status.last_failure);
      },
  };
}

} // namespace tasker::health

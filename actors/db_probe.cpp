#include "actors/db_probe.hpp"

#include "core/log.hpp"
#include "messages/inspect.hpp"

#include "caf/stateful_actor.hpp"
#include "caf/typed_event_based_actor.hpp"

#include <spdlog/spdlog.h>

namespace tasker::health {

DatabaseHealth run_db_check(DatabaseCheck& check, CircuitBreaker& breaker) {
  DatabaseHealth h;
  h.evaluated = true;
  auto permit = breaker.try_acquire();
  if (!permit) {
    h.check_skipped = true;
    h.connected = false;
    h.breaker = breaker.metrics();
    h.error = "check skipped: circuit breaker open";
    return h;
  }
  DbCheckResult r;
  try {
    r = check.check();
  } catch (const std::exception& e) {
    r.ok = false;
    r.error = std::string{"check threw: "} + e.what();
  } catch (...) {
    r.ok = false;
    r.error = "check threw a non-standard exception";
  }
  if (r.ok)
    breaker.record_success(permit);
  else
    breaker.record_failure(permit);
  h.connected = r.ok;
  h.timed_out = r.timed_out;
  h.check_duration = r.duration;
  h.error = std::move(r.error);
  h.breaker = breaker.metrics();
  return h;
}

db_probe_actor::behavior_type
db_probe(db_probe_actor::stateful_pointer<db_probe_state> self,
         std::shared_ptr<DatabaseCheck> check,
         std::shared_ptr<CircuitBreaker> breaker) {
  self->state.check = std::move(check);
  self->state.breaker = std::move(breaker);
  return {
      [=](atom::report) -> DatabaseHealth {
        auto& st = self->state;
        auto h = run_db_check(*st.check, *st.breaker);
        if (!h.check_skipped && h.connected != st.last_ok) {
          st.last_ok = h.connected;
          if (h.connected)
            logger()->info("event=db_check_ok duration_us={}",
                           h.check_duration.count());
          else
            logger()->warn("event=db_check_failed timed_out={} error={}",
                           h.timed_out, quoted(h.error));
        }
        return h;
      },
  };
}

} // namespace tasker::health

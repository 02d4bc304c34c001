#include "actors/child_table.hpp"

#include "caf/actor_system.hpp"
#include "caf/exit_reason.hpp"
#include "caf/send.hpp"

namespace tasker::health {

Clock::time_point actor_clock_adapter::now() const noexcept {
  return clock_ ? clock_->now() : steady_clock().now();
}

bool stopped_on_purpose(const caf::error& reason) noexcept {
  return !reason || reason == caf::exit_reason::user_shutdown;
}

std::string render_reason(caf::actor_system& sys, const caf::error& reason) {
  return sys.render(reason);
}

void stop_anonymously(const caf::actor& h) {
  caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
}

} // namespace tasker::health

#include "actors/child_table.hpp"

namespace tasker::health {

Clock::time_point actor_clock_adapter::now() const noexcept {
  return clock_ ? clock_->now() : steady_clock().now();
}

bool stopped_on_purpose(const caf::error& reason) noexcept {
  return !reason || reason == caf::exit_reason::user_shutdown;
}

} // namespace tasker::health

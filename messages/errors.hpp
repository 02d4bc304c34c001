// The project's error enum, registered with CAF (category "health") so that
// errors print readably, also across the network.
#pragma once

#include <cstdint>
#include <string>

#include "caf/error.hpp"
#include "caf/make_message.hpp"
#include "caf/message.hpp"

namespace tasker::health {

enum class health_errc : uint8_t {
  /// The aggregator has not produced a snapshot yet.
  no_snapshot = 1,
  /// A probe did not answer within its deadline.
  probe_timeout,
  /// A probe is still busy with the request of an earlier cycle.
  probe_busy,
  /// A probe terminated; the supervisor may restart it.
  probe_down,
  /// A probe was restarted too often within the window and was given up.
  probe_failed_permanently,
  /// No probe is registered for a dimension that should be watched.
  probe_missing,
  /// The configuration breaks a rule (HealthConfig::validate()).
  invalid_config,
};

/// Readable text of a code.
std::string to_string(health_errc x);

} // namespace tasker::health

CAF_ERROR_CODE_ENUM(tasker::health::health_errc, "health")

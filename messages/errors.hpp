// The project's error enum, registered with CAF (category "health") so that
// errors print readably, also across the network.
#pragma once

#include <cstdint>
#include <string>

#include "caf/error.hpp"
#include "caf/make_message.hpp"
#include "caf/message.hpp"

namespace tasker::health {

/// Errors a request can fail with. The values are on the wire (CAF errors
/// cross the network with their code): never renumber them. Trouble with a
/// probe (no reply within the deadline, still busy, down, given up, none
/// registered) is no request error: the aggregator reports that dimension
/// Unknown with the reason in its text (actors/aggregator.cpp), so the
/// codes 2 to 6 that once named those cases were removed unused.
enum class health_errc : uint8_t {
  /// The aggregator (or a cache, link or publisher) has no snapshot yet.
  no_snapshot = 1,
  /// The configuration breaks a rule (HealthConfig::validate()):
  /// health_system::start() names every broken rule in the context.
  invalid_config = 7,
};

/// Readable text of a code.
std::string to_string(health_errc x);

} // namespace tasker::health

CAF_ERROR_CODE_ENUM(tasker::health::health_errc, "health")

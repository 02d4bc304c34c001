// The database probe: runs the DB check through the circuit breaker. It does
// blocking I/O, so the health system spawns it detached (its own thread).
//
// Every result feeds the breaker. While the breaker is open the check is
// skipped and the report says so; once the open timeout has passed, the
// probe's own checks are the half-open trials, so recovery is detected
// without outside traffic.
#pragma once

#include "core/circuit_breaker.hpp"
#include "core/measure.hpp"
#include "messages/interfaces.hpp"

#include <memory>

namespace tasker::health {

struct db_probe_state {
  static inline const char* name = "db_probe";
  // A user-declared constructor keeps the state from being an aggregate:
  // C++20 would otherwise let CAF "construct" it from the actor pointer.
  db_probe_state() = default;
  std::shared_ptr<DatabaseCheck> check;
  /// Shared with the orchestrator, which may feed it too.
  std::shared_ptr<CircuitBreaker> breaker;
  /// Last logged connectivity, to log changes once.
  bool last_ok = true;
};

/// Answers `report` with one DB check (or a skipped one while the breaker is
/// open).
db_probe_actor::behavior_type
db_probe(db_probe_actor::stateful_pointer<db_probe_state> self,
         std::shared_ptr<DatabaseCheck> check,
         std::shared_ptr<CircuitBreaker> breaker);

/// One probe step without an actor (what the behavior runs): exposed for
/// tests and for embedding without CAF.
DatabaseHealth run_db_check(DatabaseCheck& check, CircuitBreaker& breaker);

} // namespace tasker::health

// Uses only tasker-health's core, found through pkg-config: a circuit breaker
// opens after its failure threshold and refuses calls.
#include "core/circuit_breaker.hpp"

#include <cstdio>

int main() {
  namespace th = tasker::health;
  th::CircuitBreakerConfig cfg;
  cfg.failure_threshold = 3;
  th::CircuitBreaker breaker{cfg};
  for (int i = 0; i < 3; ++i)
    breaker.record_failure();
  auto state = th::to_string(breaker.state());
  std::printf("consumer-pc: breaker %.*s, admission %s\n",
              static_cast<int>(state.size()), state.data(),
              breaker.try_acquire() ? "granted" : "refused");
  bool ok = breaker.state() == th::CircuitState::open && !breaker.try_acquire();
  return ok ? 0 : 1;
}

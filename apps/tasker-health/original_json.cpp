#include "apps/tasker-health/original_json.hpp"

#ifndef TASKER_HEALTH_VERSION
#define TASKER_HEALTH_VERSION "0.0.0"
#endif

namespace tasker::health::app {

namespace {

using ojson = nlohmann::ordered_json;

ojson to_json(const original_check& c) {
  return {{"status", c.status},
          {"message", c.message},
          {"duration_ms", c.duration_ms}};
}

ojson info(const original_view& v) {
  auto* s = v.snapshot;
  auto st = original_breaker_state(v).value_or(CircuitState::closed);
  bool db = s != nullptr && s->database.watched;
  return {{"version", TASKER_HEALTH_VERSION},
          {"environment", s != nullptr ? s->node_id : std::string{}},
          {"operational_state", std::string{original_operational_state(v)}},
          {"web_database_pool_size", db ? 1 : 0},
          {"orchestration_database_pool_size", db ? 1 : 0},
          {"circuit_breaker_state", std::string{original_breaker_name(st)}}};
}

} // namespace

nlohmann::ordered_json original_live(wall_time now) {
  return {{"status", "alive"}, {"timestamp", original_timestamp(now)}};
}

original_reply original_ready(const original_view& v) {
  auto c = original_checks_of(v);
  if (!app::original_ready(v, c))
    return {503,
            {{"error",
              {{"code", "SERVICE_UNAVAILABLE"},
               {"message", "Service temporarily unavailable"}}}}};
  ojson checks = {{"web_database", to_json(c.web_database)},
                  {"orchestration_database", to_json(c.orchestration_database)},
                  {"circuit_breaker", to_json(c.circuit_breaker)},
                  {"orchestration_system", to_json(c.orchestration_system)},
                  {"command_processor", to_json(c.command_processor)}};
  return {200,
          {{"status", "ready"},
           {"timestamp", original_timestamp(v.now)},
           {"checks", std::move(checks)},
           {"info", info(v)}}};
}

nlohmann::ordered_json original_detailed(const original_view& v) {
  auto c = original_checks_of(v);
  ojson checks = {{"web_database", to_json(c.web_database)},
                  {"orchestration_database", to_json(c.orchestration_database)},
                  {"circuit_breaker", to_json(c.circuit_breaker)},
                  {"orchestration_system", to_json(c.orchestration_system)},
                  {"command_processor", to_json(c.command_processor)},
                  {"pool_utilization", to_json(c.pool_utilization)},
                  {"queue_depth", to_json(c.queue_depth)},
                  {"channel_saturation", to_json(c.channel_saturation)}};
  return {{"status", original_all_healthy(c) ? "healthy" : "degraded"},
          {"timestamp", original_timestamp(v.now)},
          {"checks", std::move(checks)},
          {"info", info(v)}};
}

} // namespace tasker::health::app

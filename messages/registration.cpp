#include "messages/registration.hpp"

#include "messages/errors.hpp"
#include "messages/inspect.hpp"
#include "messages/interfaces.hpp"
#include "messages/signed_snapshot.hpp"

#include "caf/actor_system_config.hpp"

namespace tasker::health {

std::string to_string(health_errc x) {
  switch (x) {
    case health_errc::no_snapshot: return "no snapshot yet";
    case health_errc::invalid_config: return "invalid configuration";
  }
  return "unknown health error";
}

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<QueueDepthTier>("tasker::health::QueueDepthTier");
  cfg.add_message_type<CircuitState>("tasker::health::CircuitState");
  cfg.add_message_type<CustomKind>("tasker::health::CustomKind");
  cfg.add_message_type<BackpressureSource>(
      "tasker::health::BackpressureSource");
  cfg.add_message_type<ReasonCode>("tasker::health::ReasonCode");
  cfg.add_message_type<HealthStatus>("tasker::health::HealthStatus");
  cfg.add_message_type<ProbeKind>("tasker::health::ProbeKind");
  cfg.add_message_type<CircuitBreakerMetrics>(
      "tasker::health::CircuitBreakerMetrics");
  cfg.add_message_type<DatabaseHealth>("tasker::health::DatabaseHealth");
  cfg.add_message_type<ChannelReport>("tasker::health::ChannelReport");
  cfg.add_message_type<ChannelHealth>("tasker::health::ChannelHealth");
  cfg.add_message_type<QueueReport>("tasker::health::QueueReport");
  cfg.add_message_type<QueueHealth>("tasker::health::QueueHealth");
  cfg.add_message_type<CustomHealth>("tasker::health::CustomHealth");
  cfg.add_message_type<BackpressureDecision>(
      "tasker::health::BackpressureDecision");
  cfg.add_message_type<HealthSnapshot>("tasker::health::HealthSnapshot");
  cfg.add_message_type<shared_snapshot>("tasker::health::shared_snapshot");
  cfg.add_message_type<signed_snapshot>("tasker::health::signed_snapshot");
  cfg.add_message_type<ProbeStatus>("tasker::health::ProbeStatus");
  cfg.add_message_type<ActorStatus>("tasker::health::ActorStatus");
  cfg.add_message_type<PeerStatus>("tasker::health::PeerStatus");
  cfg.add_message_type<ClassAdmission>("tasker::health::ClassAdmission");
  cfg.add_message_type<SheddingState>("tasker::health::SheddingState");
  // Handles that travel inside messages.
  cfg.add_message_type<db_probe_actor>("tasker::health::db_probe_actor");
  cfg.add_message_type<channel_probe_actor>(
      "tasker::health::channel_probe_actor");
  cfg.add_message_type<queue_probe_actor>("tasker::health::queue_probe_actor");
  cfg.add_message_type<custom_probe_actor>(
      "tasker::health::custom_probe_actor");
  cfg.add_message_type<subscriber_actor>("tasker::health::subscriber_actor");
  cfg.add_message_type<signed_subscriber_actor>(
      "tasker::health::signed_subscriber_actor");
  cfg.add_message_type<snapshot_source_actor>(
      "tasker::health::snapshot_source_actor");
  cfg.add_message_type<cache_actor>("tasker::health::cache_actor");
  cfg.add_message_type<publisher_actor>("tasker::health::publisher_actor");
  cfg.add_message_type<link_actor>("tasker::health::link_actor");
  cfg.add_message_type<aggregator_actor>("tasker::health::aggregator_actor");
  cfg.add_message_type<supervisor_actor>("tasker::health::supervisor_actor");
  cfg.add_message_type<root_supervisor_actor>(
      "tasker::health::root_supervisor_actor");
  cfg.add_error_category(caf::atom("health"),
                         [](uint8_t code, caf::atom_value,
                            const caf::message& ctx) -> std::string {
                           auto text
                               = to_string(static_cast<health_errc>(code));
                           if (!ctx.empty())
                             text += ": " + caf::to_string(ctx);
                           return "health_error(" + text + ")";
                         });
}

} // namespace tasker::health

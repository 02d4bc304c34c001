// CAF `inspect` overloads for every core type that crosses an actor boundary
// or the network. Field order is the wire format: append new fields at the
// end and keep the order of the existing ones.
#pragma once

#include "core/types.hpp"

#include "caf/meta/type_name.hpp"

namespace tasker::health {

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f,
                                        CircuitBreakerMetrics& x) {
  return f(caf::meta::type_name("circuit_breaker_metrics"), x.state,
           x.consecutive_failures, x.half_open_successes, x.opened_count,
           x.time_until_half_open, x.total_successes, x.total_failures,
           x.total_rejections);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, DatabaseHealth& x) {
  return f(caf::meta::type_name("database_health"), x.watched, x.evaluated,
           x.connected, x.check_skipped, x.timed_out, x.check_duration,
           x.breaker, x.error);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, ChannelReport& x) {
  return f(caf::meta::type_name("channel_report"), x.name, x.capacity,
           x.available, x.saturation_percent, x.messages_sent,
           x.overflow_events, x.messages_dropped, x.warning, x.saturated,
           x.critical);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, ChannelHealth& x) {
  return f(caf::meta::type_name("channel_health"), x.watched, x.evaluated,
           x.channels, x.worst_index, x.error);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, QueueReport& x) {
  return f(caf::meta::type_name("queue_report"), x.name, x.depth, x.capped,
           x.count_cap, x.visible_length, x.oldest_message_age_seconds,
           x.missing, x.tier, x.error,
           // drain rate (issue 12): keep these three together
           x.drain_rate, x.drain_samples, x.drain_eta_seconds,
           // why visible_length is not measured (issue 10)
           x.visible_note,
           // not measured for want of time (issue 20)
           x.not_reached);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, QueueHealth& x) {
  return f(caf::meta::type_name("queue_health"), x.watched, x.evaluated,
           x.queues, x.worst_tier, x.worst_queue, x.check_duration, x.error);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, CustomHealth& x) {
  return f(caf::meta::type_name("custom_health"), x.name, x.kind, x.evaluated,
           x.healthy, x.detail, x.error);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, BackpressureDecision& x) {
  return f(caf::meta::type_name("backpressure_decision"), x.active, x.source,
           x.code, x.reason, x.retry_after,
           // what fired (issue 20)
           x.channel, x.saturation_percent, x.queue, x.depth, x.tier);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, ClassAdmission& x) {
  return f(caf::meta::type_name("class_admission"), x.name, x.admitted);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, SheddingState& x) {
  return f(caf::meta::type_name("shedding_state"), x.graded, x.pressure,
           x.source, x.source_name, x.classes);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, HealthSnapshot& x) {
  return f(caf::meta::type_name("health_snapshot"), x.sequence, x.node_id,
           x.produced_at, x.evaluation_duration, x.database, x.channel,
           x.queues, x.custom, x.decision, x.status, x.incarnation,
           x.incarnation_started, x.epoch,
           // graded shedding (issue 19): keep appended
           x.shedding);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, ProbeStatus& x) {
  return f(caf::meta::type_name("probe_status"), x.kind, x.name, x.running,
           x.restarts, x.failed_permanently, x.last_failure);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, ActorStatus& x) {
  return f(caf::meta::type_name("actor_status"), x.name, x.running, x.restarts,
           x.failed_permanently, x.last_failure);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, PeerStatus& x) {
  return f(caf::meta::type_name("peer_status"), x.peer, x.connected, x.node,
           x.connects, x.failed_attempts, x.last_error);
}

} // namespace tasker::health

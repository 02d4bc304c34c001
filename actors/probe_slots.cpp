#include "actors/probe_slots.hpp"

namespace tasker::health {

void probe_slots::add(ProbeKind kind, std::string name, bool watched,
                      caf::strong_actor_ptr handle, CustomKind custom_kind) {
  probe_slot s;
  s.kind = kind;
  s.name = std::move(name);
  s.watched = watched;
  s.handle = std::move(handle);
  s.custom_kind = custom_kind;
  slots_.push_back(std::move(s));
}

size_t probe_slots::find(ProbeKind kind, const std::string& name) const {
  switch (kind) {
    case ProbeKind::database: return database;
    case ProbeKind::channel: return channel;
    case ProbeKind::queue: return queue;
    case ProbeKind::custom: break;
  }
  for (size_t i = first_custom; i < slots_.size(); ++i)
    if (slots_[i].name == name)
      return i;
  return slots_.size();
}

bool probe_slots::all_registered() const {
  for (const auto& s : slots_)
    if (s.watched && !s.disabled && !s.handle && !s.failed_permanently)
      return false;
  return true;
}

void probe_slots::reset(cycle_reports& r) const {
  r.database = DatabaseHealth{};
  r.channel = ChannelHealth{};
  r.queues = QueueHealth{};
  r.custom.assign(slots_.size() > first_custom ? slots_.size() - first_custom
                                               : 0,
                  CustomHealth{});
}

void probe_slots::set_unknown(cycle_reports& r, size_t i,
                              std::string why) const {
  switch (i) {
    case database:
      r.database = DatabaseHealth{};
      r.database.error = std::move(why);
      break;
    case channel:
      r.channel = ChannelHealth{};
      r.channel.error = std::move(why);
      break;
    case queue:
      r.queues = QueueHealth{};
      r.queues.error = std::move(why);
      break;
    default: {
      auto& c = r.custom[i - first_custom];
      c = CustomHealth{};
      c.name = slots_[i].name;
      c.kind = slots_[i].custom_kind;
      c.error = std::move(why);
    }
  }
}

void probe_slots::set_unwatched(cycle_reports& r, size_t i) const {
  switch (i) {
    case database:
      r.database = DatabaseHealth{};
      r.database.watched = false;
      break;
    case channel:
      r.channel = ChannelHealth{};
      r.channel.watched = false;
      break;
    case queue:
      r.queues = QueueHealth{};
      r.queues.watched = false;
      break;
    default: break; // custom slots exist only when registered
  }
}

} // namespace tasker::health

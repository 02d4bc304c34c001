// The aggregator's bookkeeping of its probes, apart from the actor: one slot
// per dimension (0 database, 1 channel, 2 queue, 3.. custom) with the
// request in flight, and the reports collected for the open cycle.
//
// Rules kept here:
//  - at most one request per slot is in flight; it always has a finite
//    timeout, so a slot is never busy for longer than one deadline;
//  - a slot that has not reported for the cycle reads Unknown with the
//    reason, never a stale "healthy";
//  - `lost_replies` counts requests in a row that ended without a reply (the
//    watchdog's input).
#pragma once

#include "core/types.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "caf/actor_control_block.hpp"

namespace tasker::health {

struct probe_slot {
  ProbeKind kind = ProbeKind::custom;
  std::string name;
  CustomKind custom_kind = CustomKind::informational;
  bool watched = true;
  caf::strong_actor_ptr handle;
  /// A request is in flight.
  bool busy = false;
  /// Cycle of the request in flight.
  uint64_t busy_since_cycle = 0;
  /// Bumped on every request and replacement: identifies the request a
  /// reply belongs to.
  uint64_t request_id = 0;
  /// The cycle whose report this slot has delivered (or been given up on).
  uint64_t settled_cycle = 0;
  /// Requests in a row that ended without a reply (deadline passed).
  uint32_t lost_replies = 0;
  bool failed_permanently = false;
  std::string failure;
  /// Switched off by the configuration (HealthConfig::check_*): Unknown
  /// "check disabled" every cycle, never asked; `disabled_by` names the
  /// option.
  bool disabled = false;
  std::string disabled_by;
};

/// The reports of one cycle, filled in as the probes answer.
struct cycle_reports {
  DatabaseHealth database;
  ChannelHealth channel;
  QueueHealth queues;
  std::vector<CustomHealth> custom;
};

class probe_slots {
 public:
  static constexpr size_t database = 0;
  static constexpr size_t channel = 1;
  static constexpr size_t queue = 2;
  static constexpr size_t first_custom = 3;

  /// The three built-in slots, then one per custom dimension.
  void add(ProbeKind kind, std::string name, bool watched,
           caf::strong_actor_ptr handle,
           CustomKind custom_kind = CustomKind::informational);

  size_t size() const noexcept { return slots_.size(); }
  probe_slot& operator[](size_t i) { return slots_[i]; }
  const probe_slot& operator[](size_t i) const { return slots_[i]; }
  auto begin() { return slots_.begin(); }
  auto end() { return slots_.end(); }

  /// The slot of (kind, name), or size() when there is none.
  size_t find(ProbeKind kind, const std::string& name) const;

  /// True when every watched slot has a probe or has been given up.
  bool all_registered() const;

  /// Empties `r` for a new cycle (one custom report per custom slot).
  void reset(cycle_reports& r) const;

  /// Slot `i` of `r` reads Unknown with `why`.
  void set_unknown(cycle_reports& r, size_t i, std::string why) const;

  /// Slot `i` of `r` reads "not watched".
  void set_unwatched(cycle_reports& r, size_t i) const;

 private:
  std::vector<probe_slot> slots_;
};

} // namespace tasker::health

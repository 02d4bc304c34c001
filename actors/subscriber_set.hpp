// The subscribers of a snapshot source, in one place for every source: the
// aggregator, the publisher (one set per kind: plain snapshots for caches,
// signed envelopes for remote links) and the link (its local subscribers).
// The set owns the whole protocol of the snapshot_source_actor interface:
// subscribe (the subscriber is monitored), unsubscribe (demonitored), down
// (dropped), the reply to `snapshot` (the current one, or no_snapshot), and
// the fan-out of one shared message, with the one scheduling choice every
// source makes (see deliver() in subscriber_set.cpp). A source adds only
// what is its own: a bound, logging, when a new subscriber gets the current
// snapshot.
//
// A vector for the fan-out and a hash index for O(1) add and remove, so that
// 10,000 subscribers cost no quadratic bookkeeping when they come and go.
#pragma once

#include "messages/interfaces.hpp"

#include <cstddef>
#include <unordered_map>
#include <vector>

#include "caf/actor_addr.hpp"
#include "caf/actor_cast.hpp"
#include "caf/fwd.hpp"
#include "caf/result.hpp"

namespace tasker::health {

class subscriber_set {
 public:
  /// Subscribes `x` and monitors it (its down message goes to `on_down`);
  /// false, and nothing done, for a null handle or one subscribed already.
  template<class Handle>
  bool add(caf::local_actor* self, const Handle& x) {
    return add_ptr(self, caf::actor_cast<caf::strong_actor_ptr>(x));
  }

  /// Unsubscribes `x` and stops monitoring it; false if it is not
  /// subscribed (nothing done).
  template<class Handle>
  bool remove(caf::local_actor* self, const Handle& x) {
    return remove_addr(self, x.address());
  }

  /// Forgets the subscriber that went away (`source` of a down message);
  /// false if it was none of this set's.
  bool on_down(const caf::actor_addr& source);

  bool contains(const caf::actor_addr& addr) const {
    return index_.count(addr) != 0;
  }

  size_t size() const noexcept { return items_.size(); }
  bool empty() const noexcept { return items_.empty(); }
  auto begin() const noexcept { return items_.begin(); }
  auto end() const noexcept { return items_.end(); }

  /// The fan-out: the same message (one shared snapshot or envelope, nobody
  /// copies it) to every subscriber, once each.
  void send_all(caf::local_actor* self, const caf::message& msg) const;

  /// The fan-out of `snap` as one `snapshot` message.
  void send_all(caf::local_actor* self, const shared_snapshot& snap) const;

  /// `msg` to one subscriber (e.g. the current envelope for a new one),
  /// scheduled like the fan-out.
  template<class Handle>
  static void send(caf::local_actor* self, const Handle& x,
                   const caf::message& msg) {
    deliver(self, caf::actor_cast<caf::strong_actor_ptr>(x), msg);
  }

  /// The current snapshot to a new subscriber; nothing before the first.
  template<class Handle>
  static void send_current(caf::local_actor* self, const Handle& x,
                           const shared_snapshot& current) {
    send_current_ptr(self, caf::actor_cast<caf::strong_actor_ptr>(x), current);
  }

 private:
  bool add_ptr(caf::local_actor* self, caf::strong_actor_ptr x);
  bool remove_addr(caf::local_actor* self, const caf::actor_addr& addr);
  bool erase(const caf::actor_addr& addr);
  static void deliver(caf::local_actor* self, const caf::strong_actor_ptr& to,
                      const caf::message& msg);
  static caf::message snapshot_message(const shared_snapshot& snap);
  static void send_current_ptr(caf::local_actor* self,
                               const caf::strong_actor_ptr& to,
                               const shared_snapshot& current);

  std::vector<caf::strong_actor_ptr> items_;
  std::unordered_map<caf::actor_addr, size_t> index_;
};

/// The reply of every source to `snapshot`: its current snapshot, or the
/// error no_snapshot before the first one.
caf::result<HealthSnapshot> current_reply(const shared_snapshot& current);

} // namespace tasker::health

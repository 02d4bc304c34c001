// The subscribers of a snapshot source (aggregator, publisher): a vector for
// the per-cycle fan-out and a hash index for O(1) add and remove, so that
// 10,000 subscribers cost no quadratic bookkeeping when they come and go.
#pragma once

#include "messages/interfaces.hpp"

#include <cstddef>
#include <unordered_map>
#include <vector>

#include "caf/actor_addr.hpp"

namespace tasker::health {

class subscriber_list {
 public:
  /// Adds `x`; false if it is subscribed already.
  bool add(const subscriber_actor& x) {
    auto [it, fresh] = index_.emplace(x.address(), items_.size());
    if (!fresh)
      return false;
    items_.push_back(x);
    return true;
  }

  /// Removes the subscriber with address `addr`; false if there is none.
  bool remove(const caf::actor_addr& addr) {
    auto it = index_.find(addr);
    if (it == index_.end())
      return false;
    auto i = it->second;
    index_.erase(it);
    if (i + 1 != items_.size()) {
      items_[i] = std::move(items_.back());
      index_[items_[i].address()] = i;
    }
    items_.pop_back();
    return true;
  }

  bool contains(const caf::actor_addr& addr) const {
    return index_.count(addr) != 0;
  }

  size_t size() const noexcept { return items_.size(); }
  bool empty() const noexcept { return items_.empty(); }
  auto begin() const noexcept { return items_.begin(); }
  auto end() const noexcept { return items_.end(); }

 private:
  std::vector<subscriber_actor> items_;
  std::unordered_map<caf::actor_addr, size_t> index_;
};

} // namespace tasker::health

// shared_snapshot: how a snapshot travels from its aggregator to every
// subscriber. Locally it is one immutable HealthSnapshot shared by all
// receivers (one allocation per cycle, a reference count per receiver, no
// copy); across the network it is serialized by value and rebuilt as a new
// shared snapshot on the receiving node.
#pragma once

#include "core/types.hpp"
#include "messages/inspect.hpp"

#include <memory>
#include <type_traits>
#include <utility>

#include "caf/meta/type_name.hpp"

namespace tasker::health {

class shared_snapshot {
 public:
  shared_snapshot() = default;

  explicit shared_snapshot(std::shared_ptr<const HealthSnapshot> ptr)
      : ptr_(std::move(ptr)) {}

  explicit shared_snapshot(HealthSnapshot value)
      : ptr_(std::make_shared<const HealthSnapshot>(std::move(value))) {}

  explicit operator bool() const noexcept { return ptr_ != nullptr; }

  const HealthSnapshot& operator*() const noexcept { return *ptr_; }

  const HealthSnapshot* operator->() const noexcept { return ptr_.get(); }

  const std::shared_ptr<const HealthSnapshot>& ptr() const noexcept {
    return ptr_;
  }

  /// Equal when both are empty or both hold equal snapshots.
  friend bool operator==(const shared_snapshot& x, const shared_snapshot& y) {
    if (x.ptr_ == y.ptr_)
      return true;
    return x.ptr_ && y.ptr_ && *x.ptr_ == *y.ptr_;
  }

  /// Serializes the pointee (an empty one as a default snapshot); loading
  /// makes a new shared snapshot.
  template<class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f,
                                                 shared_snapshot& x) {
    if constexpr (Inspector::reads_state) {
      // Saving (or printing): the pointee as it is.
      static const HealthSnapshot empty{};
      auto& value = const_cast<HealthSnapshot&>(x.ptr_ ? *x.ptr_ : empty);
      return f(caf::meta::type_name("shared_snapshot"), value);
    } else {
      HealthSnapshot value;
      auto result = f(caf::meta::type_name("shared_snapshot"), value);
      x.ptr_ = std::make_shared<const HealthSnapshot>(std::move(value));
      return result;
    }
  }

 private:
  std::shared_ptr<const HealthSnapshot> ptr_;
};

} // namespace tasker::health

#include "core/channel_monitor.hpp"

namespace tasker::health {

ChannelMonitor::ChannelMonitor(std::string name, uint64_t capacity)
    : name_(std::move(name)), capacity_(capacity) {}

void ChannelMonitor::record_send() noexcept {
  in_use_.fetch_add(1, std::memory_order_relaxed);
  sent_.fetch_add(1, std::memory_order_relaxed);
}

void ChannelMonitor::record_receive() noexcept {
  auto cur = in_use_.load(std::memory_order_relaxed);
  while (cur > 0
         && !in_use_.compare_exchange_weak(cur, cur - 1,
                                           std::memory_order_relaxed)) {
    // cur was reloaded
  }
}

void ChannelMonitor::record_overflow() noexcept {
  overflow_.fetch_add(1, std::memory_order_relaxed);
}

void ChannelMonitor::record_drop() noexcept {
  dropped_.fetch_add(1, std::memory_order_relaxed);
}

void ChannelMonitor::set_in_use(uint64_t n) noexcept {
  in_use_.store(n, std::memory_order_relaxed);
}

uint64_t ChannelMonitor::in_use() const noexcept {
  return in_use_.load(std::memory_order_relaxed);
}

ChannelSample ChannelMonitor::sample() const {
  ChannelSample s;
  s.name = name_;
  s.capacity = capacity_;
  s.in_use = in_use_.load(std::memory_order_relaxed);
  s.messages_sent = sent_.load(std::memory_order_relaxed);
  s.overflow_events = overflow_.load(std::memory_order_relaxed);
  s.messages_dropped = dropped_.load(std::memory_order_relaxed);
  return s;
}

} // namespace tasker::health

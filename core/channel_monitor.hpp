// ChannelMonitor: counters an orchestrator updates for one bounded command
// channel, read by the channel probe. Every member is an atomic, so any thread
// may update or sample it without a lock.
#pragma once

#include "core/classify.hpp"

#include <atomic>
#include <cstdint>
#include <string>

namespace tasker::health {

class ChannelMonitor {
 public:
  ChannelMonitor(std::string name, uint64_t capacity);

  ChannelMonitor(const ChannelMonitor&) = delete;
  ChannelMonitor& operator=(const ChannelMonitor&) = delete;

  const std::string& name() const noexcept { return name_; }

  uint64_t capacity() const noexcept { return capacity_; }

  /// A message entered the channel (one slot taken, one message sent).
  void record_send() noexcept;

  /// A message left the channel (one slot freed; never below zero).
  void record_receive() noexcept;

  /// A send found the channel full (counts an overflow event).
  void record_overflow() noexcept;

  /// A message was dropped (for example after an overflow).
  void record_drop() noexcept;

  /// Sets the number of occupied slots directly, for channels that can
  /// report their length themselves.
  void set_in_use(uint64_t n) noexcept;

  uint64_t in_use() const noexcept;

  /// A consistent-enough reading of all counters (each read atomically).
  ChannelSample sample() const;

 private:
  std::string name_;
  uint64_t capacity_;
  std::atomic<uint64_t> in_use_{0};
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> overflow_{0};
  std::atomic<uint64_t> dropped_{0};
};

} // namespace tasker::health

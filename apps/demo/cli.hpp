// The load generator's stop signal: a SIGINT/SIGTERM flag and a sleep that
// ends early on it. Its options go through CAF's option groups
// (apps/common/cli_options.hpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>

namespace demo {

/// Set by SIGINT / SIGTERM.
inline std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);

inline void on_stop_signal(int) {
  g_stop.store(true, std::memory_order_relaxed);
}

/// Installs the SIGINT/SIGTERM handler (without SA_RESTART, so blocking
/// sleeps and reads return early).
inline void install_stop_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

/// Sleeps until `deadline` or until a stop signal, in short steps. Returns
/// false when stopped.
inline bool sleep_until(std::chrono::steady_clock::time_point deadline) {
  using namespace std::chrono_literals;
  while (!g_stop.load(std::memory_order_relaxed)) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline)
      return true;
    std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(
        deadline - now, std::chrono::nanoseconds{20ms}));
  }
  return false;
}

} // namespace demo

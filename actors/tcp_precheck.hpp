// A bounded TCP reachability check, done before a remote node is handed to
// CAF's middleman: the middleman connects one node at a time with a
// blocking connect(), so one black-holed host would otherwise stall every
// connect of the process for the kernel's SYN retries (over two minutes).
// Blocking (poll), so it runs on a thread of its own (a detached actor).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace tasker::health {

/// Tries a TCP connection to host:port (name resolution included) and closes
/// it again. Empty when it was accepted within `timeout`, otherwise why not
/// ("timed out after 1000ms", "connection refused", "unknown host ...").
std::string tcp_precheck(const std::string& host, uint16_t port,
                         std::chrono::milliseconds timeout);

} // namespace tasker::health

// The component's log lines, captured while a test runs.
#pragma once

#include "core/log.hpp"

#include <spdlog/logger.h>
#include <spdlog/sinks/ringbuffer_sink.h>

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tasker::health::test {

/// Adds a ring-buffer sink (message text only) to the component's logger
/// for its lifetime; removed again on destruction, also when a test fails.
class log_capture {
 public:
  explicit log_capture(size_t capacity = 1000)
      : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(capacity)) {
    sink_->set_pattern("%v");
    logger()->sinks().push_back(sink_);
  }

  ~log_capture() {
    auto& sinks = logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }

  log_capture(const log_capture&) = delete;
  log_capture& operator=(const log_capture&) = delete;

  /// The captured lines that contain `needle`.
  std::vector<std::string> lines(std::string_view needle) const {
    std::vector<std::string> out;
    for (auto& line : sink_->last_formatted())
      if (line.find(needle) != std::string::npos)
        out.push_back(std::move(line));
    return out;
  }

  size_t count(std::string_view needle) const { return lines(needle).size(); }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

} // namespace tasker::health::test

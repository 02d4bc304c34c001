#include "core/log.hpp"

#include <mutex>
#include <regex>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace tasker::health {

std::shared_ptr<spdlog::logger> logger() {
  static std::mutex mtx;
  std::lock_guard<std::mutex> guard{mtx};
  auto name = std::string{logger_name};
  if (auto existing = spdlog::get(name))
    return existing;
  return spdlog::stderr_color_mt(name);
}

std::string quoted(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  out += '"';
  return out;
}

std::string redact_dsn(std::string_view dsn) {
  std::string s{dsn};
  // URI form: scheme://user:password@host...
  static const std::regex uri{R"(^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*):[^@]*@)"};
  s = std::regex_replace(s, uri, "$1:***@");
  // key=value form: password=secret or password='se cret'
  static const std::regex kv{R"((^|\s)password\s*=\s*('([^'\\]|\\.)*'|\S+))"};
  s = std::regex_replace(s, kv, "$1password=***");
  // URI query parameter: ?password=secret or &password=secret
  static const std::regex query{R"(([?&])password=[^&]*)"};
  s = std::regex_replace(s, query, "$1password=***");
  return s;
}

} // namespace tasker::health

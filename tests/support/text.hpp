// Small text helpers shared by the test suites.
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace tasker::health::test {

/// True when `needle` occurs in `haystack`.
inline bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

/// How often `needle` occurs in `text` (overlapping occurrences count).
inline size_t count_of(std::string_view text, std::string_view needle) {
  size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string_view::npos;
       pos = text.find(needle, pos + 1))
    ++n;
  return n;
}

/// The whole content of the file at `path` (empty if it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream in{path};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

} // namespace tasker::health::test

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

/// The whole content of the file at `path` (empty if it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream in{path};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

} // namespace tasker::health::test

// Small text helpers shared by the test suites.
#pragma once

#include <string_view>

namespace tasker::health::test {

/// True when `needle` occurs in `haystack`.
inline bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

} // namespace tasker::health::test

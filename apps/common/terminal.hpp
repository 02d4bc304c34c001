// Text helpers of the live table in a terminal (`tasker-health status`,
// apps/tasker-health/status_view.hpp): padding by visible columns (UTF-8
// aware), ANSI colors, number formats, cutting a line to the terminal's
// width. Header-only and without project dependencies.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>
#include <utility>

#include <sys/ioctl.h>
#include <unistd.h>

namespace tasker::health::text {

// ANSI SGR codes.
inline constexpr const char* green = "32";
inline constexpr const char* yellow = "33";
inline constexpr const char* red = "31";
inline constexpr const char* bold_red = "1;31";
inline constexpr const char* magenta = "35";
inline constexpr const char* dim = "2";
inline constexpr const char* bold = "1";

/// Columns `s` takes: UTF-8 continuation bytes take none.
inline size_t columns(const std::string& s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

/// `s` filled with spaces to `width` columns (left aligned).
inline std::string pad(std::string s, size_t width) {
  if (auto n = columns(s); n < width)
    s.append(width - n, ' ');
  return s;
}

/// `s` right aligned in `width` columns.
inline std::string rpad(const std::string& s, size_t width) {
  auto n = columns(s);
  return n < width ? std::string(width - n, ' ') + s : s;
}

inline std::string upper(std::string s) {
  for (auto& c : s)
    if (c >= 'a' && c <= 'z')
      c = static_cast<char>(c - 'a' + 'A');
  return s;
}

inline std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

/// Microseconds as "420 us" / "2.1 ms" / "1.50 s".
inline std::string micros(int64_t us) {
  if (us < 1000)
    return std::to_string(us) + " us";
  if (us < 1'000'000)
    return fixed(static_cast<double>(us) / 1000.0, 1) + " ms";
  return fixed(static_cast<double>(us) / 1e6, 2) + " s";
}

/// Milliseconds as "812 ms" / "12.5 s".
inline std::string millis(int64_t ms) {
  if (ms < 10'000)
    return std::to_string(ms) + " ms";
  return fixed(static_cast<double>(ms) / 1000.0, 1) + " s";
}

/// `s` padded to `width` columns, the text (not the padding) in color `sgr`
/// when `on`.
inline std::string paint(bool on, const std::string& s, const char* sgr,
                         size_t width = 0) {
  std::string padded = pad(s, width);
  if (!on || sgr == nullptr)
    return padded;
  return "\x1b[" + std::string{sgr} + "m" + s + "\x1b[0m"
         + padded.substr(s.size());
}

/// Cuts `line` to `width` visible columns, skipping ANSI escape sequences
/// and UTF-8 continuation bytes; width <= 0 leaves it as it is.
inline std::string fit(const std::string& line, int width) {
  if (width <= 0)
    return line;
  std::string out;
  int cols = 0;
  bool in_escape = false;
  bool cut = false;
  for (char c : line) {
    if (in_escape) {
      out += c;
      if (c >= '@' && c <= '~' && c != '[')
        in_escape = false;
      continue;
    }
    if (c == '\x1b') {
      in_escape = true;
      out += c;
      continue;
    }
    bool continuation = (static_cast<unsigned char>(c) & 0xC0) == 0x80;
    if (!continuation) {
      if (cols == width) {
        cut = true;
        break;
      }
      ++cols;
    }
    out += c;
  }
  if (cut && out.find('\x1b') != std::string::npos)
    out += "\x1b[0m";
  return out;
}

/// Local time as HH:MM:SS.
inline std::string local_clock() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

/// Terminal size of stdout as {columns, rows}, {0, 0} when unknown.
inline std::pair<int, int> terminal_size() {
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0)
    return {ws.ws_col, ws.ws_row};
  return {0, 0};
}

} // namespace tasker::health::text

// Helpers of the demo programs: a SIGINT/SIGTERM flag (both), and the
// hand-written `--name=value` / `--name value` parser that tasker-health-watch
// still uses (tasker-health-loadgen declares its options through CAF's option
// groups, apps/common/cli_options.hpp, which a converted watcher would use
// too).
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

namespace demo {

/// A bad command-line argument: the option and the rule it broke.
struct ArgError : std::runtime_error {
  ArgError(std::string opt, const std::string& rule)
      : std::runtime_error(opt + ": " + rule), option(std::move(opt)) {}
  std::string option;
};

/// Walks argv. For each argument, `name()` is the part before '=' (or the
/// whole argument); `value()` returns the part after '=' or consumes the next
/// argument; `no_value()` rejects an inline value given to a flag.
class ArgCursor {
 public:
  ArgCursor(int argc, char** argv) : argc_(argc), argv_(argv) {}

  bool next() {
    if (++i_ >= argc_)
      return false;
    std::string_view arg = argv_[i_];
    auto eq = arg.find('=');
    if (arg.starts_with("--") && eq != std::string_view::npos) {
      name_ = std::string{arg.substr(0, eq)};
      inline_ = std::string{arg.substr(eq + 1)};
      has_inline_ = true;
    } else {
      name_ = std::string{arg};
      inline_.clear();
      has_inline_ = false;
    }
    return true;
  }

  const std::string& name() const { return name_; }

  std::string value() {
    if (has_inline_)
      return inline_;
    if (i_ + 1 >= argc_)
      throw ArgError{name_, "needs a value (" + name_ + "=VALUE)"};
    return argv_[++i_];
  }

  void no_value() const {
    if (has_inline_)
      throw ArgError{name_, "is a flag and takes no value"};
  }

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string name_;
  std::string inline_;
  bool has_inline_ = false;
};

/// Parses a whole string as an integer in [lo, hi].
inline int64_t parse_int(const std::string& opt, const std::string& text,
                         int64_t lo, int64_t hi) {
  int64_t v = 0;
  const char* first = text.data();
  const char* last = first + text.size();
  auto [ptr, ec] = std::from_chars(first, last, v);
  if (text.empty() || ec != std::errc{} || ptr != last || v < lo || v > hi)
    throw ArgError{opt, "must be an integer from " + std::to_string(lo) + " to "
                            + std::to_string(hi) + ", got '" + text + "'"};
  return v;
}

/// Parses a whole string as a decimal number in [lo, hi].
inline double parse_double(const std::string& opt, const std::string& text,
                           double lo, double hi) {
  char* end = nullptr;
  errno = 0;
  double v = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
  if (text.empty() || errno != 0 || end != text.c_str() + text.size()
      || !(v >= lo && v <= hi)) {
    auto fmt = [](double d) {
      std::string s = std::to_string(d);
      s.erase(s.find_last_not_of('0') + 1);
      if (s.ends_with('.'))
        s.pop_back();
      return s;
    };
    throw ArgError{opt, "must be a number from " + fmt(lo) + " to " + fmt(hi)
                            + ", got '" + text + "'"};
  }
  return v;
}

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

/// The common main of the demo programs: parse the arguments (an ArgError
/// names the option and the rule: exit 2), print the help (exit 0), or
/// install the stop handler and run.
template<class Options, class Parse, class Help, class Run>
int run_main(const char* program, int argc, char** argv, Parse parse,
             Help help_text, Run run) {
  Options opts;
  try {
    bool help = false;
    opts = parse(argc, argv, help);
    if (help) {
      help_text(std::cout);
      return 0;
    }
  } catch (const ArgError& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    std::fprintf(stderr, "try '%s --help'\n", program);
    return 2;
  }
  install_stop_handler();
  return run(opts);
}

} // namespace demo

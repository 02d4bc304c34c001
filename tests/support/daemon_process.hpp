// The tasker-health daemon as a child process for process tests
// (header-only). Include after "caf/test/unit_test.hpp" and
// pg_test_env.hpp; the binary must be built with
// tasker_health_add_test_binary (TASKER_HEALTH_BINARY_DIR).
//
//   daemon_process d{{"--database.url=...", "--http.port=0"}};
//   auto port = d.port();          // waits for event=listening in the log
//   d.signal(SIGTERM);
//   CAF_CHECK_EQUAL(d.wait_exit(10s), 0);
#pragma once

#include "caf/test/unit_test.hpp"

#include "pg_test_env.hpp"

#include <chrono>
#include <cstdio>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace tasker::health::test {

inline const std::string daemon_path = std::string{TASKER_HEALTH_BINARY_DIR}
                                       + "/apps/tasker-health/tasker-health";

/// The daemon as a child process, its output in a log file. `shell_prefix`,
/// when given, is a shell command run before the daemon in the same process
/// (e.g. "ulimit -n 256"), through /bin/sh.
class daemon_process {
 public:
  explicit daemon_process(const std::vector<std::string>& args,
                          const std::string& shell_prefix = {}) {
    char name[] = "/tmp/tasker-health-daemon-XXXXXX";
    int fd = mkstemp(name);
    CAF_REQUIRE(fd >= 0);
    close(fd);
    log_path_ = name;
    std::vector<std::string> argv_s;
    if (!shell_prefix.empty())
      argv_s = {"/bin/sh", "-c", shell_prefix + " && exec \"$0\" \"$@\""};
    argv_s.push_back(daemon_path);
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    // fork + exec rather than posix_spawn: the child asks to be killed when
    // the test process dies, so that a failed CAF_REQUIRE (which exits
    // without running destructors) leaves no daemon behind.
    auto parent = getpid();
    pid_ = fork();
    CAF_REQUIRE(pid_ >= 0);
    if (pid_ == 0) { // only async-signal-safe calls until exec
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent)
        _exit(127);
      int log = open(log_path_.c_str(), O_WRONLY | O_APPEND);
      if (log < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
        _exit(127);
      execve(argv[0], argv.data(), environ);
      _exit(127);
    }
  }

  ~daemon_process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::remove(log_path_.c_str());
  }

  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;

  /// Exit code (128 + signal when killed), or -1 if it did not exit within
  /// `timeout`.
  int wait_exit(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (std::chrono::steady_clock::now() >= deadline)
        return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
  }

  void signal(int sig) { kill(pid_, sig); }

  pid_t pid() const { return pid_; }

  std::string log() const { return read_text_file(log_path_); }

  /// How often `needle` occurs in the log.
  size_t count_in_log(const std::string& needle) const {
    auto text = log();
    size_t n = 0;
    for (auto pos = text.find(needle); pos != std::string::npos;
         pos = text.find(needle, pos + 1))
      ++n;
    return n;
  }

  /// The HTTP port the daemon logged, waiting up to 10 s.
  uint16_t port() {
    using namespace std::chrono_literals;
    static const std::regex re{R"(event=listening address=\S+ port=(\d+))"};
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      std::smatch m;
      auto text = log();
      if (std::regex_search(text, m, re))
        return static_cast<uint16_t>(std::stoi(m[1]));
      int status = 0;
      if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        CAF_FAIL("daemon exited early:\n" << text);
      }
      std::this_thread::sleep_for(20ms);
    }
    CAF_FAIL("daemon did not start listening:\n" << log());
    return 0;
  }

 private:
  pid_t pid_ = -1;
  std::string log_path_;
};

/// Polls `pred` every 50 ms for up to `timeout`.
inline bool eventually(std::function<bool()> pred,
                       std::chrono::milliseconds timeout
                       = std::chrono::seconds{10}) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred())
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
  }
  return pred();
}

} // namespace tasker::health::test

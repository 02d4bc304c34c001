#define CAF_SUITE apps.daemon_options
#include "caf/test/unit_test.hpp"

#include "apps/tasker-health/daemon_config.hpp"

#include <string>
#include <vector>

using namespace tasker::health;
using namespace tasker::health::app;

namespace {

/// A command-line argument that gives `option` a value other than `x`.
std::string other_value(const std::string& option,
                        const daemon_config::option_value& x) {
  auto arg = "--" + option;
  if (auto t = std::get_if<caf::timespan>(&x))
    return arg + "="
           + std::to_string(
               std::chrono::duration_cast<std::chrono::milliseconds>(*t).count()
               + 3000)
           + "ms";
  if (auto n = std::get_if<int64_t>(&x))
    return arg + "=" + std::to_string(*n + 3);
  if (auto d = std::get_if<double>(&x))
    return arg + "=" + std::to_string(*d + 0.25);
  if (auto b = std::get_if<bool>(&x))
    return *b ? arg + "=false" : arg; // a bare flag sets true
  auto s = std::get<std::string>(x);
  if (s == "fail-open")
    return arg + "=fail-closed";
  if (s == "binary")
    return arg + "=graded";
  return arg + "=\"" + s + "x\"";
}

daemon_config::option_value parsed(const std::string& arg,
                                   const std::string& option) {
  daemon_config cfg;
  std::vector<std::string> args{"tasker-health", arg};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  auto err = cfg.parse(static_cast<int>(argv.size()), argv.data());
  CAF_REQUIRE(!err);
  std::vector<ConfigError> errors;
  auto h = to_health_config(cfg, errors);
  // The options again, their defaults from the converted configuration.
  daemon_config again{h};
  daemon_config defaults;
  for (auto& [key, value] : again.values)
    if (key != option && value != defaults.values.at(key))
      CAF_FAIL(arg << " changed " << key);
  CAF_CHECK(cfg.values.at(option) != defaults.values.at(option));
  return again.values.at(option);
}

} // namespace

CAF_TEST(every option of the component reaches its field and only that) {
  daemon_config cfg;
  CAF_REQUIRE_GREATER(cfg.values.size(), 40u);
  for (const auto& [option, default_value] : cfg.values) {
    CAF_MESSAGE(option);
    auto arg = other_value(option, default_value);
    daemon_config given;
    std::vector<std::string> args{"tasker-health", arg};
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    CAF_REQUIRE(!given.parse(static_cast<int>(argv.size()), argv.data()));
    CAF_CHECK(parsed(arg, option) == given.values.at(option));
  }
}

CAF_TEST(the component defaults are the options defaults) {
  HealthConfig h;
  h.evaluation_interval = std::chrono::milliseconds{1234};
  h.breaker.failure_threshold = 9;
  h.shedding.mode = SheddingMode::graded;
  daemon_config cfg{h};
  CAF_CHECK(std::get<caf::timespan>(cfg.values.at("health.evaluation-interval"))
            == std::chrono::milliseconds{1234});
  CAF_CHECK_EQUAL(std::get<int64_t>(cfg.values.at("breaker.failure-threshold")),
                  9);
  CAF_CHECK_EQUAL(std::get<std::string>(cfg.values.at("shedding.mode")),
                  "graded");
}

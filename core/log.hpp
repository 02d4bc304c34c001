// The component's one named spdlog logger and log helpers.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace spdlog {
class logger;
} // namespace spdlog

namespace tasker::health {

/// Name of the component's logger.
inline constexpr std::string_view logger_name = "tasker-health";

/// The component's logger: the one registered in spdlog under `logger_name`
/// if the embedding program made one, else a stderr logger created on first
/// use.
std::shared_ptr<spdlog::logger> logger();

/// `s` in double quotes with `"` and `\` escaped, for a `key=value` log
/// field holding free text.
std::string quoted(std::string_view s);

/// A libpq connection string (URI or key=value form) with the password
/// replaced by "***", safe to log.
std::string redact_dsn(std::string_view dsn);

} // namespace tasker::health

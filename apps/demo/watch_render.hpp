// tasker-health-watch: the model of one poll of the daemon (/health and
// /readyz), its parsing from JSON, and its rendering as a table (terminal) or
// as one plain line (logs). Every field is optional: a daemon that omits a
// field, or sends null or a value of another type, shows "-" there.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace demo {

struct QueueView {
  std::string name;
  std::string tier;
  std::optional<int64_t> depth;
  bool capped = false;
  std::optional<int64_t> count_cap;
  std::optional<int64_t> oldest_age_s;
  bool missing = false;
  std::string error;
};

struct ChannelView {
  std::string name;
  std::optional<int64_t> capacity;
  std::optional<int64_t> available;
  std::optional<double> saturation;
  std::optional<int64_t> sent;
  std::optional<int64_t> overflow_events;
  std::optional<int64_t> dropped;
  bool warning = false;
  bool saturated = false;
  bool critical = false;
};

struct CustomView {
  std::string name;
  std::string kind;
  bool evaluated = false;
  bool healthy = false;
  std::string detail;
  std::string error;
};

/// One poll: what /health and /readyz answered, or why they did not.
struct Frame {
  // transport
  bool reachable = false;         ///< /health answered over HTTP
  bool parsed = false;            ///< ... with a JSON object
  std::string problem;            ///< why not (connection error, bad body)
  int http_status = 0;            ///< of /health
  int readyz_status = 0;          ///< 0: /readyz did not answer
  std::string readyz_retry_after; ///< its Retry-After header
  std::string readyz_reason;

  // top level
  std::string status;
  std::string node_id;
  std::string produced_at;
  std::string reason; ///< top-level reason (e.g. "no snapshot yet")
  std::optional<int64_t> sequence;
  std::optional<int64_t> age_ms;
  std::optional<int64_t> eval_us;
  bool stale = false;

  // decision
  bool decision_present = false;
  bool active = false;
  std::string source;
  std::string code;
  std::string decision_reason;
  std::optional<int64_t> retry_after_s;

  // database
  bool db_present = false;
  bool db_watched = false;
  bool db_evaluated = false;
  bool db_connected = false;
  bool db_skipped = false;
  bool db_timed_out = false;
  std::optional<int64_t> db_check_us;
  std::string db_error;
  std::string breaker_state;
  std::optional<int64_t> breaker_failures;
  std::optional<int64_t> breaker_opened;
  std::optional<int64_t> breaker_half_open_in_ms;

  // channel
  bool ch_present = false;
  bool ch_watched = false;
  bool ch_evaluated = false;
  std::string ch_error;
  std::optional<double> ch_max_saturation;
  std::vector<ChannelView> channels;

  // queues
  bool q_present = false;
  bool q_watched = false;
  bool q_evaluated = false;
  std::string q_error;
  std::string worst_tier;
  std::string worst_queue;
  std::optional<int64_t> q_check_us;
  std::vector<QueueView> queues;

  std::vector<CustomView> custom;
};

/// Fills the snapshot part of `f` from the /health body (any JSON value).
void parse_health(const nlohmann::json& j, Frame& f);

/// Fills the /readyz part of `f` from its body (any JSON value).
void parse_readyz(const nlohmann::json& j, Frame& f);

struct RenderOptions {
  bool color = false;
  std::string target; ///< "host:port"
  std::string clock;  ///< local time of the poll, HH:MM:SS
  int64_t interval_ms = 0;
};

/// The table, one string per line, no trailing newlines (ANSI colors when
/// `opt.color`).
std::vector<std::string> render_table(const Frame& f, const RenderOptions& opt);

/// One line for logs: time, status, decision, database, queues.
std::string render_line(const Frame& f, const RenderOptions& opt);

/// What changed from `prev` to `cur`, one human sentence per change.
std::vector<std::string> changes(const Frame& prev, const Frame& cur);

/// What a whole session saw; printed when the watcher ends.
class Summary {
 public:
  void add(const Frame& f);
  std::vector<std::string> render() const;

 private:
  int64_t polls_ = 0;
  int64_t unreachable_ = 0;
  std::set<int64_t> sequences_;
  std::vector<std::string> statuses_;
  std::map<std::string, int64_t> decisions_; // code -> polls
  std::vector<std::string> queue_order_;
  std::map<std::string, std::vector<std::string>> tiers_; // in first-seen
  std::map<std::string, int64_t> max_depth_;
};

/// Cuts `line` to `width` visible columns, skipping ANSI escape sequences
/// and UTF-8 continuation bytes; width <= 0 leaves it as it is.
std::string fit(const std::string& line, int width);

} // namespace demo

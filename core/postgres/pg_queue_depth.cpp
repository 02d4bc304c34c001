#include "core/postgres/pg_queue_depth.hpp"

#include "core/config.hpp"
#include "core/postgres/pg_connection.hpp"

#include <algorithm>
#include <charconv>
#include <exception>
#include <optional>

namespace tasker::health {

namespace {

// The depth statement.
//
// One statement whatever the number of queues, so one network exchange per
// measure() call. Why not a static `UNION ALL` of per-queue subqueries
// guarded by to_regclass(): PostgreSQL resolves every table named in a
// statement while parsing it, so a single missing queue table fails the
// whole statement ("relation does not exist") whatever CASE or WHERE guards
// it. The per-queue queries are therefore built and run server-side, and
// only for queues that exist: query_to_xml() is the one built-in function
// that runs a dynamic query from plain SQL (no function of ours has to be
// installed into the real PGMQ schema). It does not need libxml; the single
// value is cut out of the <r>...</r> element with a regular expression.
//
// The statement text never contains configuration: queue names and caps
// travel as parameters ($1, $2, ...) and only their count shapes the text.
// The table identifier is formed server-side from the (already validated)
// name, exactly as PGMQ's format_table_name() does it, lower('q_' || name),
// quoted by format('%I'), and then used as a regclass (an OID, rendered
// schema-qualified and quoted as needed).
//
// Per queue, every part is bounded by the cap:
//  - one pass over at most `cap` rows (`SELECT vt ... LIMIT cap`) gives the
//    depth and, when that pass saw the whole queue (depth < cap) or already
//    found `cap` visible messages, the visible count as well: the usual case
//    costs a single capped scan;
//  - otherwise (a capped queue with messages in flight) the visible count
//    is `WHERE vt <= now() ORDER BY vt LIMIT cap`, which walks PGMQ's index
//    on vt (q_<name>_vt_idx) and stops after cap entries even when nearly
//    every message is invisible (a plain LIMIT would scan the whole table).
//    It is an uncorrelated subquery (an InitPlan), run only when needed;
//  - oldest: `ORDER BY msg_id LIMIT 1` reads one entry of the primary key
//    (msg_id grows with enqueue time), instead of min(enqueued_at) over all.
// Existence is checked in the same statement: listed in pgmq.meta (compared
// case-insensitively: PGMQ maps names to tables with lower()) and the table
// exists (to_regclass needs no privilege and never fails).
constexpr std::string_view depth_sql_head = R"sql(
WITH q AS (
  SELECT req.ord, req.cap,
         EXISTS (SELECT 1 FROM pgmq.meta m
                 WHERE lower(m.queue_name) = lower(req.name)) AS listed,
         to_regclass(format('pgmq.%I', 'q_' || lower(req.name))) AS tbl
  FROM (VALUES )sql";

constexpr std::string_view depth_sql_tail = R"sql() AS req(ord, name, cap)
)
SELECT q.ord, q.listed, q.tbl IS NOT NULL,
       CASE WHEN q.listed AND q.tbl IS NOT NULL THEN substring(query_to_xml(
         format('SELECT s.n || '','' || CASE WHEN s.n < %2$s OR s.v >= %2$s'
                ' THEN s.v ELSE (SELECT count(*) FROM (SELECT 1 FROM %1$s'
                ' WHERE vt <= now() ORDER BY vt LIMIT %2$s) v) END'
                ' || '','' || coalesce((SELECT greatest(0, floor(extract(epoch'
                ' FROM now() - enqueued_at)))::bigint FROM %1$s'
                ' ORDER BY msg_id LIMIT 1), -1) AS r'
                ' FROM (SELECT count(*) AS n, count(*) FILTER (WHERE vt <= now())'
                ' AS v FROM (SELECT vt FROM %1$s LIMIT %2$s) s0) s',
                q.tbl, q.cap),
         false, true, '')::text FROM '<r>([^<]*)</r>') END
FROM q
)sql";

/// The statement for `n` queues: parameters $2i+1 (name) and $2i+2 (cap).
std::string depth_sql(size_t n) {
  std::string sql{depth_sql_head};
  for (size_t i = 0; i < n; ++i) {
    if (i > 0)
      sql += ", ";
    auto name = std::to_string(2 * i + 1);
    auto cap = std::to_string(2 * i + 2);
    sql += "(" + std::to_string(i) + ", $" + name + "::text, $" + cap
           + "::bigint)";
  }
  sql += depth_sql_tail;
  return sql;
}

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc{} || end != s.data() + s.size())
    return std::nullopt;
  return value;
}

/// Parses "depth,visible,oldest_age" into the report; false if malformed.
bool parse_counts(std::string_view s, QueueReport& q) {
  auto c1 = s.find(',');
  auto c2 = c1 == std::string_view::npos ? c1 : s.find(',', c1 + 1);
  if (c2 == std::string_view::npos)
    return false;
  auto depth = parse_int(s.substr(0, c1));
  auto visible = parse_int(s.substr(c1 + 1, c2 - c1 - 1));
  auto age = parse_int(s.substr(c2 + 1));
  if (!depth || !visible || !age)
    return false;
  q.depth = *depth;
  q.capped = *depth >= q.count_cap;
  q.visible_length = *visible;
  q.oldest_message_age_seconds = *age;
  return true;
}

bool is_true(const std::optional<std::string>& v) {
  return v && *v == "t";
}

} // namespace

PgQueueDepthSource::PgQueueDepthSource(PgQueueOptions options)
    : conn_(std::make_unique<pg::Connection>(pg::ConnectionOptions{
        std::move(options.conninfo), options.connect_timeout,
        options.query_timeout, "queue_depth"})) {}

PgQueueDepthSource::~PgQueueDepthSource() = default;

int PgQueueDepthSource::backend_pid() const {
  return conn_->backend_pid();
}

QueueHealth
PgQueueDepthSource::measure(const std::vector<QueueDepthRequest>& queues) {
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  auto start = std::chrono::steady_clock::now();
  QueueHealth out;
  auto finish = [&] {
    out.check_duration
        = duration_cast<microseconds>(std::chrono::steady_clock::now() - start);
    return out;
  };
  auto fail_all = [&](std::string error) {
    out.evaluated = false;
    out.error = error;
    for (auto& q : out.queues) {
      if (!q.error.empty() && !q.missing)
        continue; // rejected before the query: keeps its own reason
      q.depth = 0;
      q.capped = false;
      q.visible_length = 0;
      q.oldest_message_age_seconds = -1;
      q.missing = false;
      q.error = error;
    }
    return finish();
  };
  try {
    out.queues.reserve(queues.size());
    // Index in `queues` of every request that goes into the statement.
    std::vector<size_t> measured;
    std::vector<std::string> params;
    for (size_t i = 0; i < queues.size(); ++i) {
      const auto& req = queues[i];
      auto& rep = out.queues.emplace_back();
      rep.name = req.name;
      rep.count_cap = req.cap;
      if (auto problem = queue_name_problem(req.name)) {
        rep.error = std::move(*problem);
        continue;
      }
      if (req.cap <= 0) {
        rep.error = "queue '" + req.name + "': count cap must be positive";
        continue;
      }
      measured.push_back(i);
      params.push_back(req.name);
      params.push_back(std::to_string(req.cap));
    }
    if (measured.empty()) {
      // Nothing valid to ask: no round trip, and nothing failed as a whole.
      out.evaluated = true;
      return finish();
    }
    auto r = conn_->exec(depth_sql(measured.size()), params);
    if (!r.ok)
      return fail_all(std::move(r.error));
    std::vector<bool> answered(measured.size(), false);
    for (const auto& row : r.rows) {
      if (row.size() != 4 || !row[0])
        return fail_all("unexpected result shape of the queue depth query");
      auto ord = parse_int(*row[0]);
      if (!ord || *ord < 0 || static_cast<size_t>(*ord) >= measured.size())
        return fail_all("unexpected row in the queue depth result");
      auto idx = static_cast<size_t>(*ord);
      answered[idx] = true;
      auto& rep = out.queues[measured[idx]];
      bool listed = is_true(row[1]);
      bool has_table = is_true(row[2]);
      if (!listed || !has_table) {
        rep.missing = true;
        rep.error
            = !listed
                  ? "queue '" + rep.name + "' does not exist (not in pgmq.meta)"
                  : "queue '" + rep.name
                        + "' is in pgmq.meta but its table is missing";
        continue;
      }
      if (!row[3] || !parse_counts(*row[3], rep))
        return fail_all("unexpected counts for queue '" + rep.name
                        + "' in the queue depth result");
    }
    if (!std::all_of(answered.begin(), answered.end(),
                     [](bool x) { return x; }))
      return fail_all("the queue depth result lacks a queue");
    out.evaluated = true;
    return finish();
  } catch (const std::exception& e) {
    conn_->disconnect();
    return fail_all(std::string{"queue depth measurement failed: "} + e.what());
  } catch (...) {
    conn_->disconnect();
    return fail_all("queue depth measurement failed: unknown exception");
  }
}

} // namespace tasker::health

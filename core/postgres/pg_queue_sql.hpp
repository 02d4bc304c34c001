// Internal to core/postgres: the SQL text of the queue depth probe. Pure
// functions, no I/O; PgQueueDepthSource decides when to run what.
//
// Two kinds of statement:
//  - discovery: for a list of queue names (one text[] parameter), whether
//    each is listed in pgmq.meta, the name and kind of its table and which
//    indexes it has. Catalog reads only: no lock on any queue table, and no
//    privilege on it needed.
//  - measurement: per queue one SELECT over its table, several queues joined
//    with UNION ALL into one prepared statement. The table appears in the
//    text as a quoted identifier built from the relname discovery returned
//    (never an OID, never the configured name spliced as text), the cap as
//    an integer literal; no parameters, so the server plans it once and
//    reuses the plan every cycle until the table's schema changes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tasker::health::pg {

/// What discovery learned about one queue name.
struct QueueTable {
  /// A row in pgmq.meta (compared case-insensitively, as PGMQ maps names to
  /// tables with lower()).
  bool listed = false;
  /// The table pgmq.q_<name> as PGMQ names it; empty when there is none.
  std::string relname;
  /// 'r' (plain or unlogged) or 'p' (partitioned); 0 when there is no table.
  char relkind = 0;
  bool unlogged = false;
  /// A valid btree index whose first column is vt, without predicate: the
  /// visible count can walk it in order and stop at the cap. PGMQ's
  /// create/create_unlogged make one; create_partitioned does not.
  bool vt_index = false;
  /// Column of an index that finds the oldest message in one step
  /// ("enqueued_at" or "msg_id"); empty when neither is indexed, then the
  /// oldest age is not measured (it would need a scan).
  std::string age_column;

  bool exists() const noexcept { return !relname.empty(); }
  friend bool operator==(const QueueTable&, const QueueTable&) = default;
};

/// A whole decimal number (a result column), or nullopt.
std::optional<int64_t> parse_int(std::string_view s);

/// `name` as a double-quoted SQL identifier (embedded quotes doubled).
std::string quote_ident(std::string_view name);

/// Discovery for the names in $1 (text[]); one row per name, in no
/// particular order: ord (1-based position in $1), listed, relname,
/// relkind, relpersistence, vt_index, age_column.
std::string discovery_sql();

/// Parses one discovery row; nullopt if malformed. `ord` gets the 1-based
/// position of the name in the parameter array.
std::optional<QueueTable>
parse_discovery_row(const std::vector<std::optional<std::string>>& row,
                    int64_t& ord);

/// A text[] literal (for the discovery parameter) holding `names`.
std::string text_array(const std::vector<std::string>& names);

/// One queue's measurement: a single row (key, depth, visible, seen_visible,
/// age), every part bounded by `cap`:
///  - depth and visible messages in one pass over at most `cap` entries:
///    with an index on vt, a walk of it in vt order, which puts the visible
///    messages first and so makes both counts exact up to `cap`; without
///    one, the first `cap` rows in any order, and visible is NULL (not
///    measured: it would take a scan) unless that pass saw the whole queue
///    or `cap` visible messages;
///  - the oldest message's age through `age_column`'s index (NULL when the
///    queue is empty or there is no such index).
std::string queue_select(const QueueTable& table, int64_t cap, int64_t key);

/// Several queue_select()s joined with UNION ALL: one statement.
std::string union_all(const std::vector<std::string>& selects);

} // namespace tasker::health::pg

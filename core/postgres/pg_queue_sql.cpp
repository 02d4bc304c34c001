#include "core/postgres/pg_queue_sql.hpp"

#include <charconv>

namespace tasker::health::pg {

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc{} || end != s.data() + s.size())
    return std::nullopt;
  return value;
}

std::string quote_ident(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 2);
  out += '"';
  for (char c : name) {
    if (c == '"')
      out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string text_array(const std::vector<std::string>& names) {
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0)
      out += ',';
    out += '"';
    for (char c : names[i]) {
      if (c == '"' || c == '\\')
        out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

// The table name is formed exactly as PGMQ's format_table_name() forms it,
// lower('q_' || name), by the server (so non-ASCII letters fold as the
// database folds them), then resolved with to_regclass(), which never fails
// and truncates an over-long name as CREATE TABLE did. Index columns are
// compared by name; an index with an expression or a predicate does not
// count. No ORDER BY, DISTINCT or LIMIT: the session runs with enable_sort
// off, and the rows are matched to the names by `ord`.
namespace {

/// SQL true when table `c` has a valid btree index whose first column is
/// `column`.
std::string has_index_on(std::string_view column) {
  return "EXISTS (SELECT 1 FROM pg_catalog.pg_index i"
         " JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid"
         " JOIN pg_catalog.pg_am am ON am.oid = ic.relam"
         " JOIN pg_catalog.pg_attribute a"
         " ON a.attrelid = c.oid AND a.attnum = i.indkey[0]"
         " WHERE i.indrelid = c.oid AND am.amname = 'btree' AND i.indisvalid"
         " AND i.indpred IS NULL AND a.attname = '"
         + std::string{column} + "')";
}

} // namespace

std::string discovery_sql() {
  return "SELECT r.ord, m.lname IS NOT NULL, c.relname::text, "
         "c.relkind::text, c.relpersistence::text, c.oid IS NOT NULL AND "
         + has_index_on("vt") + ", CASE WHEN " + has_index_on("enqueued_at")
         + " THEN 'enqueued_at' WHEN " + has_index_on("msg_id")
         + " THEN 'msg_id' END"
           " FROM unnest($1::text[]) WITH ORDINALITY AS r(name, ord)"
           " LEFT JOIN (SELECT lower(queue_name) AS lname FROM pgmq.meta"
           " GROUP BY 1) m ON m.lname = lower(r.name)"
           " LEFT JOIN pg_catalog.pg_class c"
           " ON c.oid = to_regclass(format('pgmq.%I', lower('q_' || r.name)))";
}

std::optional<QueueTable>
parse_discovery_row(const std::vector<std::optional<std::string>>& row,
                    int64_t& ord) {
  if (row.size() != 7 || !row[0] || !row[1] || !row[5])
    return std::nullopt;
  auto o = parse_int(*row[0]);
  if (!o)
    return std::nullopt;
  ord = *o;
  QueueTable t;
  t.listed = *row[1] == "t";
  if (row[2]) {
    if (!row[3] || row[3]->size() != 1 || !row[4] || row[4]->size() != 1)
      return std::nullopt;
    t.relname = *row[2];
    t.relkind = (*row[3])[0];
    t.unlogged = *row[4] == "u";
    t.vt_index = *row[5] == "t";
    if (row[6])
      t.age_column = *row[6];
  }
  return t;
}

std::string queue_select(const QueueTable& table, int64_t cap, int64_t key) {
  auto tbl = "pgmq." + quote_ident(table.relname);
  auto c = std::to_string(cap);
  // With an index on vt the pass walks it in vt order: every visible
  // message (vt <= now) comes before every invisible one, so the first
  // `cap` entries hold min(visible, cap) visible ones and the visible count
  // is exact up to the cap as well. The walk reads no more than `cap`
  // entries, and the heap only for pages the visibility map does not mark
  // all-visible (in a quiet queue, none).
  // Without that index, the first `cap` rows in any order give the depth;
  // the visible count is then exact only if the pass saw the whole queue or
  // `cap` visible messages, and NULL (not measured) otherwise.
  std::string age = "NULL::bigint";
  if (table.age_column == "enqueued_at" || table.age_column == "msg_id")
    age = "(SELECT greatest(0, floor(extract(epoch FROM now() - "
          "enqueued_at)))::bigint FROM "
          + tbl + " ORDER BY " + table.age_column + " LIMIT 1)";
  auto k = std::to_string(key) + "::bigint AS k";
  if (table.vt_index)
    return "SELECT " + k
           + ", count(*) AS n, count(*) FILTER (WHERE vt <= now()) AS v, "
             "count(*) FILTER (WHERE vt <= now()) AS seen, "
           + age + " AS age FROM (SELECT vt FROM " + tbl + " ORDER BY vt LIMIT "
           + c + ") s0";
  return "SELECT " + k + ", s.n, CASE WHEN s.n < " + c + " OR s.v >= " + c
         + " THEN s.v END AS v, s.v AS seen, " + age
         + " AS age FROM (SELECT count(*) AS n, count(*) FILTER (WHERE vt <= "
           "now()) AS v FROM (SELECT vt FROM "
         + tbl + " LIMIT " + c + ") s0) s";
}

std::string union_all(const std::vector<std::string>& selects) {
  std::string out;
  for (size_t i = 0; i < selects.size(); ++i) {
    if (i > 0)
      out += "\nUNION ALL\n";
    out += selects[i];
  }
  return out;
}

} // namespace tasker::health::pg

// scripts/sql/pgmq_compat.sql behaves like the PGMQ extension (1.5 shapes)
// for everything the project and its tests use.
#define CAF_SUITE postgres.pgmq_schema
#include "caf/test/unit_test.hpp"

#include "tests/support/pg_test_env.hpp"

#include <string>
#include <vector>

namespace th = tasker::health::test;

namespace {

struct fixture {
  th::ScratchDatabase db;

  fixture() { db.load_pgmq_compat(); }

  /// "name type" of each column of a table or composite type, in order.
  std::string columns_of(const std::string& relation) {
    return db.scalar<std::string>(
        "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), "
        "', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = '"
        + relation + "'::regclass AND attnum > 0 AND NOT attisdropped");
  }

  bool throws(const std::string& sql) {
    try {
      db.exec(sql);
      return false;
    } catch (const pqxx::sql_error&) {
      return true;
    }
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(pgmq_schema_tests, fixture)

CAF_TEST(the schema loads twice and has PGMQ shapes) {
  db.load_pgmq_compat(); // idempotent
  CAF_CHECK_EQUAL(columns_of("pgmq.meta"),
                  "queue_name character varying, is_partitioned boolean, "
                  "is_unlogged boolean, created_at timestamp with time zone");
  CAF_CHECK_EQUAL(columns_of("pgmq.message_record"),
                  "msg_id bigint, read_ct integer, enqueued_at timestamp with "
                  "time zone, vt timestamp with time zone, message jsonb");
  CAF_CHECK_EQUAL(columns_of("pgmq.metrics_result"),
                  "queue_name text, queue_length bigint, newest_msg_age_sec "
                  "integer, oldest_msg_age_sec integer, total_messages bigint, "
                  "scrape_time timestamp with time zone, queue_visible_length "
                  "bigint");
  db.exec("SELECT pgmq.create('shape')");
  CAF_CHECK_EQUAL(columns_of("pgmq.q_shape"),
                  "msg_id bigint, read_ct integer, enqueued_at timestamp with "
                  "time zone, vt timestamp with time zone, message jsonb");
  CAF_CHECK_EQUAL(columns_of("pgmq.a_shape"),
                  "msg_id bigint, read_ct integer, enqueued_at timestamp with "
                  "time zone, archived_at timestamp with time zone, vt "
                  "timestamp with time zone, message jsonb");
  // msg_id is the primary key and there is an index on vt, as in PGMQ.
  CAF_CHECK_EQUAL(db.scalar<std::string>(
                      "SELECT string_agg(indexdef, ' | ' ORDER BY indexname) "
                      "FROM pg_indexes WHERE schemaname = 'pgmq' AND tablename "
                      "= 'q_shape'"),
                  "CREATE UNIQUE INDEX q_shape_pkey ON pgmq.q_shape USING "
                  "btree (msg_id) | CREATE INDEX q_shape_vt_idx ON "
                  "pgmq.q_shape USING btree (vt)");
  db.load_pgmq_compat(); // again, with a queue in place
  CAF_CHECK_EQUAL(db.scalar<int>("SELECT count(*) FROM pgmq.meta"), 1);
}

CAF_TEST(create registers the queue once and lower - cases table names) {
  db.exec("SELECT pgmq.create('orders')");
  db.exec("SELECT pgmq.create('orders')"); // idempotent
  CAF_CHECK_EQUAL(db.scalar<std::string>(
                      "SELECT queue_name || ' ' || is_partitioned || ' ' || "
                      "is_unlogged FROM pgmq.meta"),
                  "orders false false");
  CAF_CHECK_EQUAL(db.scalar<int>("SELECT count(*) FROM pgmq.list_queues()"), 1);
  db.exec("SELECT pgmq.create('Billing_EU')");
  CAF_CHECK_EQUAL(db.scalar<std::string>(
                      "SELECT pgmq.format_table_name('Billing_EU', 'q')"),
                  "q_billing_eu");
  CAF_CHECK_EQUAL(db.scalar<int>("SELECT count(*) FROM pgmq.meta WHERE "
                                 "queue_name = 'Billing_EU'"),
                  1);
  CAF_CHECK(db.scalar<bool>("SELECT to_regclass('pgmq.q_billing_eu') IS NOT "
                            "NULL AND to_regclass('pgmq.a_billing_eu') IS NOT "
                            "NULL"));
  // PGMQ's limits: 47 characters, no quote, semicolon, dollar or "--".
  CAF_CHECK(!throws("SELECT pgmq.create('" + std::string(47, 'n') + "')"));
  CAF_CHECK(throws("SELECT pgmq.create('" + std::string(48, 'n') + "')"));
  CAF_CHECK(throws("SELECT pgmq.create('a;b')"));
  CAF_CHECK(throws("SELECT pgmq.format_table_name('x--y', 'q')"));
}

CAF_TEST(send and send_batch enqueue visible or delayed messages) {
  db.exec("SELECT pgmq.create('s')");
  CAF_CHECK_EQUAL(db.scalar<long>("SELECT * FROM pgmq.send('s', "
                                  "'{\"n\": 1}')"),
                  1);
  CAF_CHECK_EQUAL(db.scalar<long>("SELECT * FROM pgmq.send('s', "
                                  "'{\"n\": 2}', 60)"),
                  2);
  CAF_CHECK_EQUAL(db.scalar<long>("SELECT * FROM pgmq.send('s', "
                                  "'{\"n\": 3}', now() + interval '1 hour')"),
                  3);
  auto ids = db.exec("SELECT * FROM pgmq.send_batch('s', ARRAY['{\"b\": 1}', "
                     "'{\"b\": 2}', '{\"b\": 3}']::jsonb[])");
  CAF_REQUIRE_EQUAL(ids.size(), 3u);
  CAF_CHECK_EQUAL(ids[0][0].as<long>(), 4);
  CAF_CHECK_EQUAL(ids[2][0].as<long>(), 6);
  CAF_CHECK_EQUAL(db.scalar<std::string>(
                      "SELECT string_agg(message->>'b', ',' ORDER BY msg_id) "
                      "FROM pgmq.q_s WHERE msg_id >= 4"),
                  "1,2,3");
  db.exec("SELECT pgmq.send_batch('s', ARRAY['{}']::jsonb[], 30)");
  // Visible now: message 1 and the first batch; delayed: 2, 3 and the last.
  CAF_CHECK_EQUAL(db.scalar<std::string>("SELECT string_agg(msg_id::text, "
                                         "',' ORDER BY msg_id) FROM pgmq.q_s "
                                         "WHERE vt <= clock_timestamp()"),
                  "1,4,5,6");
  CAF_CHECK(db.scalar<bool>("SELECT vt > now() + interval '59 seconds' FROM "
                            "pgmq.q_s WHERE msg_id = 2"));
  CAF_CHECK(db.scalar<bool>("SELECT bool_and(read_ct = 0) FROM pgmq.q_s"));
}

CAF_TEST(read hides messages for vt seconds and counts reads) {
  db.exec("SELECT pgmq.create('r')");
  db.exec("SELECT pgmq.send_batch('r', array_agg(jsonb_build_object('i', g)))"
          " FROM generate_series(1, 5) g");
  auto first = db.exec("SELECT msg_id, read_ct, vt > clock_timestamp() + "
                       "interval '29 seconds', message->>'i' FROM "
                       "pgmq.read('r', 30, 2)");
  CAF_REQUIRE_EQUAL(first.size(), 2u);
  CAF_CHECK_EQUAL(first[0][0].as<long>(), 1); // oldest first
  CAF_CHECK_EQUAL(first[1][0].as<long>(), 2);
  CAF_CHECK_EQUAL(first[0][1].as<int>(), 1);
  CAF_CHECK(first[0][2].as<bool>());
  CAF_CHECK_EQUAL(first[1][3].as<std::string>(), "2");
  // The next read skips the invisible ones.
  auto second = db.exec("SELECT msg_id FROM pgmq.read('r', 30, 10)");
  CAF_REQUIRE_EQUAL(second.size(), 3u);
  CAF_CHECK_EQUAL(second[0][0].as<long>(), 3);
  CAF_CHECK_EQUAL(db.exec("SELECT * FROM pgmq.read('r', 30, 10)").size(), 0u);
  // vt = 0 makes a message visible again at once; read_ct keeps counting.
  db.exec("SELECT pgmq.create('r0')");
  db.exec("SELECT pgmq.send('r0', '{}')");
  db.exec("SELECT * FROM pgmq.read('r0', 0, 1)");
  CAF_CHECK_EQUAL(db.scalar<int>("SELECT read_ct FROM pgmq.read('r0', 0, 1)"),
                  2);
  // The conditional filter of PGMQ 1.5.
  db.exec("SELECT pgmq.create('rc')");
  db.exec("SELECT pgmq.send('rc', '{\"k\": \"a\"}'), pgmq.send('rc', "
          "'{\"k\": \"b\"}')");
  CAF_CHECK_EQUAL(db.scalar<std::string>("SELECT message->>'k' FROM "
                                         "pgmq.read('rc', 30, 5, "
                                         "'{\"k\": \"b\"}')"),
                  "b");
}

CAF_TEST(delete archive pop and purge remove messages) {
  db.exec("SELECT pgmq.create('d')");
  db.exec("SELECT pgmq.send_batch('d', array_agg(jsonb_build_object('i', g)))"
          " FROM generate_series(1, 6) g");
  CAF_CHECK(db.scalar<bool>("SELECT pgmq.delete('d', 1)"));
  CAF_CHECK(!db.scalar<bool>("SELECT pgmq.delete('d', 1)"));
  CAF_CHECK_EQUAL(db.exec("SELECT * FROM pgmq.delete('d', ARRAY[2, 3, "
                          "99]::bigint[])")
                      .size(),
                  2u);
  CAF_CHECK(db.scalar<bool>("SELECT pgmq.archive('d', 4)"));
  CAF_CHECK_EQUAL(db.scalar<int>("SELECT count(*) FROM pgmq.a_d WHERE msg_id "
                                 "= 4"),
                  1);
  CAF_CHECK_EQUAL(db.scalar<long>("SELECT msg_id FROM pgmq.pop('d')"), 5);
  CAF_CHECK_EQUAL(db.scalar<long>("SELECT pgmq.purge_queue('d')"), 1);
  CAF_CHECK_EQUAL(db.scalar<int>("SELECT count(*) FROM pgmq.q_d"), 0);
}

CAF_TEST(metrics_all reports every queue with PGMQ columns and counts) {
  db.exec("SELECT pgmq.create('m1')");
  db.exec("SELECT pgmq.create('m2')");
  db.exec("SELECT pgmq.send_batch('m1', array_agg(jsonb_build_object('i', g)))"
          " FROM generate_series(1, 10) g");
  db.exec("SELECT * FROM pgmq.read('m1', 30, 4)");
  db.exec("SELECT pgmq.delete('m1', 10)");
  db.exec("UPDATE pgmq.q_m1 SET enqueued_at = now() - interval '100 seconds' "
          "WHERE msg_id = 1");
  auto r = db.exec("SELECT * FROM pgmq.metrics_all() ORDER BY queue_name");
  std::vector<std::string> names;
  for (pqxx::row::size_type i = 0; i < r.columns(); ++i)
    names.emplace_back(r.column_name(i));
  CAF_CHECK_EQUAL(names, (std::vector<std::string>{
                             "queue_name", "queue_length", "newest_msg_age_sec",
                             "oldest_msg_age_sec", "total_messages",
                             "scrape_time", "queue_visible_length"}));
  CAF_REQUIRE_EQUAL(r.size(), 2u);
  const auto& m1 = r[0];
  CAF_CHECK_EQUAL(m1["queue_name"].as<std::string>(), "m1");
  CAF_CHECK_EQUAL(m1["queue_length"].as<long>(), 9);
  CAF_CHECK_EQUAL(m1["queue_visible_length"].as<long>(), 5);
  CAF_CHECK_EQUAL(m1["total_messages"].as<long>(), 10);
  CAF_CHECK_GREATER_OR_EQUAL(m1["oldest_msg_age_sec"].as<int>(), 100);
  CAF_CHECK_LESS(m1["newest_msg_age_sec"].as<int>(), 60);
  const auto& m2 = r[1];
  CAF_CHECK_EQUAL(m2["queue_name"].as<std::string>(), "m2");
  CAF_CHECK_EQUAL(m2["queue_length"].as<long>(), 0);
  CAF_CHECK_EQUAL(m2["queue_visible_length"].as<long>(), 0);
  CAF_CHECK_EQUAL(m2["total_messages"].as<long>(), 0);
  CAF_CHECK(m2["oldest_msg_age_sec"].is_null());
  CAF_CHECK(!m2["scrape_time"].is_null());
}

CAF_TEST(drop_queue removes the tables and the meta row) {
  db.exec("SELECT pgmq.create('gone')");
  db.exec("SELECT pgmq.send('gone', '{}')");
  CAF_CHECK(db.scalar<bool>("SELECT pgmq.drop_queue('gone')"));
  CAF_CHECK(db.scalar<bool>("SELECT to_regclass('pgmq.q_gone') IS NULL AND "
                            "to_regclass('pgmq.a_gone') IS NULL"));
  CAF_CHECK_EQUAL(db.scalar<int>("SELECT count(*) FROM pgmq.meta"), 0);
  CAF_CHECK(!db.scalar<bool>("SELECT pgmq.drop_queue('gone')"));
  // It can be created again, empty.
  db.exec("SELECT pgmq.create('gone')");
  CAF_CHECK_EQUAL(db.scalar<int>("SELECT count(*) FROM pgmq.q_gone"), 0);
}

CAF_TEST(create_unlogged makes an unlogged queue table) {
  db.exec("SELECT pgmq.create_unlogged('fast')");
  CAF_CHECK_EQUAL(db.scalar<std::string>("SELECT relpersistence::text FROM "
                                         "pg_class WHERE oid = "
                                         "'pgmq.q_fast'::regclass"),
                  "u");
  // The archive stays logged, as in PGMQ.
  CAF_CHECK_EQUAL(db.scalar<std::string>("SELECT relpersistence::text FROM "
                                         "pg_class WHERE oid = "
                                         "'pgmq.a_fast'::regclass"),
                  "p");
  CAF_CHECK_EQUAL(
      db.scalar<std::string>("SELECT is_partitioned || ' ' || is_unlogged FROM "
                             "pgmq.meta WHERE queue_name = 'fast'"),
      "false true");
  CAF_CHECK_EQUAL(columns_of("pgmq.q_fast"),
                  "msg_id bigint, read_ct integer, enqueued_at timestamp with "
                  "time zone, vt timestamp with time zone, message jsonb");
  CAF_CHECK(db.scalar<bool>("SELECT to_regclass('pgmq.q_fast_vt_idx') IS NOT "
                            "NULL"));
  db.exec("SELECT pgmq.send('fast', '{}'), pgmq.send('fast', '{}')");
  CAF_CHECK_EQUAL(db.scalar<long>("SELECT queue_length FROM "
                                  "pgmq.metrics('fast')"),
                  2);
}

CAF_TEST(create_partitioned makes what pgmq makes with pg_partman) {
  // Without pg_partman it refuses, as PGMQ does.
  CAF_CHECK(throws("SELECT pgmq.create_partitioned('p')"));
  db.exec("CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA "
          "partman");
  db.exec("SELECT pgmq.create_partitioned('Part_Q')");
  // Partitioned by msg_id (10,000 messages a partition), no primary key, an
  // index on msg_id and none on vt.
  CAF_CHECK_EQUAL(db.scalar<std::string>("SELECT pg_get_partkeydef("
                                         "'pgmq.q_part_q'::regclass) || ' ' "
                                         "|| pg_get_partkeydef("
                                         "'pgmq.a_part_q'::regclass)"),
                  "RANGE (msg_id) RANGE (msg_id)");
  CAF_CHECK_EQUAL(columns_of("pgmq.q_part_q"),
                  "msg_id bigint, read_ct integer, enqueued_at timestamp with "
                  "time zone, vt timestamp with time zone, message jsonb");
  CAF_CHECK_EQUAL(
      db.scalar<std::string>(
          "SELECT string_agg(pg_get_indexdef(indexrelid), ' | ' "
          "ORDER BY indexrelid::regclass::text) FROM pg_index "
          "WHERE indrelid IN ('pgmq.q_part_q'::regclass, "
          "'pgmq.a_part_q'::regclass)"),
      "CREATE INDEX \"archived_at_idx_Part_Q\" ON ONLY pgmq.a_part_q "
      "USING btree (archived_at) | CREATE INDEX q_part_q_part_idx "
      "ON ONLY pgmq.q_part_q USING btree (msg_id)");
  CAF_CHECK_EQUAL(db.scalar<int>("SELECT count(*) FROM pg_constraint WHERE "
                                 "conrelid = 'pgmq.q_part_q'::regclass"),
                  0);
  CAF_CHECK_EQUAL(db.scalar<std::string>(
                      "SELECT string_agg(parent_table || ' ' || control || ' "
                      "' || partition_interval || ' ' || retention || ' ' || "
                      "retention_keep_table || ' ' || retention_keep_index, "
                      "' | ' ORDER BY parent_table) FROM partman.part_config"),
                  "pgmq.a_part_q msg_id 10000 100000 false true | "
                  "pgmq.q_part_q msg_id 10000 100000 false true");
  CAF_CHECK_EQUAL(
      db.scalar<std::string>("SELECT is_partitioned || ' ' || is_unlogged FROM "
                             "pgmq.meta WHERE queue_name = 'Part_Q'"),
      "true false");
  CAF_CHECK_GREATER(db.scalar<int>("SELECT count(*) FROM pg_inherits WHERE "
                                   "inhparent = 'pgmq.q_part_q'::regclass"),
                    1);
  // Messages go in and out as with any queue.
  db.exec("SELECT pgmq.send_batch('Part_Q', array_agg(jsonb_build_object('i', "
          "g))) FROM generate_series(1, 5) g");
  CAF_CHECK_EQUAL(db.exec("SELECT * FROM pgmq.read('Part_Q', 30, 2)").size(),
                  2u);
  CAF_CHECK_EQUAL(db.scalar<std::string>(
                      "SELECT queue_length || ' ' || queue_visible_length "
                      "FROM pgmq.metrics('Part_Q')"),
                  "5 3");
  // A time interval partitions by enqueued_at (the archive by archived_at).
  db.exec("SELECT pgmq.create_partitioned('daily', '1 day', '7 days')");
  CAF_CHECK_EQUAL(db.scalar<std::string>("SELECT pg_get_partkeydef("
                                         "'pgmq.q_daily'::regclass) || ' ' "
                                         "|| pg_get_partkeydef("
                                         "'pgmq.a_daily'::regclass)"),
                  "RANGE (enqueued_at) RANGE (archived_at)");
  // drop_queue also forgets the pg_partman configuration.
  CAF_CHECK(db.scalar<bool>("SELECT pgmq.drop_queue('Part_Q')"));
  CAF_CHECK(db.scalar<bool>("SELECT to_regclass('pgmq.q_part_q') IS NULL"));
  CAF_CHECK_EQUAL(db.scalar<int>("SELECT count(*) FROM partman.part_config "
                                 "WHERE parent_table LIKE '%part_q'"),
                  0);
}

CAF_TEST_FIXTURE_SCOPE_END()

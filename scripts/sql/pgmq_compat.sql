-- pgmq_compat.sql: a PGMQ-compatible schema for tests, benchmarks and the demo.
--
-- Production uses the PGMQ extension (https://github.com/pgmq/pgmq), which is
-- not packaged in Debian. This file reproduces the part of it that
-- tasker-health and its tests touch, with PGMQ 1.5's object names, column
-- types, signatures and semantics:
--   * schema pgmq, table pgmq.meta (one row per queue);
--   * per queue: pgmq.q_<name> (msg_id bigint identity primary key, read_ct,
--     enqueued_at, vt, message jsonb) with an index on vt, and the archive
--     pgmq.a_<name>; table names are lower(prefix || '_' || name), exactly as
--     pgmq.format_table_name() makes them;
--   * create, create_unlogged, create_partitioned (needs the pg_partman
--     extension, Debian package postgresql-15-partman, installed in the
--     database: CREATE EXTENSION pg_partman), send, send_batch, read, delete,
--     archive, pop, set_vt, metrics, metrics_all, list_queues, purge_queue,
--     drop_queue.
-- Not reproduced: read_with_poll, the `headers` column of newer PGMQ
-- releases, extension membership bookkeeping.
--
-- Idempotent: load it any number of times (psql -f, or one simple-query
-- exec); it never drops data.

CREATE SCHEMA IF NOT EXISTS pgmq;

CREATE TABLE IF NOT EXISTS pgmq.meta (
    queue_name VARCHAR UNIQUE NOT NULL,
    is_partitioned BOOLEAN NOT NULL,
    is_unlogged BOOLEAN NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL
);

-- As PGMQ does: monitoring roles may read every queue.
GRANT USAGE ON SCHEMA pgmq TO pg_monitor;
GRANT SELECT ON ALL TABLES IN SCHEMA pgmq TO pg_monitor;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA pgmq TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON TABLES TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON SEQUENCES TO pg_monitor;

-- CREATE TYPE has no IF NOT EXISTS.
DO $$
BEGIN
  IF to_regtype('pgmq.message_record') IS NULL THEN
    CREATE TYPE pgmq.message_record AS (
        msg_id BIGINT,
        read_ct INTEGER,
        enqueued_at TIMESTAMP WITH TIME ZONE,
        vt TIMESTAMP WITH TIME ZONE,
        message JSONB
    );
  END IF;
  IF to_regtype('pgmq.queue_record') IS NULL THEN
    CREATE TYPE pgmq.queue_record AS (
        queue_name VARCHAR,
        is_partitioned BOOLEAN,
        is_unlogged BOOLEAN,
        created_at TIMESTAMP WITH TIME ZONE
    );
  END IF;
  IF to_regtype('pgmq.metrics_result') IS NULL THEN
    CREATE TYPE pgmq.metrics_result AS (
        queue_name text,
        queue_length bigint,
        newest_msg_age_sec int,
        oldest_msg_age_sec int,
        total_messages bigint,
        scrape_time timestamp with time zone,
        queue_visible_length bigint
    );
  END IF;
END
$$;

------------------------------------------------------------------------------
-- helpers
------------------------------------------------------------------------------

-- Table name of a queue: lower-cased, as PGMQ does (so 'MyQueue' and
-- 'myqueue' share pgmq.q_myqueue). Rejects the characters PGMQ rejects.
CREATE OR REPLACE FUNCTION pgmq.format_table_name(queue_name text, prefix text)
RETURNS TEXT AS $$
BEGIN
    IF queue_name ~ '\$|;|--|'''
    THEN
        RAISE EXCEPTION 'queue name contains invalid characters: $, ;, --, or \''';
    END IF;
    RETURN lower(prefix || '_' || queue_name);
END;
$$ LANGUAGE plpgsql;

-- 47 characters at most, so that every derived identifier fits PostgreSQL's
-- 63-byte limit.
CREATE OR REPLACE FUNCTION pgmq.validate_queue_name(queue_name TEXT)
RETURNS void AS $$
BEGIN
  IF length(queue_name) > 47 THEN
    RAISE EXCEPTION 'queue name is too long, maximum length is 47 characters';
  END IF;
END;
$$ LANGUAGE plpgsql;

-- Serializes concurrent create/drop of the same queue until commit.
CREATE OR REPLACE FUNCTION pgmq.acquire_queue_lock(queue_name TEXT)
RETURNS void AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('pgmq.queue_' || queue_name));
END;
$$ LANGUAGE plpgsql;

------------------------------------------------------------------------------
-- queues
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq.create_non_partitioned(queue_name TEXT)
RETURNS void AS $$
DECLARE
  qtable TEXT := pgmq.format_table_name(queue_name, 'q');
  atable TEXT := pgmq.format_table_name(queue_name, 'a');
BEGIN
  PERFORM pgmq.validate_queue_name(queue_name);
  PERFORM pgmq.acquire_queue_lock(queue_name);

  EXECUTE FORMAT(
    $QUERY$
    CREATE TABLE IF NOT EXISTS pgmq.%I (
        msg_id BIGINT PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
        read_ct INT DEFAULT 0 NOT NULL,
        enqueued_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        vt TIMESTAMP WITH TIME ZONE NOT NULL,
        message JSONB
    )
    $QUERY$,
    qtable
  );

  EXECUTE FORMAT(
    $QUERY$
    CREATE TABLE IF NOT EXISTS pgmq.%I (
      msg_id BIGINT PRIMARY KEY,
      read_ct INT DEFAULT 0 NOT NULL,
      enqueued_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
      archived_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
      vt TIMESTAMP WITH TIME ZONE NOT NULL,
      message JSONB
    )
    $QUERY$,
    atable
  );

  EXECUTE FORMAT(
    $QUERY$
    CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt ASC)
    $QUERY$,
    qtable || '_vt_idx', qtable
  );

  EXECUTE FORMAT(
    $QUERY$
    CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)
    $QUERY$,
    'archived_at_idx_' || queue_name, atable
  );

  EXECUTE FORMAT(
    $QUERY$
    INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
    VALUES (%L, false, false)
    ON CONFLICT
    DO NOTHING
    $QUERY$,
    queue_name
  );
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION pgmq."create"(queue_name TEXT)
RETURNS void AS $$
BEGIN
    PERFORM pgmq.create_non_partitioned(queue_name);
END;
$$ LANGUAGE plpgsql;

-- An unlogged queue: as create(), but the queue table skips the WAL (fast,
-- and emptied by a crash); the archive stays logged.
CREATE OR REPLACE FUNCTION pgmq.create_unlogged(queue_name TEXT)
RETURNS void AS $$
DECLARE
  qtable TEXT := pgmq.format_table_name(queue_name, 'q');
BEGIN
  PERFORM pgmq.validate_queue_name(queue_name);
  PERFORM pgmq.acquire_queue_lock(queue_name);
  EXECUTE format(
    'CREATE UNLOGGED TABLE IF NOT EXISTS pgmq.%I ('
    ' msg_id BIGINT PRIMARY KEY GENERATED ALWAYS AS IDENTITY,'
    ' read_ct INT DEFAULT 0 NOT NULL,'
    ' enqueued_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,'
    ' vt TIMESTAMP WITH TIME ZONE NOT NULL,'
    ' message JSONB)', qtable);
  -- create_non_partitioned() adds what is missing (archive, indexes) and
  -- registers the queue; the meta row then says "unlogged".
  PERFORM pgmq.create_non_partitioned(queue_name);
  UPDATE pgmq.meta SET is_unlogged = true
   WHERE meta.queue_name = create_unlogged.queue_name;
END;
$$ LANGUAGE plpgsql;

-- The schema pg_partman lives in, or NULL when it is not installed.
CREATE OR REPLACE FUNCTION pgmq._partman_schema()
RETURNS TEXT AS $$
  SELECT extnamespace::regnamespace::text FROM pg_extension
   WHERE extname = 'pg_partman';
$$ LANGUAGE sql;

-- Hands a partitioned table to pg_partman (4.x: type 'native'; 5.x:
-- 'range') and sets the retention of old partitions.
CREATE OR REPLACE FUNCTION pgmq._partman_parent(
    parent TEXT, control TEXT, part_interval TEXT, retention TEXT)
RETURNS void AS $$
DECLARE
  partman TEXT := pgmq._partman_schema();
  kind TEXT;
BEGIN
  SELECT CASE WHEN split_part(extversion, '.', 1)::int >= 5
              THEN 'range' ELSE 'native' END
    INTO kind FROM pg_extension WHERE extname = 'pg_partman';
  EXECUTE format('SELECT %I.create_parent(p_parent_table := %L, '
                 'p_control := %L, p_interval := %L, p_type := %L)',
                 partman, parent, control, part_interval, kind);
  EXECUTE format('UPDATE %I.part_config SET retention = %L, '
                 'retention_keep_table = false, retention_keep_index = true, '
                 'automatic_maintenance = ''on'' WHERE parent_table = %L',
                 partman, retention, parent);
END;
$$ LANGUAGE plpgsql;

-- A partitioned queue, shaped as PGMQ's create_partitioned() shapes it: the
-- queue and archive tables are partitioned by range and managed by
-- pg_partman; a whole-number interval partitions by msg_id (every
-- `partition_interval` messages), anything else (e.g. '1 day') by
-- enqueued_at (the archive then by archived_at). The partition column gets
-- an index; there is NO index on vt and no primary key, as in PGMQ.
CREATE OR REPLACE FUNCTION pgmq.create_partitioned(
    queue_name TEXT,
    partition_interval TEXT DEFAULT '10000',
    retention_interval TEXT DEFAULT '100000')
RETURNS void AS $$
DECLARE
  qtable TEXT := pgmq.format_table_name(queue_name, 'q');
  atable TEXT := pgmq.format_table_name(queue_name, 'a');
  by_id BOOLEAN := partition_interval ~ '^\s*[-+]?[0-9]+\s*$';
  qcol TEXT;
  acol TEXT;
BEGIN
  PERFORM pgmq.validate_queue_name(queue_name);
  PERFORM pgmq.acquire_queue_lock(queue_name);
  IF pgmq._partman_schema() IS NULL THEN
    RAISE EXCEPTION 'pg_partman is required for partitioned queues';
  END IF;
  qcol := CASE WHEN by_id THEN 'msg_id' ELSE 'enqueued_at' END;
  acol := CASE WHEN by_id THEN 'msg_id' ELSE 'archived_at' END;
  IF to_regclass(format('pgmq.%I', qtable)) IS NULL THEN
    EXECUTE format(
      'CREATE TABLE pgmq.%I ('
      ' msg_id BIGINT GENERATED ALWAYS AS IDENTITY,'
      ' read_ct INT DEFAULT 0 NOT NULL,'
      ' enqueued_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,'
      ' vt TIMESTAMP WITH TIME ZONE NOT NULL,'
      ' message JSONB) PARTITION BY RANGE (%I)', qtable, qcol);
    PERFORM pgmq._partman_parent('pgmq.' || qtable, qcol, partition_interval,
                                 retention_interval);
  END IF;
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (%I)',
                 qtable || '_part_idx', qtable, qcol);
  INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
  VALUES (queue_name, true, false) ON CONFLICT DO NOTHING;
  IF to_regclass(format('pgmq.%I', atable)) IS NULL THEN
    EXECUTE format(
      'CREATE TABLE pgmq.%I ('
      ' msg_id BIGINT NOT NULL,'
      ' read_ct INT DEFAULT 0 NOT NULL,'
      ' enqueued_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,'
      ' archived_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,'
      ' vt TIMESTAMP WITH TIME ZONE NOT NULL,'
      ' message JSONB) PARTITION BY RANGE (%I)', atable, acol);
    PERFORM pgmq._partman_parent('pgmq.' || atable, acol, partition_interval,
                                 retention_interval);
  END IF;
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)',
                 'archived_at_idx_' || queue_name, atable);
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name TEXT)
RETURNS BOOLEAN AS $$
DECLARE
    qtable TEXT := pgmq.format_table_name(queue_name, 'q');
    atable TEXT := pgmq.format_table_name(queue_name, 'a');
    partitioned BOOLEAN;
BEGIN
    PERFORM pgmq.acquire_queue_lock(queue_name);
    SELECT is_partitioned INTO partitioned FROM pgmq.meta
     WHERE meta.queue_name = drop_queue.queue_name;
    IF NOT EXISTS (
        SELECT 1
        FROM information_schema.tables
        WHERE table_name = qtable and table_schema = 'pgmq'
    ) THEN
        RAISE NOTICE 'pgmq queue `%` does not exist', queue_name;
        RETURN FALSE;
    END IF;
    EXECUTE FORMAT('DROP TABLE IF EXISTS pgmq.%I', qtable);
    EXECUTE FORMAT('DROP TABLE IF EXISTS pgmq.%I', atable);
    DELETE FROM pgmq.meta WHERE meta.queue_name = drop_queue.queue_name;
    IF partitioned AND pgmq._partman_schema() IS NOT NULL THEN
      EXECUTE format('DELETE FROM %I.part_config WHERE parent_table IN (%L, %L)',
                     pgmq._partman_schema(), 'pgmq.' || qtable,
                     'pgmq.' || atable);
    END IF;
    RETURN TRUE;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record AS $$
BEGIN
  RETURN QUERY SELECT * FROM pgmq.meta;
END
$$ LANGUAGE plpgsql;

-- Deletes every message; returns how many there were.
CREATE OR REPLACE FUNCTION pgmq.purge_queue(queue_name TEXT)
RETURNS BIGINT AS $$
DECLARE
  deleted_count INTEGER;
  qtable TEXT := pgmq.format_table_name(queue_name, 'q');
BEGIN
  EXECUTE format('SELECT count(*) FROM pgmq.%I', qtable) INTO deleted_count;
  EXECUTE format('TRUNCATE TABLE pgmq.%I', qtable);
  RETURN deleted_count;
END
$$ LANGUAGE plpgsql;

------------------------------------------------------------------------------
-- messages
------------------------------------------------------------------------------

-- send: one message, visible after `delay` seconds; returns its msg_id.
CREATE OR REPLACE FUNCTION pgmq.send(
    queue_name TEXT,
    msg JSONB,
    delay INTEGER DEFAULT 0
) RETURNS SETOF BIGINT AS $$
DECLARE
    sql TEXT;
    qtable TEXT := pgmq.format_table_name(queue_name, 'q');
BEGIN
    sql := FORMAT(
        $QUERY$
        INSERT INTO pgmq.%I (vt, message)
        VALUES ((clock_timestamp() + %L), $1)
        RETURNING msg_id;
        $QUERY$,
        qtable, make_interval(secs => delay)
    );
    RETURN QUERY EXECUTE sql USING msg;
END;
$$ LANGUAGE plpgsql;

-- send: one message, visible from `delay` on.
CREATE OR REPLACE FUNCTION pgmq.send(
    queue_name TEXT,
    msg JSONB,
    delay TIMESTAMP WITH TIME ZONE
) RETURNS SETOF BIGINT AS $$
DECLARE
    sql TEXT;
    qtable TEXT := pgmq.format_table_name(queue_name, 'q');
BEGIN
    sql := FORMAT(
        $QUERY$
        INSERT INTO pgmq.%I (vt, message)
        VALUES (%L, $1)
        RETURNING msg_id;
        $QUERY$,
        qtable, delay
    );
    RETURN QUERY EXECUTE sql USING msg;
END;
$$ LANGUAGE plpgsql;

-- send_batch: several messages in array order; returns their msg_ids.
CREATE OR REPLACE FUNCTION pgmq.send_batch(
    queue_name TEXT,
    msgs JSONB[],
    delay INTEGER DEFAULT 0
) RETURNS SETOF BIGINT AS $$
DECLARE
    sql TEXT;
    qtable TEXT := pgmq.format_table_name(queue_name, 'q');
BEGIN
    sql := FORMAT(
        $QUERY$
        INSERT INTO pgmq.%I (vt, message)
        SELECT clock_timestamp() + %L, unnest($1)
        RETURNING msg_id;
        $QUERY$,
        qtable, make_interval(secs => delay)
    );
    RETURN QUERY EXECUTE sql USING msgs;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION pgmq.send_batch(
    queue_name TEXT,
    msgs JSONB[],
    delay TIMESTAMP WITH TIME ZONE
) RETURNS SETOF BIGINT AS $$
DECLARE
    sql TEXT;
    qtable TEXT := pgmq.format_table_name(queue_name, 'q');
BEGIN
    sql := FORMAT(
        $QUERY$
        INSERT INTO pgmq.%I (vt, message)
        SELECT %L, unnest($1)
        RETURNING msg_id;
        $QUERY$,
        qtable, delay
    );
    RETURN QUERY EXECUTE sql USING msgs;
END;
$$ LANGUAGE plpgsql;

-- read: up to `qty` visible messages, oldest first; each becomes invisible
-- for `vt` seconds and its read_ct goes up by one. Messages locked by a
-- concurrent reader are skipped. `conditional` filters on message @> it.
CREATE OR REPLACE FUNCTION pgmq.read(
    queue_name TEXT,
    vt INTEGER,
    qty INTEGER,
    conditional JSONB DEFAULT '{}'
)
RETURNS SETOF pgmq.message_record AS $$
DECLARE
    sql TEXT;
    qtable TEXT := pgmq.format_table_name(queue_name, 'q');
BEGIN
    sql := FORMAT(
        $QUERY$
        WITH cte AS
        (
            SELECT msg_id
            FROM pgmq.%I
            WHERE vt <= clock_timestamp() AND CASE
                WHEN %L != '{}'::jsonb THEN (message @> %2$L)::integer
                ELSE 1
            END = 1
            ORDER BY msg_id ASC
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        )
        UPDATE pgmq.%I m
        SET
            vt = clock_timestamp() + %L,
            read_ct = read_ct + 1
        FROM cte
        WHERE m.msg_id = cte.msg_id
        RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message;
        $QUERY$,
        qtable, conditional, qtable, make_interval(secs => vt)
    );
    RETURN QUERY EXECUTE sql USING qty;
END;
$$ LANGUAGE plpgsql;

-- pop: reads and deletes the oldest visible message.
CREATE OR REPLACE FUNCTION pgmq.pop(queue_name TEXT)
RETURNS SETOF pgmq.message_record AS $$
DECLARE
    sql TEXT;
    qtable TEXT := pgmq.format_table_name(queue_name, 'q');
BEGIN
    sql := FORMAT(
        $QUERY$
        WITH cte AS
            (
                SELECT msg_id
                FROM pgmq.%I
                WHERE vt <= clock_timestamp()
                ORDER BY msg_id ASC
                LIMIT 1
                FOR UPDATE SKIP LOCKED
            )
        DELETE from pgmq.%I
        WHERE msg_id = (select msg_id from cte)
        RETURNING *;
        $QUERY$,
        qtable, qtable
    );
    RETURN QUERY EXECUTE sql;
END;
$$ LANGUAGE plpgsql;

-- set_vt: makes a message invisible for `vt` more seconds from now.
CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name TEXT, msg_id BIGINT, vt INTEGER)
RETURNS SETOF pgmq.message_record AS $$
DECLARE
    sql TEXT;
    qtable TEXT := pgmq.format_table_name(queue_name, 'q');
BEGIN
    sql := FORMAT(
        $QUERY$
        UPDATE pgmq.%I
        SET vt = (clock_timestamp() + %L)
        WHERE msg_id = %L
        RETURNING *;
        $QUERY$,
        qtable, make_interval(secs => vt), msg_id
    );
    RETURN QUERY EXECUTE sql;
END;
$$ LANGUAGE plpgsql;

-- delete: removes one message for good; false if there was none.
CREATE OR REPLACE FUNCTION pgmq.delete(
    queue_name TEXT,
    msg_id BIGINT
)
RETURNS BOOLEAN AS $$
DECLARE
    sql TEXT;
    result BIGINT;
    qtable TEXT := pgmq.format_table_name(queue_name, 'q');
BEGIN
    sql := FORMAT(
        $QUERY$
        DELETE FROM pgmq.%I
        WHERE msg_id = $1
        RETURNING msg_id
        $QUERY$,
        qtable
    );
    EXECUTE sql USING msg_id INTO result;
    RETURN NOT (result IS NULL);
END;
$$ LANGUAGE plpgsql;

-- delete: several messages; returns the ids actually deleted.
CREATE OR REPLACE FUNCTION pgmq.delete(
    queue_name TEXT,
    msg_ids BIGINT[]
)
RETURNS SETOF BIGINT AS $$
DECLARE
    sql TEXT;
    qtable TEXT := pgmq.format_table_name(queue_name, 'q');
BEGIN
    sql := FORMAT(
        $QUERY$
        DELETE FROM pgmq.%I
        WHERE msg_id = ANY($1)
        RETURNING msg_id
        $QUERY$,
        qtable
    );
    RETURN QUERY EXECUTE sql USING msg_ids;
END;
$$ LANGUAGE plpgsql;

-- archive: moves one message to pgmq.a_<name>; false if there was none.
CREATE OR REPLACE FUNCTION pgmq.archive(
    queue_name TEXT,
    msg_id BIGINT
)
RETURNS BOOLEAN AS $$
DECLARE
    sql TEXT;
    result BIGINT;
    qtable TEXT := pgmq.format_table_name(queue_name, 'q');
    atable TEXT := pgmq.format_table_name(queue_name, 'a');
BEGIN
    sql := FORMAT(
        $QUERY$
        WITH archived AS (
            DELETE FROM pgmq.%I
            WHERE msg_id = $1
            RETURNING msg_id, vt, read_ct, enqueued_at, message
        )
        INSERT INTO pgmq.%I (msg_id, vt, read_ct, enqueued_at, message)
        SELECT msg_id, vt, read_ct, enqueued_at, message
        FROM archived
        RETURNING msg_id;
        $QUERY$,
        qtable, atable
    );
    EXECUTE sql USING msg_id INTO result;
    RETURN NOT (result IS NULL);
END;
$$ LANGUAGE plpgsql;

------------------------------------------------------------------------------
-- metrics
------------------------------------------------------------------------------

-- metrics: as PGMQ computes it, with count(*) over the whole queue table
-- (its cost grows with the depth: the baseline the probe is compared with).
CREATE OR REPLACE FUNCTION pgmq.metrics(queue_name TEXT)
RETURNS pgmq.metrics_result AS $$
DECLARE
    result_row pgmq.metrics_result;
    query TEXT;
    qtable TEXT := pgmq.format_table_name(queue_name, 'q');
BEGIN
    query := FORMAT(
        $QUERY$
        WITH q_summary AS (
            SELECT
                count(*) as queue_length,
                count(CASE WHEN vt <= NOW() THEN 1 END) as queue_visible_length,
                EXTRACT(epoch FROM (NOW() - max(enqueued_at)))::int as newest_msg_age_sec,
                EXTRACT(epoch FROM (NOW() - min(enqueued_at)))::int as oldest_msg_age_sec,
                NOW() as scrape_time
            FROM pgmq.%I
        ),
        all_metrics AS (
            SELECT CASE
                WHEN is_called THEN last_value ELSE 0
                END as total_messages
            FROM pgmq.%I
        )
        SELECT
            %L as queue_name,
            q_summary.queue_length,
            q_summary.newest_msg_age_sec,
            q_summary.oldest_msg_age_sec,
            all_metrics.total_messages,
            q_summary.scrape_time,
            q_summary.queue_visible_length
        FROM q_summary, all_metrics
        $QUERY$,
        qtable, qtable || '_msg_id_seq', queue_name
    );
    EXECUTE query INTO result_row;
    RETURN result_row;
END;
$$ LANGUAGE plpgsql;

-- metrics_all: metrics() of every queue in pgmq.meta.
CREATE OR REPLACE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result AS $$
DECLARE
    row_name RECORD;
    result_row pgmq.metrics_result;
BEGIN
    FOR row_name IN SELECT queue_name FROM pgmq.meta LOOP
        result_row := pgmq.metrics(row_name.queue_name);
        RETURN NEXT result_row;
    END LOOP;
END;
$$ LANGUAGE plpgsql;

-- Functions implemented in C (src/).  The ones whose names start with an
-- underscore are internal: the engine and the background worker call them,
-- ordinary roles cannot.

CREATE FUNCTION orchestrator.uuid_v7()
RETURNS uuid
AS 'MODULE_PATHNAME', 'orchestrator_uuid_v7'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION orchestrator.uuid_v7() IS
'a new time-ordered UUID (RFC 9562 version 7), monotonic within a session';

CREATE FUNCTION orchestrator.uuid_v7_boundary(ts timestamptz)
RETURNS uuid
AS 'MODULE_PATHNAME', 'orchestrator_uuid_v7_boundary'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION orchestrator.uuid_v7_boundary(timestamptz) IS
'the smallest version 7 UUID of the millisecond of ts: the partition bound for that time';

CREATE FUNCTION orchestrator.uuid_v7_time(id uuid)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'orchestrator_uuid_v7_time'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION orchestrator.uuid_v7_time(uuid) IS
'the creation time (millisecond precision) carried by a version 7 UUID';

-- A random W3C trace id (32 hex digits): the trace of a run started without
-- option "traceparent" (the default of workflow_runs.trace_id).
CREATE FUNCTION orchestrator._new_trace_id()
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_new_trace_id'
LANGUAGE C VOLATILE PARALLEL SAFE;

-- The span id (16 hex digits) of a step attempt, or of the run itself
-- (step NULL): derived, not stored, so that the traceparent headers of
-- HTTP requests, claim_steps() and the exported spans agree.
CREATE FUNCTION orchestrator._span_id(run_id uuid, step text, attempt integer)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT left(md5(run_id::text || '/' || coalesce(step, '') || '/' || coalesce(attempt, 0)), 16) $$;

-- The traceparent header of a step attempt of a run (its trace, the
-- attempt's span, the flags the run's caller sent, else sampled).  Runs
-- created before 0.4 have no trace id: their trace id is their run id.
CREATE FUNCTION orchestrator._traceparent(run_id uuid, trace_id text, trace_parent text, step text, attempt integer)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT '00-' || coalesce(trace_id, replace(run_id::text, '-', '')) || '-'
		   || orchestrator._span_id(run_id, step, attempt) || '-' || coalesce(right(trace_parent, 2), '01')
$$;

-- A transaction lock on (space, key) in a lock space of the extension's own
-- (src/lock_space.c), which no SQL advisory lock function can take: waits when
-- "wait", else false when it is held elsewhere.  define_workflow() and
-- maintain() serialise themselves with it.
CREATE FUNCTION orchestrator._xact_lock(space text, key text, wait boolean)
RETURNS boolean
AS 'MODULE_PATHNAME', 'orchestrator_xact_lock'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

-- Arrange for the dispatchers' latches to be set when the current transaction
-- commits (nothing happens if it aborts), for work of a kind: 'sql', 'timer'
-- or 'http' (NULL: any).
CREATE FUNCTION orchestrator._wake_at_commit(kind text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'orchestrator_wake_at_commit'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Number of statements in a SQL string; raises the parser's syntax error.
CREATE FUNCTION orchestrator._sql_statement_count(sql text)
RETURNS integer
AS 'MODULE_PATHNAME', 'orchestrator_sql_statement_count'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Run one statement of a sql step as role "owner" (never as the caller), in a
-- security-restricted context, with jsonb parameters $1..$n and a statement
-- timeout; returns the first row as a jsonb object, or NULL when none.
CREATE FUNCTION orchestrator._run_sql_step(owner oid, sql text, args jsonb[], timeout_ms integer)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'orchestrator_run_sql_step'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- The dispatchers as shared memory sees them (for health()): consecutive
-- failed turns and the last error stay with the slot when its process is
-- replaced; run_id, step and step_since name the sql step it handles now.
CREATE FUNCTION orchestrator._worker_status(
	OUT slot integer, OUT pid integer, OUT started_at timestamptz,
	OUT last_active timestamptz, OUT steps_processed bigint,
	OUT consecutive_failures integer, OUT last_error text, OUT last_error_at timestamptz,
	OUT run_id uuid, OUT step text, OUT step_since timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'orchestrator_worker_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- The per-process caches of each live dispatcher, as it last reported them
-- (at most a second old): step definitions (bounded by
-- orchestrator.definition_cache_size), sql steps' plans (by
-- orchestrator.plan_cache_size), the engine's statements (by count:
-- limit_bytes 0).
CREATE FUNCTION orchestrator._cache_status(
	OUT slot integer, OUT pid integer, OUT cache text, OUT entries bigint, OUT bytes bigint,
	OUT limit_bytes bigint, OUT hits bigint, OUT misses bigint, OUT evictions bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'orchestrator_cache_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- The relay as shared memory sees it (for health() and metrics()): deferrals
-- counts its pauses because the server's notification queue was fuller than
-- orchestrator.notify_queue_max_usage, deferred_since is set while it waits;
-- unheard counts notifications not sent because nobody listened.
CREATE FUNCTION orchestrator._relay_status(
	OUT pid integer, OUT queued bigint, OUT sent bigint, OUT dropped bigint, OUT direct bigint,
	OUT deferrals bigint, OUT deferred_since timestamptz, OUT unheard bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'orchestrator_relay_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- The caller's private channel for the events of the runs it started or
-- whose workflow it owns (a keyed hash nobody else can compute; it changes
-- when the server restarts); refused while orchestrator.notify_channels is
-- 'public'.
CREATE FUNCTION orchestrator._api_events_channel()
RETURNS text
AS 'MODULE_PATHNAME', 'orchestrator_events_channel'
LANGUAGE C STABLE SECURITY DEFINER PARALLEL RESTRICTED;

-- Every backend listening for notifications (any database) and the bytes of
-- the server's notification queue it has still to read: the one furthest
-- behind holds the queue back (src/relay.c).
CREATE FUNCTION orchestrator._notify_listeners(OUT pid integer, OUT database oid, OUT behind_bytes bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'orchestrator_notify_listeners'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- How full the notification queue is, as pg_notification_queue_usage()
-- counts but up to the listener furthest behind (the server moves its tail
-- only now and then): what the relay compares with
-- orchestrator.notify_queue_max_usage.
CREATE FUNCTION orchestrator._notify_queue_usage()
RETURNS double precision
AS 'MODULE_PATHNAME', 'orchestrator_notify_queue_usage'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

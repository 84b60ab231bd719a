/*-------------------------------------------------------------------------
 *
 * engine_stmt.c
 *	  The statements of the state machine (engine.c), prepared once per
 *	  process and per partition set.
 *
 * "@runs@", "@steps@" and "@events@" in a statement stand for the
 * partitions that hold one run (leaf.c): the transitions of a run touch
 * those tables directly rather than the partitioned parents.  Results are
 * read by column name (engine_col()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datum.h"

#include "engine_stmt.h"

#define MAX_ARGS 17

typedef struct StmtDef
{
	const char *sql;
	int			nargs;
	Oid			argtypes[MAX_ARGS];
} StmtDef;

/* a step still to be done (run_row_succeeded() in run_rows.c tests the same) */
#define OPEN_STATUSES "('waiting', 'ready', 'running', 'scheduled')"

static const StmtDef stmts[S_COUNT] = {
	[S_WEBHOOKS_EXIST] = {
		"SELECT EXISTS (SELECT 1 FROM orchestrator.webhooks) AS exist", 0, {0}},
	[S_RUN_EXISTS] = {
		"SELECT EXISTS (SELECT 1 FROM @runs@ WHERE id = $1) AS exist", 1, {UUIDOID}},

	/* heartbeat_step: a new expiry, by a new length ($3) or the lease's own */
	[S_EXTEND_LEASE] = {
		"UPDATE orchestrator.work_queue w SET lease = coalesce($3, w.lease),"
		" available_at = least(now() + coalesce($3, w.lease),"
		"   (SELECT s.started_at + $4 FROM @steps@ s WHERE s.run_id = $1 AND s.step = $2))"
		" WHERE w.run_id = $1 AND w.step = $2",
	4, {UUIDOID, TEXTOID, INTERVALOID, INTERVALOID}},
	/* an expired lease that was the end of its attempt (timeout $3) */
	[S_LEASE_TIMED_OUT] = {
		"SELECT s.started_at + $3 <= w.available_at AS timed_out"
		" FROM @steps@ s JOIN orchestrator.work_queue w ON w.run_id = s.run_id AND w.step = s.step"
		" WHERE s.run_id = $1 AND s.step = $2",
	3, {UUIDOID, TEXTOID, INTERVALOID}},

	/* a step's definition (defcache.c) */
	[S_STEP_DEF] = {
		"SELECT d.kind, d.compensates, strpos(d.spec::text, '\"$path\"') > 0 AS templated,"
		" d.condition, d.spec -> 'when' AS \"when\","
		" CASE d.kind WHEN 'sql' THEN '@sql' WHEN 'http' THEN '@http' WHEN 'workflow' THEN '@timer'"
		"   ELSE d.spec ->> 'queue' END AS queue,"
		" d.spec ->> 'sql' AS sql, coalesce(d.spec -> 'args', '[]') AS args_json,"
		" CASE WHEN jsonb_typeof(coalesce(d.spec -> 'args', '[]')) = 'array'"
		"   AND strpos(coalesce(d.spec -> 'args', '[]')::text, '\"$path\"') = 0"
		"   THEN ARRAY(SELECT a FROM jsonb_array_elements(coalesce(d.spec -> 'args', '[]')) a) END AS args,"
		" CASE WHEN d.kind = 'sql' AND d.timeout IS NOT NULL THEN"
		"   greatest(1, least(extract(epoch FROM d.timeout) * 1000, 2147483647))::integer END AS timeout_ms,"
		" CASE d.kind WHEN 'external' THEN coalesce(d.spec -> 'input', '{}')"
		"   WHEN 'workflow' THEN coalesce(d.spec -> 'input', '{}')"
		"   WHEN 'http' THEN d.spec -> 'request' WHEN 'sleep' THEN d.spec -> 'until' END AS ready_input,"
		" (d.spec ->> 'duration')::interval AS duration, d.spec ->> 'signal' AS signal, d.timeout,"
		" d.max_attempts, d.backoff, d.multiplier, d.max_backoff, d.jitter, d.dependents,"
		" d.spec ->> 'on_error' IS NOT DISTINCT FROM 'continue' AS on_error_continue,"
		" d.spec -> 'rate_limit' ->> 'key' AS rate_key,"
		" (d.spec -> 'rate_limit' ->> 'per_second')::float8 AS rate_per_second,"
		" (d.spec -> 'rate_limit' ->> 'burst')::integer AS rate_burst,"
		" (SELECT f.spec ? 'result' FROM orchestrator.definitions f WHERE f.name = d.name AND f.version = d.version)"
		"   AS has_result_template,"
		" d.spec -> 'for_each' AS for_each, (d.spec ->> 'max_parallel')::integer AS max_parallel,"
		" d.spec ->> 'workflow' AS child_workflow, (d.spec ->> 'version')::integer AS child_version,"
		" d.xmin"
		" FROM orchestrator.definition_steps d"
		" WHERE d.name = $1 AND d.version = $2 AND d.step = $3",
	3, {TEXTOID, INT4OID, TEXTOID}},

	/* an event's deliveries, one per subscription whose patterns match it */
	[S_WEBHOOK_OUTBOX] = {
		"INSERT INTO orchestrator.webhook_outbox (id, webhook_id, run_id, seq, type, payload, available_at)"
		" SELECT orchestrator.uuid_v7(), w.id, $1, $2, $3,"
		"   jsonb_build_object('type', $3, 'timestamp', clock_timestamp(),"
		"     'data', jsonb_build_object('run_id', $1, 'workflow', $6::text, 'seq', $2, 'step', $4)"
		"       || coalesce($5, '{}')),"
		"   now()"
		" FROM orchestrator.webhooks w WHERE orchestrator._webhook_matches(w.events, $3)",
	6, {UUIDOID, INT8OID, TEXTOID, TEXTOID, JSONBOID, TEXTOID}},

	[S_STEP_STARTED] = {
		"UPDATE @steps@ SET status = 'running', attempt = attempt + 1, started_at = clock_timestamp(), worker = $3"
		" WHERE run_id = $1 AND step = $2 RETURNING attempt",
	3, {UUIDOID, TEXTOID, TEXTOID}},
	/* a sql step that was ready until its statement failed */
	[S_STEP_RUNNING] = {
		"UPDATE @steps@ SET status = 'running', attempt = attempt + 1, started_at = $3, worker = 'dispatcher'"
		" WHERE run_id = $1 AND step = $2",
	3, {UUIDOID, TEXTOID, TIMESTAMPTZOID}},
	[S_DEQUEUE] = {
		"DELETE FROM orchestrator.work_queue WHERE run_id = $1 AND step = $2",
	2, {UUIDOID, TEXTOID}},
	/*
	 * what metrics.c counts of an event appended at $3 (metrics_event() in
	 * engine.c): the step's kind, times and attempt ($2: NULL for none) ...
	 */
	[S_STEP_METRICS] = {
		"SELECT NULL::text AS name, s.kind, s.started_at, s.ready_at, $3::timestamptz AS at,"
		" NULL::text AS trace_id, NULL::text AS trace_parent, NULL::timestamptz AS created_at, s.attempt"
		" FROM (SELECT 1) one LEFT JOIN @steps@ s ON s.run_id = $1 AND s.step = $2",
	3, {UUIDOID, TEXTOID, TIMESTAMPTZOID}},
	/* ... and the run's workflow and trace, when a span is made or the name unknown */
	[S_RUN_STEP_METRICS] = {
		"SELECT r.name, s.kind, s.started_at, s.ready_at, $3::timestamptz AS at,"
		" r.trace_id, r.trace_parent, r.created_at, s.attempt"
		" FROM @runs@ r LEFT JOIN @steps@ s ON s.run_id = r.id AND s.step = $2 WHERE r.id = $1",
	3, {UUIDOID, TEXTOID, TIMESTAMPTZOID}},
	[S_ADD_COST] = {
		"UPDATE @runs@ SET cost = cost + round(($2 ->> 'cost')::numeric, 4) WHERE id = $1",
	2, {UUIDOID, JSONBOID}},
	[S_OPEN_STEPS] = {
		"SELECT EXISTS (SELECT 1 FROM @steps@ s WHERE s.run_id = $1 AND s.status IN " OPEN_STATUSES ") AS open",
	1, {UUIDOID}},
	[S_DELETE_RUN_QUEUE] = {
		"DELETE FROM orchestrator.work_queue WHERE run_id = $1", 1, {UUIDOID}},

	/* start_workflow()'s checks */
	/* the version ($2, or the latest) and the owner (lookup_cache.c keeps the latest) */
	[S_START_LOOKUP] = {
		"SELECT CASE WHEN $2 IS NULL"
		"   THEN (SELECT max(version) FROM orchestrator.definitions WHERE name = $1)"
		"   ELSE (SELECT version FROM orchestrator.definitions WHERE name = $1 AND version = $2) END AS version,"
		" (SELECT owner FROM orchestrator.workflows WHERE name = $1) AS owner",
	2, {TEXTOID, INT4OID}},
	[S_DEADLINE] = {
		"SELECT orchestrator._start_deadline($1) AS deadline", 1, {JSONBOID}},
	[S_CLAIM_IDEMPOTENCY_KEY] = {
		"INSERT INTO orchestrator.idempotency_keys (started_by, name, key, run_id) VALUES ($1, $2, $3, $4)"
		" ON CONFLICT DO NOTHING",
	4, {REGROLEOID, TEXTOID, TEXTOID, UUIDOID}},
	[S_IDEMPOTENT_RUN] = {
		"SELECT run_id FROM orchestrator.idempotency_keys WHERE started_by = $1 AND name = $2 AND key = $3",
	3, {REGROLEOID, TEXTOID, TEXTOID}},
	/* the steps a new run has (compensations are added when needed) */
	[S_RUN_SHAPE] = {
		"SELECT d.step, d.position, d.kind, cardinality(d.depends_on) AS ndeps,"
		" CASE WHEN d.kind = 'external' THEN coalesce(d.spec -> 'input', '{}') END AS external_input, d.xmin"
		" FROM orchestrator.definition_steps d"
		" WHERE d.name = $1 AND d.version = $2 AND d.compensates IS NULL ORDER BY d.position",
	2, {TEXTOID, INT4OID}},

	/* a step whose dependencies are done */
	[S_MAKE_READY] = {
		"UPDATE @steps@ SET status = 'ready', ready_at = clock_timestamp(), input = $3"
		" WHERE run_id = $1 AND step = $2",
	3, {UUIDOID, TEXTOID, JSONBOID}},
	[S_STEP_SKIPPED] = {
		"UPDATE @steps@ SET status = 'skipped', finished_at = clock_timestamp() WHERE run_id = $1 AND step = $2",
	2, {UUIDOID, TEXTOID}},
	[S_STEP_READY_AT] = {
		"UPDATE @steps@ SET ready_at = clock_timestamp() WHERE run_id = $1 AND step = $2",
	2, {UUIDOID, TEXTOID}},
	[S_SET_INPUT] = {
		"UPDATE @steps@ SET input = $3 WHERE run_id = $1 AND step = $2",
	3, {UUIDOID, TEXTOID, JSONBOID}},
	/* what templates and conditions read */
	[S_CONTEXT] = {
		"SELECT jsonb_build_object('input', r.input,"
		" 'run', jsonb_build_object('id', r.id, 'name', r.name, 'version', r.version, 'tenant', r.tenant),"
		" 'steps', coalesce((SELECT jsonb_object_agg(s.step, jsonb_build_object("
		"   'status', s.status, 'result', s.result, 'error', s.error, 'attempt', s.attempt))"
		"   FROM @steps@ s WHERE s.run_id = r.id AND s.element IS NULL), '{}')) AS context"
		" FROM @runs@ r WHERE r.id = $1",
	1, {UUIDOID}},
	[S_RENDER] = {
		"SELECT orchestrator._render($1, $2) AS rendered", 2, {JSONBOID, JSONBOID}},
	[S_CONDITION] = {
		"SELECT coalesce(jsonb_path_match($2, $1, '{}', true), false) AS holds", 2, {JSONPATHOID, JSONBOID}},
	[S_UNTIL] = {
		"SELECT ($1 #>> '{}')::timestamptz AS due", 1, {JSONBOID}},
	[S_DUE_AFTER] = {
		"SELECT clock_timestamp() + $1 AS due", 1, {INTERVALOID}},
	/* a sleep whose end (its input's "until") comes after its timeout ($3) */
	[S_SLEEP_TIMED_OUT] = {
		"SELECT coalesce((input ->> 'until')::timestamptz > started_at + $3, false) AS timed_out,"
		" input -> 'until' AS until FROM @steps@ WHERE run_id = $1 AND step = $2",
	3, {UUIDOID, TEXTOID, INTERVALOID}},
	[S_FIRST_SIGNAL] = {
		"SELECT g.payload FROM orchestrator.signals g WHERE g.run_id = $1 AND g.name = $2 ORDER BY g.id LIMIT 1",
	2, {UUIDOID, TEXTOID}},

	/* failures: attempts count from the last resume (attempt_base) */
	[S_STEP_ATTEMPTS] = {
		"SELECT attempt, attempt_base FROM @steps@ WHERE run_id = $1 AND step = $2",
	2, {UUIDOID, TEXTOID}},
	[S_STEP_STATE] = {
		"SELECT s.status, s.attempt, s.kind,"
		" EXISTS (SELECT 1 FROM orchestrator.work_queue q WHERE q.run_id = $1 AND q.step = $2"
		"   AND q.queue = '@sql' AND q.lease_token IS NULL) AS queued"
		" FROM @steps@ s WHERE s.run_id = $1 AND s.step = $2",
	2, {UUIDOID, TEXTOID}},
	/* exponential backoff with jitter, capped; at least retry_after ($8) */
	[S_RETRY_STEP] = {
		"UPDATE @steps@ SET status = 'ready', error = $3,"
		" ready_at = now() + greatest(least($4 * power($5, greatest($9 - 1, 0)) * (1 + $6 * (2 * random() - 1)), $7),"
		"   coalesce($8, interval '0'))"
		" WHERE run_id = $1 AND step = $2 RETURNING ready_at",
	9, {UUIDOID, TEXTOID, JSONBOID, INTERVALOID, FLOAT8OID, FLOAT8OID, INTERVALOID, INTERVALOID, INT4OID}},
	[S_STEP_FINAL] = {
		"UPDATE @steps@ SET status = $3, error = $4, finished_at = clock_timestamp() WHERE run_id = $1 AND step = $2",
	4, {UUIDOID, TEXTOID, TEXTOID, JSONBOID}},

	/* a run ends */
	[S_CANCEL_OPEN_STEPS] = {
		"WITH cancelled AS (UPDATE @steps@ x SET status = 'cancelled', finished_at = clock_timestamp()"
		"   WHERE x.run_id = $1 AND x.status IN " OPEN_STATUSES " RETURNING x.step, x.position, x.element, x.child_id)"
		" SELECT step, child_id FROM cancelled ORDER BY position, element NULLS FIRST",
	1, {UUIDOID}},
	/* a failed run's succeeded steps with a compensation get it */
	[S_ADD_COMPENSATIONS] = {
		"INSERT INTO @steps@ (run_id, step, position, kind, deps_open)"
		" SELECT $1, d.step, d.position, d.kind, 0 FROM @steps@ x"
		" JOIN orchestrator.definition_steps d ON d.name = $2 AND d.version = $3 AND d.compensates = x.step"
		" WHERE x.run_id = $1 AND x.status = 'succeeded'",
	3, {UUIDOID, TEXTOID, INT4OID}},
	[S_RUN_COMPENSATING] = {
		"UPDATE @runs@ SET status = 'compensating', error = $2 WHERE id = $1", 2, {UUIDOID, JSONBOID}},
	/* the compensation of the step that completed last goes first */
	[S_NEXT_COMPENSATION] = {
		"SELECT c.step FROM @steps@ c"
		" JOIN orchestrator.definition_steps d ON d.name = $2 AND d.version = $3 AND d.step = c.step"
		" JOIN @steps@ x ON x.run_id = c.run_id AND x.step = d.compensates"
		" WHERE c.run_id = $1 AND c.status = 'waiting'"
		" ORDER BY x.finished_at DESC, x.position DESC LIMIT 1",
	3, {UUIDOID, TEXTOID, INT4OID}},
	[S_STEP_COMPENSATED] = {
		"UPDATE @steps@ SET status = 'compensated' WHERE run_id = $1 AND step = $2", 2, {UUIDOID, TEXTOID}},
	[S_RUN_COMPENSATED] = {
		"UPDATE @runs@ SET status = 'failed', finished_at = clock_timestamp() WHERE id = $1"
		" RETURNING jsonb_build_object('error', error, 'compensated', true) AS data, parent_id, parent_step",
	1, {UUIDOID}},
	[S_RUN_ERROR] = {
		"SELECT error FROM @runs@ WHERE id = $1", 1, {UUIDOID}},
	[S_RESULT_TEMPLATE] = {
		"SELECT spec -> 'result' AS template FROM orchestrator.definitions WHERE name = $1 AND version = $2",
	2, {TEXTOID, INT4OID}},
	[S_STEP_RESULTS] = {
		"SELECT coalesce(jsonb_object_agg(x.step, x.result), '{}') AS results FROM @steps@ x"
		" WHERE x.run_id = $1 AND x.status = 'succeeded' AND x.element IS NULL",
	1, {UUIDOID}},
	[S_RUN_FINISH] = {
		"UPDATE @runs@ SET status = $2, result = $3, error = $4, finished_at = clock_timestamp() WHERE id = $1"
		" RETURNING CASE WHEN error IS NULL AND result IS NULL THEN '{}'"
		"   WHEN error IS NULL THEN jsonb_build_object('result', result)"
		"   WHEN result IS NULL THEN jsonb_build_object('error', error)"
		"   ELSE jsonb_build_object('error', error, 'result', result) END AS data,"
		" parent_id, parent_step",
	4, {UUIDOID, TEXTOID, JSONBOID, JSONBOID}},

	/* 54000 over the owner's limits */
	[S_CHECK_SIGNAL] = {
		"SELECT orchestrator._check_signal($1, $2::regrole, $3)", 3, {UUIDOID, OIDOID, JSONBOID}},
	[S_KEEP_SIGNAL] = {
		"INSERT INTO orchestrator.signals (run_id, id, name, payload, sent_by)"
		" VALUES ($1, orchestrator.uuid_v7(), $2, $3, orchestrator._caller())",
	3, {UUIDOID, TEXTOID, JSONBOID}},
	/* the run's wait steps waiting for signal $4, in position order */
	[S_WAITING_FOR_SIGNAL] = {
		"SELECT x.step FROM @steps@ x JOIN orchestrator.definition_steps d"
		"   ON d.name = $2 AND d.version = $3 AND d.step = x.step"
		" WHERE x.run_id = $1 AND x.kind = 'wait' AND x.status = 'running' AND d.spec ->> 'signal' = $4"
		" ORDER BY x.position",
	4, {UUIDOID, TEXTOID, INT4OID, TEXTOID}},
	/* the HTTP claim (http_claim.c): leases of dispatchers gone expire now */
	[S_HTTP_RECOVER] = {
		"UPDATE orchestrator.work_queue w SET available_at = now()"
		" WHERE w.queue = '@http' AND w.lease_token IS NOT NULL AND w.available_at > now()"
		" AND w.worker LIKE 'http:%'"
		" AND w.worker <> ALL (ARRAY(SELECT 'http:' || s.pid FROM orchestrator._worker_status() s"
		"   WHERE s.pid IS NOT NULL))",
	0, {0}},
	[S_HTTP_CIRCUITS_OPEN] = {
		"SELECT EXISTS (SELECT 1 FROM orchestrator.http_circuits c WHERE c.state <> 'closed') AS open",
	0, {0}},
	/* a step waits for its host's circuit ($4: the tag of the circuit, breaker.c) */
	[S_HTTP_CIRCUIT_WAIT] = {
		"UPDATE orchestrator.work_queue w SET available_at = $3, worker = $4"
		" WHERE w.run_id = $1 AND w.step = $2",
	4, {UUIDOID, TEXTOID, TIMESTAMPTZOID, TEXTOID}},
	[S_STEP_INPUT] = {
		"SELECT s.input, r.trace_id, r.trace_parent FROM @steps@ s, @runs@ r"
		" WHERE s.run_id = $1 AND s.step = $2 AND r.id = $1",
	2, {UUIDOID, TEXTOID}},

	/* the dispatchers' pass over timers and leases (engine_fn.c) */
	[S_EXPIRED_LEASES] = {
		"SELECT run_id, step, worker FROM orchestrator.work_queue"
		" WHERE lease_token IS NOT NULL AND available_at <= now()"
		" ORDER BY available_at LIMIT $1 FOR UPDATE SKIP LOCKED",
	1, {INT4OID}},
	/*
	 * the next timer, lease expiry and sql retry; and whether a sql step is
	 * due that nobody holds (its run was locked when a batch claimed it: the
	 * dispatcher runs a sql batch again shortly).  Due sql steps a batch
	 * holds are not waited for here: a timers pass every 20 ms for them cost
	 * a tenth of a dispatcher under load.
	 */
	[S_NEXT_WAKE] = {
		"SELECT min(t) AS next_wake,"
		" EXISTS (SELECT 1 FROM (SELECT 1 FROM orchestrator.work_queue w WHERE w.queue = '@sql'"
		"   AND w.lease_token IS NULL AND w.available_at <= now() LIMIT 1 FOR UPDATE SKIP LOCKED) x) AS sql_waiting FROM ("
		" (SELECT w.available_at FROM orchestrator.work_queue w"
		"  WHERE w.queue = '@timer' AND w.priority = 0 AND w.lease_token IS NULL"
		"  ORDER BY w.priority DESC, w.available_at LIMIT 1)"
		" UNION ALL"
		" (SELECT w.available_at FROM orchestrator.work_queue w"
		"  WHERE w.lease_token IS NOT NULL ORDER BY w.available_at LIMIT 1)"
		" UNION ALL"
		" (SELECT min(w.available_at) FROM orchestrator.work_queue w WHERE w.queue = '@sql'"
		"  AND w.lease_token IS NULL AND w.available_at > now())) due(t)",
	0, {0}},
	[S_PARTITION_AHEAD] = {
		"SELECT to_regclass(format('orchestrator.workflow_events_p%s',"
		" to_char((now() AT TIME ZONE 'UTC')::date + $1, 'YYYYMMDD'))) IS NOT NULL AS exist",
	1, {INT4OID}},
	[S_CREATE_PARTITIONS] = {
		"SELECT orchestrator._create_partitions((now() AT TIME ZONE 'UTC')::date, $1 + 1)", 1, {INT4OID}},

	/*
	 * compose.c: fan-out.  A for_each step's elements are step rows of
	 * their own, "<step>[<i>]"; the step's progress counts them: items,
	 * max_parallel (0: no limit), started (elements 0 .. started-1 were
	 * made ready), done, failed.
	 */
	/* an element's context: the run's, with $.item and $.index */
	[S_CONTEXT_ITEM] = {
		"SELECT jsonb_build_object('input', r.input,"
		" 'run', jsonb_build_object('id', r.id, 'name', r.name, 'version', r.version, 'tenant', r.tenant),"
		" 'steps', coalesce((SELECT jsonb_object_agg(s.step, jsonb_build_object("
		"   'status', s.status, 'result', s.result, 'error', s.error, 'attempt', s.attempt))"
		"   FROM @steps@ s WHERE s.run_id = r.id AND s.element IS NULL), '{}'),"
		" 'item', x.item, 'index', x.element) AS context"
		" FROM @runs@ r JOIN @steps@ x ON x.run_id = r.id AND x.step = $2 WHERE r.id = $1",
	2, {UUIDOID, TEXTOID}},
	/* the elements, waiting; a resumed run keeps those that succeeded */
	[S_ITEMS_CREATE] = {
		"INSERT INTO @steps@ AS x (run_id, step, position, kind, deps_open, element, item)"
		" SELECT $1, $2 || '[' || (a.o - 1) || ']', p.position, p.kind, 1, a.o - 1, a.v"
		" FROM @steps@ p, jsonb_array_elements($3) WITH ORDINALITY a(v, o) WHERE p.run_id = $1 AND p.step = $2"
		" ON CONFLICT (run_id, step) DO UPDATE SET status = 'waiting', deps_open = 1, item = excluded.item,"
		"   attempt_base = x.attempt, error = NULL, result = NULL, worker = NULL, ready_at = NULL,"
		"   started_at = NULL, finished_at = NULL, child_id = NULL"
		" WHERE x.status <> 'succeeded' OR x.item IS DISTINCT FROM excluded.item",
	3, {UUIDOID, TEXTOID, JSONBOID}},
	/* elements of an earlier, longer array (a resumed run) */
	[S_ITEMS_TRIM] = {
		"DELETE FROM @steps@ x WHERE x.run_id = $1 AND x.element >= $3 AND starts_with(x.step, $2 || '[')",
	3, {UUIDOID, TEXTOID, INT4OID}},
	[S_FAN_OUT] = {
		"UPDATE @steps@ SET progress = $3 WHERE run_id = $1 AND step = $2", 3, {UUIDOID, TEXTOID, JSONBOID}},
	/* the next element to make ready, if the limit allows */
	[S_ITEMS_NEXT] = {
		"UPDATE @steps@ SET progress = jsonb_set(progress, '{started}', to_jsonb((progress ->> 'started')::integer + 1))"
		" WHERE run_id = $1 AND step = $2 AND status = 'running'"
		"   AND (progress ->> 'started')::integer < (progress ->> 'items')::integer"
		"   AND ((progress ->> 'max_parallel')::integer = 0"
		"     OR (progress ->> 'started')::integer - (progress ->> 'done')::integer < (progress ->> 'max_parallel')::integer)"
		" RETURNING (progress ->> 'started')::integer - 1 AS next",
	2, {UUIDOID, TEXTOID}},
	/* an element still to run (not one a resumed run kept) */
	[S_ITEM_RELEASE] = {
		"UPDATE @steps@ SET deps_open = 0 WHERE run_id = $1 AND step = $2 AND status = 'waiting' RETURNING step",
	2, {UUIDOID, TEXTOID}},
	[S_ITEM_DONE] = {
		"UPDATE @steps@ SET progress = progress || jsonb_build_object("
		"   'done', (progress ->> 'done')::integer + 1,"
		"   'failed', (progress ->> 'failed')::integer + CASE WHEN $3 THEN 1 ELSE 0 END)"
		" WHERE run_id = $1 AND step = $2 AND status = 'running'"
		" RETURNING (progress ->> 'done')::integer AS done, (progress ->> 'items')::integer AS items,"
		" (progress ->> 'failed')::integer AS failed",
	3, {UUIDOID, TEXTOID, BOOLOID}},
	/* the results in element order (NULL for a failed one), and the failed */
	[S_ITEMS_RESULT] = {
		"SELECT coalesce(jsonb_agg(x.result ORDER BY x.element), '[]') AS results,"
		" coalesce(jsonb_agg(jsonb_build_object('index', x.element, 'status', x.status, 'error', x.error)"
		"   ORDER BY x.element) FILTER (WHERE x.status IN ('failed', 'dead')), '[]') AS failed"
		" FROM @steps@ x WHERE x.run_id = $1 AND x.element IS NOT NULL AND starts_with(x.step, $2 || '[')",
	2, {UUIDOID, TEXTOID}},
	/* a for_each step whose failed elements were let go ("on_error": "continue") */
	[S_ITEMS_FINISH] = {
		"UPDATE @steps@ SET status = 'failed', result = $3, error = $4, finished_at = clock_timestamp()"
		" WHERE run_id = $1 AND step = $2",
	4, {UUIDOID, TEXTOID, JSONBOID, JSONBOID}},

	/* child runs */
	[S_CHILD_OF_STEP] = {
		"SELECT child_id FROM @steps@ WHERE run_id = $1 AND step = $2", 2, {UUIDOID, TEXTOID}},
	/* on the child's partitions */
	[S_CHILD_RUN] = {
		"SELECT status, result, error, name FROM @runs@ WHERE id = $1", 1, {UUIDOID}},
	[S_SET_CHILD] = {
		"UPDATE @steps@ SET child_id = $3 WHERE run_id = $1 AND step = $2",
	3, {UUIDOID, TEXTOID, UUIDOID}},
	[S_PARENT_TENANT] = {
		"SELECT tenant FROM @runs@ WHERE id = $1", 1, {UUIDOID}},
	/* how many runs up the parent chain goes (at most 64) */
	[S_NESTING] = {
		"WITH RECURSIVE up(id, depth) AS (SELECT $1::uuid, 0"
		"   UNION ALL SELECT r.parent_id, u.depth + 1 FROM up u JOIN orchestrator.workflow_runs r ON r.id = u.id"
		"   WHERE r.parent_id IS NOT NULL AND u.depth < 64)"
		" SELECT max(depth) AS depth FROM up",
	1, {UUIDOID}},
	/*
	 * Work for another run, handed over through its queue instead of
	 * locking it (a child's end to its parent's step, a parent's end to
	 * its child): on the target's partitions, a due timer.
	 */
	[S_HAND_OFF] = {
		"INSERT INTO orchestrator.work_queue (run_id, step, queue, priority, available_at, workflow)"
		" SELECT $1, $2, '@timer', 0, now(), r.name FROM @runs@ r WHERE r.id = $1"
		" ON CONFLICT ON CONSTRAINT work_queue_pkey DO UPDATE"
		" SET queue = '@timer', priority = 0, available_at = now(), lease_token = NULL, lease = NULL, worker = NULL",
	2, {UUIDOID, TEXTOID}},

	/*
	 * HTTP (http_record.c, breaker.c, webhook.c).  When a dispatcher looks
	 * for HTTP work next: the first due '@http' row (a retry, a lease's
	 * expiry, a step waiting for its circuit) or webhook delivery.
	 */
	[S_HTTP_NEXT_WAKE] = {
		"SELECT min(t) AS next_wake FROM ("
		" (SELECT min(w.available_at) FROM orchestrator.work_queue w WHERE w.queue = '@http' AND w.lease_token IS NULL)"
		" UNION ALL"
		" (SELECT min(w.available_at) FROM orchestrator.work_queue w WHERE w.queue = '@http' AND w.lease_token IS NOT NULL)"
		" UNION ALL"
		" (SELECT o.available_at FROM orchestrator.webhook_outbox o WHERE o.status IN ('pending', 'delivering')"
		"  ORDER BY o.available_at LIMIT 1)) due(t)",
	0, {0}},
	/* a step's lease is still held by token $3 (expired or not) */
	[S_HTTP_LEASE_HELD] = {
		"SELECT EXISTS (SELECT 1 FROM orchestrator.work_queue"
		" WHERE run_id = $1 AND step = $2 AND lease_token IS NOT DISTINCT FROM $3) AS held",
	3, {UUIDOID, TEXTOID, UUIDOID}},
	[S_CIRCUITS_EXIST] = {
		"SELECT EXISTS (SELECT 1 FROM orchestrator.http_circuits) AS exist", 0, {0}},
	/* circuit breakers: one row per workflow owner and host:port that failed */
	[S_CIRCUIT_GET] = {
		"SELECT state, failures, opened_at, retry_at FROM orchestrator.http_circuits"
		" WHERE owner = $1 AND host = $2",
	2, {REGROLEOID, TEXTOID}},
	[S_CIRCUIT_LOCK] = {
		"SELECT state, failures, opened_at, retry_at FROM orchestrator.http_circuits"
		" WHERE owner = $1 AND host = $2 FOR UPDATE",
	2, {REGROLEOID, TEXTOID}},
	/* the cool-down is over (or a probe was lost), and nobody else probes */
	[S_CIRCUIT_PROBE_LOCK] = {
		"SELECT 1 FROM orchestrator.http_circuits"
		" WHERE owner = $1 AND host = $2 AND state <> 'closed' AND retry_at <= now()"
		" FOR UPDATE SKIP LOCKED",
	2, {REGROLEOID, TEXTOID}},
	[S_CIRCUIT_PROBE] = {
		"UPDATE orchestrator.http_circuits SET state = 'half_open', retry_at = now() + $3, updated_at = now()"
		" WHERE owner = $1 AND host = $2",
	3, {REGROLEOID, TEXTOID, INTERVALOID}},
	[S_CIRCUIT_CLOSE] = {
		"UPDATE orchestrator.http_circuits SET state = 'closed', failures = 0, retry_at = NULL, updated_at = now()"
		" WHERE owner = $1 AND host = $2",
	2, {REGROLEOID, TEXTOID}},
	/* steps that waited for a circuit ($1: its tag) may go now */
	[S_CIRCUIT_RELEASE] = {
		"UPDATE orchestrator.work_queue w SET available_at = now(), worker = NULL"
		" WHERE w.queue = '@http' AND w.lease_token IS NULL AND w.worker = $1",
	1, {TEXTOID}},
	[S_CIRCUIT_ADD] = {
		"INSERT INTO orchestrator.http_circuits (owner, host) VALUES ($1, $2)"
		" ON CONFLICT (owner, host) DO NOTHING",
	2, {REGROLEOID, TEXTOID}},
	[S_CIRCUIT_OPEN] = {
		"UPDATE orchestrator.http_circuits SET state = 'open', failures = $3, opened_at = now(),"
		" retry_at = now() + $4, updated_at = now()"
		" WHERE owner = $1 AND host = $2 RETURNING retry_at",
	4, {REGROLEOID, TEXTOID, INT4OID, INTERVALOID}},
	[S_CIRCUIT_FAILURE] = {
		"UPDATE orchestrator.http_circuits SET failures = $3, updated_at = now()"
		" WHERE owner = $1 AND host = $2",
	3, {REGROLEOID, TEXTOID, INT4OID}},

	/* webhook deliveries (webhook.c): leases of dispatchers gone expire now */
	[S_WEBHOOK_RECOVER] = {
		"UPDATE orchestrator.webhook_outbox x SET available_at = now()"
		" WHERE x.status = 'delivering' AND x.available_at > now()"
		" AND x.worker <> ALL (ARRAY(SELECT 'http:' || s.pid FROM orchestrator._worker_status() s"
		"   WHERE s.pid IS NOT NULL))",
	0, {0}},
	/* due deliveries, skipping locked ones, with their webhook and secret */
	[S_WEBHOOK_DUE] = {
		"SELECT x.id, x.run_id, x.status, x.payload::text AS body, w.id IS NOT NULL AS subscribed, w.url,"
		" s.sealed_secret"
		" FROM orchestrator.webhook_outbox x"
		" LEFT JOIN orchestrator.webhooks w ON w.id = x.webhook_id"
		" LEFT JOIN orchestrator.webhook_secrets s ON s.webhook_id = x.webhook_id"
		" WHERE x.status IN ('pending', 'delivering') AND x.available_at <= now()"
		" ORDER BY x.available_at LIMIT $1 FOR UPDATE OF x SKIP LOCKED",
	1, {INT4OID}},
	[S_WEBHOOK_CANCEL] = {
		"UPDATE orchestrator.webhook_outbox SET status = 'cancelled' WHERE id = $1", 1, {UUIDOID}},
	/* a URL that may not be used (any more): dead at once */
	[S_WEBHOOK_DEAD] = {
		"UPDATE orchestrator.webhook_outbox SET status = 'dead', last_error = $2, attempt = attempt + 1,"
		" last_attempt_at = now() WHERE id = $1",
	2, {UUIDOID, TEXTOID}},
	/* the claimed deliveries ($1, with their lease tokens $2), for $3 */
	[S_WEBHOOK_LEASE] = {
		"UPDATE orchestrator.webhook_outbox x SET status = 'delivering', attempt = x.attempt + 1,"
		" lease_token = t.token, worker = $4, available_at = now() + $3, last_attempt_at = now()"
		" FROM unnest($1, $2) WITH ORDINALITY t(id, token, ord) WHERE x.id = t.id"
		" RETURNING t.ord::integer AS ord, x.attempt",
	4, {UUIDARRAYOID, UUIDARRAYOID, INTERVALOID, TEXTOID}},
	/*
	 * an attempt failed ($5: the lease it held, NULL: whatever it is): again
	 * after orchestrator.webhook_retry_schedule's delay for this attempt, at
	 * least Retry-After ($4), or dead after the last
	 */
	[S_WEBHOOK_FAILED] = {
		"UPDATE orchestrator.webhook_outbox o"
		" SET status = CASE WHEN o.attempt <= cardinality(s.schedule) THEN 'pending' ELSE 'dead' END,"
		" available_at = CASE WHEN o.attempt <= cardinality(s.schedule)"
		"   THEN now() + greatest(s.schedule[o.attempt], coalesce($4, interval '0')) ELSE o.available_at END,"
		" lease_token = NULL, worker = NULL, last_status = $2, last_error = $3"
		" FROM (SELECT string_to_array(current_setting('orchestrator.webhook_retry_schedule'), ',')::interval[]"
		"   AS schedule) s"
		" WHERE o.id = $1 AND ($5 IS NULL OR (o.lease_token = $5 AND o.status = 'delivering'))",
	5, {UUIDOID, INT4OID, TEXTOID, INTERVALOID, UUIDOID}},
	[S_WEBHOOK_DELIVERED] = {
		"UPDATE orchestrator.webhook_outbox SET status = 'delivered', delivered_at = now(), last_status = $3,"
		" last_error = NULL, lease_token = NULL, worker = NULL"
		" WHERE id = $1 AND lease_token = $2 AND status = 'delivering'",
	3, {UUIDOID, UUIDOID, INT4OID}},
	/* a run's trace, for the traceparent of its deliveries */
	[S_RUN_TRACE] = {
		"SELECT trace_id, trace_parent FROM @runs@ WHERE id = $1", 1, {UUIDOID}},
	/*
	 * The API's transitions of a run (run_api.c: cancel_workflow,
	 * retry_run, signal_workflow) and of claimed external steps
	 * (external.c).
	 */
	/* may the caller see the run (locked)? */
	[S_RUN_VISIBLE] = {
		"SELECT orchestrator._may_see(owner, started_by) AS visible FROM @runs@ WHERE id = $1",
	1, {UUIDOID}},
	/* retry_run: the run's steps (not elements), in position order */
	[S_RESUME_STEPS_READ] = {
		"SELECT step, status, attempt FROM @steps@ WHERE run_id = $1 AND element IS NULL ORDER BY position",
	1, {UUIDOID}},
	/* its failure started compensations: what they undid stays undone */
	[S_RESUME_COMPENSATED] = {
		"SELECT EXISTS (SELECT 1 FROM @steps@ x JOIN orchestrator.definition_steps d"
		"   ON d.name = $2 AND d.version = $3 AND d.step = x.step"
		"   WHERE x.run_id = $1 AND (x.status = 'compensated' OR d.compensates IS NOT NULL)) AS compensated",
	3, {UUIDOID, TEXTOID, INT4OID}},
	[S_RESUME_RUN] = {
		"UPDATE @runs@ SET status = CASE WHEN started_at IS NULL THEN 'pending' ELSE 'running' END,"
		" error = NULL, result = NULL, finished_at = NULL WHERE id = $1 RETURNING status",
	1, {UUIDOID}},
	/* the steps to do ($4) wait again, for those of their dependencies still to do */
	[S_RESUME_STEPS] = {
		"UPDATE @steps@ x SET status = 'waiting', attempt_base = x.attempt, error = NULL, result = NULL,"
		" worker = NULL, ready_at = NULL, started_at = NULL, finished_at = NULL,"
		" deps_open = (SELECT count(*) FROM unnest(d.depends_on) dep WHERE dep = ANY ($4))"
		" FROM orchestrator.definition_steps d"
		" WHERE x.run_id = $1 AND x.step = ANY ($4) AND d.name = $2 AND d.version = $3 AND d.step = x.step",
	4, {UUIDOID, TEXTOID, INT4OID, TEXTARRAYOID}},
	/* a waiting step with no dependency left to wait for */
	[S_STEP_FREE] = {
		"SELECT status = 'waiting' AND deps_open = 0 AS free FROM @steps@ WHERE run_id = $1 AND step = $2",
	2, {UUIDOID, TEXTOID}},
	/* the lease token is still the step's, unexpired (by key: see S_TAKE_LEASED) */
	[S_CHECK_LEASE] = {
		"SELECT 1 FROM orchestrator.work_queue"
		" WHERE run_id = $1 AND step = $2 AND lease_token IS NOT DISTINCT FROM $3 AND available_at > now()"
		" FOR UPDATE",
	3, {UUIDOID, TEXTOID, UUIDOID}},
	/* heartbeat_step's progress, kept on the step */
	[S_STEP_PROGRESS] = {
		"UPDATE @steps@ SET progress = $3 WHERE run_id = $1 AND step = $2"
		" RETURNING jsonb_build_object('attempt', attempt, 'progress', progress) AS data",
	3, {UUIDOID, TEXTOID, JSONBOID}},

	/*
	 * claim_steps: a limited queue's row, updated so that claims of the
	 * queue follow one another (under REPEATABLE READ a second claim fails
	 * with 40001 rather than count leases it cannot see) ...
	 */
	[S_QUEUE_LIMIT] = {
		"UPDATE orchestrator.queue_limits SET claimed_at = now() WHERE queue = $1 RETURNING max_running",
	1, {TEXTOID}},
	/* ... and its live leases, counted after that lock (a new snapshot) */
	[S_QUEUE_LEASED] = {
		"SELECT count(*) AS running FROM orchestrator.work_queue"
		" WHERE queue = $1 AND lease_token IS NOT NULL AND available_at > now()",
	1, {TEXTOID}},
};

/*
 * engine_stmt
 *		Execute statement "s" (on the run's partitions, or none) and return
 *		the number of rows it processed; its rows are in SPI_tuptable until
 *		engine_rows_done().
 */
uint64
engine_stmt(Stmt s, const RunLeaves *leaves, Datum *values, const char *nulls)
{
	const StmtDef *def = &stmts[s];
	MemoryContext context = CurrentMemoryContext;
	SPIPlanPtr	plan = orchestrator_leaf_plan(s, def->sql, def->nargs,
											  (Oid *) def->argtypes, leaves);
	int			rc;

	rc = SPI_execute_plan(plan, values, nulls, false, 0);
	/* SPI returns in its own context */
	MemoryContextSwitchTo(context);
	if (rc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("orchestrator statement %d failed: %s", (int) s, SPI_result_code_string(rc))));
	return SPI_processed;
}

/* Column "name" of the first result row, copied into the current context. */
Datum
engine_col_at(uint64 row, const char *name, bool *isnull)
{
	TupleDesc	desc = SPI_tuptable->tupdesc;
	int			col = SPI_fnumber(desc, name);
	Form_pg_attribute att;
	Datum		d;

	if (col <= 0)
		elog(ERROR, "orchestrator statement has no column \"%s\"", name);
	att = TupleDescAttr(desc, col - 1);
	d = SPI_getbinval(SPI_tuptable->vals[row], desc, col, isnull);
	return *isnull ? (Datum) 0 : datumCopy(d, att->attbyval, att->attlen);
}

Datum
engine_col(const char *name, bool *isnull)
{
	return engine_col_at(0, name, isnull);
}

char *
engine_col_text(const char *name)
{
	bool		isnull;
	Datum		d = engine_col(name, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

bool
engine_col_bool(const char *name)
{
	bool		isnull;
	Datum		d = engine_col(name, &isnull);

	return !isnull && DatumGetBool(d);
}

int32
engine_col_int32(const char *name)
{
	bool		isnull;
	Datum		d = engine_col(name, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

void
engine_rows_done(void)
{
	SPI_freetuptable(SPI_tuptable);
}

\set SHOW_CONTEXT never
-- The state machine in C (src/engine.c): settings read when a step runs,
-- not when its definition was first read.

-- orchestrator.default_step_timeout applies to a step without "timeout"
-- as it is now: 0.3 kept the value it had when the dispatcher first read
-- the step's definition.
SELECT orchestrator.define_workflow('engine_default_timeout', $$
{"steps": [{"name": "nap", "kind": "sql", "sql": "SELECT pg_sleep($1::float8) IS NOT NULL AS slept", "args": [1.5],
            "retry": {"max_attempts": 1}}]}
$$);
SELECT orchestrator.start_workflow('engine_default_timeout') AS r1 \gset
SELECT wait_for_run(:'r1');

ALTER SYSTEM SET orchestrator.default_step_timeout = '300ms';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SELECT orchestrator.start_workflow('engine_default_timeout') AS r2 \gset
SELECT wait_for_run(:'r2');
SELECT s.status, s.error ->> 'sqlstate' AS sqlstate, s.error ->> 'message' AS message
FROM orchestrator.run_steps s WHERE s.run_id = :'r2';

ALTER SYSTEM RESET orchestrator.default_step_timeout;
SELECT pg_reload_conf();

-- "on_error": "continue": a step that fails for good lets the run go on;
-- its dependents see its status and error and branch on them.
SELECT orchestrator.define_workflow('engine_on_error', $$
{"steps": [
  {"name": "risky", "kind": "sql", "sql": "SELECT 1 / 0 AS never", "retry": {"max_attempts": 1}, "on_error": "continue"},
  {"name": "fallback", "kind": "sql", "sql": "SELECT 'used the fallback' AS note", "depends_on": ["risky"],
   "when": "$.steps.risky.status == \"dead\""},
  {"name": "normal", "kind": "sql", "sql": "SELECT 'normal path' AS note", "depends_on": ["risky"],
   "when": "$.steps.risky.status == \"succeeded\""},
  {"name": "report", "kind": "sql", "sql": "SELECT $1::jsonb AS risky_error", "depends_on": ["fallback", "normal"],
   "args": [{"$path": "$.steps.risky.error.sqlstate"}]}
]}
$$);
SELECT orchestrator.start_workflow('engine_on_error') AS r \gset
SELECT wait_for_run(:'r');
SELECT step, status, result FROM orchestrator.run_steps WHERE run_id = :'r' ORDER BY position;
SELECT string_agg(type || coalesce(':' || step, ''), ', ' ORDER BY seq) AS history FROM orchestrator.events(:'r');
SELECT result FROM orchestrator.runs WHERE id = :'r';

-- Without it (the default, "fail"), the same failure fails the run.
SELECT orchestrator.define_workflow('engine_on_error_fail', $$
{"steps": [
  {"name": "risky", "kind": "sql", "sql": "SELECT 1 / 0 AS never", "retry": {"max_attempts": 1}, "on_error": "fail"},
  {"name": "after", "kind": "sql", "sql": "SELECT 1 AS one", "depends_on": ["risky"]}
]}
$$);
SELECT orchestrator.start_workflow('engine_on_error_fail') AS r \gset
SELECT wait_for_run(:'r');
SELECT step, status FROM orchestrator.run_steps WHERE run_id = :'r' ORDER BY position;

-- A value other than "fail" or "continue" is refused, and nothing is written.
SELECT try($$SELECT orchestrator.define_workflow('engine_on_error_bad',
  '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1", "on_error": "ignore"}]}')$$);
SELECT count(*) AS written FROM orchestrator.workflows WHERE name = 'engine_on_error_bad';

-- A sql step that a dispatcher runs right after the step it depends on, in
-- the same transaction (chaining), has no queue row: when it fails with
-- attempts left, its retry is queued all the same (it was lost before: the
-- step stayed ready forever).  The second attempt succeeds.
SELECT orchestrator.define_workflow('engine_chained_retry', $$
{"steps": [
  {"name": "first", "kind": "sql", "sql": "SELECT 1 AS one"},
  {"name": "flaky", "kind": "sql", "depends_on": ["first"],
   "sql": "SELECT 1 / ($1 #>> '{}')::int AS ok", "args": [{"$path": "$.steps.flaky.attempt"}],
   "retry": {"max_attempts": 3, "backoff": "10 milliseconds", "jitter": 0}}
]}
$$);
SELECT orchestrator.start_workflow('engine_chained_retry') AS r \gset
SELECT wait_for_run(:'r');
SELECT step, status, attempt FROM orchestrator.run_steps WHERE run_id = :'r' ORDER BY position;
SELECT string_agg(type || coalesce(':' || step, ''), ', ' ORDER BY seq) AS history FROM orchestrator.events(:'r');

-- Steps flowing through the queue leave dead index entries that every claim
-- would walk over until a vacuum: the first dispatcher vacuums work_queue
-- itself once enough steps went through (queue_vacuum.c), not only when
-- autovacuum comes by.
SELECT set_config('engine_test.vacuums_before', vacuum_count::text, false) IS NOT NULL AS noted
FROM pg_stat_user_tables WHERE schemaname = 'orchestrator' AND relname = 'work_queue';
SELECT orchestrator.define_workflow('engine_churn', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"}]}');
SELECT count(orchestrator.start_workflow('engine_churn')) AS started FROM generate_series(1, 2100);
DO $$
DECLARE
	before bigint := current_setting('engine_test.vacuums_before')::bigint;
BEGIN
	FOR i IN 1..600 LOOP
		PERFORM pg_stat_clear_snapshot();
		EXIT WHEN (SELECT vacuum_count FROM pg_stat_user_tables
				   WHERE schemaname = 'orchestrator' AND relname = 'work_queue') > before
			AND NOT EXISTS (SELECT 1 FROM orchestrator.workflow_runs WHERE name = 'engine_churn' AND finished_at IS NULL);
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT count(*) FILTER (WHERE status = 'succeeded') AS churned FROM orchestrator.workflow_runs WHERE name = 'engine_churn';
SELECT vacuum_count > current_setting('engine_test.vacuums_before')::bigint AS queue_vacuumed FROM pg_stat_user_tables
WHERE schemaname = 'orchestrator' AND relname = 'work_queue';
-- No vacuum truncates the queue (vacuum_truncate off): cutting a drained
-- queue's empty pages off would take a lock every start and claim waits behind.
SELECT reloptions @> '{vacuum_truncate=false}' AS never_truncated FROM pg_class WHERE oid = 'orchestrator.work_queue'::regclass;
SELECT set_config('engine_test.queue_pages', pg_relation_size('orchestrator.work_queue')::text, false) <> '0' AS queue_has_pages;
VACUUM orchestrator.work_queue;
SELECT pg_relation_size('orchestrator.work_queue') = current_setting('engine_test.queue_pages')::bigint AS queue_kept_its_pages;

-- A commit that makes sql work ready wakes one dispatcher; one that finds a
-- backlog (its claim got all it asked for) wakes another to share it: both
-- dispatchers run steps of runs started in one statement.
SELECT set_config('engine_test.processed_before',
	(SELECT string_agg(slot || ':' || steps_processed, ',' ORDER BY slot) FROM orchestrator._worker_status()), false)
	IS NOT NULL AS noted;
SELECT orchestrator.define_workflow('engine_backlog', '{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"},
  {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"]}]}');
SELECT count(orchestrator.start_workflow('engine_backlog')) AS started FROM generate_series(1, 1000);
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN NOT EXISTS (SELECT 1 FROM orchestrator.workflow_runs WHERE name = 'engine_backlog' AND finished_at IS NULL);
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT count(*) FILTER (WHERE status = 'succeeded') AS backlog_done FROM orchestrator.workflow_runs WHERE name = 'engine_backlog';
SELECT count(*) AS dispatchers_that_helped
FROM orchestrator._worker_status() w
JOIN (SELECT split_part(x, ':', 1)::int AS slot, split_part(x, ':', 2)::bigint AS processed
	  FROM unnest(string_to_array(current_setting('engine_test.processed_before'), ',')) x) b USING (slot)
WHERE w.steps_processed > b.processed;

\set SHOW_CONTEXT never
-- health(), metrics() and the analytics views.

-- A ready external step shows up in the queue depth.
SELECT orchestrator.define_workflow('health_wf', '{"steps": [{"name": "w", "kind": "external", "queue": "q_health"}]}') AS v;
SELECT orchestrator.start_workflow('health_wf') IS NOT NULL AS started;
SELECT h ->> 'status' AS status, h -> 'workers' -> 'configured' AS configured,
       h -> 'workers' -> 'alive' AS alive, (h ->> 'partitions_ahead')::int >= 7 AS partitions_ahead,
       h -> 'open_circuit_breakers' AS breakers, jsonb_typeof(h -> 'queues') AS queues,
       (h ->> 'active_runs')::int >= 1 AS active_runs
FROM orchestrator.health() h;
SELECT q -> 'ready' AS ready, q -> 'running' AS running, (q ->> 'oldest_ready_age_seconds')::numeric >= 0 AS age
FROM orchestrator.health() h, jsonb_array_elements(h -> 'queues') q WHERE q ->> 'queue' = 'q_health';
-- Live (a dispatcher runs) and ready (they keep up); per dispatcher its
-- failed turns and the step in hand.  A ready external step is not the
-- dispatchers' work.
SELECT h -> 'live' AS live, h -> 'ready' AS ready, h -> 'workers' -> 'failing' AS failing,
       jsonb_array_length(h -> 'dispatchers') AS dispatchers,
       (SELECT bool_and(d ? 'slot' AND d ? 'pid' AND d ? 'consecutive_failures' AND d ? 'steps_processed')
        FROM jsonb_array_elements(h -> 'dispatchers') d) AS dispatcher_keys,
       h -> 'dispatcher_ready' AS dispatcher_ready, jsonb_typeof(h -> 'dispatcher_oldest_ready_age_seconds') AS dispatcher_age
FROM orchestrator.health() h;
SELECT count(*) AS slots, bool_and(consecutive_failures >= 0) AS failures_counted
FROM orchestrator._worker_status();
-- metrics(): Prometheus text format; every sample belongs to a declared
-- family (_bucket, _sum and _count to a histogram).
SELECT regexp_replace(line, '(age_seconds\{[^}]*\}) [0-9.]+$', '\1 <age>') AS line
FROM regexp_split_to_table(orchestrator.metrics(), E'\n') line
WHERE line LIKE '%q_health%' OR line LIKE 'orchestrator_workers_%' OR line LIKE 'orchestrator_up %'
   OR line LIKE 'orchestrator_live %' OR line LIKE 'orchestrator_ready %' ORDER BY 1;
SELECT count(*) AS undeclared_samples
FROM regexp_split_to_table(orchestrator.metrics(), E'\n') line
WHERE line <> '' AND line NOT LIKE '#%'
  AND position('# TYPE ' || split_part(split_part(line, '{', 1), ' ', 1) || ' ' IN orchestrator.metrics()) = 0
  AND position('# TYPE ' || regexp_replace(split_part(split_part(line, '{', 1), ' ', 1), '_(bucket|sum|count)$', '')
			   || ' histogram' IN orchestrator.metrics()) = 0;
SELECT orchestrator._prom_label(E'a"b\\c\nd') AS escaped;
-- An open circuit breaker is reported.
INSERT INTO orchestrator.http_circuits (owner, host, state, failures, opened_at, retry_at)
VALUES ('postgres', 'down.example:443', 'open', 5, now(), now() + interval '30 seconds');
SELECT b ->> 'host' AS host, b ->> 'state' AS state, b -> 'failures' AS failures
FROM orchestrator.health() h, jsonb_array_elements(h -> 'open_circuit_breakers') b;
SELECT line FROM regexp_split_to_table(orchestrator.metrics(), E'\n') line WHERE line LIKE 'orchestrator_http_circuit_open{%';
DELETE FROM orchestrator.http_circuits WHERE host = 'down.example:443';
-- For administrators only.
SET ROLE alice;
SELECT try('SELECT orchestrator.health()') AS user_health, try('SELECT orchestrator.metrics()') AS user_metrics;
RESET ROLE;

-- Generated history with known numbers, made directly in the tables: 100
-- runs of "analytics_wf" created today from midnight UTC, one per
-- millisecond; run i has tenant t1 (odd i) or t2, fails when i is a multiple
-- of 10, costs i/10000, its step "timed" lasts i seconds, its step "work"
-- reports tokens.  Runs 1-5 belong to alice, the rest to postgres.
CREATE FUNCTION midnight() RETURNS timestamptz LANGUAGE sql AS
	$$ SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' $$;
INSERT INTO orchestrator.workflow_runs (id, name, version, status, tenant, owner, started_by, input, created_at,
	started_at, finished_at, cost, error)
SELECT orchestrator.uuid_v7_boundary(midnight() + i * interval '1 millisecond' + interval '7 microseconds'),
	   'analytics_wf', 1, CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
	   CASE WHEN i % 2 = 1 THEN 't1' ELSE 't2' END,
	   (CASE WHEN i <= 5 THEN 'alice' ELSE 'postgres' END)::regrole, (CASE WHEN i <= 5 THEN 'alice' ELSE 'postgres' END)::regrole, '{}',
	   midnight() + i * interval '1 millisecond', midnight() + i * interval '1 millisecond',
	   midnight() + i * interval '1 second', i / 10000.0,
	   CASE WHEN i % 10 = 0 THEN '{"step": "work", "status": "failed"}'::jsonb END
FROM generate_series(1, 100) i;
INSERT INTO orchestrator.workflow_steps (run_id, step, position, kind, status, deps_open, result, error, started_at, finished_at)
SELECT r.id, 'timed', 0, 'sql', 'succeeded', 0, '{}', NULL, r.created_at,
	   r.created_at + (extract(epoch FROM r.finished_at - midnight()) * interval '1 second')
FROM orchestrator.workflow_runs r WHERE r.name = 'analytics_wf'
UNION ALL
SELECT r.id, 'work', 1, 'external', CASE WHEN r.status = 'failed' THEN 'dead' ELSE 'succeeded' END, 0,
	   CASE WHEN r.status = 'failed' THEN NULL
			WHEN r.tenant = 't1' THEN jsonb_build_object('cost', r.cost, 'tokens', 10)
			ELSE jsonb_build_object('cost', r.cost, 'tokens', '{"input": 3, "output": 4}'::jsonb) END,
	   CASE WHEN r.status = 'failed' THEN
			CASE WHEN r.cost < 0.0050 THEN '{"message": "rate limited", "sqlstate": "P0001"}'::jsonb
				 ELSE '{"message": "boom"}'::jsonb END END,
	   r.finished_at, r.finished_at
FROM orchestrator.workflow_runs r WHERE r.name = 'analytics_wf';

SELECT day = midnight() AS today, workflow, tenant, status, runs, cost
FROM orchestrator.runs_per_day WHERE workflow = 'analytics_wf' ORDER BY tenant, status;
SELECT day = midnight() AS today, step, kind, samples, p50, p95, p99, max
FROM orchestrator.step_durations WHERE workflow = 'analytics_wf' ORDER BY step;
SELECT tenant, finished, succeeded, failed, cancelled, error_rate
FROM orchestrator.error_rates WHERE workflow = 'analytics_wf' ORDER BY tenant;
SELECT tenant, step, message, sqlstate, occurrences
FROM orchestrator.step_errors WHERE workflow = 'analytics_wf' ORDER BY occurrences DESC, message;
SELECT minute - midnight() AS minute, status, sum(runs) AS runs
FROM orchestrator.throughput WHERE workflow = 'analytics_wf' GROUP BY 1, 2 ORDER BY 1, 2;
SELECT tenant, runs, cost, tokens
FROM orchestrator.costs_per_day WHERE workflow = 'analytics_wf' ORDER BY tenant;
-- Costs are exact to the fourth decimal: the sum of i/10000 for i = 1..100.
SELECT sum(cost) AS total_cost, sum(cost) = 0.5050 AS exact FROM orchestrator.costs_per_day WHERE workflow = 'analytics_wf';
SELECT queue, ready, running, oldest_ready_age_seconds >= 0 AS age FROM orchestrator.queue_depth WHERE queue = 'q_health';
-- The views read the roll-ups; a minute filter is pushed through the
-- security barrier and can use the expression index of each partition.
CREATE FUNCTION plan_matches(query text, pattern text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	l text;
	hit boolean := false;
BEGIN
	FOR l IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
		hit := hit OR l ~ pattern;
	END LOOP;
	RETURN hit;
END $$;
SET enable_seqscan = off;
SELECT plan_matches('SELECT * FROM orchestrator.runs_per_day WHERE day >= now() - interval ''1 day''',
	'run_stats_daily') AS reads_rollups,
	   plan_matches('SELECT * FROM orchestrator.throughput WHERE minute >= now() - interval ''1 hour''',
	'Index Cond: .*date_trunc') AS minute_filter_uses_index;
RESET enable_seqscan;

-- Each role sees its own runs; admins see all.
SET ROLE alice;
SELECT sum(runs) AS alice_runs, sum(cost) AS alice_cost FROM orchestrator.runs_per_day WHERE workflow = 'analytics_wf';
SELECT count(*) AS alice_queue_rows FROM orchestrator.queue_depth WHERE queue = 'q_health';
RESET ROLE;
SET ROLE carol;
SELECT sum(runs) AS admin_runs FROM orchestrator.runs_per_day WHERE workflow = 'analytics_wf';
RESET ROLE;

-- Daily roll-ups: maintain() aggregates closed days once; the views then
-- read the roll-ups and give exactly the numbers of a live aggregation.
-- History loaded into past days is aggregated after rebuild_stats().
SELECT orchestrator._create_partitions((now() AT TIME ZONE 'UTC')::date - 3, 3) >= 0 AS partitions;
INSERT INTO orchestrator.workflow_runs (id, name, version, status, tenant, owner, started_by, input, created_at,
	started_at, finished_at, cost)
SELECT orchestrator.uuid_v7_boundary(midnight() - interval '3 days' + i * interval '1 second'),
	   'rollup_wf', 1, (ARRAY['succeeded', 'failed', 'cancelled'])[i % 3 + 1], CASE WHEN i % 4 = 0 THEN NULL ELSE 't' || i % 2 END,
	   (CASE WHEN i <= 10 THEN 'alice' ELSE 'postgres' END)::regrole, (CASE WHEN i <= 10 THEN 'alice' ELSE 'postgres' END)::regrole, '{}',
	   midnight() - interval '3 days' + i * interval '1 second', midnight() - interval '3 days' + i * interval '1 second',
	   midnight() - interval '3 days' + i * interval '1 second' + (i % 7) * interval '1 second', i / 1000.0
FROM generate_series(1, 60) i;
INSERT INTO orchestrator.workflow_steps (run_id, step, position, kind, status, deps_open, result, error, started_at, finished_at)
SELECT r.id, 'work', 0, 'external', CASE WHEN r.status = 'failed' THEN 'dead' ELSE 'succeeded' END, 0,
	   jsonb_build_object('tokens', jsonb_build_object('input', 2, 'output', 3)),
	   CASE WHEN r.status = 'failed' THEN jsonb_build_object('message', 'quota exceeded', 'sqlstate', '53400') END,
	   r.started_at, r.finished_at
FROM orchestrator.workflow_runs r WHERE r.name = 'rollup_wf';
SELECT orchestrator.rebuild_stats((now() AT TIME ZONE 'UTC')::date - 3) AS watermark_rows_changed;
CREATE TEMP TABLE live_numbers AS
	SELECT 'runs' AS v, day, workflow, tenant, status, runs::numeric AS a, cost AS b, avg_seconds::numeric AS c
	FROM orchestrator.runs_per_day WHERE workflow = 'rollup_wf'
	UNION ALL SELECT 'errors', day, workflow, tenant, NULL, finished, failed, error_rate FROM orchestrator.error_rates WHERE workflow = 'rollup_wf'
	UNION ALL SELECT 'costs', day, workflow, tenant, NULL, runs, cost, tokens FROM orchestrator.costs_per_day WHERE workflow = 'rollup_wf'
	UNION ALL SELECT 'step errors ' || message || sqlstate, day, workflow, tenant, step, occurrences, NULL, extract(epoch FROM last_seen)::numeric
	FROM orchestrator.step_errors WHERE workflow = 'rollup_wf'
	UNION ALL SELECT 'throughput', minute, workflow, tenant, status, runs, NULL, NULL FROM orchestrator.throughput WHERE workflow = 'rollup_wf'
	UNION ALL SELECT 'durations ' || kind, day, workflow, step, p50::text, samples, p95::numeric, p99::numeric FROM orchestrator.step_durations WHERE workflow = 'rollup_wf';
SELECT day = midnight() - interval '3 days' AS three_days_ago, tenant, status, runs, cost, round(avg_seconds::numeric, 4) AS avg_seconds
FROM orchestrator.runs_per_day WHERE workflow = 'rollup_wf' ORDER BY tenant, status;
SELECT tenant, runs, cost, tokens FROM orchestrator.costs_per_day WHERE workflow = 'rollup_wf' ORDER BY tenant;
SELECT tenant, step, message, sqlstate, occurrences FROM orchestrator.step_errors WHERE workflow = 'rollup_wf' ORDER BY tenant;
SELECT sum(runs) AS finished_in_throughput, count(DISTINCT minute) AS minutes FROM orchestrator.throughput WHERE workflow = 'rollup_wf';
SELECT step, samples, p50, p95, p99, max FROM orchestrator.step_durations WHERE workflow = 'rollup_wf';
SELECT r -> 'stats_days_rolled_up' @> to_jsonb((now() AT TIME ZONE 'UTC')::date - 3) AS rolled_up,
	   (r ->> 'stats_watermark')::date = ((now() - interval '1 hour') AT TIME ZONE 'UTC')::date - 1 AS watermark_yesterday
FROM orchestrator.maintain() r;
SELECT (SELECT count(*) FROM orchestrator.run_stats_daily WHERE workflow = 'rollup_wf') AS rollup_rows,
	   (SELECT count(*) FROM orchestrator.step_error_stats_daily WHERE workflow = 'rollup_wf') AS error_rows,
	   (SELECT sum(runs) FROM orchestrator.throughput_stats WHERE workflow = 'rollup_wf') AS throughput_runs;
-- The plan reads roll-ups for closed days: the live part starts after the watermark.
SELECT orchestrator._stats_live_from() = orchestrator.uuid_v7_boundary(
	date_trunc('day', (now() - interval '1 hour') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS live_from_today;
CREATE TEMP TABLE rolled_numbers AS
	SELECT 'runs' AS v, day, workflow, tenant, status, runs::numeric AS a, cost AS b, avg_seconds::numeric AS c
	FROM orchestrator.runs_per_day WHERE workflow = 'rollup_wf'
	UNION ALL SELECT 'errors', day, workflow, tenant, NULL, finished, failed, error_rate FROM orchestrator.error_rates WHERE workflow = 'rollup_wf'
	UNION ALL SELECT 'costs', day, workflow, tenant, NULL, runs, cost, tokens FROM orchestrator.costs_per_day WHERE workflow = 'rollup_wf'
	UNION ALL SELECT 'step errors ' || message || sqlstate, day, workflow, tenant, step, occurrences, NULL, extract(epoch FROM last_seen)::numeric
	FROM orchestrator.step_errors WHERE workflow = 'rollup_wf'
	UNION ALL SELECT 'throughput', minute, workflow, tenant, status, runs, NULL, NULL FROM orchestrator.throughput WHERE workflow = 'rollup_wf'
	UNION ALL SELECT 'durations ' || kind, day, workflow, step, p50::text, samples, p95::numeric, p99::numeric FROM orchestrator.step_durations WHERE workflow = 'rollup_wf';
SELECT (SELECT count(*) FROM live_numbers) AS rows,
	   (SELECT count(*) FROM (SELECT * FROM live_numbers EXCEPT ALL SELECT * FROM rolled_numbers) d) AS only_live,
	   (SELECT count(*) FROM (SELECT * FROM rolled_numbers EXCEPT ALL SELECT * FROM live_numbers) d) AS only_rolled;
-- Roll-ups are filtered by owner too.
SET ROLE alice;
SELECT sum(runs) AS alice_rollup_runs, sum(cost) AS alice_rollup_cost FROM orchestrator.runs_per_day WHERE workflow = 'rollup_wf';
SELECT step, samples, p50, p95, max FROM orchestrator.step_durations WHERE workflow = 'rollup_wf';
SELECT try('SELECT orchestrator.rebuild_stats()') AS user_rebuilds;
RESET ROLE;
-- health() in a database the dispatchers do not serve says so.
CREATE DATABASE orchestrator_elsewhere;
\c orchestrator_elsewhere
SET client_min_messages = error;
CREATE EXTENSION orchestrator;
RESET client_min_messages;
SELECT h -> 'ready' AS ready, p AS problem
FROM orchestrator.health() h, jsonb_array_elements_text(h -> 'problems') p WHERE p LIKE 'orchestrator.database%';
\c contrib_regression
DROP DATABASE orchestrator_elsewhere;

\set SHOW_CONTEXT never
-- metrics(): counters and histograms of committed transitions (shared
-- memory, src/metrics.c).  External steps only, so that no dispatcher
-- changes the numbers of this workflow behind the test's back.
-- The value of one sample (0 when absent).
CREATE FUNCTION metric_at(family text, labels text DEFAULT '') RETURNS numeric LANGUAGE sql AS $$
	SELECT coalesce(sum(split_part(line, ' ', 2)::numeric), 0)
	FROM regexp_split_to_table(orchestrator.metrics(), E'\n') line
	WHERE split_part(line, ' ', 1) = family || CASE WHEN labels = '' THEN '' ELSE '{' || labels || '}' END
$$;

-- The new families, with their types.
SELECT line FROM regexp_split_to_table(orchestrator.metrics(), E'\n') line
WHERE line LIKE '# TYPE %' AND (line LIKE '%_total %' OR line LIKE '%histogram')
  AND line NOT LIKE '%worker_steps_total%' ORDER BY 1;

SELECT orchestrator.define_workflow('metrics_wf', '{"steps": [
	{"name": "one", "kind": "external", "queue": "q_metrics"},
	{"name": "two", "kind": "external", "queue": "q_metrics", "depends_on": ["one"]}]}') AS v;
CREATE TEMP TABLE before AS
SELECT metric_at('orchestrator_runs_total', 'workflow="metrics_wf",status="succeeded"') AS succeeded,
	   metric_at('orchestrator_runs_total', 'workflow="metrics_wf",status="cancelled"') AS cancelled,
	   metric_at('orchestrator_steps_total', 'workflow="metrics_wf",kind="external",status="cancelled"') AS cancelled_steps,
	   metric_at('orchestrator_steps_total', 'workflow="metrics_wf",kind="external",status="succeeded"') AS steps,
	   metric_at('orchestrator_step_duration_seconds_count', 'kind="external"') AS durations,
	   metric_at('orchestrator_dispatch_latency_seconds_count') AS latencies;
SELECT succeeded, cancelled, steps FROM before;
SELECT orchestrator.start_workflow('metrics_wf') IS NOT NULL AS started;

-- A transition rolled back is not counted.
BEGIN;
CREATE TEMP TABLE c1 AS SELECT * FROM orchestrator.claim_steps('q_metrics', 'w1');
SELECT orchestrator.complete_step(run_id, step, lease_token, '{"n": 1}') FROM c1;
ROLLBACK;
SELECT metric_at('orchestrator_steps_total', 'workflow="metrics_wf",kind="external",status="succeeded"') - steps AS steps
FROM before;
-- ... nor one in a subtransaction rolled back, while the rest commits.
BEGIN;
CREATE TEMP TABLE c2 AS SELECT * FROM orchestrator.claim_steps('q_metrics', 'w1');
SAVEPOINT s;
SELECT orchestrator.complete_step(run_id, step, lease_token, '{"n": 1}') FROM c2;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT metric_at('orchestrator_steps_total', 'workflow="metrics_wf",kind="external",status="succeeded"') - steps AS steps
FROM before;
-- Committed: counted.
SELECT orchestrator.complete_step(run_id, step, lease_token, '{"n": 1}') FROM c2;
SELECT orchestrator.complete_step(run_id, step, lease_token, '{"n": 2}')
FROM orchestrator.claim_steps('q_metrics', 'w1');
SELECT metric_at('orchestrator_runs_total', 'workflow="metrics_wf",status="succeeded"') - succeeded AS runs,
	   metric_at('orchestrator_steps_total', 'workflow="metrics_wf",kind="external",status="succeeded"') - steps AS steps,
	   metric_at('orchestrator_step_duration_seconds_count', 'kind="external"') - durations >= 2 AS durations,
	   metric_at('orchestrator_dispatch_latency_seconds_count') - latencies >= 2 AS latencies
FROM before;
-- A cancelled run, and its step.
SELECT orchestrator.cancel_workflow(orchestrator.start_workflow('metrics_wf'), 'test') AS cancelled;
SELECT metric_at('orchestrator_runs_total', 'workflow="metrics_wf",status="cancelled"') - cancelled AS cancelled_runs,
	   metric_at('orchestrator_steps_total', 'workflow="metrics_wf",kind="external",status="cancelled"') - cancelled_steps AS cancelled_steps
FROM before;

-- Histograms: buckets cumulative, +Inf equals _count.
WITH b AS (
	SELECT substring(line FROM '^([a-z_]+)_bucket') AS family, substring(line FROM 'kind="([a-z]+)"') AS kind,
		   CASE WHEN line LIKE '%le="+Inf"%' THEN 'Infinity'::float8 ELSE substring(line FROM 'le="([0-9.e+-]+)"')::float8 END AS le,
		   split_part(line, ' ', 2)::numeric AS n
	FROM regexp_split_to_table(orchestrator.metrics(), E'\n') line WHERE line LIKE 'orchestrator_%_bucket{%')
SELECT family, count(*) FILTER (WHERE NOT ok) AS not_cumulative, bool_and(inf_is_count) AS inf_is_count
FROM (SELECT b.family, b.kind,
			 b.n >= coalesce(lag(b.n) OVER (PARTITION BY b.family, b.kind ORDER BY b.le), 0) AS ok,
			 b.le <> 'Infinity' OR b.n = metric_at(b.family || '_count', coalesce('kind="' || b.kind || '"', '')) AS inf_is_count
	  FROM b) x
GROUP BY family ORDER BY family;

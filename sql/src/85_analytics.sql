-- Analytics views for psql and Grafana.
--
-- Each view is security_barrier and shows only the runs of the workflows the
-- caller owns (members of orchestrator_admin see all).  The admin check is
-- an uncorrelated subquery, evaluated once per query rather than per row;
-- the per-row test is _acts_as(owner).  (The role that starts another's
-- workflow sees those runs in orchestrator.runs, not in these aggregates.)  Days and minutes are UTC and are
-- returned as timestamptz, so Grafana's $__timeFilter(day) works on them.
-- A filter on "day" (or "minute") is pushed into the view and answered from
-- the expression indexes on workflow_runs (see 80_maintenance.sql); a day is
-- the day the run was created.
--
-- runs_per_day, error_rates, costs_per_day, step_errors and throughput read
-- the daily roll-ups that maintain() keeps for closed partitions
-- (run_stats_daily, step_error_stats_daily, throughput_stats, up to the
-- watermark) and aggregate only later partitions live (ids from
-- _stats_live_from(), pruned at run time): exactly the same numbers as a
-- live aggregation, without reading months of runs.  step_durations reads
-- percentiles rolled up per partition day (see there).

-- Runs per definition, tenant, status and day.
CREATE VIEW orchestrator._run_stats AS
	SELECT s.day::timestamp AT TIME ZONE 'UTC' AS day, s.owner, s.workflow, s.tenant, s.status,
		   s.runs, s.finished, s.seconds::double precision, s.cost
	FROM orchestrator.run_stats_daily s
	UNION ALL
	SELECT date_trunc('day', r.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', r.owner, r.name, r.tenant, r.status,
		   1::bigint, (r.finished_at IS NOT NULL)::integer::bigint,
		   coalesce(extract(epoch FROM r.finished_at - r.created_at), 0)::double precision, r.cost
	FROM orchestrator.workflow_runs r
	WHERE r.id >= (SELECT orchestrator._stats_live_from());

CREATE VIEW orchestrator.runs_per_day WITH (security_barrier) AS
	SELECT x.day, x.workflow, x.tenant, x.status,
		   sum(x.runs)::bigint AS runs,
		   sum(x.cost)::numeric(20,4) AS cost,
		   (sum(x.seconds) / nullif(sum(x.finished), 0))::double precision AS avg_seconds
	FROM orchestrator._run_stats x
	WHERE (SELECT orchestrator._is_admin()) OR orchestrator._acts_as(x.owner)
	GROUP BY 1, 2, 3, 4;
COMMENT ON VIEW orchestrator.runs_per_day IS 'runs per UTC day of creation, workflow, tenant and status';

-- Step duration percentiles (seconds, started to finished, succeeded
-- attempts) per definition, step and day.  Percentiles do not add up, so the
-- roll-ups hold them per owner and over all owners, and the view picks the
-- rows the caller may see: all owners for administrators, its own otherwise.
-- Here "day" is the UTC day of the run id (its creation, to the
-- millisecond), which is also the partition: roll-ups and the live part never
-- share a day.
CREATE VIEW orchestrator.step_durations WITH (security_barrier) AS
	SELECT d.partition_day::timestamp AT TIME ZONE 'UTC' AS day, d.workflow, d.step, d.kind, d.samples,
		   d.p50, d.p95, d.p99, d.max
	FROM orchestrator.step_duration_stats_daily d
	WHERE CASE WHEN (SELECT orchestrator._is_admin()) THEN d.owner IS NULL
			   ELSE orchestrator._acts_as(d.owner) END
	UNION ALL
	SELECT date_trunc('day', orchestrator.uuid_v7_time(r.id) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
		   r.name, s.step, s.kind,
		   count(*),
		   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision),
		   percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision),
		   percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision),
		   max(extract(epoch FROM s.finished_at - s.started_at))::double precision
	FROM orchestrator.workflow_runs r
	JOIN orchestrator.workflow_steps s ON s.run_id = r.id
	WHERE ((SELECT orchestrator._is_admin()) OR orchestrator._acts_as(r.owner))
	  AND s.status = 'succeeded' AND s.started_at IS NOT NULL
	  AND r.id >= (SELECT orchestrator._stats_live_from())
	  AND s.run_id >= (SELECT orchestrator._stats_live_from())
	GROUP BY 1, 2, 3, 4;
COMMENT ON VIEW orchestrator.step_durations IS 'p50, p95, p99 and max duration in seconds of succeeded steps, per UTC day of the run id, workflow and step';

-- Error rates of finished runs per definition, tenant and day.
CREATE VIEW orchestrator.error_rates WITH (security_barrier) AS
	SELECT x.day, x.workflow, x.tenant,
		   sum(x.finished)::bigint AS finished,
		   coalesce(sum(x.runs) FILTER (WHERE x.status = 'succeeded'), 0)::bigint AS succeeded,
		   coalesce(sum(x.runs) FILTER (WHERE x.status = 'failed'), 0)::bigint AS failed,
		   coalesce(sum(x.runs) FILTER (WHERE x.status = 'cancelled'), 0)::bigint AS cancelled,
		   round(coalesce(sum(x.runs) FILTER (WHERE x.status = 'failed'), 0) / sum(x.finished), 4) AS error_rate
	FROM orchestrator._run_stats x
	WHERE ((SELECT orchestrator._is_admin()) OR orchestrator._acts_as(x.owner))
	  AND x.finished > 0
	GROUP BY 1, 2, 3;
COMMENT ON VIEW orchestrator.error_rates IS 'finished, succeeded, failed and cancelled runs and the failed share, per UTC day, workflow and tenant';

-- The errors of failed and dead steps, by message: roll-ups up to the
-- watermark, live after it.
CREATE VIEW orchestrator.step_errors WITH (security_barrier) AS
	SELECT x.day, x.workflow, x.tenant, x.step, x.message, x.sqlstate,
		   sum(x.occurrences)::bigint AS occurrences,
		   max(x.last_seen) AS last_seen
	FROM (SELECT e.day::timestamp AT TIME ZONE 'UTC' AS day, e.owner, e.workflow, e.tenant, e.step, e.message,
				 e.sqlstate, e.occurrences, e.last_seen
		  FROM orchestrator.step_error_stats_daily e
		  UNION ALL
		  SELECT date_trunc('day', r.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', r.owner, r.name, r.tenant, s.step,
				 coalesce(s.error ->> 'message', s.error #>> '{}', '(no error)'), s.error ->> 'sqlstate',
				 1::bigint, s.finished_at
		  FROM orchestrator.workflow_runs r
		  JOIN orchestrator.workflow_steps s ON s.run_id = r.id
		  WHERE s.status IN ('failed', 'dead')
			AND r.id >= (SELECT orchestrator._stats_live_from())
			AND s.run_id >= (SELECT orchestrator._stats_live_from())) x
	WHERE (SELECT orchestrator._is_admin()) OR orchestrator._acts_as(x.owner)
	GROUP BY 1, 2, 3, 4, 5, 6;
COMMENT ON VIEW orchestrator.step_errors IS 'errors of failed and dead steps by message, per UTC day, workflow, tenant and step: sort by occurrences for the most common';

-- Runs finished per minute: roll-ups up to the watermark, live after it.
CREATE VIEW orchestrator.throughput WITH (security_barrier) AS
	SELECT x.minute, x.workflow, x.tenant, x.status, sum(x.runs)::bigint AS runs
	FROM (SELECT t.minute, t.owner, t.workflow, t.tenant, t.status, t.runs
		  FROM orchestrator.throughput_stats t
		  UNION ALL
		  SELECT date_trunc('minute', r.finished_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', r.owner, r.name, r.tenant,
				 r.status, 1::bigint
		  FROM orchestrator.workflow_runs r
		  WHERE r.finished_at IS NOT NULL AND r.id >= (SELECT orchestrator._stats_live_from())) x
	WHERE (SELECT orchestrator._is_admin()) OR orchestrator._acts_as(x.owner)
	GROUP BY 1, 2, 3, 4;
COMMENT ON VIEW orchestrator.throughput IS 'runs finished per UTC minute, workflow, tenant and final status';

-- Queue depth now: ready, scheduled (retry or timer due later), running
-- (leased), and the age of the oldest ready step, per queue.
CREATE VIEW orchestrator.queue_depth WITH (security_barrier) AS
	SELECT q.queue,
		   count(*) FILTER (WHERE q.lease_token IS NULL AND q.available_at <= now()) AS ready,
		   count(*) FILTER (WHERE q.lease_token IS NULL AND q.available_at > now()) AS scheduled,
		   count(*) FILTER (WHERE q.lease_token IS NOT NULL) AS running,
		   coalesce(extract(epoch FROM now() - min(q.available_at)
				FILTER (WHERE q.lease_token IS NULL AND q.available_at <= now()))::double precision, 0) AS oldest_ready_age_seconds
	FROM orchestrator.work_queue q
	-- Administrators see every queue row without a look at the runs; others
	-- count the rows of their own runs (one probe of the run's partition each).
	WHERE (SELECT orchestrator._is_admin())
	   OR EXISTS (SELECT 1 FROM orchestrator.workflow_runs r WHERE r.id = q.run_id AND orchestrator._may_see(r.owner, r.started_by))
	GROUP BY q.queue;
COMMENT ON VIEW orchestrator.queue_depth IS 'steps ready, scheduled and running per queue, and the age in seconds of the oldest ready one';

-- Tokens reported by a step result: a number, or an object with "total",
-- or an object whose numeric fields are summed ({"input": 10, "output": 5}).
-- The sum is a function of its own so that _tokens holds no subquery and is
-- inlined into the queries that call it (a roll-up calls it once per step).
CREATE FUNCTION orchestrator._tokens_sum(tokens jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT sum((e.value #>> '{}')::numeric) FROM jsonb_each(tokens) e WHERE jsonb_typeof(e.value) = 'number'
$$;
CREATE FUNCTION orchestrator._tokens(result jsonb)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE jsonb_typeof(result -> 'tokens')
		WHEN 'number' THEN (result ->> 'tokens')::numeric
		WHEN 'object' THEN CASE jsonb_typeof(result -> 'tokens' -> 'total')
			WHEN 'number' THEN (result -> 'tokens' ->> 'total')::numeric
			ELSE orchestrator._tokens_sum(result -> 'tokens') END
		END
$$;

-- Cost (numeric, 4 decimal places, summed exactly) and tokens per
-- definition, tenant and day.  Cost is what the steps reported in "cost"
-- (accumulated on the run); tokens are summed from the steps' results.
CREATE VIEW orchestrator.costs_per_day WITH (security_barrier) AS
	SELECT x.day, x.workflow, x.tenant,
		   sum(x.runs)::bigint AS runs,
		   sum(x.cost)::numeric(20,4) AS cost,
		   sum(x.tokens) AS tokens
	FROM (SELECT s.day::timestamp AT TIME ZONE 'UTC' AS day, s.owner, s.workflow, s.tenant, s.runs, s.cost, s.tokens
		  FROM orchestrator.run_stats_daily s
		  UNION ALL
		  SELECT date_trunc('day', r.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', r.owner, r.name, r.tenant,
				 1::bigint, r.cost, coalesce(t.tokens, 0)
		  FROM orchestrator.workflow_runs r
		  LEFT JOIN LATERAL (SELECT sum(orchestrator._tokens(s.result)) AS tokens
							 FROM orchestrator.workflow_steps s
							 WHERE s.run_id = r.id AND s.result ? 'tokens') t ON true
		  WHERE r.id >= (SELECT orchestrator._stats_live_from())) x
	WHERE (SELECT orchestrator._is_admin()) OR orchestrator._acts_as(x.owner)
	GROUP BY 1, 2, 3;
COMMENT ON VIEW orchestrator.costs_per_day IS 'runs, cost (4 decimal places) and tokens per UTC day of creation, workflow and tenant';

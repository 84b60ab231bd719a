\set SHOW_CONTEXT never
-- Retention and the roll-ups: runs that expire one by one from a day already
-- rolled up are subtracted from its roll-ups (maintain() reports the day in
-- stats_days_adjusted), and every analytics view then answers exactly what
-- a from-scratch aggregation (rebuild_stats()) of the same runs answers, for
-- an administrator and for an owner.  A day whose runs changed after its
-- roll-up, or whose roll-ups lack a removed run's group, is aggregated again
-- instead (stats_days_rebuilt).

-- History of three past days, made directly in the tables: per day 90 runs
-- of rr_wf (two owners, three tenants one of them NULL, three statuses,
-- costs, tokens in three spellings, repeated and distinct step durations,
-- two error messages), three runs sharing each minute of completion; and
-- two runs of rr_last whose failures are out of order: the run that
-- finishes first failed last.
CREATE FUNCTION rr_day(ago integer) RETURNS date LANGUAGE sql AS
	$$ SELECT (now() AT TIME ZONE 'UTC')::date - ago $$;
CREATE FUNCTION rr_at(ago integer, t interval) RETURNS timestamptz LANGUAGE sql AS
	$$ SELECT rr_day(ago)::timestamp AT TIME ZONE 'UTC' + t $$;
CREATE FUNCTION rr_history(ago integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	PERFORM orchestrator._create_partitions(rr_day(ago), 1);
	CREATE TEMP TABLE rr_gen AS
	SELECT i, orchestrator.uuid_v7_boundary(done - ((i % 9) + 1) * interval '17 minutes' + i * interval '1 millisecond') AS id,
		   done - ((i % 9) + 1) * interval '17 minutes' + i * interval '1 millisecond' AS created, done,
		   CASE WHEN i % 5 = 0 THEN 'failed' WHEN i % 13 = 0 THEN 'cancelled' ELSE 'succeeded' END AS status,
		   CASE WHEN (i / 3) % 4 = 1 THEN 'alice' ELSE 'postgres' END::regrole AS owner,
		   CASE (i / 3) % 3 WHEN 0 THEN NULL ELSE 't' || (i / 3) % 3 END AS tenant
	FROM (SELECT i, rr_at(ago, interval '3 hours' + (i / 3) * interval '7 minutes' + (i % 3) * interval '5 seconds') AS done
		  FROM generate_series(1, 90) i) x;
	INSERT INTO orchestrator.workflow_runs (id, name, version, status, tenant, owner, started_by, input, created_at,
		started_at, finished_at, cost)
	SELECT id, 'rr_wf', 1, status, tenant, owner, owner, jsonb_build_object('i', i), created, created, done, i / 1000.0
	FROM rr_gen;
	INSERT INTO orchestrator.workflow_steps (run_id, step, position, kind, status, deps_open, result, error, started_at, finished_at)
	SELECT id, 'fetch', 0, 'sql', 'succeeded', 0, '{}', NULL, created, created + (i % 4) * interval '1 second'
	FROM rr_gen
	UNION ALL
	SELECT id, 'work', 1, 'external', CASE status WHEN 'failed' THEN 'dead' WHEN 'cancelled' THEN 'cancelled' ELSE 'succeeded' END, 0,
		   CASE WHEN status = 'succeeded' THEN
				CASE i % 3 WHEN 0 THEN jsonb_build_object('tokens', 10)
						   WHEN 1 THEN jsonb_build_object('tokens', jsonb_build_object('total', 5))
						   ELSE jsonb_build_object('tokens', jsonb_build_object('input', 2, 'output', i)) END END,
		   CASE WHEN status = 'failed' THEN
				CASE WHEN i % 10 = 0 THEN '{"message": "boom", "sqlstate": "P0001"}'::jsonb ELSE '{"message": "late"}'::jsonb END END,
		   created + interval '1 second', done
	FROM rr_gen;
	-- rr_last: P finishes at 03:01 (its step failed at 03:00), Q at 20:00
	-- (its step failed at 02:00).
	INSERT INTO orchestrator.workflow_runs (id, name, version, status, tenant, owner, started_by, input, created_at,
		started_at, finished_at, cost)
	VALUES (orchestrator.uuid_v7_boundary(rr_at(ago, interval '1 hour')), 'rr_last', 1, 'failed', 'tl', 'postgres', 'postgres',
			'{"run": "P"}', rr_at(ago, interval '1 hour'), rr_at(ago, interval '1 hour'), rr_at(ago, interval '3 hours 1 minute'), 0),
		   (orchestrator.uuid_v7_boundary(rr_at(ago, interval '30 minutes')), 'rr_last', 1, 'failed', 'tl', 'postgres', 'postgres',
			'{"run": "Q"}', rr_at(ago, interval '30 minutes'), rr_at(ago, interval '30 minutes'), rr_at(ago, interval '20 hours'), 0);
	INSERT INTO orchestrator.workflow_steps (run_id, step, position, kind, status, deps_open, error, started_at, finished_at)
	VALUES (orchestrator.uuid_v7_boundary(rr_at(ago, interval '1 hour')), 'only', 0, 'external', 'dead', 0,
			'{"message": "gone"}', rr_at(ago, interval '1 hour'), rr_at(ago, interval '3 hours')),
		   (orchestrator.uuid_v7_boundary(rr_at(ago, interval '30 minutes')), 'only', 0, 'external', 'dead', 0,
			'{"message": "gone"}', rr_at(ago, interval '30 minutes'), rr_at(ago, interval '2 hours'));
	-- Events, signals and idempotency keys, removed with their runs.
	INSERT INTO orchestrator.workflow_events (run_id, seq, at, type)
	SELECT r.id, 1, r.created_at, 'workflow.created' FROM orchestrator.workflow_runs r
	WHERE r.name LIKE 'rr\_%' AND r.id >= orchestrator.uuid_v7_boundary(rr_at(ago, '0'))
	  AND r.id < orchestrator.uuid_v7_boundary(rr_at(ago - 1, '0'));
	INSERT INTO orchestrator.idempotency_keys (name, key, run_id, started_by)
	SELECT 'rr_wf', r.id::text, r.id, 'postgres' FROM orchestrator.workflow_runs r
	WHERE r.name = 'rr_wf' AND r.id >= orchestrator.uuid_v7_boundary(rr_at(ago, '0'))
	  AND r.id < orchestrator.uuid_v7_boundary(rr_at(ago - 1, '0'));
	DROP TABLE rr_gen;
END $$;
SELECT rr_history(100), rr_history(99), rr_history(98);
SELECT count(*) AS runs FROM orchestrator.workflow_runs WHERE name LIKE 'rr\_%';

-- What the views answer (as the superuser, an administrator, and as alice,
-- who owns some of the runs), and what the roll-ups hold, for rr_*.
CREATE TABLE rr_seen (label text, who text, v text, r text);
GRANT INSERT ON rr_seen TO alice;
CREATE FUNCTION rr_capture(label text) RETURNS void LANGUAGE sql AS $$
	INSERT INTO rr_seen
	SELECT label, current_user, x.v, x.r FROM (
		SELECT 'runs_per_day' AS v, t::text AS r FROM orchestrator.runs_per_day t WHERE t.workflow LIKE 'rr\_%'
		UNION ALL SELECT 'step_durations', t::text FROM orchestrator.step_durations t WHERE t.workflow LIKE 'rr\_%'
		UNION ALL SELECT 'error_rates', t::text FROM orchestrator.error_rates t WHERE t.workflow LIKE 'rr\_%'
		UNION ALL SELECT 'step_errors', t::text FROM orchestrator.step_errors t WHERE t.workflow LIKE 'rr\_%'
		UNION ALL SELECT 'throughput', t::text FROM orchestrator.throughput t WHERE t.workflow LIKE 'rr\_%'
		UNION ALL SELECT 'costs_per_day', t::text FROM orchestrator.costs_per_day t WHERE t.workflow LIKE 'rr\_%') x
$$;
CREATE FUNCTION rr_rollups(label text) RETURNS void LANGUAGE sql AS $$
	INSERT INTO rr_seen
	SELECT label, 'rollups', x.v, x.r FROM (
		SELECT 'run_stats_daily' AS v, t::text AS r FROM orchestrator.run_stats_daily t WHERE t.workflow LIKE 'rr\_%'
		UNION ALL SELECT 'step_error_stats_daily', t::text FROM orchestrator.step_error_stats_daily t WHERE t.workflow LIKE 'rr\_%'
		UNION ALL SELECT 'throughput_stats', t::text FROM orchestrator.throughput_stats t WHERE t.workflow LIKE 'rr\_%'
		UNION ALL SELECT 'step_duration_stats_daily', t::text FROM orchestrator.step_duration_stats_daily t WHERE t.workflow LIKE 'rr\_%') x
$$;
-- Roll up every closed day from the oldest rr_ day on (7 days per call).
CREATE FUNCTION rr_roll_up_all() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	r jsonb;
	calls integer := 0;
BEGIN
	PERFORM set_config('orchestrator.retention', '1000d', true);
	PERFORM orchestrator.rebuild_stats(rr_day(100));
	LOOP
		r := orchestrator.maintain();
		calls := calls + 1;
		EXIT WHEN jsonb_array_length(r -> 'stats_days_rolled_up') < 7;
	END LOOP;
	RETURN calls;
END $$;
-- The views and roll-ups now (label), then after a rebuild from scratch
-- ('rebuilt'): the rows of each that the other lacks.
CREATE FUNCTION rr_compare(label text) RETURNS TABLE (rows bigint, only_now bigint, only_rebuilt bigint) LANGUAGE plpgsql AS $$
BEGIN
	PERFORM rr_capture(label);
	PERFORM rr_rollups(label);
	SET ROLE alice;
	PERFORM rr_capture(label);
	RESET ROLE;
	DELETE FROM rr_seen s WHERE s.label = 'rebuilt';
	PERFORM rr_roll_up_all();
	PERFORM rr_capture('rebuilt');
	PERFORM rr_rollups('rebuilt');
	SET ROLE alice;
	PERFORM rr_capture('rebuilt');
	RESET ROLE;
	RETURN QUERY SELECT (SELECT count(*) FROM rr_seen s WHERE s.label = rr_compare.label),
		(SELECT count(*) FROM (SELECT s.who, s.v, s.r FROM rr_seen s WHERE s.label = rr_compare.label
							   EXCEPT ALL SELECT s.who, s.v, s.r FROM rr_seen s WHERE s.label = 'rebuilt') d),
		(SELECT count(*) FROM (SELECT s.who, s.v, s.r FROM rr_seen s WHERE s.label = 'rebuilt'
							   EXCEPT ALL SELECT s.who, s.v, s.r FROM rr_seen s WHERE s.label = rr_compare.label) d);
END $$;
-- maintain() with the cutoff at a time of a day (hours after that day's
-- midnight UTC), max_runs at a time, until nothing is left to delete: the
-- days retired whole, adjusted and rebuilt over all calls.
CREATE FUNCTION rr_expire(ago integer, t interval, max_runs integer)
RETURNS TABLE (calls integer, deleted bigint, retired jsonb, adjusted jsonb, rebuilt jsonb) LANGUAGE plpgsql AS $$
DECLARE
	r jsonb;
BEGIN
	calls := 0; deleted := 0; retired := '[]'; adjusted := '[]'; rebuilt := '[]';
	PERFORM set_config('orchestrator.retention', extract(epoch FROM now() - rr_at(ago, t))::bigint || 's', true);
	LOOP
		r := orchestrator.maintain(max_runs);
		calls := calls + 1;
		deleted := deleted + (r ->> 'runs_deleted')::bigint;
		retired := retired || coalesce((SELECT jsonb_agg((now() AT TIME ZONE 'UTC')::date - (x ->> 'day')::date)
										FROM jsonb_array_elements(r -> 'partitions_retired') x
										WHERE (x ->> 'day')::date BETWEEN rr_day(100) AND rr_day(98)), '[]');
		adjusted := adjusted || coalesce((SELECT jsonb_agg((now() AT TIME ZONE 'UTC')::date - x::text::date)
										  FROM jsonb_array_elements_text(r -> 'stats_days_adjusted') x), '[]');
		rebuilt := rebuilt || coalesce((SELECT jsonb_agg((now() AT TIME ZONE 'UTC')::date - x::text::date)
										FROM jsonb_array_elements_text(r -> 'stats_days_rebuilt') x), '[]');
		EXIT WHEN NOT (r -> 'more')::boolean OR calls >= 50;
	END LOOP;
	RETURN NEXT;
END $$;

SELECT rr_roll_up_all() > 0 AS rolled_up;
SELECT count(*) AS days_rolled_up FROM orchestrator.run_stats_days WHERE partition_day IN (rr_day(100), rr_day(99), rr_day(98));
SELECT count(*) FILTER (WHERE owner IS NOT NULL AND durations IS NOT NULL) AS owner_multisets,
	   count(*) FILTER (WHERE owner IS NULL AND durations IS NULL) AS all_owner_rows
FROM orchestrator.step_duration_stats_daily WHERE workflow = 'rr_wf' AND partition_day = rr_day(99);

-- Retention with the cutoff at 04:45:07 of day -99: day -100 goes whole;
-- of day -99, the runs that finished before the cutoff go 7 at a time
-- (the second and third of a minute's three runs before the cutoff, the
-- first after it), and so does P of rr_last, whose failure was the last
-- seen of its error.
SELECT * FROM rr_expire(99, interval '4 hours 45 minutes 7 seconds', 7);
SELECT count(*) AS left_of_day99 FROM orchestrator.workflow_runs
WHERE name LIKE 'rr\_%' AND id >= orchestrator.uuid_v7_boundary(rr_at(99, '0')) AND id < orchestrator.uuid_v7_boundary(rr_at(98, '0'));
SELECT count(*) AS keys_left FROM orchestrator.idempotency_keys k
WHERE k.name = 'rr_wf' AND NOT EXISTS (SELECT 1 FROM orchestrator.workflow_runs r WHERE r.id = k.run_id);
SELECT last_seen = rr_at(99, interval '2 hours') AS last_seen_is_q, occurrences
FROM orchestrator.step_error_stats_daily WHERE workflow = 'rr_last' AND partition_day = rr_day(99);
SELECT count(*) AS rollup_rows_of_day100 FROM orchestrator.run_stats_daily WHERE partition_day = rr_day(100);
SELECT count(*) AS empty_rollup_rows FROM orchestrator.run_stats_daily WHERE runs = 0;
-- Exactly what a rebuild from scratch answers.
SELECT rows > 0 AS compared, only_now, only_rebuilt FROM rr_compare('incremental');
-- The percentiles computed from the multisets are percentile_cont()'s over
-- the steps left, to the last bit.
SELECT count(*) AS groups,
	   count(*) FILTER (WHERE (d.samples, d.p50, d.p95, d.p99, d.max) IS NOT DISTINCT FROM (l.samples, l.p50, l.p95, l.p99, l.max)) AS equal
FROM orchestrator.step_duration_stats_daily d
JOIN (SELECT r.owner, r.name, s.step, s.kind, count(*) AS samples,
			 percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision) AS p50,
			 percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision) AS p95,
			 percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision) AS p99,
			 max(extract(epoch FROM s.finished_at - s.started_at))::double precision AS max
	  FROM orchestrator.workflow_runs r JOIN orchestrator.workflow_steps s ON s.run_id = r.id
	  WHERE r.name = 'rr_wf' AND s.status = 'succeeded' AND s.started_at IS NOT NULL
		AND r.id >= orchestrator.uuid_v7_boundary(rr_at(99, '0')) AND r.id < orchestrator.uuid_v7_boundary(rr_at(98, '0'))
	  GROUP BY GROUPING SETS ((r.owner, r.name, s.step, s.kind), (r.name, s.step, s.kind))) l
  ON d.owner IS NOT DISTINCT FROM l.owner AND d.workflow = l.name AND d.step = l.step AND d.kind = l.kind
WHERE d.partition_day = rr_day(99);

-- Once more, cutting into the next minutes: the roll-ups are now the
-- rebuild's, and subtracting from them still gives the same answers.
SELECT calls, deleted, retired, adjusted, rebuilt FROM rr_expire(99, interval '5 hours 30 minutes', 1000);
SELECT rows > 0 AS compared, only_now, only_rebuilt FROM rr_compare('incremental again');

-- A run of day -99 that finished again after the day was rolled up
-- (retry_run resumes a failed run; here its row is changed directly): the
-- roll-ups do not hold what it is now, so the day is aggregated again when
-- runs of it expire.
UPDATE orchestrator.workflow_runs SET status = 'succeeded', finished_at = now(), cost = cost + 1
WHERE id = (SELECT id FROM orchestrator.workflow_runs WHERE name = 'rr_wf' AND status = 'failed'
			  AND id >= orchestrator.uuid_v7_boundary(rr_at(99, '0')) AND id < orchestrator.uuid_v7_boundary(rr_at(98, '0'))
			ORDER BY finished_at DESC LIMIT 1);
SELECT calls, deleted, adjusted, rebuilt FROM rr_expire(99, interval '6 hours', 1000);
SELECT rows > 0 AS compared, only_now, only_rebuilt FROM rr_compare('after a resumed run');

-- Roll-ups that lack the group of a removed run (changed by hand): the
-- subtraction notices and the day is aggregated again.
DELETE FROM orchestrator.throughput_stats
WHERE workflow = 'rr_wf' AND partition_day = rr_day(99)
  AND minute = (SELECT min(minute) FROM orchestrator.throughput_stats WHERE workflow = 'rr_wf' AND partition_day = rr_day(99));
SELECT calls, deleted, adjusted, rebuilt FROM rr_expire(99, interval '6 hours 10 minutes', 1000);
SELECT rows > 0 AS compared, only_now, only_rebuilt FROM rr_compare('after lost roll-up rows');

-- Internal: users reach none of it.
SET ROLE alice;
SELECT try('SELECT orchestrator._delete_runs(current_date, ''{}'', now(), true)') AS user_deletes,
	   try('SELECT orchestrator._roll_up_day(current_date)') AS user_rolls_up,
	   try('SELECT orchestrator._duration_stats(''{1}'', ''{1}'')') AS user_duration_stats;
RESET ROLE;

-- Leave no fake history behind.
RESET orchestrator.retention;
CREATE TEMP TABLE rr_ids AS SELECT id FROM orchestrator.workflow_runs WHERE name LIKE 'rr\_%';
DELETE FROM orchestrator.idempotency_keys WHERE run_id IN (SELECT id FROM rr_ids);
DELETE FROM orchestrator.workflow_events WHERE run_id IN (SELECT id FROM rr_ids);
DELETE FROM orchestrator.workflow_steps WHERE run_id IN (SELECT id FROM rr_ids);
DELETE FROM orchestrator.workflow_runs WHERE id IN (SELECT id FROM rr_ids);
SELECT rr_roll_up_all() > 0 AS rolled_up_again;
DROP TABLE rr_seen;

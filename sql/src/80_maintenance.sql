-- Maintenance: partitions ahead, retention by completion time, archival,
-- scheduling with pg_cron, and what pg_dump keeps.
--
-- History partitions are ordinary tables, not extension members: pg_dump
-- dumps them (definition and rows) like any table, and a restore recreates
-- them.  The partitions the install script created are released from the
-- extension here.  A plain pg_restore or psql of a dump works: its
-- statements for partitions and partition indexes that exist already are
-- skipped (src/restore.c; docs/operations.md).

DO $release$
DECLARE
	part regclass;
BEGIN
	FOR part IN SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i
				WHERE i.inhparent IN ('orchestrator.workflow_runs'::regclass,
									  'orchestrator.workflow_steps'::regclass,
									  'orchestrator.workflow_events'::regclass)
				ORDER BY 1 LOOP
		EXECUTE format('ALTER EXTENSION orchestrator DROP TABLE %s', part);
	END LOOP;
END
$release$;

-- Indexes for retention (finished_at) and for the analytics views (day of
-- creation, minute of completion, in UTC so that they are immutable).  Each
-- partition gets its own copy.  Those of finished_at hold finished runs only:
-- what looks for unfinished ones uses workflow_runs_active_owner
-- (52_quotas.sql), so a run's start writes no entry in them.  The day of
-- creation holds one value per partition (a partition is a day) and costs
-- every start an entry, but it lets a filter on "day" skip the partitions of
-- other days when maintain() has not rolled them up (bench/history.sh).
CREATE INDEX workflow_runs_finished_at ON orchestrator.workflow_runs (finished_at) INCLUDE (id)
	WHERE finished_at IS NOT NULL;
CREATE INDEX workflow_runs_created_day ON orchestrator.workflow_runs
	((date_trunc('day', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'));
CREATE INDEX workflow_runs_finished_minute ON orchestrator.workflow_runs
	((date_trunc('minute', finished_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'))
	WHERE finished_at IS NOT NULL;
-- Retention removes the idempotency keys and webhook deliveries of the runs
-- it removes.
CREATE INDEX idempotency_keys_run ON orchestrator.idempotency_keys (run_id);
CREATE INDEX webhook_outbox_run ON orchestrator.webhook_outbox (run_id);

-- Daily roll-ups for the analytics views (85_analytics.sql).  Once every
-- run of a day's partition has finished, the partition never changes again
-- (until retention removes it), so maintain() aggregates it once into
-- run_stats_daily, by the UTC day of creation, owner, workflow, tenant and
-- status.  The watermark is the last day rolled up: the views read the
-- roll-ups for partitions up to it and aggregate the runs of later
-- partitions live.  A day with an unfinished run holds the watermark back.
--
-- When retention removes runs of a rolled-up day one by one (the day at the
-- retention edge), maintain() subtracts them from the roll-ups instead of
-- aggregating the day again: every measure is kept in a form that can be
-- subtracted exactly.  Counts, costs and tokens are sums (seconds is numeric
-- for that: a sum of float8 does not give back its terms); the step
-- duration percentiles keep the multiset of durations they were computed
-- from (see step_duration_stats_daily); step_errors' last_seen is a max,
-- computed again from the day's failed steps only when a removed step held
-- it.
CREATE TABLE orchestrator.run_stats_daily (
	partition_day date        NOT NULL,
	day      date             NOT NULL,
	owner    regrole          NOT NULL,
	workflow text             NOT NULL,
	tenant   text,
	status   text             NOT NULL,
	runs     bigint           NOT NULL,
	finished bigint           NOT NULL,
	seconds  numeric          NOT NULL,
	cost     numeric(20,4)    NOT NULL,
	tokens   numeric          NOT NULL
);
COMMENT ON TABLE orchestrator.run_stats_daily IS
'runs of closed partitions aggregated by UTC day of creation, owner, workflow, tenant and status (maintain() fills it)';
CREATE INDEX run_stats_daily_partition ON orchestrator.run_stats_daily (partition_day);

-- Errors of failed and dead steps, and runs finished per minute, of the
-- same closed partitions (for step_errors and throughput).
CREATE TABLE orchestrator.step_error_stats_daily (
	partition_day date        NOT NULL,
	day         date          NOT NULL,
	owner       regrole       NOT NULL,
	workflow    text          NOT NULL,
	tenant      text,
	step        text          NOT NULL,
	message     text          NOT NULL,
	sqlstate    text,
	occurrences bigint        NOT NULL,
	last_seen   timestamptz
);
CREATE INDEX step_error_stats_daily_partition ON orchestrator.step_error_stats_daily (partition_day);
CREATE TABLE orchestrator.throughput_stats (
	partition_day date        NOT NULL,
	minute      timestamptz   NOT NULL,
	owner       regrole       NOT NULL,
	workflow    text          NOT NULL,
	tenant      text,
	status      text          NOT NULL,
	runs        bigint        NOT NULL
);
CREATE INDEX throughput_stats_partition ON orchestrator.throughput_stats (partition_day);
CREATE INDEX throughput_stats_minute ON orchestrator.throughput_stats (minute);

-- Step duration percentiles of closed partitions, per partition day,
-- workflow and step: once per owner (what that role sees) and once over all
-- owners (owner NULL: what administrators see), since percentiles do not
-- add up.  owner is the workflow's owner; the roll-ups are what owners and
-- administrators see (a role that only starts another's workflow sees its
-- runs in orchestrator.runs, not in the aggregates).  The rows per owner
-- also keep the multiset of durations (distinct values ascending, with how
-- many steps took each): removing runs subtracts their steps' durations
-- from it and computes the percentiles again from what is left, exactly as
-- percentile_cont() over the remaining steps would (_duration_stats); the
-- row over all owners is merged from the owners' multisets.
CREATE TABLE orchestrator.step_duration_stats_daily (
	partition_day date        NOT NULL,
	owner       regrole,
	workflow    text          NOT NULL,
	step        text          NOT NULL,
	kind        text          NOT NULL,
	samples     bigint        NOT NULL,
	p50         double precision,
	p95         double precision,
	p99         double precision,
	max         double precision,
	durations   double precision[],
	counts      integer[]
);
CREATE INDEX step_duration_stats_daily_partition ON orchestrator.step_duration_stats_daily (partition_day);
-- step_durations filters on the day as the view spells it: with the
-- multisets in its rows (inline up to 2 kB), it reads only the days asked
-- for.
CREATE INDEX step_duration_stats_daily_day ON orchestrator.step_duration_stats_daily
	((partition_day::timestamp AT TIME ZONE 'UTC'));

-- When each partition day was rolled up: a run of it that finished later
-- (retry_run reopens a finished run) or is unfinished makes its roll-ups
-- stale, and maintain() aggregates such a day again instead of subtracting
-- from it.
CREATE TABLE orchestrator.run_stats_days (
	partition_day date        PRIMARY KEY,
	rolled_up_at  timestamptz NOT NULL
);
COMMENT ON TABLE orchestrator.run_stats_days IS
'the partition days rolled up into the run statistics, and when (maintain() fills it)';

CREATE TABLE orchestrator.run_stats_watermark (
	singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	day       date    NOT NULL
);
COMMENT ON TABLE orchestrator.run_stats_watermark IS
'the last partition day aggregated into run_stats_daily (no row: none yet)';

-- The first run id the views aggregate live: the start of the day after the
-- watermark (all ids when there is none).  SECURITY DEFINER: the views call
-- it with the caller's rights, and it reveals only that boundary.
CREATE FUNCTION orchestrator._stats_live_from()
RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce((SELECT orchestrator.uuid_v7_boundary((w.day + 1)::timestamp AT TIME ZONE 'UTC')
					 FROM orchestrator.run_stats_watermark w),
					'00000000-0000-0000-0000-000000000000'::uuid)
$$;

-- Samples, p50, p95, p99 and max of a multiset of durations (distinct
-- values with how many times each occurs; a NULL value counts as a sample
-- but not in the percentiles), computed as count(*), percentile_cont() and
-- max() compute them over the samples one by one: the value at 0-based rank
-- floor(f * (n - 1)), interpolated linearly towards the next rank by the
-- fraction, in float8 as PostgreSQL does.
CREATE FUNCTION orchestrator._duration_stats(durations double precision[], counts integer[],
	OUT samples bigint, OUT p50 double precision, OUT p95 double precision, OUT p99 double precision,
	OUT max double precision)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	WITH u AS (SELECT x.v, sum(x.c) OVER (ORDER BY x.v ROWS UNBOUNDED PRECEDING) AS upto
			   FROM unnest(durations, counts) x(v, c)
			   WHERE x.v IS NOT NULL AND x.c > 0),
		 q AS (SELECT f.i, f.p * ((SELECT pg_catalog.max(u.upto) FROM u) - 1)::double precision AS pos
			   FROM unnest(ARRAY[0.5, 0.95, 0.99]::double precision[]) WITH ORDINALITY f(p, i)),
		 r AS (SELECT q.i, q.pos,
					  (SELECT u.v FROM u WHERE u.upto > floor(q.pos) ORDER BY u.v LIMIT 1) AS lo,
					  (SELECT u.v FROM u WHERE u.upto > ceil(q.pos) ORDER BY u.v LIMIT 1) AS hi
			   FROM q),
		 p AS (SELECT r.i, CASE WHEN ceil(r.pos) > floor(r.pos) THEN r.lo + (r.hi - r.lo) * (r.pos - floor(r.pos))
								ELSE r.lo END AS v
			   FROM r)
	SELECT (SELECT pg_catalog.sum(c) FROM unnest(counts) c WHERE c > 0)::bigint,
		   (SELECT p.v FROM p WHERE p.i = 1), (SELECT p.v FROM p WHERE p.i = 2), (SELECT p.v FROM p WHERE p.i = 3),
		   (SELECT pg_catalog.max(u.v) FROM u)
$$;

-- Two multisets of durations added (sign 1) or the second subtracted from
-- the first (sign -1): values whose count drops to 0 are left out; a count
-- below 0 (a value subtracted that was not there) stays, for the caller to
-- see.
CREATE FUNCTION orchestrator._durations_merge(a_durations double precision[], a_counts integer[],
	b_durations double precision[], b_counts integer[], sign integer,
	OUT durations double precision[], OUT counts integer[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT array_agg(m.v ORDER BY m.v), array_agg(m.c ORDER BY m.v)
	FROM (SELECT x.v, pg_catalog.sum(x.c)::integer AS c
		  FROM (SELECT a.v, a.c FROM unnest(a_durations, a_counts) a(v, c)
				UNION ALL
				SELECT b.v, b.c * sign FROM unnest(b_durations, b_counts) b(v, c)) x
		  GROUP BY x.v
		  HAVING pg_catalog.sum(x.c) <> 0) m
$$;

-- The rows over all owners (owner NULL) of a day's step durations, merged
-- again from the rows per owner: of the given (workflow, step, kind) groups,
-- or of all groups when groups is NULL.
CREATE FUNCTION orchestrator._roll_up_all_owners(day date, groups jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM orchestrator.step_duration_stats_daily d
		WHERE d.partition_day = _roll_up_all_owners.day AND d.owner IS NULL
		  AND (groups IS NULL OR jsonb_build_array(jsonb_build_array(d.workflow, d.step, d.kind)) <@ groups);
	INSERT INTO orchestrator.step_duration_stats_daily (partition_day, owner, workflow, step, kind, samples, p50, p95, p99, max)
	SELECT _roll_up_all_owners.day, NULL, g.workflow, g.step, g.kind, st.samples, st.p50, st.p95, st.p99, st.max
	FROM (SELECT m.workflow, m.step, m.kind, array_agg(m.v ORDER BY m.v) AS durations, array_agg(m.c ORDER BY m.v) AS counts
		  FROM (SELECT d.workflow, d.step, d.kind, u.v, sum(u.c)::integer AS c
				FROM orchestrator.step_duration_stats_daily d, unnest(d.durations, d.counts) u(v, c)
				WHERE d.partition_day = _roll_up_all_owners.day AND d.owner IS NOT NULL
				  AND (groups IS NULL OR jsonb_build_array(jsonb_build_array(d.workflow, d.step, d.kind)) <@ groups)
				GROUP BY 1, 2, 3, 4) m
		  GROUP BY 1, 2, 3) g,
		 LATERAL orchestrator._duration_stats(g.durations, g.counts) st;
END
$$;

-- Aggregate one partition day (by its id range) into run_stats_daily,
-- step_error_stats_daily, throughput_stats and step_duration_stats_daily,
-- replacing what was there for that day, and note when (run_stats_days).
CREATE FUNCTION orchestrator._roll_up_day(day date)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	lo uuid := orchestrator.uuid_v7_boundary(day::timestamp AT TIME ZONE 'UTC');
	hi uuid := orchestrator.uuid_v7_boundary((day + 1)::timestamp AT TIME ZONE 'UTC');
	n  bigint;
BEGIN
	DELETE FROM orchestrator.run_stats_daily s WHERE s.partition_day = _roll_up_day.day;
	DELETE FROM orchestrator.step_error_stats_daily s WHERE s.partition_day = _roll_up_day.day;
	DELETE FROM orchestrator.throughput_stats s WHERE s.partition_day = _roll_up_day.day;
	DELETE FROM orchestrator.step_duration_stats_daily s WHERE s.partition_day = _roll_up_day.day;
	EXECUTE format($q$
		INSERT INTO orchestrator.run_stats_daily (partition_day, day, owner, workflow, tenant, status, runs, finished, seconds, cost, tokens)
		SELECT %3$L::date, (r.created_at AT TIME ZONE 'UTC')::date, r.owner, r.name, r.tenant, r.status, count(*),
			   count(r.finished_at), coalesce(sum(extract(epoch FROM r.finished_at - r.created_at)), 0),
			   sum(r.cost), coalesce(sum(t.tokens), 0)
		FROM orchestrator.workflow_runs r
		LEFT JOIN (SELECT s.run_id, sum(orchestrator._tokens(s.result)) AS tokens
				   FROM orchestrator.workflow_steps s
				   WHERE s.run_id >= %1$L AND s.run_id < %2$L AND s.result ? 'tokens'
				   GROUP BY s.run_id) t ON t.run_id = r.id
		WHERE r.id >= %1$L AND r.id < %2$L
		GROUP BY 2, 3, 4, 5, 6$q$, lo, hi, day);
	GET DIAGNOSTICS n = ROW_COUNT;
	EXECUTE format($q$
		INSERT INTO orchestrator.step_error_stats_daily (partition_day, day, owner, workflow, tenant, step, message,
														  sqlstate, occurrences, last_seen)
		SELECT %3$L::date, (r.created_at AT TIME ZONE 'UTC')::date, r.owner, r.name, r.tenant, s.step,
			   coalesce(s.error ->> 'message', s.error #>> '{}', '(no error)'), s.error ->> 'sqlstate',
			   count(*), max(s.finished_at)
		FROM orchestrator.workflow_runs r
		JOIN orchestrator.workflow_steps s ON s.run_id = r.id
		WHERE r.id >= %1$L AND r.id < %2$L AND s.run_id >= %1$L AND s.run_id < %2$L
		  AND s.status IN ('failed', 'dead')
		GROUP BY 2, 3, 4, 5, 6, 7, 8$q$, lo, hi, day);
	EXECUTE format($q$
		INSERT INTO orchestrator.throughput_stats (partition_day, minute, owner, workflow, tenant, status, runs)
		SELECT %3$L::date, date_trunc('minute', r.finished_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
			   r.owner, r.name, r.tenant, r.status, count(*)
		FROM orchestrator.workflow_runs r
		WHERE r.id >= %1$L AND r.id < %2$L AND r.finished_at IS NOT NULL
		GROUP BY 2, 3, 4, 5, 6$q$, lo, hi, day);
	-- Durations per owner as multisets (hashed by value first: only the
	-- distinct values are sorted), then the percentiles from them.
	EXECUTE format($q$
		WITH m AS MATERIALIZED (
			SELECT r.owner, r.name AS workflow, s.step, s.kind,
				   extract(epoch FROM s.finished_at - s.started_at)::double precision AS v, count(*)::integer AS c
			FROM orchestrator.workflow_runs r
			JOIN orchestrator.workflow_steps s ON s.run_id = r.id
			WHERE r.id >= %1$L AND r.id < %2$L AND s.run_id >= %1$L AND s.run_id < %2$L
			  AND s.status = 'succeeded' AND s.started_at IS NOT NULL
			GROUP BY 1, 2, 3, 4, 5)
		INSERT INTO orchestrator.step_duration_stats_daily (partition_day, owner, workflow, step, kind, samples, p50, p95, p99, max,
															 durations, counts)
		SELECT %3$L::date, g.owner, g.workflow, g.step, g.kind, st.samples, st.p50, st.p95, st.p99, st.max,
			   g.durations, g.counts
		FROM (SELECT m.owner, m.workflow, m.step, m.kind, array_agg(m.v ORDER BY m.v) AS durations,
					 array_agg(m.c ORDER BY m.v) AS counts
			  FROM m
			  GROUP BY 1, 2, 3, 4) g,
			 LATERAL orchestrator._duration_stats(g.durations, g.counts) st$q$, lo, hi, day);
	PERFORM orchestrator._roll_up_all_owners(day, NULL);
	INSERT INTO orchestrator.run_stats_days (partition_day, rolled_up_at) VALUES (day, now())
		ON CONFLICT (partition_day) DO UPDATE SET rolled_up_at = excluded.rolled_up_at;
	RETURN n;
END
$$;

-- Forget the roll-ups from a day on, so that maintain() aggregates those
-- days again (after loading or changing history in the past).
CREATE FUNCTION orchestrator._api_rebuild_stats(from_day date DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	-- the number of watermark rows changed (not of the roll-up rows removed)
	IF from_day IS NULL THEN
		DELETE FROM orchestrator.run_stats_watermark;
		GET DIAGNOSTICS n = ROW_COUNT;
		DELETE FROM orchestrator.run_stats_daily;
		DELETE FROM orchestrator.step_error_stats_daily;
		DELETE FROM orchestrator.throughput_stats;
		DELETE FROM orchestrator.step_duration_stats_daily;
		DELETE FROM orchestrator.run_stats_days;
	ELSE
		UPDATE orchestrator.run_stats_watermark w SET day = least(w.day, from_day - 1)
			WHERE w.day >= from_day;
		GET DIAGNOSTICS n = ROW_COUNT;
		DELETE FROM orchestrator.run_stats_daily s WHERE s.partition_day >= from_day;
		DELETE FROM orchestrator.step_error_stats_daily s WHERE s.partition_day >= from_day;
		DELETE FROM orchestrator.throughput_stats s WHERE s.partition_day >= from_day;
		DELETE FROM orchestrator.step_duration_stats_daily s WHERE s.partition_day >= from_day;
		DELETE FROM orchestrator.run_stats_days s WHERE s.partition_day >= from_day;
	END IF;
	RETURN n;
END
$$;

-- Days (UTC) after today for which every history table has a partition.
CREATE FUNCTION orchestrator._partitions_ahead()
RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	today date := (now() AT TIME ZONE 'UTC')::date;
	n     integer := 0;
BEGIN
	LOOP
		EXIT WHEN n >= 1000
			OR to_regclass(format('orchestrator.workflow_runs_p%s', to_char(today + n + 1, 'YYYYMMDD'))) IS NULL
			OR to_regclass(format('orchestrator.workflow_steps_p%s', to_char(today + n + 1, 'YYYYMMDD'))) IS NULL
			OR to_regclass(format('orchestrator.workflow_events_p%s', to_char(today + n + 1, 'YYYYMMDD'))) IS NULL;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

-- Remove the given runs (all created on one UTC day), if they are still
-- finished before the cutoff (retry_run may have resumed one since they were
-- chosen), with their steps, events, signals, idempotency keys and webhook
-- deliveries: one statement, each table by index.  The day's bounds are
-- spelled out so that each statement touches one partition.
--
-- rolled: the day is in the roll-ups (at or before the watermark).  Then
-- what the removed runs and steps contributed is subtracted from the
-- roll-ups in the same statement, from the rows it deleted: sums and counts
-- are subtracted, groups left empty removed, the duration multisets of the
-- owners subtracted and their percentiles (and the row over all owners)
-- computed again, and step_errors' last_seen computed again where a removed
-- step held it.  The day is aggregated again from its remaining runs
-- instead (rebuilt) when its roll-ups may not hold what the removed runs
-- are now: a run of it finished after it was rolled up or is unfinished
-- (resumed), or a removed run's group was not in the roll-ups or went
-- below zero.
CREATE FUNCTION orchestrator._delete_runs(day date, ids uuid[], cutoff timestamptz, rolled boolean,
	OUT deleted bigint, OUT rebuilt boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	lo uuid := orchestrator.uuid_v7_boundary(day::timestamp AT TIME ZONE 'UTC');
	hi uuid := orchestrator.uuid_v7_boundary((day + 1)::timestamp AT TIME ZONE 'UTC');
	rolled_at  timestamptz;
	stale      boolean := false;
	consistent boolean;
	groups     jsonb;
	lost       jsonb;
	minutes    timestamptz[];
	removal    constant text := $q$
		dr AS (DELETE FROM orchestrator.workflow_runs w
			   WHERE w.id >= %1$L AND w.id < %2$L AND w.id = ANY ($1) AND w.finished_at < $2
			   RETURNING w.id, w.created_at, w.owner, w.name, w.tenant, w.status, w.finished_at, w.cost),
		ids AS (SELECT coalesce(array_agg(dr.id), '{}') AS a FROM dr),
		ds AS (DELETE FROM orchestrator.workflow_steps s
			   WHERE s.run_id >= %1$L AND s.run_id < %2$L AND s.run_id = ANY ((SELECT ids.a FROM ids)::uuid[])
			   RETURNING s.run_id, s.step, s.kind, s.status, s.started_at, s.finished_at, s.error,
						 CASE WHEN s.result ? 'tokens' THEN orchestrator._tokens(s.result) END AS tokens),
		de AS (DELETE FROM orchestrator.workflow_events e
			   WHERE e.run_id >= %1$L AND e.run_id < %2$L AND e.run_id = ANY ((SELECT ids.a FROM ids)::uuid[])),
		dg AS (DELETE FROM orchestrator.signals g WHERE g.run_id = ANY ((SELECT ids.a FROM ids)::uuid[])),
		dk AS (DELETE FROM orchestrator.idempotency_keys k WHERE k.run_id = ANY ((SELECT ids.a FROM ids)::uuid[])),
		dw AS (DELETE FROM orchestrator.webhook_outbox o WHERE o.run_id = ANY ((SELECT ids.a FROM ids)::uuid[]))$q$;
BEGIN
	IF rolled THEN
		SELECT d.rolled_up_at INTO rolled_at FROM orchestrator.run_stats_days d WHERE d.partition_day = _delete_runs.day;
		IF rolled_at IS NULL THEN
			stale := true;
		ELSE
			EXECUTE format('SELECT EXISTS (SELECT 1 FROM orchestrator.workflow_runs w WHERE w.id >= %L AND w.id < %L
							AND (w.finished_at IS NULL OR w.finished_at > $1))', lo, hi)
				INTO stale USING rolled_at;
		END IF;
	END IF;
	rebuilt := rolled AND stale;
	IF NOT rolled OR stale THEN
		EXECUTE format('WITH ' || removal || ' SELECT count(*) FROM dr', lo, hi) INTO deleted USING ids, cutoff;
		IF rebuilt THEN
			PERFORM orchestrator._roll_up_day(day);
		END IF;
		RETURN;
	END IF;

	EXECUTE format('WITH ' || removal || $q$,
		tk AS (SELECT ds.run_id, sum(ds.tokens) AS tokens FROM ds GROUP BY ds.run_id),
		rd AS (SELECT (r.created_at AT TIME ZONE 'UTC')::date AS day, r.owner, r.name AS workflow, r.tenant, r.status,
					  count(*) AS runs, count(r.finished_at) AS finished,
					  coalesce(sum(extract(epoch FROM r.finished_at - r.created_at)), 0) AS seconds,
					  sum(r.cost) AS cost, coalesce(sum(tk.tokens), 0) AS tokens
			   FROM dr r LEFT JOIN tk ON tk.run_id = r.id
			   GROUP BY 1, 2, 3, 4, 5),
		ur AS (UPDATE orchestrator.run_stats_daily x
			   SET runs = x.runs - d.runs, finished = x.finished - d.finished, seconds = x.seconds - d.seconds,
				   cost = x.cost - d.cost, tokens = x.tokens - d.tokens
			   FROM rd d
			   WHERE x.partition_day = %3$L AND x.day = d.day AND x.owner = d.owner AND x.workflow = d.workflow
				 AND x.tenant IS NOT DISTINCT FROM d.tenant AND x.status = d.status
			   RETURNING x.runs, x.finished),
		ed AS (SELECT (r.created_at AT TIME ZONE 'UTC')::date AS day, r.owner, r.name AS workflow, r.tenant, s.step,
					  coalesce(s.error ->> 'message', s.error #>> '{}', '(no error)') AS message,
					  s.error ->> 'sqlstate' AS sqlstate, count(*) AS n, max(s.finished_at) AS seen
			   FROM dr r JOIN ds s ON s.run_id = r.id
			   WHERE s.status IN ('failed', 'dead')
			   GROUP BY 1, 2, 3, 4, 5, 6, 7),
		ue AS (UPDATE orchestrator.step_error_stats_daily x
			   SET occurrences = x.occurrences - d.n
			   FROM ed d
			   WHERE x.partition_day = %3$L AND x.day = d.day AND x.owner = d.owner AND x.workflow = d.workflow
				 AND x.tenant IS NOT DISTINCT FROM d.tenant AND x.step = d.step AND x.message = d.message
				 AND x.sqlstate IS NOT DISTINCT FROM d.sqlstate
			   RETURNING x.occurrences, x.occurrences > 0 AND d.seen >= x.last_seen AS lost_last,
						 x.day, x.owner, x.workflow, x.tenant, x.step, x.message, x.sqlstate),
		td AS (SELECT date_trunc('minute', r.finished_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS minute,
					  r.owner, r.name AS workflow, r.tenant, r.status, count(*) AS n
			   FROM dr r WHERE r.finished_at IS NOT NULL
			   GROUP BY 1, 2, 3, 4, 5),
		ut AS (UPDATE orchestrator.throughput_stats x
			   SET runs = x.runs - d.n
			   FROM td d
			   WHERE x.partition_day = %3$L AND x.minute = d.minute AND x.owner = d.owner AND x.workflow = d.workflow
				 AND x.tenant IS NOT DISTINCT FROM d.tenant AND x.status = d.status
			   RETURNING x.runs, x.minute),
		dd AS (SELECT m.owner, m.workflow, m.step, m.kind, array_agg(m.v ORDER BY m.v) AS durations,
					  array_agg(m.c ORDER BY m.v) AS counts
			   FROM (SELECT r.owner, r.name AS workflow, s.step, s.kind,
							extract(epoch FROM s.finished_at - s.started_at)::double precision AS v, count(*)::integer AS c
					 FROM dr r JOIN ds s ON s.run_id = r.id
					 WHERE s.status = 'succeeded' AND s.started_at IS NOT NULL
					 GROUP BY 1, 2, 3, 4, 5) m
			   GROUP BY 1, 2, 3, 4),
		ud AS (UPDATE orchestrator.step_duration_stats_daily x
			   SET (durations, counts, samples, p50, p95, p99, max) =
				   (SELECT m.durations, m.counts, coalesce(st.samples, 0), st.p50, st.p95, st.p99, st.max
					FROM orchestrator._durations_merge(x.durations, x.counts, d.durations, d.counts, -1) m,
						 LATERAL orchestrator._duration_stats(m.durations, m.counts) st)
			   FROM dd d
			   WHERE x.partition_day = %3$L AND x.owner = d.owner AND x.workflow = d.workflow
				 AND x.step = d.step AND x.kind = d.kind
			   RETURNING x.workflow, x.step, x.kind, coalesce(0 > ANY (x.counts), false) AS negative)
		SELECT (SELECT count(*) FROM dr),
			   (SELECT count(*) FROM rd) = (SELECT count(*) FROM ur) AND NOT EXISTS (SELECT 1 FROM ur WHERE ur.runs < 0 OR ur.finished < 0)
			   AND (SELECT count(*) FROM ed) = (SELECT count(*) FROM ue) AND NOT EXISTS (SELECT 1 FROM ue WHERE ue.occurrences < 0)
			   AND (SELECT count(*) FROM td) = (SELECT count(*) FROM ut) AND NOT EXISTS (SELECT 1 FROM ut WHERE ut.runs < 0)
			   AND (SELECT count(*) FROM dd) = (SELECT count(*) FROM ud) AND NOT EXISTS (SELECT 1 FROM ud WHERE ud.negative),
			   (SELECT jsonb_agg(DISTINCT jsonb_build_array(ud.workflow, ud.step, ud.kind)) FROM ud),
			   (SELECT jsonb_agg(jsonb_build_object('day', ue.day, 'owner', ue.owner::oid, 'workflow', ue.workflow,
						'tenant', ue.tenant, 'step', ue.step, 'message', ue.message, 'sqlstate', ue.sqlstate))
				FROM ue WHERE ue.lost_last),
			   (SELECT array_agg(DISTINCT ut.minute) FROM ut WHERE ut.runs = 0)$q$, lo, hi, day)
		INTO deleted, consistent, groups, lost, minutes USING ids, cutoff;

	IF NOT consistent THEN
		PERFORM orchestrator._roll_up_day(day);
		rebuilt := true;
		RETURN;
	END IF;
	DELETE FROM orchestrator.run_stats_daily x WHERE x.partition_day = _delete_runs.day AND x.runs = 0;
	DELETE FROM orchestrator.step_error_stats_daily x WHERE x.partition_day = _delete_runs.day AND x.occurrences = 0;
	DELETE FROM orchestrator.throughput_stats x
		WHERE x.minute = ANY (minutes) AND x.partition_day = _delete_runs.day AND x.runs = 0;
	DELETE FROM orchestrator.step_duration_stats_daily x
		WHERE x.partition_day = _delete_runs.day AND x.owner IS NOT NULL AND x.samples = 0;
	IF groups IS NOT NULL THEN
		PERFORM orchestrator._roll_up_all_owners(day, groups);
	END IF;
	-- A removed step was the last seen of its error: the latest of those
	-- left, from the day's failed steps (one pass over the day, rare: the
	-- steps removed are those of the runs that finished first).
	IF lost IS NOT NULL THEN
		EXECUTE format($q$
			UPDATE orchestrator.step_error_stats_daily x SET last_seen = m.seen
			FROM jsonb_to_recordset($1) l(day date, owner oid, workflow text, tenant text, step text, message text, sqlstate text),
				 (SELECT (r.created_at AT TIME ZONE 'UTC')::date AS day, r.owner, r.name AS workflow, r.tenant, s.step,
						 coalesce(s.error ->> 'message', s.error #>> '{}', '(no error)') AS message,
						 s.error ->> 'sqlstate' AS sqlstate, max(s.finished_at) AS seen
				  FROM orchestrator.workflow_runs r
				  JOIN orchestrator.workflow_steps s ON s.run_id = r.id
				  WHERE r.id >= %1$L AND r.id < %2$L AND s.run_id >= %1$L AND s.run_id < %2$L
					AND s.status IN ('failed', 'dead')
				  GROUP BY 1, 2, 3, 4, 5, 6, 7) m
			WHERE x.partition_day = %3$L AND x.day = l.day AND x.owner::oid = l.owner AND x.workflow = l.workflow
			  AND x.tenant IS NOT DISTINCT FROM l.tenant AND x.step = l.step AND x.message = l.message
			  AND x.sqlstate IS NOT DISTINCT FROM l.sqlstate
			  AND m.day = l.day AND m.owner::oid = l.owner AND m.workflow = l.workflow
			  AND m.tenant IS NOT DISTINCT FROM l.tenant AND m.step = l.step AND m.message = l.message
			  AND m.sqlstate IS NOT DISTINCT FROM l.sqlstate$q$, lo, hi, day) USING lost;
	END IF;
END
$$;

CREATE FUNCTION orchestrator._api_maintain(max_runs integer DEFAULT 10000)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
SET jit = off
AS $$
DECLARE
	retention  interval := current_setting('orchestrator.retention')::interval;
	mode       text := current_setting('orchestrator.archive_mode');
	ahead      integer := current_setting('orchestrator.partitions_ahead')::integer;
	cutoff     timestamptz := now() - retention;
	today      date := (now() AT TIME ZONE 'UTC')::date;
	created    integer;
	day        date;
	lo         uuid;
	hi         uuid;
	total      bigint;
	live       bigint;
	unexpired  bigint;
	last_done  timestamptz;
	retire     jsonb := '[]';
	kept       jsonb := '[]';
	retired    jsonb := '[]';
	skipped    jsonb := '[]';
	retire_days date[] := '{}';
	deleted    bigint := 0;
	batch      record;
	more       boolean;
	item       jsonb;
	tbl        text;
	part       text;
	watermark  date;
	open_runs  boolean;
	scan_from  date;
	removed    record;
	rolled     date[] := '{}';
	adjusted   date[] := '{}';
	rerolled   date[] := '{}';
	busy       boolean;
	sessions_purged bigint;
	unread     record;
BEGIN
	-- 0.3 wrote orchestrator.retention as interval text ('90 days'); the
	-- integer setting refuses that spelling, and the server then starts with
	-- the default (90d), a warning in its log the only sign.  Retiring runs
	-- by a retention nobody chose could delete history meant to be kept, so
	-- maintain() refuses until the configuration is spelled anew.
	SELECT f.sourcefile, f.sourceline, f.setting, f.error INTO unread
		FROM pg_catalog.pg_file_settings f
		WHERE f.name = 'orchestrator.retention'
		ORDER BY f.seqno DESC LIMIT 1;
	IF unread.error IS NOT NULL THEN
		RAISE EXCEPTION USING MESSAGE = format('orchestrator.retention = %L in %s line %s is not a valid setting', unread.setting, unread.sourcefile, unread.sourceline),
				  ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The server uses %s instead, so maintain() retires nothing until it is fixed.', current_setting('orchestrator.retention')),
				  HINT = 'Since 0.4 the retention is an integer with a unit: write ''90d'', ''2160h'' or ''7776000s'' (not ''90 days''), then reload.';
	END IF;
	IF max_runs IS NULL OR max_runs < 1 THEN
		RAISE EXCEPTION 'max_runs must be a positive integer' USING ERRCODE = 'invalid_parameter_value',
			DETAIL = format('Got %s.', coalesce(max_runs::text, 'NULL')),
			HINT = 'It bounds how many expired runs one call deletes row by row; the default is 10000.';
	END IF;
	-- One maintain() at a time; a concurrent call reports and returns.
	-- (A lock no role can take from SQL: see _xact_lock.)
	IF NOT orchestrator._xact_lock('maintain', '', false) THEN
		RETURN jsonb_build_object('skipped', true, 'reason', 'another maintain() is running');
	END IF;

	created := orchestrator._create_partitions(today, ahead + 1);

	-- Partitions of days that ended before the cutoff: retire a day whole when
	-- every run in it finished before the cutoff; otherwise keep it (its live
	-- runs stay reachable) and delete its expired runs row by row below.
	FOR day IN SELECT to_date(substr(c.relname, length('workflow_runs_p') + 1), 'YYYYMMDD')
			   FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
			   WHERE i.inhparent = 'orchestrator.workflow_runs'::regclass
				 AND c.relname ~ '^workflow_runs_p[0-9]{8}$'
			   ORDER BY 1 LOOP
		EXIT WHEN (day + 1)::timestamp AT TIME ZONE 'UTC' > least(cutoff, now() - interval '1 minute');
		part := format('orchestrator.workflow_runs_p%s', to_char(day, 'YYYYMMDD'));
		EXECUTE format('SELECT count(*), count(*) FILTER (WHERE finished_at IS NULL),
							   count(*) FILTER (WHERE finished_at >= $1), max(finished_at) FROM %s', part)
			INTO total, live, unexpired, last_done USING cutoff;
		IF live = 0 AND unexpired = 0 THEN
			retire := retire || jsonb_build_object('day', day, 'runs', total, 'last_finished_at', last_done);
			retire_days := retire_days || day;
		ELSE
			kept := kept || jsonb_build_object('day', day, 'runs', total, 'unfinished_runs', live,
											   'unexpired_runs', unexpired);
			scan_from := coalesce(scan_from, day);
		END IF;
	END LOOP;
	-- Expired runs can be in the days kept above and in the days from the
	-- first one not looked at above on (the cutoff's); not in the days before
	-- the first kept one, all retired whole, nor in runs created a day or
	-- more after the cutoff (a run finishes after its id is made, but for
	-- one that starts and finishes in one transaction: now() is its start).
	-- The bounds let the planner leave out every other partition.
	scan_from := coalesce(scan_from, day, today);

	SELECT w.day INTO watermark FROM orchestrator.run_stats_watermark w FOR UPDATE;

	-- Row by row: expired runs outside the partitions retired whole, oldest
	-- completion first, at most max_runs per call.  Those of a day already
	-- rolled up are subtracted from its roll-ups (_delete_runs).
	lo := orchestrator.uuid_v7_boundary(scan_from::timestamp AT TIME ZONE 'UTC');
	hi := orchestrator.uuid_v7_boundary(cutoff + interval '1 day');
	FOR batch IN
		SELECT d.day, array_agg(d.id) AS ids
		FROM (SELECT w.id, (orchestrator.uuid_v7_time(w.id) AT TIME ZONE 'UTC')::date AS day
			  FROM orchestrator.workflow_runs w
			  WHERE w.finished_at < cutoff AND w.id >= lo AND w.id < hi
				AND (orchestrator.uuid_v7_time(w.id) AT TIME ZONE 'UTC')::date <> ALL (retire_days)
			  ORDER BY w.finished_at, w.id
			  LIMIT max_runs) d
		GROUP BY d.day ORDER BY d.day
	LOOP
		SELECT * INTO removed FROM orchestrator._delete_runs(batch.day, batch.ids, cutoff, coalesce(batch.day <= watermark, false));
		deleted := deleted + removed.deleted;
		IF removed.rebuilt THEN
			rerolled := rerolled || batch.day;
		ELSIF batch.day <= watermark THEN
			adjusted := adjusted || batch.day;
		END IF;
	END LOOP;
	more := EXISTS (
		SELECT 1 FROM orchestrator.workflow_runs w WHERE w.finished_at < cutoff AND w.id >= lo AND w.id < hi
		  AND (orchestrator.uuid_v7_time(w.id) AT TIME ZONE 'UTC')::date <> ALL (retire_days));

	-- Roll-ups: up to 7 closed days after the watermark are added, oldest
	-- first, stopping at the first day that holds an unfinished run, and at
	-- days that ended less than an hour ago (a transaction that made its run
	-- id before midnight may not have committed yet).
	IF watermark IS NULL THEN
		SELECT min(to_date(substr(c.relname, length('workflow_runs_p') + 1), 'YYYYMMDD')) - 1 INTO watermark
		FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'orchestrator.workflow_runs'::regclass AND c.relname ~ '^workflow_runs_p[0-9]{8}$';
		watermark := coalesce(watermark, today - 1);
	END IF;
	FOR i IN 1 .. 7 LOOP
		day := watermark + 1;
		EXIT WHEN (day + 1)::timestamp AT TIME ZONE 'UTC' > now() - interval '1 hour';
		part := format('orchestrator.workflow_runs_p%s', to_char(day, 'YYYYMMDD'));
		IF to_regclass(part) IS NOT NULL THEN
			EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE finished_at IS NULL)', part) INTO open_runs;
			EXIT WHEN open_runs;
			PERFORM orchestrator._roll_up_day(day);
			rolled := rolled || day;
		END IF;
		watermark := day;
	END LOOP;
	INSERT INTO orchestrator.run_stats_watermark (day) VALUES (watermark)
		ON CONFLICT (singleton) DO UPDATE SET day = excluded.day;

	-- Expired sessions, before the whole partitions (whose exclusive locks
	-- on the history tables must not wait for this scan); the rows it
	-- deletes stay locked until maintain() commits, which only a client
	-- writing one of those expired keys waits for.
	sessions_purged := orchestrator._session_purge(max_runs);

	-- Whole partitions last, so the exclusive locks they take on the parent
	-- tables are held only until the commit that follows.  A day whose
	-- partitions cannot be locked in time is left for the next call.
	IF mode = 'detach' AND cardinality(retire_days) > 0 AND to_regnamespace('orchestrator_archive') IS NULL THEN
		CREATE SCHEMA orchestrator_archive;
		COMMENT ON SCHEMA orchestrator_archive IS 'history partitions detached by orchestrator.maintain()';
		REVOKE ALL ON SCHEMA orchestrator_archive FROM PUBLIC;
		GRANT USAGE ON SCHEMA orchestrator_archive TO orchestrator_admin;
	END IF;
	FOR item IN SELECT x FROM jsonb_array_elements(retire) x ORDER BY x ->> 'last_finished_at' NULLS FIRST, x ->> 'day' LOOP
		day := (item ->> 'day')::date;
		lo := orchestrator.uuid_v7_boundary(day::timestamp AT TIME ZONE 'UTC');
		hi := orchestrator.uuid_v7_boundary((day + 1)::timestamp AT TIME ZONE 'UTC');
		BEGIN
			LOCK TABLE orchestrator.workflow_runs, orchestrator.workflow_steps, orchestrator.workflow_events
				IN ACCESS EXCLUSIVE MODE;
			-- Counted above without the lock: a run of the day resumed since
			-- (retry_run) keeps the day.
			SELECT EXISTS (SELECT 1 FROM orchestrator.workflow_runs w WHERE w.id >= lo AND w.id < hi
						   AND (w.finished_at IS NULL OR w.finished_at >= cutoff)) INTO busy;
			IF busy THEN
				skipped := skipped || jsonb_build_object('day', day, 'reason', 'a run of it is active again');
				CONTINUE;
			END IF;
			DELETE FROM orchestrator.signals s WHERE s.run_id >= lo AND s.run_id < hi;
			DELETE FROM orchestrator.idempotency_keys k WHERE k.run_id >= lo AND k.run_id < hi;
			DELETE FROM orchestrator.webhook_outbox o WHERE o.run_id >= lo AND o.run_id < hi;
			DELETE FROM orchestrator.run_stats_daily x WHERE x.partition_day = (item ->> 'day')::date;
			DELETE FROM orchestrator.step_error_stats_daily x WHERE x.partition_day = (item ->> 'day')::date;
			DELETE FROM orchestrator.throughput_stats x WHERE x.partition_day = (item ->> 'day')::date;
			DELETE FROM orchestrator.step_duration_stats_daily x WHERE x.partition_day = (item ->> 'day')::date;
			DELETE FROM orchestrator.run_stats_days x WHERE x.partition_day = (item ->> 'day')::date;
			FOREACH tbl IN ARRAY ARRAY['workflow_events', 'workflow_steps', 'workflow_runs'] LOOP
				part := format('%s_p%s', tbl, to_char(day, 'YYYYMMDD'));
				CONTINUE WHEN to_regclass(format('orchestrator.%I', part)) IS NULL;
				IF mode = 'detach' THEN
					EXECUTE format('ALTER TABLE orchestrator.%I DETACH PARTITION orchestrator.%I', tbl, part);
					EXECUTE format('ALTER TABLE orchestrator.%I SET SCHEMA orchestrator_archive', part);
					EXECUTE format('GRANT SELECT ON orchestrator_archive.%I TO orchestrator_admin', part);
				ELSE
					EXECUTE format('DROP TABLE orchestrator.%I', part);
				END IF;
			END LOOP;
			retired := retired || (item || jsonb_build_object('action', CASE mode WHEN 'detach' THEN 'detached' ELSE 'dropped' END));
		EXCEPTION WHEN lock_not_available OR deadlock_detected THEN
			skipped := skipped || jsonb_build_object('day', day, 'reason', SQLERRM);
		END;
	END LOOP;

	RETURN jsonb_build_object(
		'retention', retention,
		'archive_mode', mode,
		'cutoff', cutoff,
		'partitions_created', created,
		'partitions_ahead', orchestrator._partitions_ahead(),
		'partitions_retired', retired,
		'partitions_kept', kept,
		'partitions_skipped', skipped,
		'runs_deleted', deleted,
		'more', more,
		'stats_days_rolled_up', to_jsonb(rolled),
		'stats_days_adjusted', to_jsonb(adjusted),
		'stats_days_rebuilt', to_jsonb(rerolled),
		'stats_watermark', watermark,
		'sessions_purged', sessions_purged);
END
$$;

-- Schedule maintain() with pg_cron (one job per database, by name: calling
-- again changes the schedule and returns the same job id).
CREATE FUNCTION orchestrator._api_schedule_maintenance(schedule text DEFAULT '*/10 * * * *')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	job bigint;
BEGIN
	IF schedule IS NULL OR btrim(schedule) = '' THEN
		RAISE EXCEPTION 'schedule must not be empty' USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Use a cron expression such as ''*/10 * * * *''.';
	END IF;
	IF to_regprocedure('cron.schedule(text, text, text)') IS NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed in database %', current_database()
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = format('cron.database_name is %s.', coalesce(current_setting('cron.database_name', true), 'not set')),
				  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, and run CREATE EXTENSION pg_cron; '
						 'or schedule "SELECT orchestrator.maintain()" with cron.schedule_in_database() from the pg_cron database.';
	END IF;
	BEGIN
		EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job
			USING 'orchestrator-maintenance:' || current_database(), schedule, 'SELECT orchestrator.maintain()';
	EXCEPTION WHEN invalid_parameter_value OR internal_error OR invalid_text_representation OR data_exception THEN
		RAISE EXCEPTION 'invalid schedule %', quote_literal(schedule) USING ERRCODE = 'invalid_parameter_value',
			DETAIL = SQLERRM,
			HINT = 'Use a cron expression of five fields, such as ''*/10 * * * *'' (every ten minutes).';
	END;
	RETURN job;
END
$$;

CREATE FUNCTION orchestrator._api_unschedule_maintenance()
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	found_job boolean;
BEGIN
	IF to_regprocedure('cron.unschedule(name)') IS NULL THEN
		RETURN false;
	END IF;
	EXECUTE 'SELECT EXISTS (SELECT 1 FROM cron.job WHERE jobname = $1 AND username = current_user)'
		INTO found_job USING 'orchestrator-maintenance:' || current_database();
	IF NOT found_job THEN
		RETURN false;
	END IF;
	EXECUTE 'SELECT cron.unschedule($1::name)' INTO found_job USING 'orchestrator-maintenance:' || current_database();
	RETURN found_job;
END
$$;

-- pg_dump: the rows of the extension's own tables (definitions, the work
-- queue, signals, ...) are dumped with the data; the partitions of the
-- history tables are ordinary tables and dumped anyway.
DO $dump$
DECLARE
	t regclass;
BEGIN
	FOR t IN SELECT c.oid::regclass FROM pg_catalog.pg_class c
			 JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
				  AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
			 JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'orchestrator'
			 WHERE c.relkind = 'r'
			 ORDER BY 1 LOOP
		PERFORM pg_catalog.pg_extension_config_dump(t, '');
	END LOOP;
END
$dump$;

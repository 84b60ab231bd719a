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
-- partition gets its own copy.
CREATE INDEX workflow_runs_finished_at ON orchestrator.workflow_runs (finished_at) INCLUDE (id);
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
CREATE TABLE orchestrator.run_stats_daily (
	partition_day date        NOT NULL,
	day      date             NOT NULL,
	owner    regrole          NOT NULL,
	workflow text             NOT NULL,
	tenant   text,
	status   text             NOT NULL,
	runs     bigint           NOT NULL,
	finished bigint           NOT NULL,
	seconds  double precision NOT NULL,
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
-- runs in orchestrator.runs, not in the aggregates).
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
	max         double precision
);
CREATE INDEX step_duration_stats_daily_partition ON orchestrator.step_duration_stats_daily (partition_day);

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

-- Aggregate one partition day (by its id range) into run_stats_daily,
-- step_error_stats_daily, throughput_stats and step_duration_stats_daily,
-- replacing what was there for that day.
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
	EXECUTE format($q$
		INSERT INTO orchestrator.step_duration_stats_daily (partition_day, owner, workflow, step, kind, samples, p50, p95, p99, max)
		SELECT %3$L::date, r.owner, r.name, s.step, s.kind, count(*),
			   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision),
			   percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision),
			   percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM s.finished_at - s.started_at)::double precision),
			   max(extract(epoch FROM s.finished_at - s.started_at))::double precision
		FROM orchestrator.workflow_runs r
		JOIN orchestrator.workflow_steps s ON s.run_id = r.id
		WHERE r.id >= %1$L AND r.id < %2$L AND s.run_id >= %1$L AND s.run_id < %2$L
		  AND s.status = 'succeeded' AND s.started_at IS NOT NULL
		GROUP BY GROUPING SETS ((r.owner, r.name, s.step, s.kind), (r.name, s.step, s.kind))$q$, lo, hi, day);
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
	ELSE
		UPDATE orchestrator.run_stats_watermark w SET day = least(w.day, from_day - 1)
			WHERE w.day >= from_day;
		GET DIAGNOSTICS n = ROW_COUNT;
		DELETE FROM orchestrator.run_stats_daily s WHERE s.partition_day >= from_day;
		DELETE FROM orchestrator.step_error_stats_daily s WHERE s.partition_day >= from_day;
		DELETE FROM orchestrator.throughput_stats s WHERE s.partition_day >= from_day;
		DELETE FROM orchestrator.step_duration_stats_daily s WHERE s.partition_day >= from_day;
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

-- Remove the given runs (all created on one UTC day) with their steps,
-- events, signals, idempotency keys and webhook deliveries.  The day's bounds are spelled out so
-- that each statement touches one partition.
CREATE FUNCTION orchestrator._delete_runs(day date, ids uuid[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	lo uuid := orchestrator.uuid_v7_boundary(day::timestamp AT TIME ZONE 'UTC');
	hi uuid := orchestrator.uuid_v7_boundary((day + 1)::timestamp AT TIME ZONE 'UTC');
	n  bigint;
BEGIN
	EXECUTE format('DELETE FROM orchestrator.workflow_events WHERE run_id >= %L AND run_id < %L AND run_id = ANY ($1)', lo, hi) USING ids;
	EXECUTE format('DELETE FROM orchestrator.workflow_steps WHERE run_id >= %L AND run_id < %L AND run_id = ANY ($1)', lo, hi) USING ids;
	DELETE FROM orchestrator.signals s WHERE s.run_id = ANY (ids);
	DELETE FROM orchestrator.idempotency_keys k WHERE k.run_id = ANY (ids);
	DELETE FROM orchestrator.webhook_outbox o WHERE o.run_id = ANY (ids);
	EXECUTE format('DELETE FROM orchestrator.workflow_runs WHERE id >= %L AND id < %L AND id = ANY ($1)', lo, hi) USING ids;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
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
	touched    date[] := '{}';
	rolled     date[] := '{}';
	rerolled   date[] := '{}';
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
	IF NOT pg_try_advisory_xact_lock(hashtext('orchestrator.maintain')) THEN
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
		END IF;
	END LOOP;

	-- Row by row: expired runs outside the partitions retired whole, oldest
	-- completion first, at most max_runs per call.
	FOR batch IN
		SELECT d.day, array_agg(d.id) AS ids
		FROM (SELECT w.id, (orchestrator.uuid_v7_time(w.id) AT TIME ZONE 'UTC')::date AS day
			  FROM orchestrator.workflow_runs w
			  WHERE w.finished_at < cutoff
				AND (orchestrator.uuid_v7_time(w.id) AT TIME ZONE 'UTC')::date <> ALL (retire_days)
			  ORDER BY w.finished_at, w.id
			  LIMIT max_runs) d
		GROUP BY d.day ORDER BY d.day
	LOOP
		deleted := deleted + orchestrator._delete_runs(batch.day, batch.ids);
		touched := touched || batch.day;
	END LOOP;
	more := EXISTS (
		SELECT 1 FROM orchestrator.workflow_runs w WHERE w.finished_at < cutoff
		  AND (orchestrator.uuid_v7_time(w.id) AT TIME ZONE 'UTC')::date <> ALL (retire_days));

	-- Roll-ups: days already rolled up that lost runs above are aggregated
	-- again; then up to 7 closed days after the watermark are added, oldest
	-- first, stopping at the first day that holds an unfinished run, and at
	-- days that ended less than an hour ago (a transaction that made its run
	-- id before midnight may not have committed yet).
	SELECT w.day INTO watermark FROM orchestrator.run_stats_watermark w FOR UPDATE;
	FOREACH day IN ARRAY touched LOOP
		IF day <= watermark THEN
			PERFORM orchestrator._roll_up_day(day);
			rerolled := rerolled || day;
		END IF;
	END LOOP;
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
			DELETE FROM orchestrator.signals s WHERE s.run_id >= lo AND s.run_id < hi;
			DELETE FROM orchestrator.idempotency_keys k WHERE k.run_id >= lo AND k.run_id < hi;
			DELETE FROM orchestrator.webhook_outbox o WHERE o.run_id >= lo AND o.run_id < hi;
			DELETE FROM orchestrator.run_stats_daily x WHERE x.partition_day = (item ->> 'day')::date;
			DELETE FROM orchestrator.step_error_stats_daily x WHERE x.partition_day = (item ->> 'day')::date;
			DELETE FROM orchestrator.throughput_stats x WHERE x.partition_day = (item ->> 'day')::date;
			DELETE FROM orchestrator.step_duration_stats_daily x WHERE x.partition_day = (item ->> 'day')::date;
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

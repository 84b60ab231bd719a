\set SHOW_CONTEXT never
-- maintain(): partitions ahead, retention by completion time, archival.
SHOW orchestrator.retention;
SHOW orchestrator.archive_mode;
SHOW orchestrator.partitions_ahead;
-- Bad settings and arguments are refused.
SELECT try('SET orchestrator.retention = ''-1 day''') AS negative_retention;
SELECT try('SET orchestrator.retention = ''soon''') AS bad_retention;
-- 0.3 spelled it as an interval; now an integer with a unit, refused by PostgreSQL itself.
SELECT try('SET orchestrator.retention = ''90 days''') AS interval_spelling;
SET orchestrator.retention = '2160h';
SHOW orchestrator.retention;
RESET orchestrator.retention;
-- Every setting with a time or size meaning is an integer with a unit; text
-- settings are names, paths, lists and URLs.
SELECT name, unit, min_val, max_val FROM pg_settings
WHERE name IN ('orchestrator.default_lease', 'orchestrator.default_step_timeout', 'orchestrator.retention',
			   'orchestrator.http_breaker_cooldown', 'orchestrator.max_step_timeout', 'orchestrator.health_max_ready_age')
ORDER BY name;
SELECT string_agg(name, ', ' ORDER BY name) AS text_settings FROM pg_settings
WHERE name LIKE 'orchestrator.%' AND vartype = 'string';
SELECT try('SET orchestrator.archive_mode = ''zip''') AS bad_mode;
SELECT try('SET orchestrator.partitions_ahead = 0') AS no_days_ahead;
SELECT try('SELECT orchestrator.maintain(0)') AS zero_batch;
SELECT try('SELECT orchestrator.maintain(NULL)') AS null_batch;
-- Only orchestrator_admin (and superusers) may maintain.
SET ROLE alice;
SELECT try('SELECT orchestrator.maintain()') AS user_maintains;
SELECT try('SELECT orchestrator.schedule_maintenance()') AS user_schedules;
RESET ROLE;

-- Partitions ahead follow the setting.
SET orchestrator.partitions_ahead = 10;
SELECT r -> 'partitions_created' AS created, r -> 'partitions_ahead' AS ahead,
       r -> 'runs_deleted' AS deleted, r -> 'partitions_retired' AS retired
FROM orchestrator.maintain() r;
SELECT (orchestrator.maintain()) -> 'partitions_created' AS created_again;
RESET orchestrator.partitions_ahead;

-- History in the past: runs made directly in the tables (as superuser), with
-- ids of their creation time, so that they land in that day's partition.
CREATE FUNCTION fake_run(label text, created timestamptz, finished timestamptz)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
	id uuid := orchestrator.uuid_v7_boundary(created);
BEGIN
	PERFORM orchestrator._create_partitions((created AT TIME ZONE 'UTC')::date, 1);
	INSERT INTO orchestrator.workflow_runs (id, name, version, status, owner, started_by, input, created_at,
		started_at, finished_at)
	VALUES (id, 'history', 1, CASE WHEN finished IS NULL THEN 'running' ELSE 'succeeded' END,
		'postgres', 'postgres', jsonb_build_object('label', label), created, created, finished);
	INSERT INTO orchestrator.workflow_steps (run_id, step, position, kind, status, deps_open, started_at, finished_at)
	VALUES (id, 'only', 0, 'external', CASE WHEN finished IS NULL THEN 'running' ELSE 'succeeded' END, 0,
		created, finished);
	INSERT INTO orchestrator.workflow_events (run_id, seq, at, type) VALUES (id, 1, created, 'workflow.created');
	INSERT INTO orchestrator.signals (run_id, id, name, payload, sent_by) VALUES (id, orchestrator.uuid_v7(), 'x', '{}', 'postgres');
	INSERT INTO orchestrator.idempotency_keys (name, key, run_id, started_by) VALUES ('history', label, id, 'postgres');
	INSERT INTO orchestrator.webhook_outbox (id, webhook_id, run_id, seq, type, payload, status, available_at)
	VALUES (orchestrator.uuid_v7(), orchestrator.uuid_v7(), id, 1, 'workflow.created', '{}', 'delivered', created);
	RETURN id;
END $$;
CREATE FUNCTION days_ago(n numeric) RETURNS timestamptz LANGUAGE sql AS
	$$ SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - n * interval '1 day' + interval '1 hour' $$;
-- Where the runs partition of the day "ago" days back is now.
CREATE FUNCTION part_exists(ago integer) RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(string_agg(ns.nspname, ', '), 'gone')
	FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
	WHERE c.relname = 'workflow_runs_p' || to_char((now() AT TIME ZONE 'UTC')::date - ago, 'YYYYMMDD') $$;
CREATE FUNCTION remaining() RETURNS text LANGUAGE sql AS $$
	SELECT string_agg(input ->> 'label', ', ' ORDER BY input ->> 'label')
	FROM orchestrator.workflow_runs WHERE name = 'history' $$;

-- 200 days ago: an empty partition.  120 days ago: two runs, both finished
-- and expired (the day is retired whole).  100 and 99 days ago: a run still
-- running keeps each day; beside it, expired runs leave row by row, oldest
-- completion first, and a run created 100 days ago that finished yesterday
-- stays.
SELECT orchestrator._create_partitions((now() AT TIME ZONE 'UTC')::date - 200, 1) AS empty_day;
SELECT fake_run('a120', days_ago(120), days_ago(119.9)) IS NOT NULL,
       fake_run('b120', days_ago(120) + interval '1 minute', days_ago(110)) IS NOT NULL,
       fake_run('live100', days_ago(100), NULL) IS NOT NULL,
       fake_run('long100', days_ago(100) + interval '1 minute', days_ago(1)) IS NOT NULL,
       fake_run('x100_finished92', days_ago(100) + interval '2 minutes', days_ago(92)) IS NOT NULL,
       fake_run('live99', days_ago(99), NULL) IS NOT NULL,
       fake_run('y99_finished98', days_ago(99) + interval '1 minute', days_ago(98)) IS NOT NULL;
SELECT remaining();

-- One run per call: y99 (finished 98 days ago) goes before x100 (created
-- earlier, finished later).  Days 200 and 120 are dropped whole.
SELECT r -> 'runs_deleted' AS deleted, r -> 'more' AS more,
       (SELECT jsonb_agg(jsonb_build_object('days_ago', (now() AT TIME ZONE 'UTC')::date - (x ->> 'day')::date,
			'runs', x -> 'runs', 'action', x -> 'action')) FROM jsonb_array_elements(r -> 'partitions_retired') x) AS retired,
       (SELECT jsonb_agg(jsonb_build_object('days_ago', (now() AT TIME ZONE 'UTC')::date - (x ->> 'day')::date,
			'unfinished', x -> 'unfinished_runs', 'unexpired', x -> 'unexpired_runs'))
		FROM jsonb_array_elements(r -> 'partitions_kept') x WHERE (x ->> 'day')::date < (now() AT TIME ZONE 'UTC')::date - 90) AS kept
FROM orchestrator.maintain(1) r;
SELECT remaining();
SELECT part_exists(200) AS day200, part_exists(120) AS day120, part_exists(100) AS day100;
-- The signals and idempotency keys of removed runs are gone too.
SELECT count(*) AS signals_left FROM orchestrator.signals s
WHERE NOT EXISTS (SELECT 1 FROM orchestrator.workflow_runs w WHERE w.id = s.run_id);
SELECT count(*) AS keys_left FROM orchestrator.idempotency_keys k WHERE k.name = 'history';
SELECT count(*) AS deliveries_left FROM orchestrator.webhook_outbox o
WHERE NOT EXISTS (SELECT 1 FROM orchestrator.workflow_runs w WHERE w.id = o.run_id);
SELECT count(*) AS orphan_steps FROM orchestrator.workflow_steps s
WHERE NOT EXISTS (SELECT 1 FROM orchestrator.workflow_runs w WHERE w.id = s.run_id);

-- detach mode: a day retired whole moves to schema orchestrator_archive.
-- Retention counts from completion: with a one-hour retention, long100
-- (finished yesterday) and a run created today that finished two hours ago
-- expire; one that finished ten minutes ago stays, and so does today's
-- partition.
SELECT fake_run('c110', days_ago(110), days_ago(109)) IS NOT NULL,
       fake_run('today', now() - interval '3 hours', now() - interval '2 hours') IS NOT NULL,
       fake_run('today_recent', now() - interval '3 hours' + interval '1 second', now() - interval '10 minutes') IS NOT NULL;
SET orchestrator.archive_mode = 'detach';
SET orchestrator.retention = '1h';
SELECT r -> 'runs_deleted' AS deleted, r -> 'more' AS more,
       (SELECT jsonb_agg(jsonb_build_object('days_ago', (now() AT TIME ZONE 'UTC')::date - (x ->> 'day')::date,
			'runs', x -> 'runs', 'action', x -> 'action')) FROM jsonb_array_elements(r -> 'partitions_retired') x
		WHERE (x ->> 'day')::date < (now() AT TIME ZONE 'UTC')::date - 90) AS retired
FROM orchestrator.maintain() r;
SELECT remaining();
SELECT part_exists(110) AS day110;
CREATE FUNCTION archived(tbl text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM orchestrator_archive.%I',
		tbl || '_p' || to_char((now() AT TIME ZONE 'UTC')::date - 110, 'YYYYMMDD')) INTO n;
	RETURN n;
END $$;
SELECT archived('workflow_runs') AS runs, archived('workflow_steps') AS steps, archived('workflow_events') AS events;
SELECT count(*) AS orphan_deliveries FROM orchestrator.webhook_outbox o
WHERE NOT EXISTS (SELECT 1 FROM orchestrator.workflow_runs w WHERE w.id = o.run_id);
-- Idempotent: nothing left to do.
SELECT r -> 'runs_deleted' AS deleted, jsonb_array_length(r -> 'partitions_retired') AS retired, r -> 'more' AS more
FROM orchestrator.maintain() r;
RESET orchestrator.archive_mode;
RESET orchestrator.retention;
-- Real runs are untouched by the default retention.
SELECT count(*) > 0 AS real_runs_kept FROM orchestrator.runs WHERE name <> 'history';

-- schedule_maintenance needs pg_cron in this database.
SELECT try('SELECT orchestrator.schedule_maintenance()') AS without_pg_cron;
CREATE EXTENSION pg_cron;
SELECT try('SELECT orchestrator.schedule_maintenance(''every now and then'')') AS bad_schedule;
SELECT try('SELECT orchestrator.schedule_maintenance('''')') AS empty_schedule;
SELECT orchestrator.schedule_maintenance() AS job \gset
SELECT orchestrator.schedule_maintenance('*/5 * * * *') = :job AS same_job;
SELECT jobname, schedule, command, database FROM cron.job WHERE jobid = :job;
SELECT orchestrator.unschedule_maintenance() AS unscheduled, orchestrator.unschedule_maintenance() AS again;
DROP EXTENSION pg_cron;

-- Leave no fake history behind for the tests that follow.
CREATE TEMP TABLE fake_ids AS SELECT id FROM orchestrator.workflow_runs WHERE name = 'history';
DELETE FROM orchestrator.webhook_outbox WHERE run_id IN (SELECT id FROM fake_ids);
DELETE FROM orchestrator.signals WHERE run_id IN (SELECT id FROM fake_ids);
DELETE FROM orchestrator.idempotency_keys WHERE run_id IN (SELECT id FROM fake_ids);
DELETE FROM orchestrator.workflow_events WHERE run_id IN (SELECT id FROM fake_ids);
DELETE FROM orchestrator.workflow_steps WHERE run_id IN (SELECT id FROM fake_ids);
DELETE FROM orchestrator.workflow_runs WHERE id IN (SELECT id FROM fake_ids);
DELETE FROM orchestrator.run_stats_daily WHERE workflow = 'history';

\set SHOW_CONTEXT never
-- History tables are partitioned by day of run id; partitions exist ahead.
SELECT c.relname AS parent, count(*) >= 9 AS days_ahead_and_behind
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent
WHERE c.relnamespace = 'orchestrator'::regnamespace
GROUP BY c.relname ORDER BY 1;
SELECT to_regclass('orchestrator.workflow_runs_p' || to_char((now() AT TIME ZONE 'UTC')::date, 'YYYYMMDD')) IS NOT NULL
    AS todays_partition;
-- The runs' indexes on finished_at hold finished runs only: a start writes
-- no entry in them (unfinished runs are found through the active-owner
-- index).
SELECT x.indexrelid::regclass AS index, pg_get_expr(x.indpred, x.indrelid) AS holds
FROM pg_index x WHERE x.indrelid = 'orchestrator.workflow_runs'::regclass ORDER BY x.indexrelid::regclass::text;
-- Creating partitions is idempotent.
SELECT orchestrator._create_partitions((now() AT TIME ZONE 'UTC')::date, 3) AS created_again;
-- A lookup by run id prunes to one partition: the plan scans exactly one
-- relation, today's partition.
CREATE FUNCTION scanned_relations(query text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
	plan json;
BEGIN
	EXECUTE 'EXPLAIN (FORMAT JSON, COSTS OFF) ' || query INTO plan;
	RETURN ARRAY(SELECT m[1] FROM regexp_matches(plan::text, '"Relation Name": "([^"]+)"', 'g') m);
END $$;
SELECT cardinality(r) AS relations_scanned,
       r[1] = 'workflow_runs_p' || to_char((now() AT TIME ZONE 'UTC')::date, 'YYYYMMDD') AS is_todays_partition
FROM scanned_relations(format('SELECT * FROM orchestrator.workflow_runs WHERE id = %L', orchestrator.uuid_v7())) r;
SELECT cardinality(r) AS relations_scanned,
       r[1] = 'workflow_events_p' || to_char((now() AT TIME ZONE 'UTC')::date, 'YYYYMMDD') AS is_todays_partition
FROM scanned_relations(format('SELECT * FROM orchestrator.workflow_events WHERE run_id = %L', orchestrator.uuid_v7())) r;
-- The plan itself, for the reader (partition names vary by day).
EXPLAIN (COSTS OFF)
SELECT id FROM orchestrator.workflow_runs WHERE id = '00000000-0000-7000-8000-000000000000';
-- Runs' and steps' partitions take orchestrator.partition_fillfactor (75
-- unless set), events 100, when they are created; existing ones keep theirs.
SELECT current_setting('orchestrator.partition_fillfactor') AS default_fillfactor;
SELECT c.relname ~ '^workflow_events' AS events, array_to_string(c.reloptions, ',') AS options, count(*) >= 9 AS nine_days_or_more
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent IN ('orchestrator.workflow_runs'::regclass, 'orchestrator.workflow_steps'::regclass, 'orchestrator.workflow_events'::regclass)
GROUP BY 1, 2 ORDER BY 1, 2;
SET orchestrator.partition_fillfactor = 50;
SELECT orchestrator._create_partitions(date '2199-12-31', 1) AS created;
SELECT c.relname, array_to_string(c.reloptions, ',') AS options
FROM pg_class c WHERE c.relnamespace = 'orchestrator'::regnamespace AND c.relname LIKE '%_p21991231' ORDER BY 1;
RESET orchestrator.partition_fillfactor;
DROP TABLE orchestrator.workflow_runs_p21991231, orchestrator.workflow_steps_p21991231, orchestrator.workflow_events_p21991231;
SELECT try($$SET orchestrator.partition_fillfactor = 5$$) AS too_low;
-- The engine keeps the partition it found last for each history table
-- (leaf.c), and forgets it when the partitions change: a run's partition
-- swapped for another table of the same range between two transitions on
-- the run, in one session, is the one the second transition finds.
SELECT orchestrator._create_partitions(date '2199-12-30', 1) AS created;
SELECT orchestrator.define_workflow('swapped', '{"steps": [{"name": "s", "kind": "external", "queue": "swapped"}]}') AS swapped_version \gset
CREATE FUNCTION swapped_run(status text) RETURNS void LANGUAGE sql AS $$
	INSERT INTO orchestrator.workflow_runs (id, name, version, status, owner, input, started_by)
	VALUES (orchestrator.uuid_v7_boundary('2199-12-30 12:00+00'), 'swapped', 1, status, 'postgres', '{}', 'postgres')
$$;
SELECT swapped_run('running');
SELECT orchestrator.cancel_workflow(orchestrator.uuid_v7_boundary('2199-12-30 12:00+00')) AS cancelled_first;
CREATE TABLE swapped_runs (LIKE orchestrator.workflow_runs INCLUDING DEFAULTS);
ALTER TABLE orchestrator.workflow_runs DETACH PARTITION orchestrator.workflow_runs_p21991230;
ALTER TABLE orchestrator.workflow_runs ATTACH PARTITION swapped_runs
	FOR VALUES FROM (orchestrator.uuid_v7_boundary('2199-12-30')) TO (orchestrator.uuid_v7_boundary('2199-12-31'));
SELECT swapped_run('running');
SELECT orchestrator.cancel_workflow(orchestrator.uuid_v7_boundary('2199-12-30 12:00+00')) AS cancelled_in_new_partition;
SELECT (SELECT status FROM swapped_runs) AS new_partition, (SELECT status FROM orchestrator.workflow_runs_p21991230) AS detached;
ALTER TABLE orchestrator.workflow_runs DETACH PARTITION swapped_runs;
DROP TABLE swapped_runs, orchestrator.workflow_runs_p21991230, orchestrator.workflow_steps_p21991230, orchestrator.workflow_events_p21991230;
DROP FUNCTION swapped_run(text);

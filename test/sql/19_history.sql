\set SHOW_CONTEXT never
-- Events are appended, and the hot transitions' step and run rows written,
-- with the heap and index access methods (src/rows.c), not through
-- statements: sequence numbers, order and columns are those a statement
-- would write, every index is kept (on expressions and partial ones too),
-- and a table such writes would go behind the back of (a trigger, a check
-- constraint) is refused with an error, not skipped.

SELECT orchestrator.define_workflow('history_three', $$
{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"},
           {"name": "b", "kind": "sql", "sql": "SELECT NULL::int AS nothing", "depends_on": ["a"]},
           {"name": "c", "kind": "sql", "sql": "SELECT 'x' AS x", "depends_on": ["b"]}]}
$$);
SELECT orchestrator.start_workflow('history_three', '{"n": 1}') AS r \gset
SELECT wait_for_run(:'r');
-- one row per event, numbered from 1 without gaps, in time order; a null
-- inside a step's result stays in workflow.succeeded (0.4 before this
-- change stripped it: "b": {})
SELECT seq, type, step, data FROM orchestrator.events(:'r') ORDER BY seq;
SELECT count(*) = max(seq) AS no_gaps, bool_and(at IS NOT NULL) AS timed,
       bool_and(at >= lag_at) FILTER (WHERE lag_at IS NOT NULL) AS in_order
FROM (SELECT seq, at, lag(at) OVER (ORDER BY seq) AS lag_at FROM orchestrator.events(:'r')) e;
-- the rows are in the run's partition, found through the primary key
SET enable_seqscan = off;
SELECT count(*) AS by_index FROM orchestrator.workflow_events WHERE run_id = :'r' AND seq BETWEEN 1 AND 9;
RESET enable_seqscan;

-- A trigger on the history (cloned to every partition) would not fire:
-- the append is refused, and nothing of the run's progress is written.
CREATE FUNCTION history_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RETURN NEW; END $$;
CREATE TRIGGER history_audit AFTER INSERT ON orchestrator.workflow_events
	FOR EACH ROW EXECUTE FUNCTION history_audit();
DO $$
DECLARE
	state text; message text; detail text; hint text;
BEGIN
	PERFORM orchestrator.start_workflow('history_three');
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
		hint = PG_EXCEPTION_HINT;
	RAISE NOTICE '% %', state, regexp_replace(message, '_p[0-9]{8}', '_p<day>');
	RAISE NOTICE 'detail: %', detail;
	RAISE NOTICE 'hint: %', hint;
END $$;
SELECT count(*) AS runs_written FROM orchestrator.runs WHERE name = 'history_three';
DROP TRIGGER history_audit ON orchestrator.workflow_events;
DROP FUNCTION history_audit();

-- A trigger on the steps or the runs is refused the same way (their rows
-- are written directly too), whatever event it fires on; nothing is written.
CREATE FUNCTION steps_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RETURN NEW; END $$;
CREATE TRIGGER steps_audit AFTER UPDATE ON orchestrator.workflow_steps
	FOR EACH ROW EXECUTE FUNCTION steps_audit();
SELECT regexp_replace(try($$SELECT orchestrator.start_workflow('history_three')$$), '_p[0-9]{8}', '_p<day>')
	AS with_steps_trigger;
DROP TRIGGER steps_audit ON orchestrator.workflow_steps;
CREATE TRIGGER runs_audit BEFORE DELETE ON orchestrator.workflow_runs
	FOR EACH ROW EXECUTE FUNCTION steps_audit();
SELECT regexp_replace(try($$SELECT orchestrator.start_workflow('history_three')$$), '_p[0-9]{8}', '_p<day>')
	AS with_runs_trigger;
DROP TRIGGER runs_audit ON orchestrator.workflow_runs;
DROP FUNCTION steps_audit();
SELECT count(*) AS runs_written FROM orchestrator.runs WHERE name = 'history_three';

-- The columns' positions are kept per table once found; a column added
-- later is seen (a run is refused rather than written without it), and
-- once it is gone again runs start.
SELECT orchestrator.start_workflow('history_three') IS NOT NULL AS started_before;
BEGIN;
ALTER TABLE orchestrator.workflow_steps ADD COLUMN audit_note text;
SELECT regexp_replace(try($$SELECT orchestrator.start_workflow('history_three')$$), '_p[0-9]{8}', '_p<day>')
	AS with_new_column;
ROLLBACK;
SELECT orchestrator.start_workflow('history_three') IS NOT NULL AS started_after;

-- Indexes on expressions and partial indexes are kept: the rows are found
-- through them.
CREATE INDEX history_by_x ON orchestrator.workflow_events ((data -> 'result' ->> 'x'));
CREATE INDEX history_succeeded ON orchestrator.workflow_events (run_id) WHERE type = 'workflow.succeeded';
CREATE INDEX steps_done_late ON orchestrator.workflow_steps ((result ->> 'x')) WHERE status = 'succeeded';
SELECT orchestrator.start_workflow('history_three') AS r_expr \gset
SELECT wait_for_run(:'r_expr');
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) AS by_expression FROM orchestrator.workflow_events
	WHERE data -> 'result' ->> 'x' = 'x' AND run_id = :'r_expr';
SELECT count(*) AS by_partial FROM orchestrator.workflow_events
	WHERE type = 'workflow.succeeded' AND run_id = :'r_expr';
SELECT step AS by_partial_expression FROM orchestrator.workflow_steps
	WHERE result ->> 'x' = 'x' AND status = 'succeeded' AND run_id = :'r_expr';
RESET enable_seqscan;
RESET enable_bitmapscan;
-- every index of the runs, steps, events and queue has an entry for every
-- row (amcheck's heapallindexed): the runs' own expression and partial
-- indexes (day created, minute finished, active by owner) included
SELECT indexes_checked() > 3 AS indexes_checked;
DROP INDEX orchestrator.history_by_x;
DROP INDEX orchestrator.history_succeeded;
DROP INDEX orchestrator.steps_done_late;
-- an index on plain columns is kept
CREATE INDEX history_by_type ON orchestrator.workflow_events (type);
SELECT orchestrator.start_workflow('history_three') AS r2 \gset
SELECT wait_for_run(:'r2');
SET enable_seqscan = off;
SELECT count(*) AS found_by_type FROM orchestrator.workflow_events WHERE type = 'workflow.created' AND run_id = :'r2';
RESET enable_seqscan;
DROP INDEX orchestrator.history_by_type;

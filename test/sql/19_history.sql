\set SHOW_CONTEXT never
-- Events are appended with the heap and index access methods (src/history.c),
-- not through INSERT statements: sequence numbers, order and columns are
-- those a statement would write, and a partition of the history that such
-- appends would write behind the back of (a trigger, a check constraint, an
-- index on an expression) is refused with an error, not skipped.

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

-- An index on an expression cannot be kept by these appends either.
CREATE INDEX history_by_type ON orchestrator.workflow_events ((data ->> 'x'));
SELECT regexp_replace(try($$SELECT orchestrator.start_workflow('history_three')$$), '_p[0-9]{8}', '_p<day>')
	AS with_expression_index;
DROP INDEX orchestrator.history_by_type;
-- an index on plain columns is kept
CREATE INDEX history_by_type ON orchestrator.workflow_events (type);
SELECT orchestrator.start_workflow('history_three') AS r2 \gset
SELECT wait_for_run(:'r2');
SET enable_seqscan = off;
SELECT count(*) AS found_by_type FROM orchestrator.workflow_events WHERE type = 'workflow.created' AND run_id = :'r2';
RESET enable_seqscan;
DROP INDEX orchestrator.history_by_type;

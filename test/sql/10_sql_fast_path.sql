\set SHOW_CONTEXT never
-- The dispatcher's sql steps (sql_steps.c) and the cases around them:
-- arguments, costs, joins, dependents of other kinds, conditions, result
-- templates, deadlines, steps that call the API on their own run.  Each
-- case checks the history and state the state machine leaves.
CREATE TABLE fast_log (run_id uuid, note text);
GRANT INSERT, SELECT ON fast_log TO PUBLIC;

-- Constant arguments, a cost, a diamond (d waits for b and c).
SELECT orchestrator.define_workflow('fast_diamond', $$
{"steps": [
  {"name": "a", "kind": "sql", "sql": "SELECT $1::int + $2::int AS sum, 0.125 AS cost", "args": [40, 2]},
  {"name": "b", "kind": "sql", "sql": "SELECT 'b' AS s, 1 AS cost", "depends_on": ["a"]},
  {"name": "c", "kind": "sql", "sql": "SELECT 'c' AS s", "depends_on": ["a"]},
  {"name": "d", "kind": "sql", "sql": "SELECT 'd' AS s", "depends_on": ["b", "c"]}
]}
$$);
SELECT orchestrator.start_workflow('fast_diamond') AS r \gset
SELECT wait_for_run(:'r');
SELECT status, result, cost FROM orchestrator.runs WHERE id = :'r';
SELECT step, status, attempt, worker, input, result FROM orchestrator.run_steps WHERE run_id = :'r' ORDER BY position;
SELECT count(*) AS events, count(DISTINCT seq) AS distinct_seqs, max(seq) AS last_seq FROM orchestrator.events(:'r');
SELECT type, step, data FROM orchestrator.events(:'r') WHERE type LIKE 'workflow.%' OR step = 'a' ORDER BY seq;
SELECT bool_and(started_at <= finished_at AND ready_at <= started_at) AS timings_in_order
FROM orchestrator.workflow_steps WHERE run_id = :'r';
SELECT count(*) AS queue_rows_left FROM orchestrator.work_queue WHERE run_id = :'r';

-- A dependent with a condition: skipped here.
SELECT orchestrator.define_workflow('fast_when', $$
{"steps": [
  {"name": "a", "kind": "sql", "sql": "SELECT 1 AS one"},
  {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"], "when": "$.input.go == true"}
]}
$$);
SELECT orchestrator.start_workflow('fast_when', '{"go": false}') AS r \gset
SELECT wait_for_run(:'r');
SELECT step, status FROM orchestrator.run_steps WHERE run_id = :'r' ORDER BY position;
SELECT type, step FROM orchestrator.events(:'r') ORDER BY seq;
SELECT orchestrator.start_workflow('fast_when', '{"go": true}') AS r \gset
SELECT wait_for_run(:'r');
SELECT step, status FROM orchestrator.run_steps WHERE run_id = :'r' ORDER BY position;

-- A dependent of another kind (external): it is queued
-- with its rendered input.
SELECT orchestrator.define_workflow('fast_then_external', $$
{"steps": [
  {"name": "a", "kind": "sql", "sql": "SELECT 7 AS seven"},
  {"name": "b", "kind": "external", "queue": "fast_q", "depends_on": ["a"],
   "input": {"x": {"$path": "$.steps.a.result.seven"}}}
]}
$$);
SELECT orchestrator.start_workflow('fast_then_external') AS r \gset
CREATE FUNCTION wait_for_step(id uuid, name text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	s text;
BEGIN
	FOR i IN 1 .. 600 LOOP
		SELECT status INTO s FROM orchestrator.workflow_steps WHERE run_id = id AND step = name;
		EXIT WHEN s <> 'waiting';
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN s;
END $$;
SELECT wait_for_step(:'r', 'b');
SELECT step, status, input FROM orchestrator.run_steps WHERE run_id = :'r' ORDER BY position;
SELECT queue FROM orchestrator.work_queue WHERE run_id = :'r';
SELECT orchestrator.cancel_workflow(:'r');

-- An external dependent without templates is made ready here, with its
-- input, and announced on orchestrator_queue; completing it through the
-- API finishes the run.
SELECT orchestrator.define_workflow('fast_then_static_external', $$
{"steps": [
  {"name": "a", "kind": "sql", "sql": "SELECT 7 AS seven"},
  {"name": "b", "kind": "external", "queue": "fast_q2", "depends_on": ["a"], "input": {"k": [1, 2]}},
  {"name": "c", "kind": "external", "queue": "fast_q2", "depends_on": ["b"]}
]}
$$);
SELECT orchestrator.start_workflow('fast_then_static_external') AS r \gset
SELECT wait_for_step(:'r', 'b');
SELECT step, status, input FROM orchestrator.run_steps WHERE run_id = :'r' ORDER BY position;
SELECT step, attempt, input, workflow FROM orchestrator.claim_steps('fast_q2', 'w1', 5) \gset claimed_
SELECT :'claimed_step' AS step, :'claimed_attempt' AS attempt, :'claimed_input' AS input;
SELECT orchestrator.complete_step(:'r', 'b', lease_token, '{"done": "b"}')
FROM orchestrator.work_queue WHERE run_id = :'r' AND step = 'b';
SELECT step, status, input FROM orchestrator.run_steps WHERE run_id = :'r' ORDER BY position;
SELECT c.step, orchestrator.complete_step(c.run_id, c.step, c.lease_token, NULL)
FROM orchestrator.claim_steps('fast_q2', 'w1', 5) c;
SELECT status, result FROM orchestrator.runs WHERE id = :'r';
SELECT type, step, data FROM orchestrator.events(:'r') ORDER BY seq;

-- A result template is rendered by _run_finish().
SELECT orchestrator.define_workflow('fast_result', $$
{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT 5 AS five"}],
 "result": {"got": {"$path": "$.steps.a.result.five"}}}
$$);
SELECT orchestrator.start_workflow('fast_result') AS r \gset
SELECT wait_for_run(:'r');
SELECT status, result FROM orchestrator.runs WHERE id = :'r';

-- A run with a deadline: its deadline timer goes when it succeeds.
SELECT orchestrator.start_workflow('fast_result', '{}', '{"deadline": "1 hour"}') AS r \gset
SELECT wait_for_run(:'r');
SELECT status, deadline IS NOT NULL AS has_deadline FROM orchestrator.runs WHERE id = :'r';
SELECT count(*) AS queue_rows_left FROM orchestrator.work_queue WHERE run_id = :'r';

-- A step that signals its own run appends an event while it runs: the run
-- is read again before its success is recorded, and the history stays
-- gap-free and in order.
SELECT orchestrator.define_workflow('fast_self_signal', $$
{"steps": [
  {"name": "a", "kind": "sql", "sql": "SELECT orchestrator.signal_workflow(id, 'poke') IS NOT NULL AS sent FROM orchestrator.runs WHERE name = 'fast_self_signal' AND status = 'running'"},
  {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"]}
]}
$$);
SELECT orchestrator.start_workflow('fast_self_signal') AS r \gset
SELECT wait_for_run(:'r');
SELECT seq, type, step FROM orchestrator.events(:'r') ORDER BY seq;

-- A step that cancels its own run: the run stays cancelled (the step's own
-- result is still recorded: its statement did run and commit).
SELECT orchestrator.define_workflow('fast_self_cancel', $$
{"steps": [
  {"name": "a", "kind": "sql", "sql": "SELECT orchestrator.cancel_workflow(id, 'from inside') FROM orchestrator.runs WHERE name = 'fast_self_cancel' AND status = 'running'"},
  {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"]}
]}
$$);
SELECT orchestrator.start_workflow('fast_self_cancel') AS r \gset
SELECT wait_for_run(:'r');
SELECT status, error FROM orchestrator.runs WHERE id = :'r';
SELECT step, status FROM orchestrator.run_steps WHERE run_id = :'r' ORDER BY position;
SELECT type, step FROM orchestrator.events(:'r') ORDER BY seq;

-- A step's statement may itself use the C engine (claim and complete an
-- external step of another run): the units of work nest (this crashed the
-- server before they did); an error in the API call fails the step only.
SELECT orchestrator.define_workflow('fast_ext_target', '{"steps": [{"name": "e", "kind": "external", "queue": "fast_nested_q"}]}');
SELECT orchestrator.define_workflow('fast_nested', $$
{"steps": [
  {"name": "a", "kind": "sql", "sql": "SELECT count(orchestrator.complete_step(run_id, step, lease_token, '{\"via\": \"sql step\"}')) AS completed FROM orchestrator.claim_steps('fast_nested_q', 'sql-step', 5)"},
  {"name": "b", "kind": "sql", "sql": "SELECT 2 AS two", "depends_on": ["a"]}
]}
$$);
SELECT orchestrator.define_workflow('fast_nested_error', $$
{"steps": [{"name": "a", "kind": "sql", "sql": "SELECT orchestrator.complete_step(orchestrator.uuid_v7(), 'x', NULL, NULL)", "retry": {"max_attempts": 1}}]}
$$);
SELECT orchestrator.start_workflow('fast_ext_target') AS target \gset
SELECT orchestrator.start_workflow('fast_nested') AS r \gset
SELECT orchestrator.start_workflow('fast_nested_error') AS e \gset
SELECT wait_for_run(:'r') AS nested, wait_for_run(:'target') AS target, wait_for_run(:'e') AS nested_error;
SELECT step, status, result FROM orchestrator.run_steps WHERE run_id IN (:'r', :'target') ORDER BY run_id, position;
SELECT error -> 'error' ->> 'sqlstate' AS sqlstate FROM orchestrator.runs WHERE id = :'e';

-- An error inside the nested unit, after it started: complete_step() waits
-- for a run this session holds and the step's statement timeout cancels it.
-- The step fails; the dispatcher's unit goes on (the next run succeeds).
SELECT orchestrator.define_workflow('fast_nested_timeout', $$
{"steps": [{"name": "w", "kind": "sleep", "duration": "1 second"},
  {"name": "a", "kind": "sql", "depends_on": ["w"], "timeout": "200 milliseconds", "retry": {"max_attempts": 1},
   "sql": "SELECT orchestrator.complete_step(run_id, step, lease_token, NULL) FROM public.held_lease"}]}
$$);
SELECT orchestrator.start_workflow('fast_ext_target') AS held \gset
CREATE TABLE public.held_lease AS SELECT run_id, step, lease_token FROM orchestrator.claim_steps('fast_nested_q', 'held', 1);
GRANT SELECT ON public.held_lease TO PUBLIC;
SELECT orchestrator.start_workflow('fast_nested_timeout') AS t \gset
-- hold the run while the step (after its 1 s sleep) tries to complete it
BEGIN;
SELECT 1 AS held FROM orchestrator.workflow_runs WHERE id = :'held' FOR UPDATE;
SELECT pg_sleep(3);
COMMIT;
SELECT wait_for_run(:'t') AS nested_timeout;
SELECT error -> 'error' ->> 'sqlstate' AS sqlstate FROM orchestrator.runs WHERE id = :'t';
SELECT orchestrator.start_workflow('fast_result') AS after \gset
SELECT wait_for_run(:'after') AS next_run;
SELECT status FROM orchestrator.workflow_steps WHERE run_id = :'held';
SELECT orchestrator.cancel_workflow(:'held');
DROP TABLE public.held_lease;

-- Webhook deliveries are queued for the events the fast path appends.
SELECT id AS hook FROM orchestrator.create_webhook('http://127.0.0.1:9/fast', '{workflow.succeeded,step.succeeded}') \gset
SELECT orchestrator.start_workflow('fast_diamond') AS r \gset
SELECT wait_for_run(:'r');
SELECT type, count(*) FROM orchestrator.webhook_outbox WHERE run_id = :'r' GROUP BY type ORDER BY type;
SELECT orchestrator.drop_webhook(:'hook');
-- (30_http counts the deliveries it makes)
DELETE FROM orchestrator.webhook_outbox WHERE run_id = :'r';

-- A run in yesterday's partition: the statements follow the run's day.
BEGIN;
SELECT orchestrator.start_workflow('fast_diamond') AS new_id \gset
SELECT orchestrator.uuid_v7_boundary(now() - interval '1 day') AS old_id \gset
UPDATE orchestrator.workflow_runs SET id = :'old_id' WHERE id = :'new_id';
UPDATE orchestrator.workflow_steps SET run_id = :'old_id' WHERE run_id = :'new_id';
UPDATE orchestrator.workflow_events SET run_id = :'old_id' WHERE run_id = :'new_id';
UPDATE orchestrator.work_queue SET run_id = :'old_id' WHERE run_id = :'new_id';
COMMIT;
SELECT wait_for_run(:'old_id');
SELECT tableoid::regclass::text = 'orchestrator.workflow_runs_p' || to_char((now() AT TIME ZONE 'UTC') - interval '1 day', 'YYYYMMDD') AS in_yesterdays_partition,
       status, result
FROM orchestrator.workflow_runs WHERE id = :'old_id';
SELECT count(*) AS events FROM orchestrator.events(:'old_id');

\set SHOW_CONTEXT never
-- Child workflows (steps of kind "workflow") and fan-out ("for_each"):
-- src/compose.c.

-- Helpers: wait for a run to reach a status; the most elements of a step
-- that were running at once, from the events (an element runs from its
-- first step.started to its step.succeeded, failed or dead).
CREATE FUNCTION wait_for_status(id uuid, wanted text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	s text;
BEGIN
	FOR i IN 1 .. 600 LOOP
		SELECT status INTO s FROM orchestrator.runs WHERE runs.id = wait_for_status.id;
		IF s = wanted THEN
			RETURN s;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN 'timeout: ' || s;
END $$;
CREATE FUNCTION cmp_try(sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	d text;
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN others THEN
	GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
	RETURN SQLSTATE || ': ' || SQLERRM || ' / ' || d;
END $$;
CREATE FUNCTION most_at_once(p_run uuid, p_step text) RETURNS bigint
LANGUAGE sql AS $$
	WITH spans AS (
		SELECT e.step, min(e.seq) FILTER (WHERE e.type = 'step.started') AS s,
			   max(e.seq) FILTER (WHERE e.type IN ('step.succeeded', 'step.failed', 'step.dead')) AS f
		FROM orchestrator.events(p_run) e WHERE starts_with(e.step, p_step || '[') GROUP BY e.step)
	SELECT max((SELECT count(*) FROM spans o WHERE o.s <= x.s AND coalesce(o.f, 1e9) > x.s)) FROM spans x
$$;

-- A child run: its result is the step's; it runs in the parent's tenant,
-- with its priority, started by the owner of the parent's workflow.
SELECT orchestrator.define_workflow('cmp_child', $$
{"steps": [{"name": "double", "kind": "sql", "sql": "SELECT ($1::int * 2) AS v", "args": [{"$path": "$.input.n"}]}]}
$$);
SELECT orchestrator.define_workflow('cmp_parent', $$
{"steps": [
  {"name": "kid", "kind": "workflow", "workflow": "cmp_child", "input": {"n": {"$path": "$.input.n"}}},
  {"name": "after", "kind": "sql", "sql": "SELECT ($1::int + 1) AS v", "args": [{"$path": "$.steps.kid.result.double.v"}],
   "depends_on": ["kid"]}]}
$$);
SELECT orchestrator.start_workflow('cmp_parent', '{"n": 21}', '{"tenant": "acme", "priority": 5}') AS p \gset
SELECT wait_for_run(:'p');
SELECT result FROM orchestrator.runs WHERE id = :'p';
SELECT c.name, c.status, c.parent_step, c.tenant, c.priority, c.started_by, c.result, c.input
FROM orchestrator.runs c WHERE c.parent_id = :'p';
SELECT jsonb_path_query(orchestrator.get_workflow(:'p'), '$.children[*]') - 'id' - 'created_at' AS child;
SELECT (orchestrator.get_workflow(:'p') #>> '{steps,kid,child_id}')::uuid = c.id AS step_names_child,
       orchestrator.get_workflow(c.id) ->> 'parent_step' AS parent_step,
       c.trace_id = p.trace_id AS same_trace
FROM orchestrator.runs c, orchestrator.runs p WHERE c.parent_id = :'p' AND p.id = :'p';
SELECT string_agg(type || coalesce(':' || step, ''), ', ' ORDER BY seq) AS history FROM orchestrator.events(:'p');
SELECT e.data ->> 'parent_step' AS parent_step, (e.data ->> 'parent_id')::uuid = :'p' AS parent_id
FROM orchestrator.runs c, orchestrator.events(c.id) e WHERE c.parent_id = :'p' AND e.type = 'workflow.created';

-- A failed child fails the step's attempt: the retry starts a new child.
CREATE SEQUENCE cmp_tries;
SELECT orchestrator.define_workflow('cmp_flaky_child', $$
{"steps": [{"name": "try", "kind": "sql", "sql": "SELECT 1 / (nextval('cmp_tries') - 1)::int AS ok",
            "retry": {"max_attempts": 1}}]}
$$);
SELECT orchestrator.define_workflow('cmp_retry', $$
{"steps": [{"name": "kid", "kind": "workflow", "workflow": "cmp_flaky_child",
            "retry": {"max_attempts": 2, "backoff": "50 milliseconds", "jitter": 0}}]}
$$);
SELECT orchestrator.start_workflow('cmp_retry') AS p \gset
SELECT wait_for_run(:'p');
SELECT status, attempt, result FROM orchestrator.run_steps WHERE run_id = :'p';
SELECT status, parent_step FROM orchestrator.runs WHERE parent_id = :'p' ORDER BY id;
SELECT string_agg(type || coalesce(':' || step, ''), ', ' ORDER BY seq) AS history FROM orchestrator.events(:'p');

-- Out of attempts: the step is dead and the run fails, with the child's error.
SELECT orchestrator.define_workflow('cmp_failing_child', $$
{"steps": [{"name": "boom", "kind": "sql", "sql": "SELECT 1 / 0 AS never", "retry": {"max_attempts": 1}}]}
$$);
SELECT orchestrator.define_workflow('cmp_dead', $$
{"steps": [{"name": "kid", "kind": "workflow", "workflow": "cmp_failing_child",
            "retry": {"max_attempts": 2, "backoff": "50 milliseconds", "jitter": 0}},
           {"name": "never", "kind": "sql", "sql": "SELECT 1 AS one", "depends_on": ["kid"]}]}
$$);
SELECT orchestrator.start_workflow('cmp_dead') AS p \gset
SELECT wait_for_run(:'p');
SELECT step, status, attempt, error ->> 'message' AS message, error ->> 'status' AS child_status,
       error #>> '{error,step}' AS child_step
FROM orchestrator.run_steps WHERE run_id = :'p' ORDER BY position;
SELECT count(*) AS children, bool_and(status = 'failed') AS all_failed FROM orchestrator.runs WHERE parent_id = :'p';

-- "on_error": "continue" applies to it like to any step.
SELECT orchestrator.define_workflow('cmp_continue', $$
{"steps": [{"name": "kid", "kind": "workflow", "workflow": "cmp_failing_child", "on_error": "continue"},
           {"name": "after", "kind": "sql", "sql": "SELECT $1::text AS kid", "args": [{"$path": "$.steps.kid.status"}],
            "depends_on": ["kid"]}]}
$$);
SELECT orchestrator.start_workflow('cmp_continue') AS p \gset
SELECT wait_for_run(:'p');
SELECT step, status FROM orchestrator.run_steps WHERE run_id = :'p' ORDER BY position;

-- Cancelling the parent cancels its active child (handed over through the
-- child's queue: the dispatchers do it at once).
SELECT orchestrator.define_workflow('cmp_waiting_child', $$
{"steps": [{"name": "hold", "kind": "wait", "signal": "go"}]}
$$);
SELECT orchestrator.define_workflow('cmp_cancel', $$
{"steps": [{"name": "kid", "kind": "workflow", "workflow": "cmp_waiting_child"}]}
$$);
SELECT orchestrator.start_workflow('cmp_cancel') AS p \gset
SELECT wait_for_status(:'p', 'running');
SELECT id AS c FROM orchestrator.runs WHERE parent_id = :'p' \gset
SELECT wait_for_status(:'c', 'running');
SELECT orchestrator.cancel_workflow(:'p', 'no longer needed');
SELECT wait_for_status(:'c', 'cancelled');
SELECT error FROM orchestrator.runs WHERE id = :'c';
SELECT step, status FROM orchestrator.run_steps WHERE run_id = :'c';
SELECT step, status FROM orchestrator.run_steps WHERE run_id = :'p';
-- its end reaches the parent's step, which is over: nothing changes
SELECT pg_sleep(0.3);
SELECT status FROM orchestrator.runs WHERE id = :'p';
SELECT count(*) AS queued FROM orchestrator.work_queue WHERE run_id IN (:'p', :'c');

-- A child cancelled by itself fails the step, without a retry.
SELECT orchestrator.define_workflow('cmp_cancel_child', $$
{"steps": [{"name": "kid", "kind": "workflow", "workflow": "cmp_waiting_child",
            "retry": {"max_attempts": 3, "backoff": "50 milliseconds"}}]}
$$);
SELECT orchestrator.start_workflow('cmp_cancel_child') AS p \gset
SELECT wait_for_status(:'p', 'running');
SELECT id AS c FROM orchestrator.runs WHERE parent_id = :'p' \gset
SELECT orchestrator.cancel_workflow(:'c');
SELECT wait_for_run(:'p');
SELECT status, attempt, error ->> 'message' AS message FROM orchestrator.run_steps WHERE run_id = :'p';
SELECT count(*) AS children FROM orchestrator.runs WHERE parent_id = :'p';

-- A signal to the child completes it, and the parent goes on.
SELECT orchestrator.start_workflow('cmp_cancel') AS p \gset
SELECT wait_for_status(:'p', 'running');
SELECT id AS c FROM orchestrator.runs WHERE parent_id = :'p' \gset
SELECT wait_for_status(:'c', 'running');
SELECT orchestrator.signal_workflow(:'c', 'go', '{"ok": true}');
SELECT wait_for_run(:'p');
SELECT result FROM orchestrator.runs WHERE id = :'p';

-- Deadlines: the child's is the parent's, or earlier with the step's
-- "timeout" (from when the child starts); a child past its deadline fails
-- the step.
SELECT orchestrator.define_workflow('cmp_deadline', $$
{"steps": [{"name": "kid", "kind": "workflow", "workflow": "cmp_waiting_child"},
           {"name": "short", "kind": "workflow", "workflow": "cmp_waiting_child", "timeout": "1 second"}]}
$$);
SELECT orchestrator.start_workflow('cmp_deadline', '{}', '{"deadline": "1 hour"}') AS p \gset
SELECT wait_for_run(:'p');
SELECT c.parent_step, c.status, c.deadline = p.deadline AS parents_deadline, c.deadline < p.deadline AS earlier,
       c.error ->> 'message' AS error
FROM orchestrator.runs c, orchestrator.runs p WHERE c.parent_id = :'p' AND p.id = :'p' ORDER BY c.parent_step;
SELECT step, status, error ->> 'message' AS message FROM orchestrator.run_steps WHERE run_id = :'p' ORDER BY position;
-- the parent's deadline ends its children too (cancelled, or failed at the
-- same deadline, whichever the dispatchers see first)
SELECT orchestrator.start_workflow('cmp_cancel', '{}', '{"deadline": "1 second"}') AS p \gset
SELECT wait_for_run(:'p');
SELECT id AS c FROM orchestrator.runs WHERE parent_id = :'p' \gset
SELECT wait_for_run(:'c') IN ('cancelled', 'failed') AS child_ended;

-- The right to start the child's workflow is that of the parent's owner:
-- checked at definition, and again when a child starts.
CREATE ROLE cmp_user LOGIN IN ROLE orchestrator_user;
SET ROLE cmp_user;
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_theirs', '{"steps": [{"name": "k", "kind": "workflow", "workflow": "cmp_child"}]}')$$);
RESET ROLE;
SELECT orchestrator.grant_workflow('cmp_child', 'cmp_user');
SET ROLE cmp_user;
SELECT orchestrator.define_workflow('cmp_theirs', '{"steps": [{"name": "k", "kind": "workflow", "workflow": "cmp_child", "input": {"n": 1}, "retry": {"max_attempts": 3}}]}');
SELECT orchestrator.start_workflow('cmp_theirs') AS p \gset
SELECT wait_for_run(:'p');
SELECT c.started_by, c.owner, c.status FROM orchestrator.runs c WHERE c.parent_id = :'p';
RESET ROLE;
SELECT orchestrator.revoke_workflow('cmp_child', 'cmp_user', 'start');
SET ROLE cmp_user;
SELECT orchestrator.start_workflow('cmp_theirs') AS p \gset
SELECT wait_for_run(:'p');
SELECT status, attempt, error ->> 'message' AS message, error ->> 'sqlstate' AS sqlstate
FROM orchestrator.run_steps WHERE run_id = :'p';
SELECT count(*) AS children FROM orchestrator.runs WHERE parent_id = :'p';
RESET ROLE;

-- Bad definitions: a specific SQLSTATE, and nothing written.
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_bad', '{"steps": [{"name": "k", "kind": "workflow", "workflow": "no_such_workflow"}]}')$$);
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_bad', '{"steps": [{"name": "k", "kind": "workflow", "workflow": "cmp_child", "version": 7}]}')$$);
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_bad', '{"steps": [{"name": "k", "kind": "workflow", "workflow": "cmp_child", "version": -1}]}')$$);
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_bad', '{"steps": [{"name": "k", "kind": "workflow", "workflow": 5}]}')$$);
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_bad', '{"steps": [{"name": "k", "kind": "workflow", "workflow": "cmp_child", "queue": "q"}]}')$$);
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_bad', '{"steps": [{"name": "k", "kind": "workflow", "workflow": "cmp_child", "input": {"a": {"$path": "$["}}}]}')$$);
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_bad', '{"steps": [{"name": "k", "kind": "sql", "sql": "SELECT 1", "for_each": "$.input.items"}]}')$$);
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_bad', '{"steps": [{"name": "k", "kind": "sql", "sql": "SELECT 1", "for_each": {"$path": "$.input.items", "x": 1}}]}')$$);
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_bad', '{"steps": [{"name": "k", "kind": "sql", "sql": "SELECT 1", "for_each": {"$path": "$["}}]}')$$);
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_bad', '{"steps": [{"name": "k", "kind": "wait", "signal": "s", "for_each": {"$path": "$.input.items"}}]}')$$);
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_bad', '{"steps": [{"name": "k", "kind": "sql", "sql": "SELECT 1", "max_parallel": 2}]}')$$);
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_bad', '{"steps": [{"name": "k", "kind": "sql", "sql": "SELECT 1", "for_each": {"$path": "$.input.items"}, "max_parallel": 0}]}')$$);
SELECT cmp_try($$SELECT orchestrator.define_workflow('cmp_bad', '{"steps": [{"name": "k", "kind": "sql", "sql": "SELECT 1", "for_each": {"$path": "$.input.items"}, "max_parallel": 1.5}]}')$$);
SELECT count(*) AS written FROM orchestrator.workflows WHERE name = 'cmp_bad';

-- Fan-out over sql steps: once per element, at most max_parallel at once,
-- the results in order; $.item and $.index in the templates.
SELECT orchestrator.define_workflow('cmp_fan_sql', $$
{"steps": [{"name": "each", "kind": "sql", "for_each": {"$path": "$.input.items"}, "max_parallel": 2,
            "sql": "SELECT $1::int * 10 AS v, $2::int AS i", "args": [{"$path": "$.item"}, {"$path": "$.index"}]},
           {"name": "sum", "kind": "sql", "depends_on": ["each"],
            "sql": "SELECT sum((x ->> 'v')::int) AS total FROM jsonb_array_elements($1) x", "args": [{"$path": "$.steps.each.result"}]}]}
$$);
SELECT orchestrator.start_workflow('cmp_fan_sql', '{"items": [5, 4, 3, 2, 1]}') AS f \gset
SELECT wait_for_run(:'f');
SELECT result FROM orchestrator.runs WHERE id = :'f';
SELECT most_at_once(:'f', 'each') <= 2 AS within_limit;
SELECT s.step, s.status, s.attempt, w.item, s.input FROM orchestrator.run_steps s JOIN orchestrator.workflow_steps w USING (run_id, step)
WHERE s.run_id = :'f' ORDER BY s.position, w.element NULLS FIRST;
SELECT orchestrator.get_workflow(:'f') #> '{steps,each,progress}' AS progress;
SELECT data FROM orchestrator.events(:'f') WHERE type = 'step.fanned_out';

-- An empty array succeeds at once with []; a path that selects no array
-- (or nothing) fails the step, not retried.
SELECT orchestrator.start_workflow('cmp_fan_sql', '{"items": []}') AS f \gset
SELECT wait_for_run(:'f');
SELECT result FROM orchestrator.runs WHERE id = :'f';
SELECT string_agg(type || coalesce(':' || step, ''), ', ' ORDER BY seq) AS history FROM orchestrator.events(:'f');
SELECT orchestrator.start_workflow('cmp_fan_sql', '{"items": "abc"}') AS f \gset
SELECT wait_for_run(:'f');
SELECT step, status, attempt, error FROM orchestrator.run_steps WHERE run_id = :'f' ORDER BY position;
SELECT orchestrator.start_workflow('cmp_fan_sql', '{"other": 1}') AS f \gset
SELECT wait_for_run(:'f');
SELECT error #>> '{error,message}' AS message FROM orchestrator.runs WHERE id = :'f';

-- One element's failure: its own retries, then the step fails (its status)
-- and the run with it; its other elements are cancelled.
SELECT orchestrator.define_workflow('cmp_fan_fail', $$
{"steps": [{"name": "each", "kind": "sql", "for_each": {"$path": "$.input.items"}, "max_parallel": 1,
            "sql": "SELECT 10 / $1::int AS v", "args": [{"$path": "$.item"}],
            "retry": {"max_attempts": 2, "backoff": "50 milliseconds", "jitter": 0}}]}
$$);
SELECT orchestrator.start_workflow('cmp_fan_fail', '{"items": [5, 0, 2, 1]}') AS f \gset
SELECT wait_for_run(:'f');
SELECT s.step, s.status, s.attempt FROM orchestrator.run_steps s JOIN orchestrator.workflow_steps w USING (run_id, step)
WHERE s.run_id = :'f' ORDER BY s.position, w.element NULLS FIRST;
SELECT error - 'error' AS error, error #>> '{error,index}' AS element, error #>> '{error,error,sqlstate}' AS sqlstate
FROM orchestrator.runs WHERE id = :'f';
-- with "on_error": "continue" the other elements go on; the step ends
-- failed with the results it has, and the run goes on
SELECT orchestrator.define_workflow('cmp_fan_continue', $$
{"steps": [{"name": "each", "kind": "sql", "for_each": {"$path": "$.input.items"}, "on_error": "continue",
            "sql": "SELECT 10 / $1::int AS v", "args": [{"$path": "$.item"}], "retry": {"max_attempts": 1}},
           {"name": "after", "kind": "sql", "depends_on": ["each"], "sql": "SELECT $1 #>> '{}' AS each_status",
            "args": [{"$path": "$.steps.each.status"}]}]}
$$);
SELECT orchestrator.start_workflow('cmp_fan_continue', '{"items": [5, 0, 2]}') AS f \gset
SELECT wait_for_run(:'f');
SELECT step, status, result, error ->> 'message' AS message, error #>> '{failed,0,index}' AS failed_index
FROM orchestrator.run_steps WHERE run_id = :'f' AND step IN ('each', 'after') ORDER BY position;

-- Resuming a failed fan-out keeps the elements that succeeded.
CREATE SEQUENCE cmp_fan_tries;
SELECT orchestrator.define_workflow('cmp_fan_resume', $$
{"steps": [{"name": "each", "kind": "sql", "for_each": {"$path": "$.input.items"}, "max_parallel": 1,
            "sql": "SELECT CASE WHEN $1::int = 2 THEN 1 / (nextval('cmp_fan_tries') - 1)::int ELSE $1::int END AS v",
            "args": [{"$path": "$.item"}], "retry": {"max_attempts": 1}}]}
$$);
SELECT orchestrator.start_workflow('cmp_fan_resume', '{"items": [1, 2, 3]}') AS f \gset
SELECT wait_for_run(:'f');
SELECT orchestrator.retry_run(:'f');
SELECT wait_for_run(:'f');
SELECT result FROM orchestrator.runs WHERE id = :'f';
SELECT s.step, s.status, s.attempt FROM orchestrator.run_steps s JOIN orchestrator.workflow_steps w USING (run_id, step)
WHERE s.run_id = :'f' ORDER BY s.position, w.element NULLS FIRST;

-- Fan-out over external steps: workers claim elements ("<step>[<index>]",
-- with the input rendered for the element), at most max_parallel leased at
-- once; results keep the array's order whatever order they complete in.
SELECT orchestrator.define_workflow('cmp_fan_ext', $$
{"steps": [{"name": "each", "kind": "external", "queue": "cmp_q", "for_each": {"$path": "$.input.items"}, "max_parallel": 2,
            "input": {"name": {"$path": "$.item.name"}, "index": {"$path": "$.index"}},
            "retry": {"max_attempts": 2, "backoff": "1 millisecond", "jitter": 0}}]}
$$);
SELECT orchestrator.start_workflow('cmp_fan_ext', '{"items": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}') AS f \gset
CREATE TEMP TABLE claimed AS SELECT * FROM orchestrator.claim_steps('cmp_q', 'w1', 10);
SELECT step, attempt, input FROM claimed ORDER BY step;
-- the second element first, then a failed attempt of the first (retried)
SELECT orchestrator.complete_step(run_id, step, lease_token, '{"done": "b"}') FROM claimed WHERE step = 'each[1]';
SELECT orchestrator.fail_step(run_id, step, lease_token, '{"message": "try again"}') FROM claimed WHERE step = 'each[0]';
SELECT pg_sleep(0.1);
DELETE FROM claimed;
INSERT INTO claimed SELECT * FROM orchestrator.claim_steps('cmp_q', 'w1', 10);
SELECT step, attempt, input FROM claimed ORDER BY step;
SELECT orchestrator.complete_step(run_id, step, lease_token, jsonb_build_object('done', input ->> 'name')) FROM claimed ORDER BY step;
SELECT wait_for_run(:'f');
SELECT result FROM orchestrator.runs WHERE id = :'f';
SELECT most_at_once(:'f', 'each') AS most_at_once;

-- Fan-out over child runs: a child per element.
SELECT orchestrator.define_workflow('cmp_fan_kids', $$
{"steps": [{"name": "kids", "kind": "workflow", "workflow": "cmp_child", "for_each": {"$path": "$.input.items"},
            "max_parallel": 2, "input": {"n": {"$path": "$.item"}}}]}
$$);
SELECT orchestrator.start_workflow('cmp_fan_kids', '{"items": [1, 2, 3]}') AS f \gset
SELECT wait_for_run(:'f');
SELECT result FROM orchestrator.runs WHERE id = :'f';
SELECT parent_step, status, input FROM orchestrator.runs WHERE parent_id = :'f' ORDER BY parent_step;
SELECT most_at_once(:'f', 'kids') <= 2 AS within_limit;

-- Fan-out over sleeps and http steps (a refused connection, not retried:
-- the HTTP path itself is tested against a live sink in test/client).
SELECT orchestrator.define_workflow('cmp_fan_sleep', $$
{"steps": [{"name": "naps", "kind": "sleep", "for_each": {"$path": "$.input.items"}, "duration": "10 milliseconds"}]}
$$);
SELECT orchestrator.start_workflow('cmp_fan_sleep', '{"items": [1, 2]}') AS f \gset
SELECT wait_for_run(:'f');
SELECT status, jsonb_array_length(result -> 'naps') AS naps FROM orchestrator.runs WHERE id = :'f';
SELECT orchestrator.define_workflow('cmp_fan_http', $$
{"steps": [{"name": "calls", "kind": "http", "for_each": {"$path": "$.input.items"},
            "request": {"method": "POST", "url": "http://127.0.0.1:9/x", "body": {"n": {"$path": "$.item"}}},
            "retry": {"max_attempts": 1}}]}
$$);
SELECT orchestrator.start_workflow('cmp_fan_http', '{"items": [7]}') AS f \gset
SELECT wait_for_run(:'f');
SELECT step, status, input -> 'body' AS body, error ->> 'kind' AS kind FROM orchestrator.run_steps
WHERE run_id = :'f' ORDER BY step;

-- the breaker's record of those refused requests (30_http counts its own)
DELETE FROM orchestrator.http_circuits WHERE host = '127.0.0.1:9';
DROP OWNED BY cmp_user;
DROP ROLE cmp_user;

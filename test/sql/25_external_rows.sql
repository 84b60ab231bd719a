\set SHOW_CONTEXT never
-- The rows of external steps' claims, completions and retries are written
-- with the heap and index access methods (src/run_rows.c), not statements:
-- each column is what the statement wrote (leases bounded by the attempt's
-- end, a retry's queue row written over rather than added), the events
-- and their order are unchanged, and every index is kept.

SELECT orchestrator.define_workflow('rows_ext', $$
{"steps": [
  {"name": "a", "kind": "external", "queue": "rows_q", "timeout": "30 seconds",
   "retry": {"max_attempts": 2, "backoff": "1 hour", "max_backoff": "2 hours", "jitter": 0}},
  {"name": "b", "kind": "external", "queue": "rows_q", "depends_on": ["a"], "input": {"from": "a"}}
]}
$$);
SELECT orchestrator.start_workflow('rows_ext', '{"n": 1}') AS r \gset

-- The claim: the run starts, the attempt starts, the queue row carries the
-- lease, which ends with the attempt (30 seconds) rather than after the
-- lease asked for (1 minute).
BEGIN;
CREATE TEMP TABLE c1 AS SELECT * FROM orchestrator.claim_steps('rows_q', 'w1', 10, '1 minute');
SELECT step, attempt, input, workflow FROM c1;
SELECT r.status AS run_status, r.started_at IS NOT NULL AS run_started,
       s.status, s.attempt, s.worker, s.started_at = c.deadline - interval '30 seconds' AS lease_ends_with_attempt,
       w.lease_token = c.lease_token AS token_kept, w.lease, w.worker AS queue_worker,
       w.available_at = least(now() + interval '1 minute', s.started_at + interval '30 seconds') AS available_at_is_least
FROM c1 c
JOIN orchestrator.workflow_runs r ON r.id = c.run_id
JOIN orchestrator.workflow_steps s ON s.run_id = c.run_id AND s.step = c.step
JOIN orchestrator.work_queue w ON w.run_id = c.run_id AND w.step = c.step;
COMMIT;

-- A failed attempt with attempts left: the step waits for its retry on the
-- same queue row, written over (no lease, no worker, due after the backoff).
SELECT orchestrator.fail_step(run_id, step, lease_token, '{"why": "flaky"}') AS failed FROM c1;
SELECT count(*) AS queue_rows, bool_and(lease_token IS NULL AND lease IS NULL AND worker IS NULL) AS lease_cleared,
       bool_and(available_at > now() + interval '30 minutes') AS after_backoff, min(queue) AS queue,
       min(workflow) AS workflow
FROM orchestrator.work_queue WHERE run_id = :'r';
-- the old token is refused now
SELECT orchestrator.complete_step(run_id, step, lease_token, '{}') AS completed_with_old_token FROM c1;

-- Due again: the second attempt is claimed and completed.
UPDATE orchestrator.work_queue SET available_at = now() WHERE run_id = :'r';
CREATE TEMP TABLE c2 AS SELECT * FROM orchestrator.claim_steps('rows_q', 'w2', 10);
SELECT step, attempt FROM c2;
SELECT s.status, s.attempt, s.worker FROM orchestrator.workflow_steps s WHERE s.run_id = :'r' AND s.step = 'a';
SELECT orchestrator.complete_step(run_id, step, lease_token, '{"x": 1}') AS completed FROM c2;
-- the step succeeded with its result; the next one is ready and queued
SELECT step, status, attempt, result, error, finished_at IS NOT NULL AS finished, input
FROM orchestrator.workflow_steps WHERE run_id = :'r' ORDER BY position;
SELECT step, queue, workflow, lease_token IS NULL AS unleased FROM orchestrator.work_queue WHERE run_id = :'r';

-- The last step, then the run succeeds.
CREATE TEMP TABLE c3 AS SELECT * FROM orchestrator.claim_steps('rows_q', 'w3', 10);
SELECT step, attempt, input FROM c3;
SELECT orchestrator.complete_step(run_id, step, lease_token, NULL) AS completed FROM c3;
SELECT status, result FROM orchestrator.workflow_runs WHERE id = :'r';
SELECT count(*) AS queue_rows_left FROM orchestrator.work_queue WHERE run_id = :'r';

-- The events, in order.
SELECT seq, type, step, data - 'error' - 'retry_at' AS data FROM orchestrator.events(:'r') ORDER BY seq;

-- history.c remembers the last event this transaction appended to a run;
-- one appended in a subtransaction rolled back is forgotten with it: the
-- next one takes its number (no gap), one after a released savepoint
-- follows.
SELECT orchestrator.start_workflow('rows_ext') AS r5 \gset
CREATE TEMP TABLE c5 AS SELECT * FROM orchestrator.claim_steps('rows_q', 'w5', 10);
BEGIN;
SELECT orchestrator.heartbeat_step(run_id, step, lease_token, NULL, '{"p": 1}') AS beat FROM c5;
SAVEPOINT s;
SELECT orchestrator.heartbeat_step(run_id, step, lease_token, NULL, '{"p": 2}') AS beat FROM c5;
ROLLBACK TO SAVEPOINT s;
SELECT orchestrator.heartbeat_step(run_id, step, lease_token, NULL, '{"p": 3}') AS beat FROM c5;
SAVEPOINT t;
SELECT orchestrator.heartbeat_step(run_id, step, lease_token, NULL, '{"p": 4}') AS beat FROM c5;
RELEASE SAVEPOINT t;
SELECT orchestrator.heartbeat_step(run_id, step, lease_token, NULL, '{"p": 5}') AS beat FROM c5;
COMMIT;
SELECT seq, type, data FROM orchestrator.events(:'r5') WHERE seq > 2 ORDER BY seq;
SELECT count(*) = max(seq) AS no_gaps FROM orchestrator.events(:'r5');
SELECT orchestrator.complete_step(run_id, step, lease_token, '{}') AS completed FROM c5;

-- Every index of the runs, steps, events and queue has an entry for every
-- row (amcheck's heapallindexed), after claims, leases, retries and
-- completions of several runs.
SELECT count(orchestrator.start_workflow('rows_ext')) FROM generate_series(1, 20);
CREATE TEMP TABLE c4 AS SELECT * FROM orchestrator.claim_steps('rows_q', 'w4', 50);
SELECT count(*) FILTER (WHERE completed) AS completed FROM orchestrator.complete_steps(
	(SELECT array_agg(run_id) FROM c4), (SELECT array_agg(step) FROM c4),
	(SELECT array_agg(lease_token) FROM c4), (SELECT array_agg('{}'::jsonb) FROM c4));
SELECT indexes_checked() > 3 AS indexes_checked;

-- rows.c keeps where each column is, per table, in the process: a column
-- added to the queue is still refused (it would be left without its
-- default), and once it is dropped again (the dropped column keeps its
-- place in the row, NULL in new rows: a new queue row crashed the server
-- before) the claim's lease and the completion are written into the right
-- columns.
SELECT orchestrator.define_workflow('rows_ext6', $$
{"steps": [
  {"name": "a", "kind": "external", "queue": "rows_q6"},
  {"name": "b", "kind": "external", "queue": "rows_q6", "depends_on": ["a"]}
]}
$$);
BEGIN;
CREATE TEMP TABLE c6 AS SELECT * FROM orchestrator.claim_steps('rows_q6', 'w6', 10);
ALTER TABLE orchestrator.work_queue ADD COLUMN note text DEFAULT 'a default';
SELECT try($$SELECT * FROM orchestrator.claim_steps('rows_q6', 'w6', 10)$$) AS claim_with_unknown_column;
SELECT try($$SELECT orchestrator.start_workflow('rows_ext6')$$) AS start_with_unknown_column;
ALTER TABLE orchestrator.work_queue DROP COLUMN note;
COMMIT;
SELECT orchestrator.start_workflow('rows_ext6') AS r6 \gset
SELECT step, queue, priority, workflow, lease_token IS NULL AS unleased, worker
FROM orchestrator.work_queue WHERE run_id = :'r6';
CREATE TEMP TABLE c7 AS SELECT * FROM orchestrator.claim_steps('rows_q6', 'w6', 10, '1 minute');
SELECT c.step, c.attempt, w.lease_token = c.lease_token AS token_kept, w.lease, w.worker, w.queue, w.workflow,
       w.available_at = c.deadline AS available_at_is_deadline
FROM c7 c JOIN orchestrator.work_queue w ON w.run_id = c.run_id AND w.step = c.step;
SELECT orchestrator.complete_step(run_id, step, lease_token, '{"n": 6}') AS completed FROM c7;
SELECT step, queue, workflow, lease_token IS NULL AS unleased FROM orchestrator.work_queue WHERE run_id = :'r6';
CREATE TEMP TABLE c8 AS SELECT * FROM orchestrator.claim_steps('rows_q6', 'w6', 10);
SELECT orchestrator.complete_step(run_id, step, lease_token, '{}') AS completed FROM c8;
SELECT seq, type, step, data FROM orchestrator.events(:'r6') ORDER BY seq;

-- An update that leaves a unique index's key as it was is not checked
-- against that index again (the old version holds the key); one that puts
-- the row into a partial unique index is: an operator's index allowing one
-- lease per step name (on this test's queue) refuses the second.
SELECT orchestrator.define_workflow('rows_ext9', '{"steps": [{"name": "a", "kind": "external", "queue": "rows_q9"}]}');
BEGIN;
CREATE UNIQUE INDEX work_queue_one_lease ON orchestrator.work_queue (queue, step) WHERE lease_token IS NOT NULL AND queue = 'rows_q9';
SELECT count(orchestrator.start_workflow('rows_ext9')) AS started FROM generate_series(1, 2);
SELECT count(*) AS claimed FROM orchestrator.claim_steps('rows_q9', 'w9', 1);
SELECT try($$SELECT * FROM orchestrator.claim_steps('rows_q9', 'w9', 1)$$) AS second_lease;
ROLLBACK;

-- A row under a lease is not in index work_queue_claim (the lease moves it
-- to work_queue_leased: two index entries, not three): a claim never steps
-- over a live lease, finds an expired one through work_queue_leased (and
-- retries the step), a heartbeat moves the expiry within that index, and a
-- worker limited to some workflows claims the same way without touching
-- the rows of the others.
SELECT indexrelid::regclass AS index, pg_get_expr(indpred, indrelid) AS rows_in_it
FROM pg_index WHERE indrelid = 'orchestrator.work_queue'::regclass AND indpred IS NOT NULL ORDER BY 1;
SELECT orchestrator.define_workflow('rows_ext10', $$
{"steps": [{"name": "a", "kind": "external", "queue": "rows_q10",
  "retry": {"max_attempts": 3, "backoff": "1 hour", "max_backoff": "1 hour", "jitter": 0}}]}
$$);
SELECT orchestrator.start_workflow('rows_ext10', '{"n": 10}') AS r10 \gset
SELECT orchestrator.start_workflow('rows_ext10', '{"n": 11}') AS r11 \gset
CREATE TEMP TABLE c10 AS SELECT * FROM orchestrator.claim_steps('rows_q10', 'w10', 1, '1 minute');
SELECT run_id = :'r10' AS first_run FROM c10;
-- the live lease is skipped: the next claim gets the other run's step, then nothing
CREATE TEMP TABLE c11 AS SELECT * FROM orchestrator.claim_steps('rows_q10', 'w11', 10, '1 minute');
SELECT run_id = :'r11' AS other_run FROM c11;
SELECT count(*) AS nothing_left FROM orchestrator.claim_steps('rows_q10', 'w12', 10);
-- a heartbeat extends the lease: the row stays leased and is not claimed
SELECT orchestrator.heartbeat_step(run_id, step, lease_token, '10 minutes') AS beat FROM c10;
SELECT lease, available_at BETWEEN now() + interval '9 minutes' AND now() + interval '10 minutes' AS extended FROM orchestrator.work_queue WHERE run_id = :'r10';
SELECT count(*) AS still_nothing FROM orchestrator.claim_steps('rows_q10', 'w12', 10);
-- An expired lease (in one transaction with the claim, so that no
-- dispatcher handles it first): the claim that finds it loses the attempt
-- and queues the retry, and does not return it; its token is refused.
BEGIN;
UPDATE orchestrator.work_queue SET available_at = now() - interval '1 second' WHERE run_id = :'r11';
SELECT count(*) AS returned FROM orchestrator.claim_steps('rows_q10', 'w13', 10);
SELECT step, lease_token IS NULL AS unleased, worker, available_at = now() + interval '1 hour' AS after_backoff
FROM orchestrator.work_queue WHERE run_id = :'r11';
SELECT status, attempt FROM orchestrator.workflow_steps WHERE run_id = :'r11';
COMMIT;
SELECT orchestrator.complete_step(run_id, step, lease_token, '{}') AS completed_after_expiry FROM c11;
SELECT seq, type, step, data - 'retry_at' AS data FROM orchestrator.events(:'r11') ORDER BY seq;
-- due again: the retry is claimed as attempt 2
UPDATE orchestrator.work_queue SET available_at = now() WHERE run_id = :'r11';
CREATE TEMP TABLE c12 AS SELECT * FROM orchestrator.claim_steps('rows_q10', 'w14', 10);
SELECT run_id = :'r11' AS retried, attempt FROM c12;
-- A worker limited to its own workflows (alice owns rows_ext12, not
-- rows_ext10) on the same queue: it takes its step and leaves the other
-- workflow's expired lease alone (not locked, not handled).
SET ROLE alice;
SELECT orchestrator.define_workflow('rows_ext12', '{"steps": [{"name": "a", "kind": "external", "queue": "rows_q10"}]}') AS v;
SELECT orchestrator.start_workflow('rows_ext12') AS r12 \gset
RESET ROLE;
BEGIN;
UPDATE orchestrator.work_queue SET available_at = now() - interval '1 second' WHERE run_id = :'r10';
SET LOCAL ROLE alice;
SELECT run_id = :'r12' AS own_step, attempt FROM orchestrator.claim_steps('rows_q10', 'w-alice', 10);
RESET ROLE;
SELECT lease_token IS NOT NULL AS still_leased, worker FROM orchestrator.work_queue WHERE run_id = :'r10';
ROLLBACK;
SELECT orchestrator.complete_step(run_id, step, lease_token, '{"done": 10}') AS completed FROM c10;
SELECT orchestrator.complete_step(run_id, step, lease_token, '{"done": 11}') AS completed FROM c12;
SELECT indexes_checked() > 3 AS indexes_checked;
